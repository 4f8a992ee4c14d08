"""curvopt.torch's baselines against torch.optim 1.13 on real torch models: an MLP and a
small CNN, 200 steps each, three hyperparameter sets per method (one with maximize=True),
two param groups with per-group options (weights and biases; a per-group
initial_accumulator_value included, which torch.optim.Adagrad ignores), and a learning-rate scheduler
stepped every step, so param_groups[i]["lr"] changes under the optimizer all the time.
The C baselines follow torch's single-tensor code path with torch's rounding, so every
parameter must be bit-identical to torch.optim's after every one of the 200 steps (the
losses too). Controls: the same run with the learning rate 1e-6 relatively off must differ."""
import math
import sys

import harness

harness.need_torch()
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import curvopt.torch as ct  # noqa: E402

torch.set_num_threads(1)
STEPS = 200


def mlp():
    return torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 16), torch.nn.ReLU(),
                               torch.nn.Linear(16, 3))


def cnn():
    n = torch.nn
    return n.Sequential(n.Conv2d(1, 4, 3, padding=1), n.ReLU(), n.MaxPool2d(2), n.Conv2d(4, 8, 3), n.ReLU(),
                        n.Flatten(), n.Linear(8 * 2 * 2, 3))


MODELS = {"mlp": (mlp, (8,)), "cnn": (cnn, (1, 8, 8))}

# (curvopt class, torch class, torch kwargs forced on both, [(base options, bias-group overrides)])
CASES = [
    (ct.SGD, torch.optim.SGD, {}, [
        ({"lr": 0.05}, {"lr": 0.02}),
        ({"lr": 0.02, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}, {"weight_decay": 0.0}),
        ({"lr": 0.03, "momentum": 0.8, "dampening": 0.3, "maximize": True}, {"momentum": 0.5})]),
    (ct.Adagrad, torch.optim.Adagrad, {}, [
        ({"lr": 0.05}, {"lr": 0.1}),
        ({"lr": 0.05, "lr_decay": 1e-3, "initial_accumulator_value": 0.1, "weight_decay": 1e-4},
         {"initial_accumulator_value": 0.5, "weight_decay": 0.0}),
        ({"lr": 0.02, "eps": 1e-8, "maximize": True}, {"lr_decay": 1e-2})]),
    (ct.RMSprop, torch.optim.RMSprop, {}, [
        ({"lr": 1e-3}, {"lr": 3e-3}),
        ({"lr": 1e-3, "alpha": 0.9, "centered": True, "momentum": 0.5, "weight_decay": 1e-4}, {"centered": False}),
        ({"lr": 5e-4, "eps": 1e-6, "maximize": True}, {"momentum": 0.3})]),
    (ct.Adam, torch.optim.Adam, {}, [
        ({"lr": 1e-3}, {"lr": 3e-3}),
        ({"lr": 2e-3, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 1e-4, "amsgrad": True},
         {"betas": (0.9, 0.999), "amsgrad": False}),
        ({"lr": 1e-3, "maximize": True}, {"weight_decay": 1e-3})]),
    (ct.AdamW, torch.optim.AdamW, {}, [
        ({"lr": 1e-3}, {"weight_decay": 0.0}),
        ({"lr": 1e-3, "weight_decay": 0.05, "amsgrad": True}, {"lr": 2e-3}),
        ({"lr": 1e-3, "betas": (0.85, 0.995), "maximize": True}, {"amsgrad": True})]),
    (ct.AMSGrad, torch.optim.Adam, {"amsgrad": True}, [
        ({"lr": 1e-3}, {"lr": 3e-3}),
        ({"lr": 2e-3, "weight_decay": 1e-3}, {"weight_decay": 0.0}),
        ({"lr": 1e-3, "maximize": True}, {"betas": (0.8, 0.99)})]),
]

SCHEDULERS = [
    lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=40, gamma=0.5),
    lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=STEPS),
    lambda o: torch.optim.lr_scheduler.LambdaLR(o, [lambda s: 1.0 / (1 + 0.01 * s), lambda s: 0.99 ** s]),
]


def run(model_name, cls, forced, base, override, sched, lr_factor=1.0):
    make, shape = MODELS[model_name]
    torch.manual_seed(1234)
    model = make()
    weights = [p for p in model.parameters() if p.dim() > 1]
    biases = [p for p in model.parameters() if p.dim() == 1]
    kw = dict(base, **forced)
    kw["lr"] = kw["lr"] * lr_factor
    if cls.__module__.startswith("torch"):
        kw["foreach"] = False  # the single-tensor path curvopt follows
    opt = cls([{"params": weights}, dict({"params": biases}, **override)], **kw)
    scheduler = sched(opt)
    gen = torch.Generator().manual_seed(99)
    sign = -1.0 if base.get("maximize") else 1.0  # maximize -CE: a bounded climb
    losses, snapshots = [], []
    for step in range(STEPS):
        x = torch.randn((16,) + shape, generator=gen)
        y = torch.randint(0, 3, (16,), generator=gen)
        opt.zero_grad()
        loss = sign * F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        scheduler.step()
        losses.append(loss.item())
        if step in (0, 1, 9, 99, STEPS - 1):
            snapshots.append([p.detach().clone() for p in model.parameters()])
    return losses, snapshots


def same(a, b):
    return all(torch.equal(x, y) for sa, sb in zip(a, b) for x, y in zip(sa, sb))


def finite(snapshots, losses):
    return all(map(math.isfinite, losses)) and all(bool(torch.isfinite(x).all()) for s in snapshots for x in s)


def main():
    runs = 0
    for ours, theirs, forced, sets in CASES:
        for k, (base, override) in enumerate(sets):
            for model_name in MODELS:
                sched = SCHEDULERS[(k + len(model_name)) % len(SCHEDULERS)]
                l_ref, s_ref = run(model_name, theirs, forced, base, override, sched)
                l_our, s_our = run(model_name, ours, {k2: v for k2, v in forced.items() if k2 != "amsgrad"}, base,
                                   override, sched)
                label = f"{ours.__name__} {model_name} {base} / {override}"
                harness.check(finite(s_ref, l_ref), f"{label}: the run is not finite, choose other settings")
                ok = harness.check(same(s_our, s_ref) and l_our == l_ref, f"{label}: differs from torch.optim")
                if not ok:
                    worst = max(float((x - y).abs().max()) for sa, sb in zip(s_our, s_ref) for x, y in zip(sa, sb))
                    print(f"  {label}: max |diff| {worst:.3g}")
                if k == 0:
                    _, s_off = run(model_name, ours, {}, base, override, sched, lr_factor=1 + 1e-6)
                    harness.check(not same(s_off, s_ref), f"{label}: lr 1e-6 off is not noticed")
                runs += 1
    harness.check(runs == 36, f"{runs} runs")
    print(f"{runs} runs of {STEPS} steps, each bit-identical to torch.optim {torch.__version__}")
    harness.finish()


if __name__ == "__main__":
    sys.exit(main())
