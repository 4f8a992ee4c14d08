#!/usr/bin/python3
"""Golden trajectories of torch.optim's baselines, replayed by tests/test_optim_baselines.c.

Run with Debian's python3-torch (1.13):  /usr/bin/python3 scripts/gen_golden_optim.py
Writes tests/golden/optim_baselines.txt; the same seed always writes the same file.

Each configuration draws its hyperparameters, its tensor shapes (up to 300 elements) and
its parameter groups at random, then takes 100 steps with the gradient
    g_t = c * p_t + s * noise_t        (c, s per tensor; float32 operations in this order)
so that any error in an update feeds back into the next gradient. noise_t[i] is a pure
function of (configuration, step, tensor, i) through splitmix64, reimplemented bit for bit
in the C test, so the file stores the initial parameters and snapshots but no noise.
Some configurations have two parameter groups with per-group overrides (torch's
param_groups; co_optim_set on the C side), some clip the global gradient norm first
(torch.nn.utils.clip_grad_norm_), some use nothing but the defaults. The maximize
configurations come last, drawn from a random stream of their own, so adding them left every
earlier configuration's numbers as they were.

Format (one record per line, floats %.9g, hyperparameters %.17g, '-' for an empty list):
  config <index> <label> <optimizer> <ngroups> <clip max_norm, 0 = off> <hparams for all groups>
  group <g> <ntensors> <overrides for group g>
  tensor <g> <t> <numel> <c> <s> <shape>
  init <g> <t> <numel values>
  step <step> <g> <t> <numel values>      (parameters after that step)
  end
"""
import math
import random
import sys

import torch

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
STEPS = 100
SNAPSHOTS = (1, 2, 3, 10, 50, 100)
SEED = 20261125


def splitmix64(x):
    x = (x + GOLDEN) & MASK
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def noise(config, step, tensor, n):
    """Uniform [-1, 1) in float32; tensor numbers the tensors of a configuration across groups."""
    base = splitmix64((config * 1000003 + step * 7919 + tensor * 104729) & MASK)
    out = []
    for i in range(n):
        u = (splitmix64(base ^ ((i * GOLDEN) & MASK)) >> 11) * (1.0 / (1 << 53))
        out.append(2.0 * u - 1.0)
    return torch.tensor(out, dtype=torch.float64).to(torch.float32)


def f32(x):
    return float(torch.tensor(x, dtype=torch.float32))


# ---------------------------------------------------------------- configurations

def loguniform(rng, lo, hi):
    return 10 ** rng.uniform(math.log10(lo), math.log10(hi))


def maybe(rng, p, value):
    return value if rng.random() < p else None


def sgd_hp(rng, momentum, dampening, nesterov, wd):
    hp = {"lr": loguniform(rng, 2e-3, 5e-2)}
    if momentum:
        hp["momentum"] = rng.uniform(0.5, 0.95)
    if dampening:
        hp["dampening"] = rng.uniform(0.05, 0.6)
    if nesterov:
        hp["nesterov"] = 1
    if wd:
        hp["weight_decay"] = loguniform(rng, 1e-4, 5e-2)
    return hp


def adagrad_hp(rng, lr_decay, init_acc, wd):
    hp = {"lr": loguniform(rng, 5e-3, 1e-1), "eps": rng.choice([1e-10, 1e-8, 1e-6])}
    if lr_decay:
        hp["lr_decay"] = loguniform(rng, 1e-3, 5e-2)
    if init_acc:
        hp["initial_accumulator_value"] = rng.uniform(0.05, 2.0)
    if wd:
        hp["weight_decay"] = loguniform(rng, 1e-4, 5e-2)
    return hp


def rmsprop_hp(rng, centered, momentum, wd):
    hp = {"lr": loguniform(rng, 3e-4, 1e-2), "alpha": rng.uniform(0.9, 0.999), "eps": rng.choice([1e-8, 1e-6, 1e-4])}
    if centered:
        hp["centered"] = 1
    if momentum:
        hp["momentum"] = rng.uniform(0.3, 0.9)
    if wd:
        hp["weight_decay"] = loguniform(rng, 1e-4, 5e-2)
    return hp


def adam_hp(rng, amsgrad, wd, decoupled):
    hp = {"lr": loguniform(rng, 5e-4, 2e-2), "beta1": rng.uniform(0.8, 0.97), "beta2": rng.uniform(0.99, 0.9999),
          "eps": rng.choice([1e-8, 1e-6, 1e-4])}
    if amsgrad:
        hp["amsgrad"] = 1
    if wd:
        hp["weight_decay"] = loguniform(rng, 1e-3, 1e-1) if decoupled else loguniform(rng, 1e-4, 5e-2)
    return hp


def configs(rng):
    """(label, curvopt optimizer, hparams for all groups, per-group overrides or None, clip)."""
    out = []
    add = lambda label, name, hp, groups=None, clip=False: out.append((label, name, hp, groups, clip))
    add("sgd", "sgd", sgd_hp(rng, 0, 0, 0, 0))
    add("sgd", "sgd", sgd_hp(rng, 0, 0, 0, 0), clip=True)
    add("sgd+wd", "sgd", sgd_hp(rng, 0, 0, 0, 1))
    add("sgd+momentum", "sgd", sgd_hp(rng, 1, 0, 0, 0))
    add("sgd+momentum", "sgd", sgd_hp(rng, 1, 0, 0, 1))
    add("sgd+dampening", "sgd", sgd_hp(rng, 1, 1, 0, 0))
    add("sgd+dampening", "sgd", sgd_hp(rng, 1, 1, 0, 1))
    add("sgd+nesterov", "sgd", sgd_hp(rng, 1, 0, 1, 0))
    add("sgd+nesterov", "sgd", sgd_hp(rng, 1, 0, 1, 1), clip=True)
    add("sgd+groups", "sgd", sgd_hp(rng, 1, 0, 0, 0),
        [{}, {"lr": loguniform(rng, 2e-3, 5e-2), "momentum": 0.0, "weight_decay": loguniform(rng, 1e-4, 5e-2)}])
    add("adagrad", "adagrad", {"lr": loguniform(rng, 5e-3, 1e-1)})
    add("adagrad", "adagrad", adagrad_hp(rng, 0, 0, 0))
    add("adagrad+lr_decay", "adagrad", adagrad_hp(rng, 1, 0, 0))
    add("adagrad+init_acc", "adagrad", adagrad_hp(rng, 0, 1, 0))
    add("adagrad+wd", "adagrad", adagrad_hp(rng, 1, 1, 1), clip=True)
    add("adagrad+groups", "adagrad", adagrad_hp(rng, 1, 1, 0),
        [{"lr_decay": 0.0}, {"lr": loguniform(rng, 5e-3, 1e-1), "weight_decay": loguniform(rng, 1e-4, 5e-2)}])
    add("rmsprop", "rmsprop", {})
    add("rmsprop", "rmsprop", rmsprop_hp(rng, 0, 0, 0))
    add("rmsprop+centered", "rmsprop", rmsprop_hp(rng, 1, 0, 0))
    add("rmsprop+momentum", "rmsprop", rmsprop_hp(rng, 0, 1, 0))
    add("rmsprop+centered+momentum", "rmsprop", rmsprop_hp(rng, 1, 1, 1))
    add("rmsprop+wd", "rmsprop", rmsprop_hp(rng, 0, 0, 1), clip=True)
    add("rmsprop+groups", "rmsprop", rmsprop_hp(rng, 0, 1, 0),
        [{"centered": 1}, {"alpha": rng.uniform(0.9, 0.999), "momentum": 0.0, "lr": loguniform(rng, 3e-4, 1e-2)}])
    add("adam", "adam", {})
    add("adam", "adam", adam_hp(rng, 0, 0, 0))
    add("adam", "adam", adam_hp(rng, 0, 0, 0), clip=True)
    add("adam+wd", "adam", adam_hp(rng, 0, 1, 0))
    add("adam+amsgrad", "amsgrad", adam_hp(rng, 0, 0, 0))
    add("adam+amsgrad", "adam", adam_hp(rng, 1, 1, 0))
    add("adam+groups", "adam", adam_hp(rng, 0, 0, 0),
        [{"amsgrad": 1}, {"beta1": rng.uniform(0.8, 0.97), "beta2": rng.uniform(0.99, 0.9999),
                          "weight_decay": loguniform(rng, 1e-4, 5e-2)}])
    add("adamw", "adamw", {})
    add("adamw", "adamw", adam_hp(rng, 0, 1, 1))
    add("adamw", "adamw", adam_hp(rng, 0, 1, 1), clip=True)
    add("adamw+amsgrad", "adamw", adam_hp(rng, 1, 1, 1))
    add("adamw+amsgrad", "adamw", adam_hp(rng, 1, 0, 0))
    add("adamw+groups", "adamw", adam_hp(rng, 0, 1, 1),
        [{"lr": loguniform(rng, 5e-4, 2e-2)}, {"weight_decay": 0.0, "amsgrad": 1}])
    return out


def maximize_configs(rng):
    """torch's maximize=True (curvopt's common hyperparameter maximize=1) on every baseline."""
    out = []
    add = lambda label, name, hp, groups=None, clip=False: out.append((label, name, hp, groups, clip))
    mx = lambda hp: dict(hp, maximize=1)
    add("sgd+maximize", "sgd", mx(sgd_hp(rng, 0, 0, 0, 1)))
    add("sgd+maximize", "sgd", mx(sgd_hp(rng, 1, 0, 1, 1)), clip=True)
    add("sgd+maximize", "sgd", mx(sgd_hp(rng, 1, 1, 0, 0)))
    add("adagrad+maximize", "adagrad", mx(adagrad_hp(rng, 1, 1, 1)))
    add("rmsprop+maximize", "rmsprop", mx(rmsprop_hp(rng, 1, 1, 1)))
    add("rmsprop+maximize", "rmsprop", mx(rmsprop_hp(rng, 0, 0, 0)))
    add("adam+maximize", "adam", mx(adam_hp(rng, 0, 1, 0)))
    add("adam+maximize", "amsgrad", mx(adam_hp(rng, 0, 0, 0)), clip=True)
    add("adamw+maximize", "adamw", mx(adam_hp(rng, 1, 1, 1)))
    # Two groups, only one of which maximizes.
    add("maximize+groups", "adam", adam_hp(rng, 0, 0, 0), [{"maximize": 1}, {}])
    add("maximize+groups", "sgd", sgd_hp(rng, 1, 0, 0, 0), [{}, {"maximize": 1, "momentum": 0.0}])
    return out


# ---------------------------------------------------------------- torch side

def torch_kwargs(name, hp):
    """curvopt hyperparameter names -> torch.optim keyword arguments."""
    kw = {}
    for k, v in hp.items():
        if k in ("nesterov", "centered", "amsgrad", "maximize"):
            kw[k] = bool(v)
        elif k not in ("beta1", "beta2"):
            kw[k] = v
    return kw


def make_torch_optim(name, groups, hp, overrides):
    ctor = torch_kwargs(name, hp)
    if name in ("adam", "adamw", "amsgrad"):
        b1, b2 = hp.get("beta1", 0.9), hp.get("beta2", 0.999)
        ctor["betas"] = (b1, b2)
        if name == "amsgrad":
            ctor["amsgrad"] = True
    param_groups = []
    for g, params in enumerate(groups):
        d = {"params": params}
        if overrides:
            o = overrides[g]
            d.update(torch_kwargs(name, o))
            if "beta1" in o or "beta2" in o:
                d["betas"] = (o.get("beta1", hp.get("beta1", 0.9)), o.get("beta2", hp.get("beta2", 0.999)))
        param_groups.append(d)
    cls = {"sgd": torch.optim.SGD, "adagrad": torch.optim.Adagrad, "rmsprop": torch.optim.RMSprop,
           "adam": torch.optim.Adam, "amsgrad": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    if name == "sgd":
        ctor.setdefault("lr", 1e-2)  # torch has no default lr for SGD; curvopt's is 1e-2
    return cls(param_groups, foreach=False, **ctor)


def hp_text(hp):
    return ",".join("%s=%.17g" % (k, v) for k, v in hp.items()) or "-"


def floats(t):
    return " ".join("%.9g" % x for x in t.detach().reshape(-1).tolist())


def random_shape(rng):
    if rng.random() < 0.5:
        return (rng.randint(1, 300),)
    rows = rng.randint(1, 20)
    return (rows, rng.randint(1, 300 // rows))


def all_configs():
    """(configuration, the random stream its shapes are drawn from) in file order."""
    rng = random.Random(SEED)
    for c in configs(rng):
        yield c, rng
    rng_max = random.Random(SEED + 1)
    for c in maximize_configs(rng_max):
        yield c, rng_max


def main(path):
    lines = ["# torch %s golden optimizer trajectories, %d steps; generated by scripts/gen_golden_optim.py"
             % (torch.__version__, STEPS)]
    for idx, ((label, name, hp, overrides, clip), rng) in enumerate(all_configs()):
        ngroups = len(overrides) if overrides else 1
        groups, specs = [], []
        for g in range(ngroups):
            params = []
            for t in range(rng.randint(1, 3) if ngroups > 1 else rng.randint(2, 4)):
                shape = random_shape(rng)
                n = math.prod(shape)
                coef = f32(rng.choice([0.0, rng.uniform(0.05, 2.0), rng.uniform(0.05, 2.0)]))
                scale = f32(rng.choice([1.0, 1.0, 0.1, 1e-3]))
                init = [rng.uniform(-1, 1) for _ in range(n)]
                p = torch.nn.Parameter(torch.tensor(init, dtype=torch.float64).to(torch.float32).reshape(shape))
                params.append(p)
                specs.append((g, len(params) - 1, p, coef, scale, shape))
            groups.append(params)
        everything = [s[2] for s in specs]
        max_norm = 0.0
        if clip:
            # A fraction of the first gradient's norm, so clipping is active for part of the run.
            with torch.no_grad():
                norm0 = math.sqrt(sum(float(((c * p) + s * noise(idx, 1, k, p.numel()).reshape(p.shape)).pow(2).sum())
                                      for k, (_, _, p, c, s, _) in enumerate(specs)))
            max_norm = f32(norm0 * rng.uniform(0.3, 0.9))
        lines.append("config %d %s %s %d %.9g %s" % (idx, label, name, ngroups, max_norm, hp_text(hp)))
        for g in range(ngroups):
            lines.append("group %d %d %s" % (g, len(groups[g]), hp_text(overrides[g]) if overrides else "-"))
        for g, t, p, coef, scale, shape in specs:
            lines.append("tensor %d %d %d %.9g %.9g %s" % (g, t, p.numel(), coef, scale, "x".join(map(str, shape))))
            lines.append("init %d %d %s" % (g, t, floats(p)))
        opt = make_torch_optim(name, groups, hp, overrides)
        cs = [torch.tensor(s[3], dtype=torch.float32) for s in specs]
        ss = [torch.tensor(s[4], dtype=torch.float32) for s in specs]
        for step in range(1, STEPS + 1):
            opt.zero_grad()
            for k, (_, _, p, _, _, shape) in enumerate(specs):
                p.grad = cs[k] * p.detach() + ss[k] * noise(idx, step, k, p.numel()).reshape(shape)
            if clip:
                torch.nn.utils.clip_grad_norm_(everything, max_norm)
            opt.step()
            if step in SNAPSHOTS:
                for g, t, p, _, _, _ in specs:
                    lines.append("step %d %d %d %s" % (step, g, t, floats(p)))
        lines.append("end")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/golden/optim_baselines.txt")
