#!/usr/bin/env bash
# Run every libFuzzer harness for a bounded time (make fuzz; .ci/run). docs/FUZZING.md.
#   fuzz/run.sh BUILD SECONDS JOBS NAME...
# Each harness starts from its committed seeds (fuzz/corpus/NAME, read only) and a work
# corpus in BUILD/corpus/NAME (new inputs land there, kept between runs). A crash, leak,
# timeout, out-of-memory or UB report stops that harness; its input is saved as
# BUILD/artifacts/NAME/<kind>-<sha1> and this script fails after all have run.
set -uo pipefail
build=$1 secs=$2 jobs=$3
shift 3
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

one() {
	local name=$1 bin="$build/fuzz/fuzz_$1" log="$build/logs/$1.log" rc
	mkdir -p "$build/corpus/$name" "$build/artifacts/$name" "$build/logs"
	"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
		-print_final_stats=1 -artifact_prefix="$build/artifacts/$name/" \
		"$build/corpus/$name" "fuzz/corpus/$name" >"$log" 2>&1
	rc=$?
	# last status line: "#N DONE cov: C ft: F corp: ... exec/s: E ..."
	local stat
	stat=$(grep -E '^#[0-9]+' "$log" | tail -1 | sed -E 's/^#([0-9]+)[[:space:]]+[A-Z]+[[:space:]]+/runs \1 /')
	if [ $rc -eq 0 ]; then
		echo "fuzz $name: ok ($stat)"
	else
		echo "fuzz $name: FAILED (rc $rc), see $log:"
		grep -E 'ERROR|SUMMARY|contract violated|runtime error|Test unit written' "$log" | head -8 | sed 's/^/  /'
	fi
	return $rc
}
export -f one
export build secs

printf '%s\n' "$@" | xargs -P "$jobs" -I{} bash -c 'one "$@"' _ {}
rc=$?
n=$#
if [ $rc -ne 0 ]; then
	echo "fuzz: FAILED (findings above; reproduce: $build/fuzz/fuzz_NAME ARTIFACT)"
	exit 1
fi
echo "fuzz: $n harnesses ran ${secs}s each, no findings"
