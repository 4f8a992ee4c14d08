"""state_dict() -> torch.save -> torch.load -> a new optimizer (and model) ->
load_state_dict() -> continue ends bit-identical to the uninterrupted run, for every
optimizer: moments, L-BFGS pairs, K-FAC factors and roots, sketches, the random streams and
the step count all travel in the C state; the param groups (an lr_scheduler changed them)
and TSO-ALRA's switch (epoch_end) travel too."""
import io
import sys

import harness

harness.need_torch()
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import curvopt  # noqa: E402
import curvopt.torch as ct  # noqa: E402

torch.set_num_threads(1)
HALF = 12


def model():
    torch.manual_seed(5)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))


def make(m, method):
    groups = [{"params": [m[0].weight, m[0].bias]}, {"params": [m[2].weight, m[2].bias], "lr": None}]
    cls = ct.by_name(method)
    lr = curvopt._lib.method_info(method).by_name["lr"].default
    groups[1]["lr"] = lr * 0.5
    extra = {"switch_epoch": 1} if method == "tso-alra" else {}
    opt = cls(groups, lr=lr, model=m, seed=11, **extra)
    return opt, torch.optim.lr_scheduler.ExponentialLR(opt, 0.97)


def train(m, opt, sched, steps, start):
    for s in range(start, start + steps):
        g = torch.Generator().manual_seed(1000 + s)
        x, y = torch.randn(8, 4, generator=g), torch.randint(0, 2, (8,), generator=g)

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(m(x), y)
            loss.backward()
            return loss
        opt.step(closure)
        sched.step()
        if s % 5 == 4:
            opt.epoch_end(val_loss=float(s))


def flat(m):
    return torch.cat([p.detach().reshape(-1) for p in m.parameters()])


def main():
    for info in curvopt.methods():
        name = info.name
        m_ref = model()
        o_ref, s_ref = make(m_ref, name)
        train(m_ref, o_ref, s_ref, 2 * HALF, 0)

        m1 = model()
        o1, s1 = make(m1, name)
        train(m1, o1, s1, HALF, 0)
        sd = o1.state_dict()
        harness.check(torch.equal(sd["curvopt"]["state"], o1.state_dict()["curvopt"]["state"]),
                      f"{name}: state_dict() is not a pure function of the state")
        buf = io.BytesIO()
        torch.save({"model": m1.state_dict(), "opt": sd, "sched": s1.state_dict()}, buf)
        buf.seek(0)
        saved = torch.load(buf)
        del m1, o1, s1

        m2 = model()
        o2, s2 = make(m2, name)
        m2.load_state_dict(saved["model"])
        o2.load_state_dict(saved["opt"])
        s2.load_state_dict(saved["sched"])
        harness.check([g["lr"] for g in o2.param_groups] == [g["lr"] for g in saved["opt"]["param_groups"]],
                      f"{name}: param groups not restored")
        harness.check(o2.steps == HALF, f"{name}: step count {o2.steps} after load")
        harness.check(torch.equal(o2.state_dict()["curvopt"]["state"], saved["opt"]["curvopt"]["state"]),
                      f"{name}: the loaded state does not save back to the same bytes")
        train(m2, o2, s2, HALF, HALF)
        same = torch.equal(flat(m2), flat(m_ref))
        harness.check(same, f"{name}: save -> load -> continue differs from the uninterrupted run "
                            f"(max |diff| {float((flat(m2) - flat(m_ref)).abs().max()):.3g})")
        if name == "tso-alra":
            harness.check(o2.switched and o_ref.switched, "tso-alra: the switch did not happen / travel")
        # Negative control: without the optimizer state the continuation must differ.
        m3 = model()
        o3, s3 = make(m3, name)
        m3.load_state_dict(saved["model"])
        s3.load_state_dict(saved["sched"])
        train(m3, o3, s3, HALF, HALF)
        harness.check(not torch.equal(flat(m3), flat(m_ref)), f"{name}: a fresh optimizer continues identically")
        print(f"{name:10s} state {saved['opt']['curvopt']['state'].numel():6d} bytes: "
              f"{'bit-identical' if same else 'DIFFERS'}")
    harness.finish()


if __name__ == "__main__":
    sys.exit(main())
