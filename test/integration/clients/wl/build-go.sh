#!/usr/bin/env bash
# build-go.sh BUILD_DIR — build the grpc-go Workload API client (wlclient.go) in GOPATH mode
# from Debian's Go packages (reference/spiffe.md §8: no module proxy here). Generated stubs
# and the binary go under BUILD_DIR/wlclient-go only. Idempotent: nothing is rebuilt when the
# binary is newer than its sources.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../../../.." && pwd)
build=$(cd "${1:-$top/build}" && pwd)
out=$build/wlclient-go
bin=$out/wlclient
proto=$top/src/workload/workload.proto
if [ -x "$bin" ] && [ "$bin" -nt "$here/wlclient.go" ] && [ "$bin" -nt "$proto" ] && [ "$bin" -nt "$0" ]; then
	exit 0
fi
for t in go protoc protoc-gen-go protoc-gen-go-grpc; do
	command -v "$t" >/dev/null || { echo "build-go: $t missing (scripts/install-deps.sh installs it)" >&2; exit 1; }
done
src=$out/gopath/src/wlclient
rm -rf "$out/gopath"
mkdir -p "$src/workload" "$src/cmd"
protoc -I"$top/src/workload" -I/usr/include --go_out=paths=source_relative:"$src/workload" \
	--go-grpc_out=paths=source_relative:"$src/workload" workload.proto
cp "$here/wlclient.go" "$src/cmd/main.go"
mkdir -p "$out/gocache"
(cd "$src/cmd" && GO111MODULE=off GOPATH="$out/gopath:/usr/share/gocode" GOPROXY=off GOFLAGS= \
	GOCACHE="$out/gocache" go build -o "$bin.tmp" .)
mv "$bin.tmp" "$bin"
