#!/usr/bin/env bash
# End to end: `curvopt reproduce tso-alra --quick` (paper 004) writes a report with the paper's
# claims beside measured verdicts, results.json, per-run CSVs, per-epoch curves and figures;
# every optimizer finishes, TSO-ALRA switches to SGD after the scaled epoch, settings without
# data files are "not run" with a reason; `--tune --quick` runs the paper's grids on a
# validation split and picks points from them. Structure and sanity only: no loss or accuracy
# value is asserted.
#
# Loading the whole of Fashion-MNIST (60,000 images) for each of the ~70 runs would dominate
# the test (and take minutes under ASan), so the runs read a 512/256-image copy in IDX format
# from a temporary folder through CURVOPT_DATA_DIR.
. "$(dirname "$0")/lib.bash"

src=/usr/share/datasets/fashion-mnist
if [ ! -s "$src/train-images-idx3-ubyte.gz" ]; then
    echo "FAIL Fashion-MNIST not installed in $src (scripts/setup.sh installs it)"
    exit 1
fi
# IDX: magic, count (big-endian), then the dimensions; the loader wants the data to fill the file exactly.
be32() { printf "$(printf '%08x' "$1" | sed 's/../\\x&/g')"; }
subset() { # PREFIX N
    local d="$tmp/data/fashion-mnist" n=$2
    mkdir -p "$d"
    { printf '\x00\x00\x08\x03'; be32 "$n"; be32 28; be32 28
      zcat "$src/$1-images-idx3-ubyte.gz" | tail -c +17 | head -c $((n * 784)); } >"$d/$1-images-idx3-ubyte"
    { printf '\x00\x00\x08\x01'; be32 "$n"
      zcat "$src/$1-labels-idx1-ubyte.gz" | tail -c +9 | head -c "$n"; } >"$d/$1-labels-idx1-ubyte"
}
subset train 512
subset t10k 256
export CURVOPT_DATA_DIR="$tmp/data"
# The runs are tiny: a second thread only adds synchronisation (and spins on a busy machine).
# Results do not depend on the thread count.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

check_json() { # OUT-DIR TUNED
    command -v python3 >/dev/null || return 0
    python3 - "$1" "$2" <<'PY'
import json, math, os, sys
out = sys.argv[1]
r = json.load(open(os.path.join(out, "results.json")))
tuned = sys.argv[2] == "1"
assert r["experiment"] == "tso-alra" and r["mode"] == "quick" and r["tuned"] == tuned
p = r["protocol"]
assert p["batch"] == 128 and p["paper_epochs"] == 164 and p["paper_lr_decay_after_epochs"] == [81, 122]
E = p["epochs"]
d1, d2 = p["lr_decay_after_epochs"]
assert 1 <= d1 <= d2 < E, (d1, d2, E)
ids = [s["id"] for s in r["settings"]]
assert len(ids) == 8 and "fmnist-alexnet" in ids and "fmnist-vgg" in ids
ran = [s for s in r["settings"] if s["status"] == "run"]
assert {s["id"] for s in ran} >= {"fmnist-alexnet", "fmnist-vgg"}, "the Fashion-MNIST settings did not run"
for s in r["settings"]:
    if s["status"] != "run":
        assert s["status"] == "not run" and s["reason"], s["id"]
        continue
    names = [o["name"] for o in s["optimizers"]]
    assert names == ["sgd", "adam", "amsgrad", "tso-alra"], names
    for o in s["optimizers"]:
        assert o["failed"] is None, (s["id"], o["name"], o["failed"])
        loss = o["final_test_loss"]["per_seed"]
        assert len(loss) == p["seeds"], o["name"]
        for v in loss + o["min_test_loss_last_phase"]["per_seed"] + o["first_phase_mean_test_loss"]["per_seed"]:
            assert v is not None and math.isfinite(v) and v > 0, (s["id"], o["name"], v)
        for v in o["last_phase_rise"]["per_seed"]:
            assert v >= 0, (s["id"], o["name"], v)
        for a in o["final_test_acc"]["per_seed"]:
            assert 0 <= a <= 1
        assert o["seconds_per_epoch"] > 0
        for k in range(p["seeds"]):
            csv = os.path.join(out, s["id"], "runs", o["name"], "seed%d" % k, "epochs.csv")
            rows = open(csv).read().split("\n")[1:]
            assert len([x for x in rows if x]) == E, (csv, E)
        assert o["lr"] > 0
        if tuned:
            g = o["grid"]
            assert g, "no grid for " + o["name"]
            assert any(c["lr"] == o["lr"] for c in g)
            n = {"sgd": 4, "adam": 8, "amsgrad": 8}.get(o["name"])
            if n:
                assert len(g) == n, (o["name"], len(g))
            assert all(c["val_loss"] is None or c["val_loss"] > 0 for c in g)
        else:
            assert o["lr"] == o["paper_lr"] and "grid" not in o
        if o["name"] in ("adam", "amsgrad"):
            assert o["beta1"] in (0.9, 0.99)
            if not tuned:
                assert o["beta1"] == 0.99
        if o["name"] == "tso-alra":
            sw = o["switch_epoch"]
            assert 1 <= sw < E
            if not tuned:
                assert sw == o["switch_epoch_scaled_from_paper"]
            # The optimizer itself reports the epoch it switched after: the scaled point.
            assert o["switch_observed"] == [sw] * p["seeds"], (o["switch_observed"], sw)
            assert o["seconds_per_epoch_stage1"] > 0 and o["seconds_per_epoch_stage2"] > 0
            if tuned:
                sws = sorted({c["switch_epoch"] for c in o["grid"]})
                assert len(o["grid"]) == 3 * len(sws) and all(1 <= x < E for x in sws)
assert r["claims"], "no claims"
for c in r["claims"]:
    assert isinstance(c["reproduced"], bool) and isinstance(c["evaluated"], bool)
    assert c["paper"] and c["measured"] and c["setting"] in ids
    assert c["evaluated"], c
assert len(r["claims"]) == 5 * len(ran)
PY
}

out="$tmp/quick"
if "$bin" reproduce tso-alra --quick --quiet --out "$out" >/dev/null 2>"$tmp/err"; then
    ok
    [ -s "$out/report.md" ] && ok || bad "no report.md"
    for h in "^## Claims" "^## Cost" "^| optimizer |" "not run: " "reproduced\*\*"; do
        grep -q "$h" "$out/report.md" && ok || bad "report.md lacks '$h'"
    done
    for s in fmnist-alexnet fmnist-vgg; do
        for o in sgd adam amsgrad tso-alra; do
            for k in 0 1; do
                [ -s "$out/$s/runs/$o/seed$k/epochs.csv" ] && ok || bad "$s/$o/seed$k: no epochs.csv"
            done
            [ -s "$out/$s/plots/curves_$o.csv" ] && ok || bad "$s: no plots/curves_$o.csv"
        done
        if command -v gnuplot >/dev/null; then
            [ -s "$out/$s/test_loss.png" ] && ok || bad "$s: no test_loss.png"
        fi
        check_figures "$out/$s" "tso-alra $s" && ok || bad "$s: figures"
    done
    check_json "$out" 0 && ok || bad "results.json check"
else
    bad "reproduce tso-alra --quick: exit code"; cat "$tmp/err"
fi

out="$tmp/tune"
if "$bin" reproduce tso-alra --quick --tune --seeds 1 --quiet --out "$out" >/dev/null 2>"$tmp/err"; then
    ok
    grep -q "tuned; paper:" "$out/report.md" && ok || bad "tuned report does not name the paper's values"
    check_json "$out" 1 && ok || bad "tuned results.json check"
else
    bad "reproduce tso-alra --quick --tune: exit code"; cat "$tmp/err"
fi

# Bad usage is refused before anything is written.
"$bin" reproduce tso-alra --seeds 0 --out "$tmp/x" 2>/dev/null; [ $? -eq 2 ] && [ ! -e "$tmp/x" ] && ok || bad "--seeds 0 accepted"
finish
