#!/usr/bin/env bash
# Fuzzes every parser of a file format with libFuzzer (clang, ASan + UBSan):
#   scripts/fuzz.sh [seconds] [target...]   each target for `seconds` (default 60)
#   scripts/fuzz.sh --seeds                 regenerates the seed corpora in fuzz/corpus
# Targets: idx cifar svhn optim_state. New inputs go to build-fuzz/corpus/<target> (the
# committed seeds are only read); a crash or a broken contract leaves its input in
# build-fuzz/artifacts/<target>/ and makes the script exit 1.
set -eu
cd "$(dirname "$0")/.."
command -v clang >/dev/null || { echo "fuzz: clang is needed (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
build=${FUZZ_BUILD_DIR:-build-fuzz}
cmake -S fuzz -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"${JOBS:-2}" >/dev/null
if [ "${1:-}" = "--seeds" ]; then
    exec "$build/make_seeds" fuzz/corpus
fi
secs=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-idx cifar svhn optim_state}
status=0
for t in $targets; do
    work="$build/corpus/$t"
    art="$build/artifacts/$t"
    log="$build/fuzz_$t.log"
    mkdir -p "$work" "$art"
    if ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        "$build/fuzz_$t" -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$art/" "$work" "fuzz/corpus/$t" >"$log" 2>&1; then
        result="no crash"
    else
        result="FAILED: see $log; the input is in $art/"
        status=1
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    echo "fuzz_$t: ${secs} s, ${execs:-?} executions, ${cov:-?} coverage edges, $(ls "$work" | wc -l) corpus units: $result"
done
exit $status
