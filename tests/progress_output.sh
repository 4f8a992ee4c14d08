#!/usr/bin/env bash
# Progress is drawn only on a terminal: with stdout a pipe (a log), neither stdout nor stderr
# carries a progress line; under a pseudo-terminal (script(1), util-linux) `train` shows the
# epoch, steps/s and an ETA, `compare` and `reproduce` run k of n; --quiet turns it off.
. "$(dirname "$0")/lib.bash"

# No carriage return, no escape sequence, none of the line's words.
clean() { ! grep -q -e $'\r' -e $'\033' -e "ETA" -e "steps/s" "$@"; }

train=(train --opt adam --n 20000 --epochs 3)
"$bin" "${train[@]}" --out "$tmp/pipe" 2>"$tmp/err" | cat >"$tmp/out"
clean "$tmp/out" "$tmp/err" && ok || { bad "train: progress with stdout a pipe"; cat -v "$tmp/out" "$tmp/err"; }
grep -q "final test accuracy" "$tmp/out" && ok || bad "train: no result line"
"$bin" compare --opts adam,sgd --epochs 3 --seeds 2 --out "$tmp/cmp-pipe" 2>"$tmp/err" | cat >"$tmp/out"
clean "$tmp/out" "$tmp/err" && ok || { bad "compare: progress with stdout a pipe"; cat -v "$tmp/out" "$tmp/err"; }
"$bin" reproduce da-rmsprop --quick --out "$tmp/rep-pipe" 2>"$tmp/err" | cat >"$tmp/out"
clean "$tmp/out" "$tmp/err" && ok || { bad "reproduce: progress with stdout a pipe"; cat -v "$tmp/out" "$tmp/err"; }

if command -v script >/dev/null; then
    tty() { script -qec "$1" /dev/null </dev/null; }
    tty "'$bin' ${train[*]} --out '$tmp/tty'" >"$tmp/out"
    grep -q "epoch 1/3 \[" "$tmp/out" && grep -q "ETA" "$tmp/out" && grep -q "steps/s" "$tmp/out" && ok ||
        { bad "train: no progress on a terminal"; cat -v "$tmp/out"; }
    grep -q "final test accuracy" "$tmp/out" && ok || bad "train on a terminal: no result line"
    tty "'$bin' ${train[*]} --quiet --out '$tmp/tty-quiet'" >"$tmp/out"
    ! grep -q -e "ETA" -e $'\033' "$tmp/out" && ok || { bad "train --quiet: progress"; cat -v "$tmp/out"; }
    tty "'$bin' compare --opts adam,sgd --epochs 3 --seeds 2 --out '$tmp/cmp-tty'" >"$tmp/out"
    grep -q "run 1/4 " "$tmp/out" && ok || { bad "compare: no run counter on a terminal"; cat -v "$tmp/out"; }
    # Quick da-rmsprop: 3 optimizers x (3 grid points x 1 tuning seed + 2 seeds).
    tty "'$bin' reproduce da-rmsprop --quick --out '$tmp/rep-tty'" >"$tmp/out"
    grep -q "run 1/15 " "$tmp/out" && ok || { bad "reproduce: no run counter on a terminal"; cat -v "$tmp/out"; }
    tty "'$bin' reproduce da-rmsprop --quick --quiet --out '$tmp/rep-quiet'" >"$tmp/out"
    ! grep -q -e "run 1/" -e $'\033' "$tmp/out" && ok || { bad "reproduce --quiet: progress"; cat -v "$tmp/out"; }
else
    echo "script(1) not found: the terminal half is not tested"
fi
finish
