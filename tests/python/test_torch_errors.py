"""Every input curvopt.torch cannot step gives an exception that says what is wrong (never a
crash, never a silent wrong step): GPU tensors, float64, non-contiguous or sparse gradients,
missing gradients, parameters added after construction, state dicts of another method or
shape or of torch.optim, damaged state bytes, bad hyperparameters, a LAMA-Adam step without
its closure, exceptions raised inside the closure; and TSO-ALRA says once which layers get
no K-FAC statistics."""
import pickle
import sys
import warnings

import harness
from harness import check, raises

harness.need_torch()
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import curvopt  # noqa: E402
import curvopt.torch as ct  # noqa: E402


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))


def backward(m):
    m.zero_grad()
    F.cross_entropy(m(torch.randn(5, 3)), torch.randint(0, 2, (5,))).backward()


def main():
    # Devices and dtypes, at construction and when a gradient shows up.
    raises(TypeError, lambda: ct.Adam([torch.nn.Parameter(torch.zeros(3, device="meta"))]), "meta", "cpu or on a cuda gpu")
    if torch.cuda.is_available():
        raises(TypeError, lambda: ct.Adam([torch.nn.Parameter(torch.zeros(3, device="cuda"))]), "cuda", "cpu")
    raises(TypeError, lambda: ct.SGD(mlp().double().parameters(), lr=0.1), "float64", "float32")
    raises(TypeError, lambda: ct.Adam(torch.zeros(3)), "iterable")
    raises(ValueError, lambda: ct.Adam([]), "empty")
    raises(ValueError, lambda: ct.Adam([torch.nn.Parameter(torch.zeros(3, 4).t())]), "not contiguous")

    m = mlp()
    opt = ct.Adam(m.parameters(), lr=1e-2)
    raises(RuntimeError, opt.step, "no gradient", "filter")
    backward(m)
    w = m[0].weight
    w.grad = torch.randn(3, 4).t()  # right shape, transposed memory
    raises(ValueError, opt.step, "gradient", "not contiguous")
    w.grad = w.grad.contiguous()
    before = w.detach().clone()
    opt.step()
    check(not torch.equal(before, w), "a valid step after a refused one did not move the weights")
    # Gradients reallocated between steps (zero_grad(set_to_none=True)) are followed.
    for _ in range(3):
        opt.zero_grad(set_to_none=True)
        backward(m)
        before = w.detach().clone()
        opt.step()
        check(not torch.equal(before, w), "step with reallocated gradients did not move the weights")

    emb = torch.nn.Embedding(10, 3, sparse=True)
    eopt = ct.SGD(emb.parameters(), lr=0.1)
    emb(torch.tensor([1, 2])).sum().backward()
    raises(TypeError, eopt.step, "sparse")

    # Parameters added after construction.
    extra = torch.nn.Parameter(torch.zeros(2))
    raises(RuntimeError, lambda: opt.add_param_group({"params": [extra]}), "after construction")
    opt.param_groups[0]["params"].append(extra)
    raises(RuntimeError, opt.step, "changed after construction")
    opt.param_groups[0]["params"].pop()
    opt.param_groups.append({"params": [extra], "lr": 1.0})
    raises(RuntimeError, opt.step, "changed after construction")
    opt.param_groups.pop()
    opt.param_groups[0]["params"][0] = extra
    raises(RuntimeError, opt.step, "changed after construction")
    opt.param_groups[0]["params"][0] = w
    backward(m)
    opt.step()

    # State dicts of another method, another shape, torch.optim, damaged bytes.
    sd = opt.state_dict()
    raises(ValueError, lambda: ct.AdamW(mlp().parameters()).load_state_dict(sd), "saved by 'adam'", "adamw")
    wide = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    raises(ValueError, lambda: ct.Adam(wide.parameters()).load_state_dict(sd), "shapes")
    raises(ValueError, lambda: ct.Adam(list(mlp().parameters())[:2]).load_state_dict(sd), "shapes")
    tsd = torch.optim.Adam(mlp().parameters()).state_dict()
    raises(ValueError, lambda: ct.Adam(mlp().parameters()).load_state_dict(tsd), "not a curvopt state dict")
    fresh = ct.Adam(mlp().parameters())
    short = dict(sd, curvopt=dict(sd["curvopt"], state=sd["curvopt"]["state"][:-7]))
    raises(curvopt.FormatError, lambda: fresh.load_state_dict(short), "truncated")
    bad = sd["curvopt"]["state"].clone()
    at = bytes(bad.numpy()).find(b"exp_avg_sq")
    bad[at + 3] ^= 0x55  # a state entry's name: the C reader checks every name and size
    raises(ValueError, lambda: fresh.load_state_dict(dict(sd, curvopt=dict(sd["curvopt"], state=bad))), "state")
    check(fresh.steps == 0, "a refused state was applied")
    raises(TypeError, lambda: pickle.dumps(opt), "state_dict")

    # Hyperparameters: the C library's range checks and messages, names, refused flags.
    raises(curvopt.InvalidArgument, lambda: ct.Adam(mlp().parameters(), lr=-1), "lr=-1", "out of range")
    raises(ValueError, lambda: ct.Adam(mlp().parameters(), betas=(0.9, 1.5)), "beta2")
    raises(TypeError, lambda: ct.QuasiAdam(mlp().parameters(), momentum=0.9), "no hyperparameter 'momentum'", "eps_curv")
    raises(ValueError, lambda: ct.Adam(mlp().parameters(), capturable=True), "capturable")
    raises(ValueError, lambda: ct.SGD(mlp().parameters(), lr=0.1, differentiable=True), "differentiable")
    raises(ValueError, lambda: ct.SGD(mlp().parameters()), "lr")  # torch's SGD has no default lr either
    m = mlp()
    opt = ct.Adam(m.parameters())
    backward(m)
    opt.param_groups[0]["eps"] = -1.0
    raises(curvopt.InvalidArgument, opt.step, "eps")
    opt.param_groups[0]["eps"] = 1e-8
    opt.step()
    params = list(m.parameters())
    raises(ValueError, lambda: ct.LamaAdam([{"params": params[:2], "K": 3}, {"params": params[2:], "K": 4}]), "K")
    dopt = ct.DaRmsprop(m.parameters(), rank_max=2)
    dopt.param_groups[0]["rank_max"] = 5
    backward(m)
    raises(curvopt.InvalidArgument, dopt.step, "rank_max", "fixed")

    # LAMA-Adam: the closure is required; what the closure raises comes out of step().
    m = mlp()
    lopt = ct.LamaAdam(m, lr=1e-3, K=2)
    backward(m)
    raises(RuntimeError, lopt.step, "needs step(closure)")
    calls = []

    class Boom(Exception):
        pass

    def closure():
        calls.append(1)
        if len(calls) > 1:
            raise Boom("inside the closure")
        lopt.zero_grad()
        loss = F.cross_entropy(m(torch.randn(5, 3)), torch.randint(0, 2, (5,)))
        loss.backward()
        return loss
    raises(Boom, lambda: lopt.step(closure), "inside the closure")
    check(len(calls) == 2, f"the closure ran {len(calls)} times")
    x, y = torch.randn(5, 3), torch.randint(0, 2, (5,))

    def good():
        lopt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        return loss
    loss = lopt.step(good)
    check(isinstance(loss, torch.Tensor) and len(lopt.diagnostic("layer_trace")) == 2, "LAMA-Adam's step(closure)")

    # TSO-ALRA: unsupported layers are named once; without the model, a warning too.
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(8, 2))
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        topt = ct.TsoAlra(net, lr=1e-2)
        for _ in range(3):
            topt.zero_grad()
            F.cross_entropy(net(torch.randn(4, 1, 4, 4)), torch.randint(0, 2, (4,))).backward()
            topt.step()
    texts = [str(w.message) for w in got]
    check(len(texts) == 1 and "BatchNorm2d" in texts[0] and "SGD" in texts[0], f"TSO-ALRA warnings: {texts}")
    check(topt.diagnostic("refreshes")[0] >= 2, "TSO-ALRA did not precondition the conv and linear layers")
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        ct.TsoAlra(net.parameters(), lr=1e-2)
    check(len(got) == 1 and "no model" in str(got[0].message), "TSO-ALRA without the model did not warn")
    harness.finish()


if __name__ == "__main__":
    sys.exit(main())
