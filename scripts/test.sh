#!/usr/bin/env bash
# Builds and runs the whole test suite: an optimised build, an ASan+UBSan build, and a short
# fuzz smoke of every file parser. Every part runs even when an earlier one failed; the
# failures are listed at the end and the exit status is non-zero if there was any.
set -u
cd "$(dirname "$0")/.."
jobs=${JOBS:-2}
failed=()

part() { # NAME COMMAND...: runs one part, records it when it fails
    local name=$1
    shift
    echo "== $name"
    if ! "$@"; then
        failed+=("$name")
        echo "== $name: FAILED"
    fi
}

release() {
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null &&
        cmake --build build -j"$jobs" &&
        ctest --test-dir build --output-on-failure -j"$jobs"
}

sanitized() {
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCURVOPT_SANITIZE=ON >/dev/null &&
        cmake --build build-asan -j"$jobs" &&
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
            ctest --test-dir build-asan --output-on-failure -j"$jobs"
}

part "Release build and tests" release
part "ASan+UBSan build and tests" sanitized
part "fuzz smoke (${FUZZ_SECONDS:-10} s per parser)" bash scripts/fuzz.sh "${FUZZ_SECONDS:-10}"

echo
if [ ${#failed[@]} -gt 0 ]; then
    echo "test.sh: ${#failed[@]} of 3 parts failed:"
    printf '  - %s\n' "${failed[@]}"
    exit 1
fi
echo "test.sh: all 3 parts passed"
