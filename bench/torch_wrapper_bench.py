#!/usr/bin/python3
"""What curvopt.torch costs on top of the C step, beside torch.optim.

usage: torch_wrapper_bench.py overhead [THREADS]   step time per optimizer and model
       torch_wrapper_bench.py mnist [THREADS]      examples/torch_mnist.py's training images/s

overhead: the moons MLP (2-64-1, 4 tensors, 257 parameters) and one nn.Linear(4096, 4096)
(16,781,312 parameters), gradients filled once; per optimizer (Adam, SGD momentum 0.9,
Quasi-Adam) and model, in interleaved rounds (the machine is shared: the best round counts):
  c        co_optim_step called through ctypes in a bare loop (the floor: the C step and
           one foreign call)
  wrapper  curvopt.torch's step() (pointer and hyperparameter checks, then the same call)
  rebind   the same with a freshly allocated gradient every step (zero_grad(set_to_none=True))
  torch    torch.optim's step() (foreach=False, torch 1.13's CPU default); Quasi-Adam: Adam's
overhead = wrapper - c. Needs CURVOPT_LIB / PYTHONPATH for a build tree, or the installed
package. Prints RESULT lines like the C benches."""
import os
import sys
import time

import torch

import curvopt.torch as ct


def rounds_best(fns, steps, rounds):
    """{name: best over rounds of the mean seconds per call}, rounds interleaved."""
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            fn()
            t = time.perf_counter()
            for _ in range(steps):
                fn()
            best[name] = min(best[name], (time.perf_counter() - t) / steps)
    return best


def models():
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    big = torch.nn.Sequential(torch.nn.Linear(4096, 4096))
    return [("moons_mlp", mlp, 20000, 7), ("linear_16.7M", big, 20, 5)]


OPTIMS = [
    ("adam", lambda p: ct.Adam(p, lr=1e-3), lambda p: torch.optim.Adam(p, lr=1e-3, foreach=False)),
    ("sgd_momentum", lambda p: ct.SGD(p, lr=1e-3, momentum=0.9),
     lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9, foreach=False)),
    ("quasi-adam", lambda p: ct.QuasiAdam(p, lr=1e-3), lambda p: torch.optim.Adam(p, lr=1e-3, foreach=False)),
]


def overhead(threads):
    for mname, model, steps, rounds in models():
        params = list(model.parameters())
        nparam = sum(p.numel() for p in params)
        for p in params:
            p.grad = torch.randn_like(p) * 1e-3
        spare = [torch.randn_like(p) * 1e-3 for p in params]
        for oname, ours, theirs in OPTIMS:
            opt = ours(params)
            ref = theirs(params)
            opt.step()
            engine = opt._engine
            c_step, ptr, err = engine._step, engine.ptr, engine._err
            sets, flip = [[p.grad for p in params], spare], [0]

            def rebind_step():  # a new gradient tensor every step, as after zero_grad(set_to_none=True)
                flip[0] ^= 1
                for p, g in zip(params, sets[flip[0]]):
                    p.grad = g
                opt.step()

            fns = {"c": lambda: c_step(ptr, None, err), "wrapper": opt.step, "torch": ref.step}
            if mname == "moons_mlp":
                fns["rebind"] = rebind_step
            best = rounds_best(fns, steps, rounds)
            us = {k: v * 1e6 for k, v in best.items()}
            extra = f" rebind_us={us['rebind']:.2f}" if "rebind" in us else ""
            print(f"RESULT wrapper_overhead {mname} method={oname} threads={threads} params={nparam} "
                  f"c_us={us['c']:.2f} wrapper_us={us['wrapper']:.2f} overhead_us={us['wrapper'] - us['c']:.2f}"
                  f"{extra} torch_us={us['torch']:.2f} torch_over_wrapper={us['torch'] / us['wrapper']:.2f}",
                  flush=True)


def mnist(threads):
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "examples"))
    import contextlib
    import io

    import torch_mnist
    args = ["--epochs", "1", "--limit", os.environ.get("MNIST_LIMIT", "8192"), "--batch", "128",
            "--threads", str(threads)]
    best = {}
    for _ in range(int(os.environ.get("MNIST_ROUNDS", "3"))):
        for opt in ("adam", "torch-adam", "quasi-adam"):
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
                torch_mnist.main(["--opt", opt] + args)
            ips = float(out.getvalue().strip().splitlines()[-1].split(": ")[1].split()[0].replace(",", ""))
            best[opt] = max(best.get(opt, 0.0), ips)
    for opt, ips in best.items():
        print(f"RESULT torch_mnist {opt} threads={threads} images_s={ips:.0f} "
              f"vs_torch_adam={ips / best['torch-adam']:.3f}", flush=True)


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else "overhead"
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    torch.set_num_threads(threads)
    print(f"# load average before: {os.getloadavg()}", flush=True)
    {"overhead": overhead, "mnist": mnist}[what](threads)
    print(f"# load average after: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
