#!/usr/bin/env bash
# The default job (`curvopt compare`, every optimizer, a few seeds) on a short budget: the
# ranked table, per-run results under runs/OPT/seedK, and the figures -- the ranking and the
# curves as small multiples -- drawn by gnuplot from scripts and data kept in plots/.
. "$(dirname "$0")/lib.bash"

out="$tmp/compare"
nopt=$("$bin" list | grep -c "^[a-z]")
if "$bin" compare --epochs 10 --seeds 2 --out "$out" >"$tmp/stdout" 2>"$tmp/err"; then
    ok
    [ ! -s "$tmp/err" ] && ok || { bad "stderr not empty"; cat "$tmp/err"; }
    # Ranked best first: ranks 1..N, one row per optimizer, accuracies not increasing.
    rows=$(grep -c "^| [0-9]" "$out/table.md")
    [ "$rows" -eq "$nopt" ] && ok || bad "table.md has $rows ranked rows, expected $nopt"
    grep "^| [0-9]" "$out/table.md" | awk -F'|' '{ split($5, a, " "); if (NR > 1 && a[1] > prev + 1e-12) exit 1; prev = a[1] }' &&
        ok || bad "table.md is not sorted by test accuracy"
    grep -q "2 seed(s)" "$out/table.md" && ok || bad "table.md does not say the seeds"
    for opt in $("$bin" list | grep "^[a-z]" | cut -d' ' -f1); do
        for k in 0 1; do
            [ -s "$out/runs/$opt/seed$k/epochs.csv" ] && [ -s "$out/runs/$opt/seed$k/result.json" ] && ok ||
                bad "no runs/$opt/seed$k results"
        done
    done
    if command -v gnuplot >/dev/null; then
        for f in summary test_accuracy test_accuracy_time train_loss; do
            [ -s "$out/$f.png" ] && ok || bad "no $f.png"
        done
        # Many optimizers: small multiples, Adam the reference in each panel.
        [ "$(grep -c "^plot " "$out/plots/test_accuracy.gp")" -eq 3 ] && ok || bad "test_accuracy.gp: not three panels"
        [ "$(grep -c "adam (reference)" "$out/plots/test_accuracy.gp")" -eq 3 ] && ok || bad "no reference in every panel"
        # Against time: x is the curves' cumulative training seconds, rising for every method.
        grep -q 'using 14:5' "$out/plots/test_accuracy_time.gp" && ok || bad "test_accuracy_time.gp: x is not column 14"
        # Training times span decades between methods: a log time axis; epochs stay linear.
        grep -q "set logscale x" "$out/plots/test_accuracy_time.gp" && ok || bad "test_accuracy_time.gp: x not log"
        ! grep -q "set logscale x" "$out/plots/test_accuracy.gp" && ok || bad "test_accuracy.gp: epochs on a log axis"
        awk -F, 'NR > 2 && $14 <= prev { exit 1 } NR > 1 { prev = $14 }' "$out/plots/curves_adam.csv" && ok ||
            bad "curves_adam.csv: training seconds do not increase"
        check_figures "$out" compare && ok || bad "figures"
    fi
    # Only what a person reads first at the top.
    extra=$(ls "$out" | grep -v -x -e table.md -e runs -e plots -e summary.png -e test_accuracy.png \
        -e test_accuracy_time.png -e train_loss.png)
    [ -z "$extra" ] && ok || bad "unexpected files at the top: $extra"
    # At their defaults: the safeguards and documented departures on, not the papers' versions.
    grep -q '"faithful": 0' "$out/runs/tso-alra/seed0/result.json" && ok || bad "compare did not run tso-alra's defaults"
    grep -q "(safeguards on)" "$out/table.md" && ok || bad "table.md does not say the safeguards are on"
else
    bad "compare: exit code"; cat "$tmp/err"
fi

# --faithful runs every method as published; NAME:K=V:K=V entries set a method's
# hyperparameters on top of --hp, and their label names the runs and the curves.
out="$tmp/variants"
if "$bin" compare --faithful --opts tso-alra,tso-alra:T_cov=10:rank=8 --hp damping=0.01 --epochs 2 --seeds 1 \
    --out "$out" --quiet >"$tmp/stdout" 2>"$tmp/err"; then
    ok
    r="$out/runs/tso-alra/seed0/result.json" v="$out/runs/tso-alra:T_cov=10:rank=8/seed0/result.json"
    grep -q '"faithful": 1' "$r" && grep -q '"faithful": 1' "$v" && ok || bad "--faithful: faithful is not 1"
    grep -q '"T_cov": 1,' "$r" && grep -q '"T_cov": 10,' "$v" && grep -q '"rank": 8,' "$v" && ok ||
        bad "the variant's hyperparameters were not applied to it alone"
    grep -q '"damping": 0.01,' "$r" && grep -q '"damping": 0.01,' "$v" && ok || bad "--hp not applied to every entry"
    grep -q "| tso-alra:T_cov=10:rank=8 |" "$out/table.md" && ok || bad "table.md does not name the variant"
    grep -q "faithful=1" "$out/table.md" && ok || bad "table.md does not say faithful"
    [ -s "$out/plots/curves_tso-alra:T_cov=10:rank=8.csv" ] && ok || bad "no curves for the variant"
else
    bad "compare --faithful with a variant: exit code"; cat "$tmp/err"
fi
"$bin" compare --opts tso-alra: --out "$tmp/bad" >/dev/null 2>&1 && bad "accepted an empty variant" || ok
finish
