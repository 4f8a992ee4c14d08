#!/usr/bin/python3
"""Forward/backward golden vectors of the convolutional layers, replayed by
tests/test_nn_conv_golden.c.

Run with Debian's python3-torch (1.13):  /usr/bin/python3 scripts/gen_golden_conv.py
Writes tests/golden/conv_layers.txt; the same seed always writes the same file.

Each case is one layer given by its layer-spec token (docs/models.md), or a small model
given by its spec, on random shapes: torch computes y = f(x) (training or eval mode), then
backward from a random dy; the file keeps x, the parameters (torch's parameters() order,
which is curvopt's group order), the batch-norm running statistics before and after when
there are any, dy, y, the input gradient (layers only) and the parameter gradients.

Format (one record per line, floats %.9g):
  layer <token> <C> <H> <W> <batch> <train>
  model <spec, tokens joined by commas> <batch> <train>
  x <n> <values>
  p <n> <values>          one line per parameter tensor
  s0 <n> <values>         running means then variances of every batch norm, in order
  dy <n> <values>
  y <n> <values>
  dx <n> <values>         layers only
  g <n> <values>          one line per parameter tensor
  s1 <n> <values>         the running statistics after the forward
  end
"""
import random

import torch
import torch.nn as nn

SEED = 20261126
OUT = "tests/golden/conv_layers.txt"


class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock (torchvision is not packaged with python3-torch)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


def opts(token):
    """The ':'-separated options of a token: letters with integers, and flag words."""
    parts = token.split(":")
    vals, flags = {}, set()
    for p in parts[1:]:
        if p.isalpha():
            flags.add(p)
        elif p[0].isalpha():
            vals[p[0]] = int(p[1:])
    return parts, vals, flags


def torch_layer(token, c, h, w):
    """The torch module for a layer token on a c x h x w input, and its output shape."""
    parts, v, flags = opts(token)
    kind = parts[0]
    if kind == "conv":
        oc, k = int(parts[1]), int(parts[2])
        s, p, d = v.get("s", 1), v.get("p", 0), v.get("d", 1)
        m = nn.Conv2d(c, oc, k, stride=s, padding=p, dilation=d, bias="nobias" not in flags)
    elif kind == "convt":
        oc, k = int(parts[1]), int(parts[2])
        s, p, o, d = v.get("s", 1), v.get("p", 0), v.get("o", 0), v.get("d", 1)
        m = nn.ConvTranspose2d(c, oc, k, stride=s, padding=p, output_padding=o, dilation=d,
                               bias="nobias" not in flags)
    elif kind == "maxpool":
        k = int(parts[1])
        m = nn.MaxPool2d(k, stride=v.get("s", k), ceil_mode="ceil" in flags)
    elif kind == "avgpool":
        k = int(parts[1])
        m = nn.AvgPool2d(k, stride=v.get("s", k))
    elif kind == "gap":
        m = nn.AvgPool2d(h)
    elif kind == "bn":
        m = nn.BatchNorm2d(c)
    elif kind == "res":
        m = BasicBlock(c, int(parts[1]), v.get("s", 1))
    elif kind == "logsoftmax":
        m = nn.Sequential(nn.Flatten(), nn.LogSoftmax(dim=1))
    elif kind == "relu":
        m = nn.ReLU()
    elif kind == "sigmoid":
        m = nn.Sigmoid()
    elif kind == "tanh":
        m = nn.Tanh()
    elif kind == "flatten":
        m = nn.Flatten()
    elif kind == "fc":
        m = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, int(parts[1])))
    else:
        raise ValueError(token)
    with torch.no_grad():
        shape = m(torch.zeros(2, c, h, w)).shape
    return m, (shape[1], shape[2] if len(shape) > 2 else 1, shape[3] if len(shape) > 3 else 1)


def bns(module):
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


def line(f, tag, t):
    vals = t.detach().reshape(-1).tolist()
    f.write(f"{tag} {len(vals)} " + " ".join(f"{x:.9g}" for x in vals) + "\n")


def randomise_bn(module, rng):
    """Non-trivial affine parameters and running statistics, so eval mode is tested for real."""
    with torch.no_grad():
        for bn in bns(module):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)


def emit(f, header, module, x, train, with_dx, rng):
    randomise_bn(module, rng)
    module.train(train)
    f.write(header + "\n")
    line(f, "x", x)
    for p in module.parameters():
        line(f, "p", p)
    norms = bns(module)
    if norms:
        line(f, "s0", torch.cat([t for bn in norms for t in (bn.running_mean, bn.running_var)]))
    module.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(with_dx)
    y = module(x)
    dy = torch.randn(y.shape)
    y.backward(dy)
    line(f, "dy", dy)
    line(f, "y", y)
    if with_dx:
        line(f, "dx", x.grad)
    for p in module.parameters():
        line(f, "g", p.grad)
    if norms:
        line(f, "s1", torch.cat([t for bn in norms for t in (bn.running_mean, bn.running_var)]))
    f.write("end\n")


def conv_token(rng, transposed):
    while True:
        c, oc = rng.randint(1, 4), rng.randint(1, 5)
        h, w = rng.randint(2, 9), rng.randint(2, 9)
        k, s, p, d = rng.randint(1, 4), rng.randint(1, 3), rng.randint(0, 2), rng.randint(1, 2)
        span = d * (k - 1) + 1
        if transposed:
            o = rng.randint(0, max(s, d) - 1)
            if (h - 1) * s - 2 * p + span + o < 1 or (w - 1) * s - 2 * p + span + o < 1:
                continue
            tok = f"convt:{oc}:{k}:s{s}:p{p}:o{o}:d{d}"
        else:
            if h + 2 * p < span or w + 2 * p < span:
                continue
            tok = f"conv:{oc}:{k}:s{s}:p{p}:d{d}"
        if rng.random() < 0.3:
            tok += ":nobias"
        return tok, c, h, w


def main():
    rng = random.Random(SEED)
    torch.manual_seed(SEED)
    cases = []
    for _ in range(10):
        cases.append(conv_token(rng, False))
    cases += [("conv:3:3:s2:p1", 2, 7, 6), ("conv:4:2:s1:p0:d3:nobias", 3, 8, 9)]
    for _ in range(8):
        cases.append(conv_token(rng, True))
    cases += [("convt:2:3:s2:p1:o1", 3, 4, 5), ("convt:3:7", 4, 1, 1)]
    cases += [("maxpool:2", 3, 6, 8), ("maxpool:3:s2", 2, 7, 9), ("maxpool:2:ceil", 2, 7, 5),
              ("maxpool:3:s2:ceil", 3, 8, 6), ("avgpool:2", 2, 6, 4), ("avgpool:3:s1", 2, 5, 6), ("gap", 4, 5, 5)]
    cases += [("res:3", 3, 5, 5), ("res:4:s2", 3, 6, 6), ("res:5:s2", 2, 5, 7), ("res:5", 3, 4, 4)]
    cases += [("logsoftmax", 7, 1, 1), ("logsoftmax", 2, 2, 3)]
    with open(OUT, "w") as f:
        f.write(f"# generated by scripts/gen_golden_conv.py (torch {torch.__version__}, seed {SEED})\n")
        for tok, c, h, w in cases:
            m, _ = torch_layer(tok, c, h, w)
            for train in ((1, 0) if tok.startswith("res") else (1,)):
                batch = rng.randint(1, 3)
                x = torch.randn(batch, c, h, w)
                emit(f, f"layer {tok} {c} {h} {w} {batch} {train}", m, x, bool(train), True, rng)
        # Batches of 16 and more with 32 or more output positions: curvopt's direct
        # convolution (the batch in the vector lanes) instead of im2col + GEMM.
        for tok, c, h, w, batch in (("conv:2:5:p2", 1, 8, 8, 17), ("conv:3:3:s2:p1:d1", 2, 11, 11, 16),
                                    ("conv:2:3:p2:d2:nobias", 2, 8, 8, 17), ("res:3", 2, 6, 6, 17)):
            m, _ = torch_layer(tok, c, h, w)
            x = torch.randn(batch, c, h, w)
            emit(f, f"layer {tok} {c} {h} {w} {batch} 1", m, x, True, True, rng)
        # Batch norm: training (statistics over batch x positions), on a flat input (BatchNorm1d's
        # case), and eval mode with the running statistics.
        for (c, h, w, batch, train) in ((3, 4, 5, 3, 1), (6, 1, 1, 5, 1), (3, 4, 4, 2, 0), (2, 1, 1, 4, 0)):
            m = nn.BatchNorm2d(c)
            emit(f, f"layer bn {c} {h} {w} {batch} {train}", m, torch.randn(batch, c, h, w) * 2 + 0.7, bool(train),
                 True, rng)
        # Whole models: the leaves' parameter order and the shapes between the layers.
        specs = [("in:2x8x8 conv:4:3:p1 bn relu res:6:s2 maxpool:2:ceil flatten fc:5 logsoftmax", (2, 8, 8), 3),
                 ("in:1x9x9 conv:3:3:s2:p1 relu convt:2:3:s2:p1 sigmoid conv:2:3:nobias gap fc:3", (1, 9, 9), 3),
                 ("in:1x12x12 conv:4:5:p2 maxpool:2 relu conv:6:3:p1 relu flatten fc:3", (1, 12, 12), 18)]
        for spec, (c, h, w), batch in specs:
            layers = []
            for tok in spec.split()[1:]:
                m, (c2, h2, w2) = torch_layer(tok, c, h, w)
                layers.append(m)
                c, h, w = c2, h2, w2
            model = nn.Sequential(*layers)
            c, h, w = spec.split()[0][3:].split("x")
            for train in (1, 0):
                x = torch.randn(batch, int(c), int(h), int(w))
                emit(f, f"model {spec.replace(' ', ',')} {batch} {train}", model, x, bool(train), False, rng)


if __name__ == "__main__":
    main()
