#!/usr/bin/env bash
# `curvopt reproduce robustness --quick`: the report and results.json have their structure
# (every configuration on every preset, a status per seed, the comparison with each method's
# base, the learning-rate sweep), a divergence is detected (the canary, SGD at lr 1000, and the
# published DA-RMSprop on the MNIST classifier must be reported diverged), and no optimizer at
# its defaults diverges on the quick presets. Needs MNIST (scripts/setup.sh installs it).
set -u
bin=${CURVOPT_BIN:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out="$tmp/rob"
# One thread: the runs are small, and on a shared machine OpenMP threads mostly wait.
if ! OMP_NUM_THREADS=1 "$bin" reproduce robustness --quick --quiet --out "$out" >/dev/null 2>"$tmp/err"; then
    echo "FAIL exit code"; cat "$tmp/err"; exit 1
fi
passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }
[ -s "$out/report.md" ] && ok || bad "no report.md"
grep -q "^| configuration | kind | status per seed |" "$out/report.md" && ok || bad "no per-preset table"
grep -q "^| method | base | difference |" "$out/report.md" && ok || bad "no comparison with the bases"
grep -q "^## Learning-rate sweep" "$out/report.md" && ok || bad "no sweep section"
ls "$out"/runs/moons/adam/seed0/epochs.csv >/dev/null 2>&1 && ok || bad "no per-run CSVs"
if command -v gnuplot >/dev/null; then
    [ -s "$out/overview.png" ] && ok || bad "no overview figure"
    [ -s "$out/lr_sweep_moons.png" ] && ok || bad "no sweep figure"
fi
python3 - "$out/results.json" <<'PY' && ok || bad "results.json check"
import json, math, sys
r = json.load(open(sys.argv[1]))
assert r["experiment"] == "robustness" and r["quick"] is True
statuses = {"ok", "stalled", "diverged", "failed"}
ids = [p["id"] for p in r["presets"]]
assert ids[:2] == ["moons", "mnist-lenet"], ids
labels = None
for p in r["presets"]:
    confs = p["configurations"]
    names = [c["label"] for c in confs]
    if labels is None:
        labels = names
    assert names == labels, "presets list different configurations"
    for c in confs:
        assert len(c["runs"]) == p["seeds"], (p["id"], c["label"])
        for run in c["runs"]:
            assert run["status"] in statuses, run
            assert run["status"] != "failed", (p["id"], c["label"], run["message"])
            # a non-finite or blown-up final loss must be called a divergence
            tl = run["test_loss"]
            if tl is None or (isinstance(tl, float) and not math.isfinite(tl)):
                assert run["status"] == "diverged", (p["id"], c["label"], run)
            elif tl > r["definitions"]["diverge_factor"] * run["init_loss"]:
                assert run["status"] == "diverged", (p["id"], c["label"], run)
    by = {c["label"]: c for c in confs}
    # divergence is detected: the canary on every preset, the published DA-RMSprop on MNIST
    assert all(x["status"] == "diverged" for x in by["canary"]["runs"]), (p["id"], by["canary"]["runs"])
    if p["id"] == "mnist-lenet":
        assert all(x["status"] == "diverged" for x in by["da-rmsprop.faithful"]["runs"]), by["da-rmsprop.faithful"]
    # the goal: nothing at its defaults diverges
    for c in confs:
        if c["kind"] == "default":
            assert all(x["status"] != "diverged" for x in c["runs"]), (p["id"], c["label"], c["runs"])
    assert abs(by["adam"]["time_vs_adam"] - 1) < 1e-9
    bases = {x["method"]: x for x in p["against_base"]}
    for m in ("da-rmsprop", "tso-alra", "lama-adam", "quasi-adam", "ogr1d", "ogr-asgdc"):
        assert m in bases and bases[m]["verdict"], (p["id"], m)
assert r["defaults_diverged"] == 0
rows = r["sweep"]["presets"][0]["rows"]
assert len(rows) >= 16 and all(len(x["runs"]) == len(r["sweep"]["lrs"]) for x in rows)
assert any(run["status"] == "diverged" for x in rows for run in x["runs"]), "the sweep saw no divergence at all"
PY
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
