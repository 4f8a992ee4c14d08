"""The two front ends agree end to end: a torch model given the C stack's initial parameters
and fed `curvopt train`'s minibatches in the same order, trained through curvopt.torch with
each of the 15 optimizers, ends where `curvopt train` ends. Moons MLP (2-64-1, BCE on
logits) for every method, and the MNIST CNN preset quasi-adam-mnist (LeNet-5 sizes,
cross-entropy) for TSO-ALRA, Quasi-Adam, LAMA-Adam and DA-RMSprop. The closure (LAMA-Adam's
Hessian traces), TSO-ALRA's hooks and its epoch_end-driven switch, and the per-layer grouping
are what this checks beyond the arithmetic.

The two stacks' forward and backward passes round differently (BLAS vs torch's kernels), so
the final parameters agree to a tolerance, not bit for bit: max |torch - C| / max |C| over all
parameters must stay below TOL (and a run with the learning rate 5% off must not, so the
comparison can fail). Moons: 3 epochs of 25 steps; MNIST: 2 epochs of 16 steps of 64 images.
Measured values are printed per case (and listed in docs/python.md)."""
import os
import subprocess
import sys
import tempfile

import harness

harness.need_torch()
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import curvopt  # noqa: E402
import curvopt.torch as ct  # noqa: E402
from c_reference import Model, batches, file_train, moons_train  # noqa: E402

BIN = os.environ.get("CURVOPT_BIN", "build/curvopt")
TOL = {"moons": 2e-3, "mnist": 5e-3}
torch.set_num_threads(1)


def mlp():
    return torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))


def lenet():
    n = torch.nn
    return n.Sequential(n.Conv2d(1, 6, 5, padding=2), n.MaxPool2d(2), n.ReLU(), n.Conv2d(6, 16, 5), n.MaxPool2d(2),
                        n.ReLU(), n.Flatten(), n.Linear(400, 120), n.ReLU(), n.Linear(120, 84), n.ReLU(),
                        n.Linear(84, 10))


def set_flat(model, flat):
    off = 0
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.from_numpy(flat[off:off + p.numel()]).view_as(p))
            off += p.numel()
    assert off == flat.size


def get_flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy()


class Case:
    def __init__(self, kind, method, epochs, batch, seed, hp=None, train_limit=0):
        self.kind, self.method, self.epochs, self.batch, self.seed = kind, method, epochs, batch, seed
        self.hp, self.train_limit = dict(hp or {}), train_limit
        self.spec = "mlp:2-64-1" if kind == "moons" else "quasi-adam-mnist"

    def cli(self, out):
        args = [BIN, "train", "--opt", self.method, "--model", self.spec, "--epochs", str(self.epochs), "--batch",
                str(self.batch), "--seed", str(self.seed), "--out", out]
        if self.kind == "mnist":
            args += ["--data", "mnist", "--loss", "cross-entropy", "--train-limit", str(self.train_limit),
                     "--test-limit", "256"]
        if self.hp:
            args += ["--hp", ",".join(f"{k}={v!r}" for k, v in self.hp.items())]
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        m = Model(self.spec)
        m.load(os.path.join(out, "model.params"))
        return m.params()

    def torch(self, data, lr_factor=1.0):
        model = mlp() if self.kind == "moons" else lenet()
        init = Model(self.spec)
        init.init(self.seed)
        set_flat(model, init.params())
        hp = dict(self.hp)
        hp["lr"] = hp.get("lr", curvopt._lib.method_info(self.method).by_name["lr"].default) * lr_factor
        opt = ct.by_name(self.method)(model, seed=self.seed, **hp)
        current = 0
        for epoch, x, y in batches(data, self.batch, self.seed, self.epochs):
            if epoch != current:
                opt.epoch_end()
                current = epoch
            xt = torch.from_numpy(x)
            if self.kind == "moons":
                yt = torch.from_numpy(y)
                lossf = lambda: F.binary_cross_entropy_with_logits(model(xt), yt)  # noqa: E731
            else:
                xt = xt.view(-1, 1, 28, 28)
                yt = torch.from_numpy(y).view(-1).long()
                lossf = lambda: F.cross_entropy(model(xt), yt)  # noqa: E731

            def closure():
                opt.zero_grad()
                loss = lossf()
                loss.backward()
                return loss
            opt.step(closure)
        opt.epoch_end()
        return get_flat(model), opt


def rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def main():
    cases = [Case("moons", m.name, 3, 32, 7) for m in curvopt.methods()]
    # TSO-ALRA's switch to SGD from epoch_end, after the first of three epochs.
    cases.append(Case("moons", "tso-alra", 3, 32, 8, {"switch_epoch": 1}))
    # DA-RMSprop as published (no safeguards: the unclipped, ungrafted curvature step).
    cases.append(Case("moons", "da-rmsprop", 3, 32, 7, {"faithful": 1}))
    # TSO-ALRA with the damping its reproduction uses (the default 1e-3 diverges on this CNN).
    # Quasi-Adam at its default lr: at the paper's 1e-2 its L-BFGS term amplifies the two
    # stacks' rounding differences past any useful tolerance within a few dozen steps.
    # DA-RMSprop at lr 3e-4: at its default 1e-2 its first steps on this CNN are RMSprop's
    # tenfold ones and the run is chaotic for 32 steps, and so is the published algorithm
    # (faithful=1) at 1e-2 to 1e-4 (decision 8 of its doc: the unclipped correction enlarges
    # steps): the two stacks' rounding, or lr x (1 + 1e-6) in one stack, moves the end by
    # 1e-2 to 1 there. At 3e-4 the safeguarded run is not chaotic (measured: 3e-5 between the
    # front ends, 0.19 for lr x1.05); the published step is compared on moons below.
    mnist_hp = {"tso-alra": {"damping": 1e-2}, "quasi-adam": None, "lama-adam": None, "da-rmsprop": {"lr": 3e-4}}
    for m, hp in mnist_hp.items():
        cases.append(Case("mnist", m, 2, 64, 3, hp, train_limit=1024))
    moons = moons_train()
    mnist = None
    covered = set()
    with tempfile.TemporaryDirectory() as tmp:
        for i, c in enumerate(cases):
            data = moons if c.kind == "moons" else (mnist or file_train("mnist", c.train_limit))
            if c.kind == "mnist":
                mnist = data
            ref = c.cli(os.path.join(tmp, str(i)))
            ours, opt = c.torch(data)
            err = rel(ours, ref)
            label = f"{c.kind:5s} {c.method:10s} {c.hp or ''}"
            harness.check(err <= TOL[c.kind], f"{label}: torch front end ends {err:.3g} from curvopt train")
            control = rel(c.torch(data, 1.05)[0], ref)
            harness.check(control > TOL[c.kind],
                          f"{label}: 5% off the learning rate is not noticed ({control:.3g} vs {err:.3g})")
            print(f"{label:40s} max rel diff {err:.2e}   lr x1.05: {control:.2e}")
            if c.method == "tso-alra" and c.hp.get("switch_epoch"):
                harness.check(opt.switched, "tso-alra did not switch to SGD at epoch_end")
            covered.add((c.kind, c.method))
    harness.check(len({m for k, m in covered if k == "moons"}) == 15, "not every optimizer ran on moons")
    harness.finish()


if __name__ == "__main__":
    sys.exit(main())
