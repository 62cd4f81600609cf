#!/usr/bin/env bash
# Install what vouch needs on Debian 12, from Debian packages and the npm registry only.
# Idempotent: installs only what is missing. Runs as root (or via sudo when available).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
debs=(build-essential pkg-config libssl-dev libyaml-dev libjansson-dev libnghttp2-dev
      openssl curl nodejs npm iproute2 procps util-linux
      # test/integration/coredump.test.mjs: gcore takes a core of a running vouchd
      gdb
      clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev
      # make fuzz: libFuzzer and the sanitizer runtimes for clang-14 (not pulled in by clang)
      libclang-rt-14-dev
      libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev
      # separated signing and confinement (docs/SECURITY.md): seccomp filters, capabilities
      libseccomp-dev libcap-dev
      # Workload API test clients nobody here wrote (reference/spiffe.md §8): grpc-go in GOPATH
      # mode (the protobuf 1.5 API package is required), Python grpcio (C-core), protoc for
      # their generated code.
      golang-go golang-google-grpc-dev golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev
      protobuf-compiler protoc-gen-go protoc-gen-go-grpc python3-grpcio python3-protobuf
      # the dashboard test renders the page in headless Chromium
      chromium)
missing=()
for p in "${debs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# nodejs/npm may come from elsewhere on the host (e.g. NodeSource); accept a working node >= 18.
if command -v node >/dev/null && command -v npm >/dev/null; then
	missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
pkgs=()
for p in "${missing[@]}"; do [ -n "$p" ] && pkgs+=("$p"); done
if [ ${#pkgs[@]} -gt 0 ]; then
	SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
	echo "install-deps: apt-get install ${pkgs[*]}"
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}"
fi
cd "$top"
if [ ! -d node_modules/@anthropic-ai/sdk ] || [ ! -d node_modules/jose ] || [ ! -d node_modules/@grpc/grpc-js ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
	echo "install-deps: npm ci"
	npm ci --no-audit --no-fund --loglevel=error
fi
