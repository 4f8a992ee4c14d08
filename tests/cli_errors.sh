#!/usr/bin/env bash
# Bad input gets one clear line on stderr, exit code 2, and nothing in the output folder.
set -u
bin=${CURVOPT_BIN:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0

expect_usage_error() {
    local what=$1; shift
    local out="$tmp/out-$passed-$failed"
    "$bin" "$@" --out "$out" >"$tmp/stdout" 2>"$tmp/stderr"
    local rc=$?
    local lines
    lines=$(wc -l <"$tmp/stderr")
    if [ "$rc" -eq 2 ] && [ "$lines" -eq 1 ] && [ ! -e "$out" ] && grep -q "curvopt" "$tmp/stderr"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL $what: rc=$rc stderr lines=$lines out exists=$([ -e "$out" ] && echo yes || echo no)"
        cat "$tmp/stderr"
    fi
}

expect_usage_error "unknown optimizer" train --opt nosuch
expect_usage_error "hyperparameter out of range" train --opt adam --hp beta1=1.5
expect_usage_error "unknown hyperparameter" train --opt adam --hp gamma=3
expect_usage_error "malformed hyperparameter" train --opt adam --hp beta1
expect_usage_error "non-numeric hyperparameter" train --opt adam --hp beta1=abc
expect_usage_error "malformed model spec" train --opt adam --model mlp:2-x-1
expect_usage_error "model without mlp prefix" train --opt adam --model cnn:2-1
expect_usage_error "model input mismatch" train --opt adam --model mlp:3-8-1
expect_usage_error "missing value" train --opt adam --epochs
expect_usage_error "negative epochs" train --opt adam --epochs -1
expect_usage_error "lr not a number" train --opt adam --lr fast
expect_usage_error "unknown option" train --opt adam --colour red
expect_usage_error "unknown schedule" train --opt adam --schedule wiggle
expect_usage_error "bce without sigmoid" train --opt adam --loss bce
expect_usage_error "unknown dataset" train --opt adam --data imagenet
expect_usage_error "compare unknown optimizer" compare --opts adam,nosuch
expect_usage_error "unknown device" train --opt adam --device gpu
# A method without a CUDA step is refused on the GPU whatever the build (the reason differs:
# no CUDA build, no GPU, or no CUDA step for the method).
expect_usage_error "method without a CUDA step" train --opt lama-adam --device cuda
expect_usage_error "nesterov without momentum" train --opt sgd --hp nesterov=1
expect_usage_error "outputs do not match the targets" train --opt adam --loss mse --model mlp:2-8-2
expect_usage_error "reconstruction with one output" train --opt adam --loss mse --reconstruct --model mlp:2-8-1

# Unknown command and --help.
"$bin" frobnicate >/dev/null 2>"$tmp/stderr"
if [ $? -eq 2 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL unknown command"; fi
if "$bin" train --help | grep -q -- "--opt"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL train --help"; fi
if "$bin" list | grep -q "^adamw"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL list"; fi

# A good run writes its CSV, JSON and state.
"$bin" train --opt adamw --lr 1e-2 --epochs 3 --out "$tmp/good" >/dev/null 2>&1
if [ -s "$tmp/good/epochs.csv" ] && [ -s "$tmp/good/result.json" ] && [ -s "$tmp/good/optim.state" ] &&
   [ "$(wc -l <"$tmp/good/epochs.csv")" -eq 4 ]; then
    passed=$((passed + 1))
else
    failed=$((failed + 1)); echo "FAIL good run outputs"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
