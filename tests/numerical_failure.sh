#!/usr/bin/env bash
# A NaN/Inf is caught at the step it appears: by default the run stops (exit 1) naming the
# epoch, step and optimizer, says what to try (a smaller lr, the method's safeguards) and keeps
# the last good checkpoint; --skip-nonfinite skips and counts.
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
# It says what to try: a smaller learning rate (a tenth of this run's).
if grep -q "what to try" "$tmp/err" && grep -q -- "--lr 100 " "$tmp/err"; then
    passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL no advice after the stop"; cat "$tmp/err"; fi
# For a curvature method it names its safeguards, and says when faithful=1 had them off.
"$bin" train --opt tso-alra --lr 1000 --hp faithful=1 --model mlp:2-64-64-64-1 --epochs 5 --out "$tmp/tso" >/dev/null 2>"$tmp/err3"
rc=$?
if [ $rc -eq 1 ] && grep -q "faithful=1" "$tmp/err3" && grep -q "kl_clip=" "$tmp/err3" && grep -q "refresh_tol=" "$tmp/err3"; then
    passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL safeguard advice: rc=$rc"; cat "$tmp/err3"; fi
# The kept checkpoint loads (it holds finite state from before the failure).
if "$bin" train --resume "$tmp/stop" >/dev/null 2>"$tmp/err2"; then failed=$((failed + 1)); echo "FAIL resume of a diverging run finished"; 
elif grep -q "non-finite" "$tmp/err2"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL checkpoint not loadable"; cat "$tmp/err2"; fi
"$bin" train "${diverge[@]}" --epochs 2 --skip-nonfinite --out "$tmp/skip" >"$tmp/out" 2>&1
if [ $? -eq 0 ] && grep -qE "skipped [0-9]+ steps" "$tmp/out"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL skip policy"; cat "$tmp/out"; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
