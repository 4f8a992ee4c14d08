#!/usr/bin/env bash
# Builds the benches (Release) and runs them, then the PyTorch equivalents when
# /usr/bin/python3 can import torch, and prints one table with the ratios measured in
# this run. Every raw measurement is kept in $OUT/results.txt (RESULT lines).
#
#   bench/run.sh                 # build dir ./build-bench, threads "1 2"
#   BUILD_DIR=build THREADS="1" bench/run.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
THREADS=${THREADS:-"1 2"}
OUT=${OUT:-$BUILD_DIR/bench-results}
PY=/usr/bin/python3

cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j2 --target bench_mlp_step bench_optim_bandwidth bench_methods bench_mnist_train \
    bench_tso_cost >/dev/null
mkdir -p "$OUT"
RES=$OUT/results.txt
: >"$RES"
B=$BUILD_DIR/bench

run() { # prints the human lines to stderr, keeps RESULT lines
    "$@" | tee -a "$OUT/log.txt" | grep '^RESULT' >>"$RES" || true
}

echo "== C benches" >&2
OMP_NUM_THREADS=1 run "$B/bench_mlp_step" 1
for t in $THREADS; do OMP_NUM_THREADS=$t run "$B/bench_optim_bandwidth" "$t"; done
OMP_NUM_THREADS=1 run "$B/bench_methods" 1
for t in $THREADS; do OMP_NUM_THREADS=$t run "$B/bench_mnist_train" "$t"; done
for t in $THREADS; do OMP_NUM_THREADS=$t run "$B/bench_tso_cost" "$t"; done

HAVE_TORCH=0
if [ -x "$PY" ] && "$PY" -c 'import torch' 2>/dev/null; then
    HAVE_TORCH=1
    echo "== PyTorch benches ($("$PY" -c 'import torch; print(torch.__version__)'))" >&2
    OMP_NUM_THREADS=1 run "$PY" "$ROOT/bench/torch_bench.py" mlp
    for t in $THREADS; do OMP_NUM_THREADS=$t run "$PY" "$ROOT/bench/torch_bench.py" optim "$t"; done
    for t in $THREADS; do OMP_NUM_THREADS=$t run "$PY" "$ROOT/bench/torch_bench.py" mnist "$t"; done
    # curvopt.torch over this build's library: its cost on top of the C step, and the MNIST example.
    export CURVOPT_LIB=$BUILD_DIR/libcurvopt.so PYTHONPATH=$ROOT/python
    OMP_NUM_THREADS=1 run "$PY" "$ROOT/bench/torch_wrapper_bench.py" overhead 1
    OMP_NUM_THREADS=1 run "$PY" "$ROOT/bench/torch_wrapper_bench.py" mnist 1
else
    echo "== /usr/bin/python3 cannot import torch: PyTorch columns left empty" >&2
fi

# key=value fields of RESULT lines -> tables
awk -v have_torch=$HAVE_TORCH '
function kv(line, key,   n, i, f, a) {
    n = split(line, f, " ")
    for (i = 1; i <= n; i++) { split(f[i], a, "="); if (a[1] == key) return a[2] }
    return ""
}
$2 == "mlp_step" { mlp[$3] = kv($0, "median_us"); mlpmin[$3] = kv($0, "min_us") }
$2 == "triad" { t = kv($0, "threads"); triad[t] = kv($0, "gbs"); ref[t] = kv($0, "ref_gbs"); upd[t] = kv($0, "update_gbs") }
$2 == "optim_bw" { t = kv($0, "threads"); k = $3 SUBSEP t; ms[k] = kv($0, "ms"); gbs[k] = kv($0, "gbs")
                   pref[k] = kv($0, "pct_ref"); pst[k] = kv($0, "pct_stream"); pup[k] = kv($0, "pct_update")
                   if (!(t in seen_t)) { seen_t[t] = 1; tl[++nt] = t } }
$2 == "optim_torch" { t = kv($0, "threads"); k = $3 SUBSEP t SUBSEP kv($0, "foreach"); tms[k] = kv($0, "ms") }
$2 == "sgemm_peak" { peak[kv($0, "threads")] = kv($0, "gflops") }
$2 == "mnist_train" { t = kv($0, "threads"); k = $3 SUBSEP t; ips[k] = kv($0, "images_s"); gfl[k] = kv($0, "gflops")
                      if ($3 == "curvopt") { mt[++nmt] = t } }
$2 == "tso_cost" { k = ++ntso; tm[k] = $3; tt[k] = kv($0, "threads"); sgdms[k] = kv($0, "sgd_ms"); tsoms[k] = kv($0, "tso_ms")
                   ratio[k] = kv($0, "ratio"); sgdcpu[k] = kv($0, "sgd_cpu_ms"); tsocpu[k] = kv($0, "tso_cpu_ms")
                   cratio[k] = kv($0, "cpu_ratio"); refr[k] = kv($0, "tso_refresh_opt_ms"); oth[k] = kv($0, "tso_other_opt_ms") }
$2 == "wrapper_overhead" { k = ++nwo; wom[k] = $3; woo[k] = kv($0, "method"); woc[k] = kv($0, "c_us"); wow[k] = kv($0, "wrapper_us")
                           wov[k] = kv($0, "overhead_us"); wor[k] = kv($0, "rebind_us"); wot[k] = kv($0, "torch_us") }
$2 == "torch_mnist" { k = ++ntm; tmo[k] = $3; tmi[k] = kv($0, "images_s"); tmr[k] = kv($0, "vs_torch_adam") }
$2 == "methods" { m = kv($0, "model"); if (!(m in seen_m)) { seen_m[m] = 1; ml[++nm] = m }
                  k = m SUBSEP (++cnt[m]); meth[k] = $3; ovs[k] = kv($0, "opt_vs_adam"); svs[k] = kv($0, "step_vs_adam")
                  ous[k] = kv($0, "opt_us"); sus[k] = kv($0, "step_us"); ev[k] = kv($0, "extra_evals") }
END {
    printf "\n## MLP 2-64-1, batch 32, Adam, one training step, 1 thread (target <= 20 us)\n"
    printf "| | median us | min us |\n|---|---:|---:|\n"
    printf "| curvopt | %.2f | %.2f |\n", mlp["curvopt"], mlpmin["curvopt"]
    if (have_torch) {
        printf "| torch | %.1f | %.1f |\n", mlp["torch"], mlpmin["torch"]
        printf "| torch / curvopt | %.0fx | |\n", mlp["torch"] / mlp["curvopt"]
    }
    printf "\n## Optimizer step over 16M parameters, best of 25 steps (target >= 85%% of bandwidth, >= 2x torch.optim)\n"
    printf "| threads | optimizer | curvopt ms | GB/s | %% of triad ref | %% of STREAM triad | %% of in-place update | torch ms (foreach=0 / 1) | speed-up vs faster torch |\n"
    printf "|---:|---|---:|---:|---:|---:|---:|---:|---:|\n"
    split("adam adamw rmsprop sgd_momentum", names, " ")
    for (i = 1; i <= nt; i++) {
        t = tl[i]
        printf "| %s | triad: ref %.1f GB/s, STREAM %.1f GB/s, update %.1f GB/s | | | | | | | |\n", t, ref[t], triad[t], upd[t]
        for (j = 1; j <= 4; j++) {
            k = names[j] SUBSEP t
            tor = ""; sp = ""
            if (have_torch) {
                a = tms[names[j] SUBSEP t SUBSEP 0]; b = tms[names[j] SUBSEP t SUBSEP 1]
                best = (a + 0 < b + 0) ? a : b
                tor = sprintf("%.2f / %.2f", a, b); sp = sprintf("%.2fx", best / ms[k])
            }
            printf "| %s | %s | %.2f | %.1f | %.0f%% | %.0f%% | %.0f%% | %s | %s |\n", t, names[j], ms[k], gbs[k], pref[k], pst[k], pup[k], tor, sp
        }
    }
    printf "\n## quasi-adam-mnist training throughput, batch 256, Adam (target >= 2x torch)\n"
    printf "| threads | curvopt images/s | torch images/s | speed-up | curvopt GFLOP/s | sgemm peak GFLOP/s | %% of peak |\n"
    printf "|---:|---:|---:|---:|---:|---:|---:|\n"
    for (i = 1; i <= nmt; i++) {
        t = mt[i]; c = "curvopt" SUBSEP t; tk = "torch" SUBSEP t
        tor = have_torch && (tk in ips) ? sprintf("%.0f", ips[tk]) : ""
        sp = have_torch && (tk in ips) ? sprintf("%.2fx", ips[c] / ips[tk]) : ""
        printf "| %s | %.0f | %s | %s | %.1f | %.1f | %.0f%% |\n", t, ips[c], tor, sp, gfl[c], peak[t], 100 * gfl[c] / peak[t]
    }
    printf "\n## TSO-ALRA step relative to SGD, batch 128, T_int 10 (wall time, and CPU time of the process)\n"
    printf "| threads | model | sgd ms | tso-alra ms | ratio | sgd CPU ms | tso-alra CPU ms | CPU ratio | tso opt ms at refresh / other steps |\n"
    printf "|---:|---|---:|---:|---:|---:|---:|---:|---:|\n"
    for (k = 1; k <= ntso; k++)
        printf "| %s | %s | %.2f | %.2f | %.2fx | %.2f | %.2f | %.2fx | %.1f / %.1f |\n", tt[k], tm[k], sgdms[k], tsoms[k], ratio[k], sgdcpu[k], tsocpu[k], cratio[k], refr[k], oth[k]
    if (nwo) {
        printf "\n## curvopt.torch step vs the bare C step and torch.optim, 1 thread (target: wrapper adds < 10 us)\n"
        printf "| model | optimizer | C step us | curvopt.torch us | overhead us | new grad tensors us | torch.optim us |\n"
        printf "|---|---|---:|---:|---:|---:|---:|\n"
        for (k = 1; k <= nwo; k++)
            printf "| %s | %s | %.2f | %.2f | %.2f | %s | %.2f |\n", wom[k], woo[k], woc[k], wow[k], wov[k], wor[k], wot[k]
    }
    if (ntm) {
        printf "\n## examples/torch_mnist.py, batch 128, 1 thread\n| optimizer | images/s | vs torch.optim.Adam |\n|---|---:|---:|\n"
        for (k = 1; k <= ntm; k++) printf "| %s | %.0f | %.2f |\n", tmo[k], tmi[k], tmr[k]
    }
    for (i = 1; i <= nm; i++) {
        m = ml[i]
        printf "\n## Every optimizer relative to Adam, %s, 1 thread\n", m
        printf "| optimizer | opt step us | vs adam | train step us | vs adam | extra grad evals/step |\n|---|---:|---:|---:|---:|---:|\n"
        for (j = 1; j <= cnt[m]; j++) {
            k = m SUBSEP j
            printf "| %s | %.2f | %.2fx | %.2f | %.2fx | %.2f |\n", meth[k], ous[k], ovs[k], sus[k], svs[k], ev[k]
        }
    }
}' "$RES"
