#!/usr/bin/env bash
# Crash safety: for every optimizer, a run killed with SIGKILL at random moments (mid-epoch,
# mid-checkpoint-write) and resumed each time ends with exactly the parameters of an
# uninterrupted run; a corrupted or truncated checkpoint is refused.
set -u
bin=${CURVOPT_BIN:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
RANDOM=12345
args=(--model mlp:2-96-96-1 --epochs 12 --batch 16 --checkpoint-every 7 --seed 3)
for opt in $("$bin" list | grep -E '^[a-z]' | cut -d' ' -f1); do
    "$bin" train --opt "$opt" "${args[@]}" --out "$tmp/$opt-ref" >/dev/null 2>&1 || { failed=$((failed + 1)); echo "FAIL $opt: reference run"; continue; }
    # Measure how long a run takes so kills land inside it.
    start=$(date +%s%N)
    "$bin" train --opt "$opt" "${args[@]}" --out "$tmp/$opt-timing" >/dev/null 2>&1
    dur_ms=$(( ($(date +%s%N) - start) / 1000000 + 1 ))
    out="$tmp/$opt-killed"
    cmd=(train --opt "$opt" "${args[@]}" --out "$out")
    kills=0 done=0
    for attempt in $(seq 1 12); do
        "$bin" "${cmd[@]}" >/dev/null 2>"$tmp/err" &
        pid=$!
        delay_ms=$(( RANDOM % (dur_ms / 3 + 2) + 1 ))
        sleep "$(printf '0.%03d' $((delay_ms % 1000)))"
        if kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
        wait "$pid" 2>/dev/null && { done=1; break; }
        [ -f "$out/command.txt" ] && cmd=(train --resume "$out")
    done
    [ "$done" = 1 ] || "$bin" "${cmd[@]}" >/dev/null 2>"$tmp/err" || { failed=$((failed + 1)); echo "FAIL $opt: final resume"; cat "$tmp/err"; continue; }
    if cmp -s "$tmp/$opt-ref/model.params" "$out/model.params" &&
       cmp -s <(cut -d, -f1-7 "$tmp/$opt-ref/epochs.csv") <(cut -d, -f1-7 "$out/epochs.csv"); then
        passed=$((passed + 1))
        echo "$opt: identical after $kills kills (run ${dur_ms} ms)"
    else
        failed=$((failed + 1)); echo "FAIL $opt: resumed run differs after $kills kills"
    fi
done
# Dropout's mask stream is part of the checkpoint: a resumed run with dropout is identical too.
drop=(--opt adam --model "in:2 fc:96 relu dropout:0.3 fc:96 relu fc:1" --epochs 30 --batch 8 --seed 4)
"$bin" train "${drop[@]}" --out "$tmp/drop-ref" >/dev/null 2>&1
"$bin" train "${drop[@]}" --checkpoint-every 9 --out "$tmp/drop" >/dev/null 2>&1 &
pid=$!
# Kill it as soon as a checkpoint exists, so the resume really starts mid-run.
for _ in $(seq 1 500); do [ -f "$tmp/drop/checkpoint.ckpt" ] && break; sleep 0.002; done
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
killed_mid_run=$([ -f "$tmp/drop/model.params" ] && echo no || echo yes)
"$bin" train --resume "$tmp/drop" >/dev/null 2>"$tmp/err"
"$bin" train "${drop[@]}" --seed 5 --out "$tmp/drop-other" >/dev/null 2>&1
if [ "$killed_mid_run" = yes ] && cmp -s "$tmp/drop-ref/model.params" "$tmp/drop/model.params" &&
   ! cmp -s "$tmp/drop-ref/model.params" "$tmp/drop-other/model.params"; then
    passed=$((passed + 1)); echo "dropout: identical after a kill"
else
    failed=$((failed + 1)); echo "FAIL dropout run resumed differently, the seed is ignored, or the kill came too late ($killed_mid_run)"
fi
# A truncated or corrupted checkpoint is refused with a clear message, never half-loaded.
"$bin" train --opt adam --epochs 3 --out "$tmp/corrupt" >/dev/null 2>&1
ck="$tmp/corrupt/checkpoint.ckpt"
size=$(stat -c %s "$ck")
head -c $((size / 2)) "$ck" >"$tmp/half" && cp "$tmp/half" "$ck"
if ! "$bin" train --resume "$tmp/corrupt" >/dev/null 2>"$tmp/err" && grep -q "checkpoint.ckpt" "$tmp/err"; then
    passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL truncated checkpoint accepted"; cat "$tmp/err"; fi
"$bin" train --opt adam --epochs 3 --out "$tmp/flip" >/dev/null 2>&1
printf '\xff' | dd of="$tmp/flip/checkpoint.ckpt" bs=1 seek=40 conv=notrunc 2>/dev/null
if ! "$bin" train --resume "$tmp/flip" >/dev/null 2>"$tmp/err" && grep -q "checksum" "$tmp/err"; then
    passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL corrupted checkpoint accepted"; cat "$tmp/err"; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
