"""curvopt.Optimizer over NumPy float32 arrays: fits y = 2x + 1 with several methods, steps
the caller's arrays in place (same memory before and after), carries the C library's
messages in its exceptions, round-trips its state (file and bytes) bit-identically, runs
LAMA-Adam's closure and TSO-ALRA's captures, honours maximize, and reads MNIST through the
library's IDX parser."""
import os
import sys
import tempfile

import harness
from harness import check, raises

import numpy as np  # noqa: E402

import curvopt  # noqa: E402

XS = np.array([0, 1, 2, 3], np.float32)
YS = 2 * XS + 1


def line_grads(w, b, gw, gb):
    r = w[0] * XS + b[0] - YS
    gw[0] = (r * XS).sum() / 2
    gb[0] = r.sum() / 2
    return float((r * r).sum() / 4)


def fit(name, steps=2000, **hp):
    w, b = np.zeros(1, np.float32), np.zeros(1, np.float32)
    opt = curvopt.Optimizer(name, [w, b], **hp)
    addr = (w.ctypes.data, b.ctypes.data)
    for _ in range(steps):
        line_grads(w, b, opt.grads[0], opt.grads[1])
        opt.step()
    check((w.ctypes.data, b.ctypes.data) == addr and opt.params[0] is w, f"{name}: the arrays were not stepped in place")
    return w[0], b[0], opt


def main():
    for name, hp in [("adam", {"lr": 0.05}), ("sgd", {"lr": 0.05, "momentum": 0.9}), ("rmsprop", {"lr": 0.01}),
                     ("quasi-adam", {"lr": 0.05}), ("da-rmsprop", {"lr": 0.01})]:
        w, b, opt = fit(name, **hp)
        check(abs(w - 2) < 2e-2 and abs(b - 1) < 3e-2, f"{name}: w={w} b={b}")
        check(opt.steps == 2000, f"{name}: {opt.steps} steps")

    # Errors carry the C message; argument errors are ValueError/TypeError too.
    w = np.zeros(3, np.float32)
    raises(curvopt.InvalidArgument, lambda: curvopt.Optimizer("nosuch", [w]), "unknown optimizer")
    raises(ValueError, lambda: curvopt.Optimizer("adam", [w], lr=-1), "lr=-1", "out of range")
    raises(TypeError, lambda: curvopt.Optimizer("adam", [w], momentum=0.9), "no hyperparameter 'momentum'")
    raises(TypeError, lambda: curvopt.Optimizer("adam", [np.zeros(3)]), "float64")
    raises(ValueError, lambda: curvopt.Optimizer("adam", [np.zeros((3, 4), np.float32).T]), "contiguous")
    raises(ValueError, lambda: curvopt.Optimizer("adam", [{"params": [w], "kind": "linear"}]), "2 dimensions")
    opt = curvopt.Optimizer("sgd", [w], lr=0.1)
    raises(curvopt.InvalidArgument, lambda: opt.set("momentum", 2.0), "momentum=2", "out of range")
    opt.set("momentum", 0.5)
    check(opt.get("momentum") == 0.5, "set/get")

    # State: file and bytes, continue bit-identical; another method's state refused.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "opt.state")
        wa, ba = np.zeros(1, np.float32), np.zeros(1, np.float32)
        a = curvopt.Optimizer("quasi-adam", [wa, ba], lr=0.05, seed=3)
        for _ in range(50):
            line_grads(wa, ba, a.grads[0], a.grads[1])
            a.step()
        a.save(path)
        blob = a.state_bytes()
        wb, bb = wa.copy(), ba.copy()
        for via in ("file", "bytes"):
            wc, bc = wb.copy(), bb.copy()
            c = curvopt.Optimizer("quasi-adam", [wc, bc], lr=0.05, seed=3)
            c.load(path) if via == "file" else c.load_state_bytes(blob)
            check(c.steps == 50, f"{via}: steps after load")
            for _ in range(50):
                line_grads(wc, bc, c.grads[0], c.grads[1])
                c.step()
            if via == "file":
                for _ in range(50):
                    line_grads(wa, ba, a.grads[0], a.grads[1])
                    a.step()
            check(wc[0] == wa[0] and bc[0] == ba[0], f"{via}: save -> load -> continue differs")
        other = curvopt.Optimizer("adam", [np.zeros(1, np.float32), np.zeros(1, np.float32)])
        raises(curvopt.FormatError, lambda: other.load(path), "saved by optimizer 'quasi-adam'")
        raises(curvopt.FormatError, lambda: other.load_state_bytes(blob[:-3]), "state")
        raises(curvopt.IOFailure, lambda: other.load(os.path.join(tmp, "missing")), "missing")

    # LAMA-Adam re-evaluates through the closure; what the closure raises comes back.
    w, b = np.zeros(1, np.float32), np.zeros(1, np.float32)
    opt = curvopt.Optimizer("lama-adam", [w, b], lr=0.05, K=2, interval=1)
    evals = []

    def closure():
        evals.append(1)
        return line_grads(w, b, opt.grads[0], opt.grads[1])
    raises(curvopt.InvalidArgument, opt.step, "closure")
    for _ in range(300):
        closure()
        opt.step(closure)
    check(abs(w[0] - 2) < 5e-2, f"lama-adam: w={w[0]}")
    check(len(evals) == 300 * 3, f"lama-adam: {len(evals)} closure calls (K = 2 probes every step)")

    def broken():
        raise KeyError("from the closure")
    raises(KeyError, lambda: opt.step(broken), "from the closure")

    # TSO-ALRA reads a linear layer's captured inputs and output gradients.
    rng = np.random.default_rng(0)
    W, bias = np.zeros((2, 3), np.float32), np.zeros(2, np.float32)
    true = rng.standard_normal((2, 3)).astype(np.float32)
    opt = curvopt.Optimizer("tso-alra", [{"params": [W, bias], "kind": "linear"}], lr=0.1, damping=1e-2)
    for _ in range(100):
        x = rng.standard_normal((16, 3)).astype(np.float32)
        err = (x @ W.T + bias) - x @ true.T
        g_out = err / 16  # gradient of the batch-mean loss 0.5 |err|^2 at the outputs
        opt.grads[0][:] = g_out.T @ x
        opt.grads[1][:] = g_out.sum(0)
        opt.step(capture=lambda group: (x, g_out, 16))
    check(np.abs(W - true).max() < 1e-2, f"tso-alra: {np.abs(W - true).max()}")
    check(opt.diagnostic("refreshes")[0] >= 10, "tso-alra did not use the captures")

    # maximize: the same climb as minimizing the negated objective.
    w1, b1 = np.zeros(1, np.float32), np.zeros(1, np.float32)
    w2, b2 = np.zeros(1, np.float32), np.zeros(1, np.float32)
    up = curvopt.Optimizer("adam", [w1, b1], lr=0.05, maximize=True)
    down = curvopt.Optimizer("adam", [w2, b2], lr=0.05)
    for _ in range(100):
        line_grads(w1, b1, up.grads[0], up.grads[1])
        line_grads(w2, b2, down.grads[0], down.grads[1])
        down.grads[0] *= -1
        down.grads[1] *= -1
        up.step()
        down.step()
    check(w1[0] == w2[0] and b1[0] == b2[0] and w1[0] < 0, f"maximize: {w1[0]} vs {w2[0]}")

    names = [m.name for m in curvopt.methods()]
    check(len(names) == 15 and "tso-alra" in names and names[0] == "sgd", f"methods: {names}")
    check(any(h.name == "maximize" for h in curvopt.methods()[0].hparams), "maximize is not listed")
    try:
        x, y = curvopt.load_dataset("mnist", train=False)
        check(x.shape == (10000, 1, 28, 28) and x.dtype == np.float32 and y[:4].tolist() == [7, 2, 1, 0],
              f"mnist: {x.shape} {y[:4]}")
    except curvopt.NotFound as e:
        print(f"mnist not installed, skipped that part: {e}")
    raises(curvopt.InvalidArgument, lambda: curvopt.load_dataset("nosuch"), "nosuch")
    harness.finish()


if __name__ == "__main__":
    sys.exit(main())
