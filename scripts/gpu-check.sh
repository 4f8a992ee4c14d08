#!/usr/bin/env bash
# The GPU checks in one go, on a GPU machine, from the folder scripts/gpu-bundle.sh made
# (it copies this script there): the GPU tests, the GPU benches, the CLI on the GPU and
# PyTorch's side of the benches; every output is also written under $OUT (default ./gpu-out):
# eight files, the most the device tool brings back.
set -u
cd "$(dirname "$0")"
out=${OUT:-gpu-out}
mkdir -p "$out"
tar xf libs.tar.xz
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv
# The GPU machine's own cuBLAS and cuDNN (the toolkit's folder, or the Python packages').
cublas=$(find /usr/local/cuda* /usr/lib /opt -name 'libcublas.so.13' 2>/dev/null | head -1)
cudnn=$(find /usr/local/cuda* /usr/lib /opt -name 'libcudnn.so.9' 2>/dev/null | head -1)
echo "cuBLAS: $cublas; cuDNN: $cudnn"
export LD_LIBRARY_PATH=$PWD/lib:$(dirname "${cublas:-/x}"):$(dirname "${cudnn:-/x}")
step() { # NAME SECONDS COMMAND...: runs one check, its output in $out/NAME.txt
    local name=$1 limit=$2
    shift 2
    timeout "$limit" "$@" >"$out/$name.txt" 2>&1
    echo "== $name: exit $?"
    grep -v '^RESULT' "$out/$name.txt" | tail -25
}
step test_cuda_optim 120 ./test_cuda_optim
step test_cuda_train 180 ./test_cuda_train
step bench_cuda_optim 120 ./bench_cuda_optim
step bench_cuda_train 180 ./bench_cuda_train
step cli_moons 60 ./curvopt train --device cuda --data moons --opt adam --epochs 20 --out /tmp/gpu-check-moons
CURVOPT_LIB=$PWD/libcurvopt.so PYTHONPATH=$PWD/python step python_torch_cuda 120 python3 python/test_torch_cuda.py
[ -f torch_cuda_bench.py ] && PYTHONUNBUFFERED=1 step torch 240 python3 torch_cuda_bench.py
grep -h '^RESULT' "$out"/*.txt >"$out/results.txt"
