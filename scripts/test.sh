#!/usr/bin/env bash
# Builds and runs the whole test suite twice: an optimised build, then an ASan+UBSan build.
set -eu
cd "$(dirname "$0")/.."
jobs=${JOBS:-2}
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCURVOPT_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$jobs"
# A short fuzz smoke of every file parser (clang libFuzzer with ASan+UBSan).
bash scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
