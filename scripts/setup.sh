#!/usr/bin/env bash
# Installs the Debian packages curvopt needs, only those missing (run as root).
set -eu
packages="build-essential cmake libopenblas-dev liblapacke-dev zlib1g-dev libmatio-dev gnuplot-nox"
missing=""
for p in $packages; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq $missing >/dev/null
fi
