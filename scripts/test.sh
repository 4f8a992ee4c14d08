#!/usr/bin/env bash
# Builds and runs the whole test suite: the CUDA build, a short fuzz smoke of every file
# parser, an ASan+UBSan build, and an optimised build. Every part runs even when an earlier one failed; the
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

# The CUDA backend must keep compiling where nvcc is (/usr/local/cuda): its library, GPU tests
# and benches are built, and the GPU tests run, skipping with their reason when no GPU is
# there (they run for real on a GPU machine: docs/cuda.md).
cuda() {
    if ! command -v nvcc >/dev/null && [ ! -x /usr/local/cuda/bin/nvcc ]; then
        echo "no nvcc: the CUDA build is not checked here"
        return 0
    fi
    cmake -S . -B build-cuda -DCURVOPT_CUDA=ON -DCURVOPT_MPI=OFF -DCURVOPT_INSTALL_ON_BUILD=OFF >/dev/null &&
        cmake --build build-cuda -j"$jobs" --target curvopt test_cuda_optim test_cuda_train bench_cuda_optim \
            bench_cuda_train &&
        ctest --test-dir build-cuda --output-on-failure -R '^test_cuda_'
}

# The CUDA part first: without a GPU its tests skip, and a log that ends on them would read
# as a run in which no test ran. The optimised build's tests close the log.
part "CUDA build (GPU tests skip without a GPU)" cuda
part "fuzz smoke (${FUZZ_SECONDS:-10} s per parser)" bash scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
part "ASan+UBSan build and tests" sanitized
part "Release build and tests" release

echo
if [ ${#failed[@]} -gt 0 ]; then
    echo "test.sh: ${#failed[@]} of 4 parts failed:"
    printf '  - %s\n' "${failed[@]}"
    exit 1
fi
echo "test.sh: all 4 parts passed"
