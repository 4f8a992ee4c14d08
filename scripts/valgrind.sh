#!/usr/bin/env bash
# Runs every C test binary and the CLI's main paths under valgrind memcheck (errors and
# definite leaks fail). Slow: not part of .ci/run, which has the ASan/UBSan build instead.
set -u
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)"; exit 2; }
cmake -S . -B build-valgrind -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null && cmake --build build-valgrind -j2 >/dev/null || exit 1
export CURVOPT_TEST_DATA=$PWD/tests/golden OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
vg=(valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --quiet)
status=0
for t in build-valgrind/tests/test_*; do
    [ -x "$t" ] || continue
    if "${vg[@]}" "$t" >/dev/null 2>"$t.vg"; then echo "clean   $(basename "$t")"; else echo "ERRORS  $(basename "$t") (see $t.vg)"; status=1; fi
done
tmp=$(mktemp -d)
for cmd in "train --opt adamw --epochs 2 --out $tmp/a" "train --resume $tmp/a" "reproduce da-rmsprop --quick --quiet --out $tmp/r"; do
    if "${vg[@]}" build-valgrind/curvopt $cmd >/dev/null 2>"$tmp/vg"; then echo "clean   curvopt $cmd"; else echo "ERRORS  curvopt $cmd"; cat "$tmp/vg"; status=1; fi
done
rm -rf "$tmp"
exit $status
