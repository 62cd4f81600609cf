#!/usr/bin/env bash
# build-go.sh BUILD_DIR — build the grpc-go Workload API client (wlclient.go) and the reference
# server used as the peer of `make bench` (refserver.go) in GOPATH mode from Debian's Go packages (reference/spiffe.md §8: no module proxy here). Generated stubs
# and the binary go under BUILD_DIR/wlclient-go only. Idempotent: nothing is rebuilt when the
# binary is newer than its sources.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../../../.." && pwd)
build=$(cd "${1:-$top/build}" && pwd)
out=$build/wlclient-go
bin=$out/wlclient
ref=$out/refserver
proto=$top/src/workload/workload.proto
fresh() { [ -x "$1" ] && [ "$1" -nt "$2" ] && [ "$1" -nt "$proto" ] && [ "$1" -nt "$0" ]; }
if fresh "$bin" "$here/wlclient.go" && fresh "$ref" "$here/refserver.go"; then
	exit 0
fi
for t in go protoc protoc-gen-go protoc-gen-go-grpc; do
	command -v "$t" >/dev/null || { echo "build-go: $t missing (scripts/install-deps.sh installs it)" >&2; exit 1; }
done
src=$out/gopath/src/wlclient
rm -rf "$out/gopath"
mkdir -p "$src/workload" "$src/cmd" "$src/refserver"
protoc -I"$top/src/workload" -I/usr/include --go_out=paths=source_relative:"$src/workload" \
	--go-grpc_out=paths=source_relative:"$src/workload" workload.proto
cp "$here/wlclient.go" "$src/cmd/main.go"
cp "$here/refserver.go" "$src/refserver/main.go"
mkdir -p "$out/gocache"
for p in cmd:"$bin" refserver:"$ref"; do
	(cd "$src/${p%%:*}" && GO111MODULE=off GOPATH="$out/gopath:/usr/share/gocode" GOPROXY=off GOFLAGS= \
		GOCACHE="$out/gocache" go build -o "${p#*:}.tmp" .)
	mv "${p#*:}.tmp" "${p#*:}"
done
