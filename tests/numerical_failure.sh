#!/usr/bin/env bash
# A NaN/Inf is caught at the step it appears: by default the run stops (exit 1) naming the
# epoch, step and optimizer and keeps the last good checkpoint; --skip-nonfinite skips and counts.
set -u
bin=${CURVOPT_BIN:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
diverge=(--opt sgd --lr 1000 --hp momentum=0.99 --model mlp:2-64-64-64-1)
"$bin" train "${diverge[@]}" --epochs 50 --checkpoint-every 1 --out "$tmp/stop" >/dev/null 2>"$tmp/err"
rc=$?
if [ $rc -eq 1 ] && grep -qE "non-finite .* at epoch [0-9]+ step [0-9]+.*optimizer sgd" "$tmp/err" && [ -s "$tmp/stop/checkpoint.ckpt" ]; then
    passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL stop policy: rc=$rc"; cat "$tmp/err"; fi
# The kept checkpoint loads (it holds finite state from before the failure).
if "$bin" train --resume "$tmp/stop" >/dev/null 2>"$tmp/err2"; then failed=$((failed + 1)); echo "FAIL resume of a diverging run finished"; 
elif grep -q "non-finite" "$tmp/err2"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL checkpoint not loadable"; cat "$tmp/err2"; fi
"$bin" train "${diverge[@]}" --epochs 2 --skip-nonfinite --out "$tmp/skip" >"$tmp/out" 2>&1
if [ $? -eq 0 ] && grep -qE "skipped [0-9]+ steps" "$tmp/out"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL skip policy"; cat "$tmp/out"; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
