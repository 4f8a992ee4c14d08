#!/usr/bin/env python3
"""PyTorch-on-GPU reference for curvopt's GPU benchmarks (bench/cuda/bench_cuda_optim.c and
bench/cuda/bench_cuda_train.c). Needs a CUDA build of torch (written for 2.x; 2.11 + CUDA 13
on an H200 is the target); exits 77 (skip) when torch or a CUDA device is missing.

usage: python3 bench/torch_cuda_bench.py [copy] [adam] [mnist] [moons]      (none = all)

Prints first  INFO gpu=<device name, spaces as _> torch=<version> cuda=<torch.version.cuda>
then one machine-readable line per measurement (a readable one goes to stderr):
    RESULT copy d2d device=cuda gbps=...
    RESULT adam <single|foreach|fused> device=cuda tensors=<1|64> us=... gbps=... of_copy=...
    RESULT mnist <eager|cudnn_benchmark|fp32> device=cuda batch=<256|8192> img_per_s=...
    RESULT moons <eager|graph> device=cuda batch=32 us_per_step=...

copy   dst.copy_(src) of 256 MiB (well past the H200's 60 MB L2). Bytes counted per copy:
       2 x 256 MiB (read + write).
adam   torch.optim.Adam step over 16,777,216 float32 parameters held as one tensor and as 64;
       single = foreach=False fused=False, foreach = foreach=True, fused = fused=True; grads
       random, filled once; only opt.step() is timed. Bytes counted: 28 per parameter (read p,
       g, m, v; write p, m, v: what any Adam step must move), whatever the implementation
       really moves; of_copy = that bandwidth / the copy bandwidth measured in the same run.
mnist  training step of the quasi-adam-mnist preset (LeNet-5, src/nn/model.c: conv 6x5x5 p2,
       maxpool 2, ReLU, conv 16x5x5, maxpool 2, ReLU, fc 120, ReLU, fc 84, ReLU, fc 10) on one
       fixed random batch already on the GPU: zero_grad(set_to_none), forward, cross-entropy,
       backward, SGD(lr 0.01, momentum 0.9). cudnn_benchmark sets torch.backends.cudnn.benchmark.
moons  MLP 2-64-1 step (BCE-with-logits, Adam lr 1e-3), batches of 32 from 1024 moons points
       on the GPU chosen by slicing a fixed permutation; eager = the step as written, graph =
       the whole step captured in one CUDA graph (PyTorch's whole-network capture recipe, Adam
       capturable=True), each replay preceded by gathering the batch into the static inputs.
       Wall time per step, synchronized at the end of each repetition only.

copy/adam/mnist are CUDA-event times over many back-to-back iterations; every number is the
median of several repetitions after warm-ups. Default precision settings are left alone
(cuDNN may use TF32 for the convolutions).
"""
import math
import os
import statistics
import sys
import time

try:
    import torch
except ImportError:
    torch = None

NPARAM = 16 << 20
COPY_FLOATS = 4 * NPARAM  # 256 MiB
WHAT = ("copy", "adam", "mnist", "moons")
ADAM_VARIANTS = (("single", dict(foreach=False, fused=False)), ("foreach", dict(foreach=True)),
                 ("fused", dict(fused=True)))
copy_gbps_this_run = None


def event_ms(fn, iters, reps, warmup):
    """Median over `reps` of the CUDA-event time of `iters` back-to-back calls of fn, in ms per
    call, after `warmup` calls. The GPU is idle when each repetition starts, so launch-bound
    work is timed as the GPU sees it, gaps included."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / iters)
    return statistics.median(times)


def bench_copy():
    global copy_gbps_this_run
    src = torch.rand(COPY_FLOATS, device="cuda")
    dst = torch.empty_like(src)
    ms = event_ms(lambda: dst.copy_(src), iters=20, reps=7, warmup=5)
    gbps = 2 * src.numel() * src.element_size() / (ms * 1e-3) / 1e9
    print(f"copy d2d 256 MiB: {ms:.3f} ms, {gbps:.1f} GB/s (read + write)", file=sys.stderr)
    print(f"RESULT copy d2d device=cuda gbps={gbps:.2f}", flush=True)
    copy_gbps_this_run = gbps
    return gbps


def bench_adam():
    copy_gbps = copy_gbps_this_run or bench_copy()
    torch.manual_seed(0)
    for ntensors in (1, 64):
        for name, kwargs in ADAM_VARIANTS:
            n = NPARAM // ntensors
            params = []
            for _ in range(ntensors):
                p = torch.nn.Parameter(torch.rand(n, device="cuda") * 10 - 5)
                p.grad = torch.rand(n, device="cuda") * 2 - 1
                params.append(p)
            opt = torch.optim.Adam(params, lr=1e-3, **kwargs)
            ms = event_ms(opt.step, iters=50, reps=7, warmup=10)  # the first warm-up creates m, v
            gbps = 28 * NPARAM / (ms * 1e-3) / 1e9
            print(f"adam {name:7s} {ntensors:2d} tensor(s): {ms * 1e3:9.1f} us/step, {gbps:7.1f} GB/s, "
                  f"{gbps / copy_gbps:.3f} of copy", file=sys.stderr)
            print(f"RESULT adam {name} device=cuda tensors={ntensors} us={ms * 1e3:.2f} gbps={gbps:.2f} "
                  f"of_copy={gbps / copy_gbps:.4f}", flush=True)
            del opt, params, p


def lenet5():
    """quasi-adam-mnist: in:1x28x28 conv:6:5:p2 maxpool:2 relu conv:16:5 maxpool:2 relu flatten
    fc:120 relu fc:84 relu fc:10 (61,706 parameters)."""
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.MaxPool2d(2), nn.ReLU(),
                          nn.Conv2d(6, 16, 5), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(),
                          nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                          nn.Linear(84, 10))
    assert sum(p.numel() for p in model.parameters()) == 61706
    return model


def bench_mnist(warmup=50, reps=5, min_rep_s=0.5):
    # fp32: convolutions without TF32, as curvopt's (PyTorch's default allows TF32 there).
    for variant in ("eager", "cudnn_benchmark", "fp32"):
        torch.backends.cudnn.benchmark = variant == "cudnn_benchmark"
        torch.backends.cudnn.allow_tf32 = variant != "fp32"
        for batch, min_steps in ((256, 200), (8192, 20)):
            torch.manual_seed(0)
            model = lenet5().cuda()
            loss_fn = torch.nn.CrossEntropyLoss()
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            x = torch.rand(batch, 1, 28, 28, device="cuda")
            y = torch.randint(0, 10, (batch,), device="cuda")

            def step():
                opt.zero_grad(set_to_none=True)
                loss_fn(model(x), y).backward()
                opt.step()

            # one calibration repetition (after the warm-ups) sizes the timed repetitions
            per_step_ms = event_ms(step, iters=min_steps, reps=1, warmup=warmup)
            steps = max(min_steps, math.ceil(min_rep_s * 1e3 / per_step_ms))
            ms = event_ms(step, iters=steps, reps=reps, warmup=0)
            img_per_s = batch / (ms * 1e-3)
            print(f"mnist {variant:15s} batch {batch:5d}: {ms * 1e3:9.1f} us/step, {img_per_s:12.0f} images/s "
                  f"({steps} steps x {reps})", file=sys.stderr)
            print(f"RESULT mnist {variant} device=cuda batch={batch} img_per_s={img_per_s:.1f}", flush=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.allow_tf32 = True


def bench_moons(batch=32, warmup=200, steps=2000, reps=5):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_bench import moons  # torch_bench imports only torch; its main() is guarded

    gen = torch.Generator().manual_seed(0)
    x, y = moons(1024, 0.2, gen)
    x, y = x.cuda(), y.cuda()
    perm = torch.randperm(1024, generator=gen).cuda()
    nb = x.shape[0] // batch

    def batch_idx(s):  # a view of the permutation: no kernel, no host-device sync
        b = s % nb
        return perm[b * batch:(b + 1) * batch]

    for variant in ("eager", "graph"):
        torch.manual_seed(0)
        nn = torch.nn
        model = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 1)).cuda()
        loss_fn = nn.BCEWithLogitsLoss()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, capturable=variant == "graph")
        if variant == "eager":
            def step(s):
                idx = batch_idx(s)
                opt.zero_grad(set_to_none=True)
                loss_fn(model(x[idx]), y[idx]).backward()
                opt.step()
        else:
            static_x = x[batch_idx(0)].clone()
            static_y = y[batch_idx(0)].clone()
            side = torch.cuda.Stream()  # warm-up on a side stream before capture, as the recipe says
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    opt.zero_grad(set_to_none=True)
                    loss_fn(model(static_x), static_y).backward()
                    opt.step()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            opt.zero_grad(set_to_none=True)  # backward allocates .grad from the graph's pool
            with torch.cuda.graph(graph):
                loss_fn(model(static_x), static_y).backward()
                opt.step()

            def step(s):
                idx = batch_idx(s)
                # gather straight into the static inputs: one kernel each, like eager's x[idx]
                torch.index_select(x, 0, idx, out=static_x)
                torch.index_select(y, 0, idx, out=static_y)
                graph.replay()

        for s in range(warmup):
            step(s)
        torch.cuda.synchronize()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            for s in range(steps):
                step(s)
            torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) / steps)
        us = statistics.median(times) * 1e6
        print(f"moons {variant:5s} batch {batch}: {us:8.2f} us/step (median of {reps} x {steps} steps)",
              file=sys.stderr)
        print(f"RESULT moons {variant} device=cuda batch={batch} us_per_step={us:.3f}", flush=True)


def main():
    what = sys.argv[1:] or list(WHAT)
    if any(w not in WHAT for w in what):
        sys.exit(__doc__)
    if torch is None or not torch.cuda.is_available():
        why = "torch is not importable" if torch is None else f"torch {torch.__version__} sees no CUDA device"
        print(f"SKIP torch_cuda_bench: {why}", file=sys.stderr)
        sys.exit(77)
    gpu = torch.cuda.get_device_name().replace(" ", "_")
    print(f"INFO gpu={gpu} torch={torch.__version__} cuda={torch.version.cuda}", flush=True)
    benches = {"copy": bench_copy, "adam": bench_adam, "mnist": bench_mnist, "moons": bench_moons}
    for w in WHAT:  # in this order, so adam reuses a copy measured just before
        if w in what:
            benches[w]()


if __name__ == "__main__":
    main()
