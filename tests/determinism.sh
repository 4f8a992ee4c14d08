#!/usr/bin/env bash
# The same command with the same seed gives bit-identical parameters and logs, for every
# optimizer, and the result does not depend on the thread count (1, 2 or 4 OpenMP threads,
# whatever OpenBLAS's own thread count says: curvopt splits the work itself, core/blas.h).
set -u
bin=${CURVOPT_BIN:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
args=(--model mlp:2-64-64-1 --epochs 4 --seed 11 --data-seed 5)
for opt in $("$bin" list | grep -E '^[a-z]' | cut -d' ' -f1); do
    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 "$bin" train --opt "$opt" "${args[@]}" --out "$tmp/$opt-a" >/dev/null 2>&1
    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 "$bin" train --opt "$opt" "${args[@]}" --out "$tmp/$opt-b" >/dev/null 2>&1
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$bin" train --opt "$opt" "${args[@]}" --out "$tmp/$opt-1" >/dev/null 2>&1
    OMP_NUM_THREADS=4 OPENBLAS_NUM_THREADS=3 "$bin" train --opt "$opt" "${args[@]}" --out "$tmp/$opt-4" >/dev/null 2>&1
    for other in b 1 4; do
        if [ -s "$tmp/$opt-a/model.params" ] && cmp -s "$tmp/$opt-a/model.params" "$tmp/$opt-$other/model.params" &&
           cmp -s <(cut -d, -f1-7 "$tmp/$opt-a/epochs.csv") <(cut -d, -f1-7 "$tmp/$opt-$other/epochs.csv"); then
            passed=$((passed + 1))
        else
            failed=$((failed + 1)); echo "FAIL $opt: run $other differs from run a"
        fi
    done
    # A different seed must give a different result, or the comparison above proves nothing.
    "$bin" train --opt "$opt" "${args[@]}" --seed 12 --out "$tmp/$opt-c" >/dev/null 2>&1
    if ! cmp -s "$tmp/$opt-a/model.params" "$tmp/$opt-c/model.params"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL $opt: seed ignored"; fi
done
# A convolutional network, where TSO-ALRA's statistics steps spread its narrow factors over the
# threads (kfac.c, co_kfac_update_many) and the layers' directions run side by side
# (tso_alra.c): still the same bits at any thread count, at the defaults and in a fast-style
# setting (sampled rows, low-rank roots).
fm=/usr/share/datasets/fashion-mnist
if [ -s "$fm/train-images-idx3-ubyte.gz" ]; then
    for hp in T_int=3 T_cov=2,T_int=4,rank=16,stat_rows=4096; do
        cnn=(--data fashion-mnist --model quasi-adam-mnist --loss cross-entropy --batch 128 --epochs 1 --train-limit 1024
            --test-limit 128 --opt tso-alra --hp "$hp" --seed 4)
        for t in 1 2 4; do
            OMP_NUM_THREADS=$t "$bin" train "${cnn[@]}" --out "$tmp/cnn-$hp-$t" >/dev/null 2>&1
        done
        for t in 2 4; do
            if [ -s "$tmp/cnn-$hp-1/model.params" ] && cmp -s "$tmp/cnn-$hp-1/model.params" "$tmp/cnn-$hp-$t/model.params"; then
                passed=$((passed + 1))
            else
                failed=$((failed + 1)); echo "FAIL tso-alra $hp on quasi-adam-mnist: $t threads differ from 1"
            fi
        done
    done
else
    failed=$((failed + 1)); echo "FAIL Fashion-MNIST not installed in $fm (scripts/setup.sh installs it)"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
