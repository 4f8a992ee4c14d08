#!/usr/bin/python3
"""PyTorch counterparts of bench_mlp_step and bench_optim_bandwidth, for the ratios in
bench/run.sh. Needs Debian's python3-torch (1.13); prints one machine-readable line per
measurement in the C benches' format:
    RESULT <bench> <variant> threads=<n> <key>=<value> ...

usage: torch_bench.py mlp              one MLP training step, 1 thread
       torch_bench.py optim THREADS    optimizer steps over 16M parameters
       torch_bench.py mnist THREADS    quasi-adam-mnist (LeNet-5) training steps, batch 256
"""
import math
import statistics
import sys
import time

import torch

NPARAM = 16 << 20


def moons(n, noise, gen):
    """make_moons construction (two half circles plus Gaussian noise), enough for timing."""
    n_out = n // 2
    t_out = torch.linspace(0, math.pi, n_out)
    t_in = torch.linspace(0, math.pi, n - n_out)
    x = torch.cat([torch.stack([torch.cos(t_out), torch.sin(t_out)], 1),
                   torch.stack([1 - torch.cos(t_in), 1 - torch.sin(t_in) - 0.5], 1)])
    y = torch.cat([torch.zeros(n_out), torch.ones(n - n_out)])
    perm = torch.randperm(n, generator=gen)
    x = x[perm] + noise * torch.randn(n, 2, generator=gen)
    return x, y[perm].unsqueeze(1)


def timed_steps(model, loss_fn, opt, batch_at, warmup, steps):
    """Training steps on batch_at(s): wall seconds of each step after `warmup`, and the
    process's CPU seconds per step over those steps."""
    times = []
    clock = time.perf_counter
    cpu0 = 0.0
    for s in range(warmup + steps):
        if s == warmup:
            cpu0 = time.process_time()
        xb, yb = batch_at(s)
        t0 = clock()
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        t1 = clock()
        if s >= warmup:
            times.append(t1 - t0)
    return times, (time.process_time() - cpu0) / steps


def bench_mlp(warmup=2000, steps=20000, batch=32):
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    x, y = moons(1024, 0.2, gen)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    nb = x.shape[0] // batch
    batches = [(x[b * batch:(b + 1) * batch], y[b * batch:(b + 1) * batch]) for b in range(nb)]
    times, _ = timed_steps(model, loss_fn, opt, lambda s: batches[s % nb], warmup, steps)
    times = [t * 1e6 for t in times]
    med, mn = statistics.median(times), min(times)
    print(f"torch {torch.__version__}: mlp 2-64-1 batch {batch}, adam, 1 thread: "
          f"median {med:.1f} us, min {mn:.1f} us over {steps} steps", file=sys.stderr)
    print(f"RESULT mlp_step torch threads=1 median_us={med:.3f} min_us={mn:.3f}")


def bench_optim(threads, warmup=3, reps=15):
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    cases = [
        ("adam", lambda p, fe: torch.optim.Adam(p, lr=1e-3, foreach=fe)),
        ("adamw", lambda p, fe: torch.optim.AdamW(p, lr=1e-3, weight_decay=1e-2, foreach=fe)),
        ("rmsprop", lambda p, fe: torch.optim.RMSprop(p, lr=1e-2, foreach=fe)),
        ("sgd_momentum", lambda p, fe: torch.optim.SGD(p, lr=1e-2, momentum=0.9, foreach=fe)),
    ]
    for name, make in cases:
        for foreach in (False, True):
            p = torch.nn.Parameter(torch.rand(NPARAM, generator=gen) * 10 - 5)
            p.grad = torch.rand(NPARAM, generator=gen) * 2 - 1
            opt = make([p], foreach)
            times = []
            for r in range(warmup + reps):
                t0 = time.perf_counter()
                opt.step()
                t1 = time.perf_counter()
                if r >= warmup:
                    times.append(t1 - t0)
            med, best = statistics.median(times) * 1e3, min(times) * 1e3
            # ms is the best run, as in bench_optim_bandwidth (the machine is shared)
            print(f"torch threads {threads}: {name:13s} foreach={int(foreach)} {best:7.2f} ms/step best "
                  f"({med:.2f} median)", file=sys.stderr)
            print(f"RESULT optim_torch {name} threads={threads} foreach={int(foreach)} ms={best:.4f} "
                  f"ms_median={med:.4f}")
            del opt, p


def bench_mnist(threads, batch=256, nbatch=16, warmup=30, steps=300):
    """bench_mnist_train.c's step: the quasi-adam-mnist preset (conv-pool-ReLU twice, three
    linear layers, 61,706 parameters), cross-entropy, backward, Adam, on 16 fixed random
    batches (uniform pixels, random labels); median step over `steps` after `warmup`."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.MaxPool2d(2), nn.ReLU(),
                          nn.Conv2d(6, 16, 5), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(),
                          nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    assert sum(p.numel() for p in model.parameters()) == 61706
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(1)
    xs = torch.rand(nbatch, batch, 1, 28, 28, generator=gen)
    ys = torch.randint(0, 10, (nbatch, batch), generator=gen)
    times, cpu_s = timed_steps(model, loss_fn, opt, lambda s: (xs[s % nbatch], ys[s % nbatch]), warmup, steps)
    cpu_ms = cpu_s * 1e3
    med, mn = statistics.median(times), min(times)
    print(f"torch {torch.__version__}: quasi-adam-mnist batch {batch}, adam, {threads} thread(s): "
          f"median step {med * 1e3:.3f} ms (min {mn * 1e3:.3f}), {batch / med:.0f} images/s "
          f"(CPU time {cpu_ms:.3f} ms per step)", file=sys.stderr)
    print(f"RESULT mnist_train torch threads={threads} batch={batch} step_ms={med * 1e3:.4f} "
          f"step_ms_min={mn * 1e3:.4f} images_s={batch / med:.1f} cpu_ms={cpu_ms:.4f}")


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "mlp":
        bench_mlp()
    elif len(sys.argv) >= 3 and sys.argv[1] == "optim":
        bench_optim(int(sys.argv[2]))
    elif len(sys.argv) >= 3 and sys.argv[1] == "mnist":
        bench_mnist(int(sys.argv[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
