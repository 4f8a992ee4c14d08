"""curvopt.torch on CUDA tensors (docs/cuda.md): the same optimizer over the same model on the
GPU and on the CPU, fed the same gradients (computed once on the CPU and copied, so that
torch's own CPU-vs-GPU backward differences stay out), must give bit-identical parameters
after each of 50 steps: the C library's fused kernels share the CPU's element updates. A
learning-rate scheduler changes param_groups' lr under the optimizer; the state_dict saved on
the GPU loads into the CPU optimizer. Without a GPU, or with a libcurvopt built without CUDA,
the test says why and skips."""
import harness

harness.need_torch()
import torch  # noqa: E402

import curvopt.torch as ct  # noqa: E402
from curvopt import _lib  # noqa: E402

if not torch.cuda.is_available():
    harness.skip("torch sees no CUDA device")
why = _lib.cuda_problem()
if why:
    harness.skip(f"libcurvopt cannot step GPU tensors: {why}")

STEPS = 50


def model():
    n = torch.nn
    return n.Sequential(n.Conv2d(1, 4, 3, padding=1), n.ReLU(), n.Flatten(), n.Linear(4 * 6 * 6, 5))


CASES = [
    (ct.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    (ct.Adagrad, {"lr": 0.05, "lr_decay": 1e-3}),
    (ct.RMSprop, {"lr": 1e-3, "centered": True, "momentum": 0.5}),
    (ct.Adam, {"lr": 1e-3, "weight_decay": 1e-2}),
    (ct.AdamW, {"lr": 1e-3}),
    (ct.Adam, {"lr": 1e-3, "amsgrad": True, "maximize": True}),
]


def same(a, b):
    return all(torch.equal(p.detach().cpu(), q.detach()) for p, q in zip(a.parameters(), b.parameters()))


for cls, kw in CASES:
    torch.manual_seed(0)
    cpu = model()
    gpu = model().cuda()
    gpu.load_state_dict(cpu.state_dict())
    oc, og = cls(cpu.parameters(), **kw), cls(gpu.parameters(), **kw)
    sc = torch.optim.lr_scheduler.StepLR(oc, 10, 0.5)
    sg = torch.optim.lr_scheduler.StepLR(og, 10, 0.5)
    gen = torch.Generator().manual_seed(1)
    ok = True
    for step in range(STEPS):
        for p, q in zip(cpu.parameters(), gpu.parameters()):
            g = torch.randn(p.shape, generator=gen) + 0.1 * p.detach()
            p.grad = g
            q.grad = g.cuda()
        oc.step()
        og.step()
        sc.step()
        sg.step()
        if step == STEPS // 2:
            # The GPU optimizer's state continues on the CPU.
            moved = cls(cpu.parameters(), **kw)
            moved.load_state_dict(og.state_dict())
            oc = moved
            sc.optimizer = oc  # the schedule goes on where it was
        if not same(gpu, cpu):
            ok = harness.check(False, f"{cls.__name__} {kw}: parameters differ after step {step + 1}")
            break
    if ok:
        harness.check(True)
        print(f"ok {cls.__name__} {kw}: {STEPS} steps on CUDA bit-identical to the CPU")

harness.finish()
