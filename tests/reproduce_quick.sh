#!/usr/bin/env bash
# End to end: `curvopt reproduce NAME --quick` writes a report with the paper's numbers beside
# ours, machine-readable results, per-run CSVs and figures; every optimizer beats chance.
# Structure and sanity only: specific accuracies are never asserted.
set -u
bin=${CURVOPT_BIN:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }

for exp in da-rmsprop lama-adam moons-all; do
    out="$tmp/$exp"
    if ! "$bin" reproduce "$exp" --quick --quiet --out "$out" >/dev/null 2>"$tmp/err"; then
        bad "$exp: exit code"; cat "$tmp/err"; continue
    fi
    [ -s "$out/report.md" ] && ok || bad "$exp: no report.md"
    [ -s "$out/results.json" ] && ok || bad "$exp: no results.json"
    grep -q "^| optimizer |" "$out/report.md" && ok || bad "$exp: no results table"
    ls "$out"/runs/*/seed0/epochs.csv >/dev/null 2>&1 && ok || bad "$exp: no per-run CSVs"
    if command -v gnuplot >/dev/null; then
        [ "$(ls "$out"/*.png 2>/dev/null | wc -l)" -ge 1 ] && ok || bad "$exp: no figures"
    fi
    if command -v python3 >/dev/null; then
        python3 - "$out/results.json" "$exp" <<'PY' && ok || bad "$exp: results.json check"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["experiment"] == sys.argv[2]
groups = [r] if "optimizers" in r else [r["single_seed"], r["seeds"]]
for g in groups:
    assert g["optimizers"], "no optimizers"
    for o in g["optimizers"]:
        if o["failed"]:
            print("failed:", o["name"], o["failed"]); sys.exit(1)
        acc = o["test_acc"]
        assert len(acc["per_seed"]) == g["protocol"]["seeds"], o["name"]
        assert acc["mean"] > 0.6, "%s does not beat chance: %s" % (o["name"], acc["mean"])
        assert o["lr"] > 0
if sys.argv[2] != "moons-all":
    assert r["claims"], "no claims"
    for c in r["claims"]:
        assert isinstance(c["reproduced"], bool) and c["paper"] and c["measured"]
PY
    fi
done
# The image experiment (needs MNIST and Fashion-MNIST, which scripts/setup.sh installs).
if "$bin" reproduce quasi-adam --quick --quiet --out "$tmp/qa" >/dev/null 2>"$tmp/err"; then
    grep -q "^## Claims" "$tmp/qa/report.md" && ls "$tmp"/qa/*.csv >/dev/null 2>&1 && ok || bad "quasi-adam report incomplete"
    if command -v python3 >/dev/null; then
        python3 - "$tmp/qa/results.json" <<'PY' && ok || bad "quasi-adam results.json"
import json, sys
r = json.load(open(sys.argv[1]))
assert len(r["settings"]) == 8 and len(r["claims"]) == 4
for s in r["settings"]:
    assert all(0 <= a <= 1 for a in s["final_test_acc"])
PY
    fi
else
    bad "reproduce quasi-adam --quick"; cat "$tmp/err"
fi
# Interrupted with SIGKILL and resumed from the runs' checkpoints: the same per-seed results.
"$bin" reproduce da-rmsprop --quick --quiet --checkpoint-every 5 --out "$tmp/killed" >/dev/null 2>&1 &
pid=$!
sleep 0.2
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -f "$tmp/killed/runs/rmsprop/seed1/checkpoint.ckpt" # one run lost entirely: recomputed
"$bin" reproduce da-rmsprop --quick --quiet --resume --out "$tmp/killed" >/dev/null 2>"$tmp/err" || { bad "resume failed"; cat "$tmp/err"; }
if command -v python3 >/dev/null; then
    python3 - "$tmp/da-rmsprop/results.json" "$tmp/killed/results.json" <<'PY' && ok || bad "resumed reproduction differs"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for x, y in zip(a["optimizers"], b["optimizers"]):
    assert x["test_acc"]["per_seed"] == y["test_acc"]["per_seed"], x["name"]
    assert x["lr"] == y["lr"], x["name"]
PY
fi
grep -q "paper" "$tmp/da-rmsprop/report.md" && grep -q "0.8850" "$tmp/da-rmsprop/report.md" && ok || bad "paper numbers missing"
"$bin" reproduce nosuch --out "$tmp/x" 2>/dev/null; [ $? -eq 2 ] && [ ! -e "$tmp/x" ] && ok || bad "unknown experiment"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
