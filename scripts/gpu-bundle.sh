#!/usr/bin/env bash
# Packs the CUDA build's GPU tests, benches and CLI, with the shared libraries they load
# (all but glibc's and CUDA's own: cuBLAS and cuDNN are hundreds of MB and the GPU machine
# has its own), into one folder for a GPU machine of another image that has the NVIDIA
# driver and CUDA 13 but not this machine's packages: run there as
#   tar xf gpu-bundle/libs.tar.xz -C gpu-bundle &&
#   LD_LIBRARY_PATH=gpu-bundle/lib:<its cuBLAS and cuDNN folders> gpu-bundle/test_cuda_optim
# or all the checks at once: bash gpu-bundle/gpu-check.sh
# Builds for any AVX2 x86-64 (CURVOPT_MARCH=x86-64-v3). Usage: scripts/gpu-bundle.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-bundle}
cmake -S . -B build-cuda -DCURVOPT_CUDA=ON -DCURVOPT_MPI=OFF -DCURVOPT_INSTALL_ON_BUILD=OFF \
    -DCURVOPT_MARCH=x86-64-v3 >/dev/null
targets=(curvopt $(cd tests && ls test_cuda_*.c | sed 's/\.c$//') $(cd bench/cuda && ls bench_*.c | sed 's/\.c$//'))
cmake --build build-cuda -j"${JOBS:-2}" --target "${targets[@]}" curvopt_shared >/dev/null
rm -rf "$out"
mkdir -p "$out/lib"
for t in "${targets[@]}"; do
    f=$(find build-cuda -name "$t" -type f -perm -u+x | head -1)
    cp "$f" "$out/"
    ldd "$f" | awk '$3 ~ /^\// {print $3}' | grep -vE '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libcublas[A-Za-z]*|libcudnn[a-z_]*|libcudart)\.so' |
        xargs -r -I{} cp -Ln {} "$out/lib/"
done
tar cJf "$out/libs.tar.xz" -C "$out" lib
rm -rf "$out/lib"
cp scripts/gpu-check.sh "$out/"
# The Python package over the CUDA build's shared library, and its GPU test.
cp -L build-cuda/libcurvopt.so "$out/libcurvopt.so"
mkdir -p "$out/python"
cp -r python/curvopt "$out/python/"
cp tests/python/harness.py tests/python/test_torch_cuda.py "$out/python/"
cp bench/torch_cuda_bench.py "$out/" 2>/dev/null || true
du -sh "$out"
