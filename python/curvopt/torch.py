"""curvopt's optimizers as torch.optim optimizers.

    opt = curvopt.torch.QuasiAdam(model.parameters(), lr=1e-2)     # instead of torch.optim.Adam
    loss.backward(); opt.step(); opt.zero_grad()

One class per method of `curvopt list`: the baselines SGD, Adagrad, RMSprop, Adam, AdamW and
AMSGrad take every argument of their torch.optim 1.13 namesakes (and give torch's numbers:
the C library follows torch's rounding); OGR1d, OGR1ds, OGR1dc, OGRAsgd, OGRAsgdc, LamaAdam,
QuasiAdam, DaRmsprop and TsoAlra take the hyperparameters `curvopt list` shows, by name.
Every class also takes seed= (the optimizer's own random stream, as `curvopt train --seed`)
and model= (the nn.Module the parameters belong to: per-layer methods then see its layers;
passing the module itself as the first argument does the same).

Parameters are stepped in place by libcurvopt through their data_ptr(), without copies; they
must be dense, contiguous, float32 CPU tensors. param_groups[i][...] is read at every step
(learning-rate schedulers work as with torch.optim). state_dict() holds the complete C state
as a uint8 tensor. LamaAdam needs step(closure); TsoAlra reads K-FAC statistics from hooks on
the model's nn.Linear and nn.Conv2d layers and switches to SGD through epoch_end(val_loss=...).
See docs/python.md."""
import copy
import operator
import warnings

import torch
import torch.nn.functional as F
from torch.optim.optimizer import Optimizer as _TorchOptimizer
from torch.optim.optimizer import required

from . import _lib
from ._core import CallbackClosure, Engine, GroupSpec

STATE_FORMAT = 1
_profiler_enabled = torch.autograd._profiler_enabled

# ---------------------------------------------------------------------- checks


def _check_tensor(t, where, what="parameter", device=None):
    if t.layout != torch.strided:
        raise TypeError(f"{where}: {what} has layout {t.layout}; curvopt steps dense tensors "
                        f"(sparse gradients, e.g. from nn.Embedding(sparse=True), are not supported)")
    if t.device.type not in ("cpu", "cuda"):
        raise TypeError(f"{where}: {what} is on {t.device}; curvopt steps tensors on the CPU or on a CUDA GPU")
    if device is not None and t.device != device:
        raise TypeError(f"{where}: {what} is on {t.device}, the optimizer's first parameter on {device}: "
                        "curvopt steps every parameter of an optimizer on one device")
    if t.dtype != torch.float32:
        raise TypeError(f"{where}: {what} has dtype {t.dtype}; curvopt steps float32 tensors (model.float())")
    if not t.is_contiguous():
        raise ValueError(f"{where}: {what} is not contiguous (strides {t.stride()} for shape {tuple(t.shape)}); "
                         "curvopt reads and writes the tensor's memory in place")


def _numel(p):
    n = p.numel()
    if n == 0:
        raise ValueError(f"parameter of shape {tuple(p.shape)} is empty")
    return n


# ---------------------------------------------------------------------- layers

def _supported_conv(m):
    return (isinstance(m, torch.nn.Conv2d) and m.groups == 1 and m.padding_mode == "zeros"
            and not isinstance(m.padding, str))


class _KfacRecorder:
    """What TSO-ALRA's K-FAC factors need from one nn.Linear or nn.Conv2d in the last
    forward/backward: its input (a) and the gradient of the loss at its output (g), as the
    C stack's layers capture them (a conv's a is the im2col patch matrix, one row per
    sample and output position; g the output gradient at each position)."""

    def __init__(self, module):
        self.module = module
        self.active = True
        self.x = self.gy = None
        self.handle = module.register_forward_hook(self._forward)

    def _forward(self, module, inputs, output):
        if not self.active or not torch.is_grad_enabled() or not output.requires_grad:
            return
        self.x, self.gy = inputs[0].detach(), None
        output.register_hook(self._backward)

    def _backward(self, grad):
        self.gy = grad.detach()

    def statistics(self):
        """(a, g, batch) as contiguous float32 tensors, or None before a forward+backward."""
        x, gy, m = self.x, self.gy, self.module
        if x is None or gy is None:
            return None
        if isinstance(m, torch.nn.Linear):
            a = x.reshape(-1, m.in_features)
            g = gy.reshape(-1, m.out_features)
            batch = x.shape[0] if x.dim() > 1 else 1
        else:
            a = F.unfold(x, m.kernel_size, m.dilation, m.padding, m.stride)  # (N, C*kh*kw, positions)
            a = a.transpose(1, 2).reshape(-1, a.shape[1])
            g = gy.permute(0, 2, 3, 1).reshape(-1, m.out_channels)
            batch = x.shape[0]
        a, g = a.contiguous(), g.contiguous()
        if a.dtype != torch.float32 or g.dtype != torch.float32 or a.device.type != "cpu":
            return None
        return a, g, batch

    def remove(self):
        self.handle.remove()


def _owners(model):
    """id(parameter) -> (module name, module)."""
    owners = {}
    if model is None:
        return owners
    for mname, m in model.named_modules():
        for _, p in m.named_parameters(recurse=False):
            owners[id(p)] = (mname or type(m).__name__, m)
    return owners


def _layer_plan(params, owners):
    """Splits one torch param group into C groups: [(GroupSpec, [positions in params], module)].
    With the model known, each module's parameters form one group (a Linear's or Conv2d's
    weight [+ bias] a layer group, the others dense, at most four tensors a group); without
    it, a 2-D (4-D) tensor followed by a 1-D tensor of its first dimension is taken for a
    Linear (Conv2d) weight and bias, anything else is a dense group of its own."""
    plan = []
    if owners:
        by_module = {}
        for i, p in enumerate(params):
            own = owners.get(id(p))
            key = id(own[1]) if own else ("alone", i)
            if key not in by_module:
                by_module[key] = len(plan)
                plan.append([own, []])
            plan[by_module[key]][1].append(i)
        out = []
        for own, idx in plan:
            name, m = own if own else (f"param{idx[0]}", None)
            is_layer = isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))
            weight = [i for i in idx if m is not None and is_layer and params[i] is m.weight]
            bias = [i for i in idx if m is not None and is_layer and params[i] is getattr(m, "bias", None)]
            if weight:
                w = params[weight[0]]
                kind = _lib.GROUP_LINEAR if isinstance(m, torch.nn.Linear) else _lib.GROUP_CONV2D
                order = weight + bias
                spec = GroupSpec(name, kind, [_numel(params[i]) for i in order], w.shape[0], w.numel() // w.shape[0])
                out.append((spec, order, m))
                idx = [i for i in idx if i not in order]
            for c in range(0, len(idx), _lib.MAX_TENSORS):
                chunk = idx[c:c + _lib.MAX_TENSORS]
                out.append((GroupSpec(name, _lib.GROUP_DENSE, [_numel(params[i]) for i in chunk]), chunk, m))
        return out
    out, i = [], 0
    while i < len(params):
        p = params[i]
        nxt = params[i + 1] if i + 1 < len(params) else None
        if p.dim() in (2, 4):
            kind = _lib.GROUP_LINEAR if p.dim() == 2 else _lib.GROUP_CONV2D
            with_bias = nxt is not None and nxt.dim() == 1 and nxt.shape[0] == p.shape[0]
            order = [i, i + 1] if with_bias else [i]
            out.append((GroupSpec(f"param{i}", kind, [_numel(params[j]) for j in order], p.shape[0],
                                  p.numel() // p.shape[0]), order, None))
            i += len(order)
        else:
            out.append((GroupSpec(f"param{i}", _lib.GROUP_DENSE, [_numel(p)]), [i], None))
            i += 1
    return out


# ---------------------------------------------------------------------- the base class

class CurvoptOptimizer(_TorchOptimizer):
    """A torch.optim.Optimizer whose step() is one call into libcurvopt. Subclasses name
    the method (`method`) and map a param group to the C hyperparameters (`_to_c`)."""

    method = None
    _refused = ()  # torch arguments that cannot be honoured when true (name, why)

    def __init__(self, params, defaults, *, seed=0, model=None):
        if isinstance(params, torch.nn.Module):
            model, params = params, params.parameters()
        if isinstance(params, torch.Tensor):
            raise TypeError("params must be an iterable of tensors or of param group dicts, or an nn.Module; "
                            f"got a {type(params).__name__}")
        self._info = _lib.method_info(self.method)
        self._device = None  # the parameters' device (their first one's; all must share it)
        self._building = True
        super().__init__(params, defaults)
        self._building = False
        self._seed = int(seed)
        self._epoch = 0
        self._build(model)

    # ------------------------------------------------------------------ construction

    def add_param_group(self, param_group):
        if not getattr(self, "_building", False):
            raise RuntimeError(f"curvopt.torch.{type(self).__name__}: parameters cannot be added after construction "
                               "(the C optimizer lays out its state once); create the optimizer with every "
                               "param group it will step")
        self._normalize_group(param_group)
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        for name, why in self._refused:
            if group.get(name):
                raise ValueError(f"curvopt.torch.{type(self).__name__}: {name}=True is not supported: {why}")

    def _normalize_group(self, group):
        """A subclass's chance to translate torch-style keys (DaRmsprop's betas)."""

    def _build(self, model):
        owners = _owners(model)
        specs, group_hp, self._cgroups, self._tindex, recorders_for = [], [], [], [], []
        self._p, self._g = [], []
        for gi, group in enumerate(self.param_groups):
            params = group["params"]
            for j, p in enumerate(params):
                if self._device is None:
                    self._device = p.device
                _check_tensor(p, f"{type(self).__name__} param group {gi} parameter {j}", device=self._device)
                if p.grad is not None:
                    _check_tensor(p.grad, f"{type(self).__name__} param group {gi} parameter {j}", "gradient",
                                  self._device)
            hp = self._c_values(group)
            tindex = [0] * len(params)
            cg = []
            for spec, order, module in _layer_plan(params, owners):
                cg.append(len(specs))
                specs.append(spec)
                group_hp.append(hp)
                recorders_for.append(module)
                for j in order:
                    tindex[j] = len(self._p)
                    self._p.append(params[j])
            self._cgroups.append(cg)
            self._tindex.append(tindex)
        self._check_global(group_hp)
        # Until a backward has run, the C optimizer sees gradient buffers of its own.
        self._g = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self._p]
        self._pp = [p.data_ptr() for p in self._p]
        self._gp = [g.data_ptr() for g in self._g]
        on_gpu = self._device is not None and self._device.type == "cuda"
        if on_gpu:
            why = _lib.cuda_problem()
            if why:
                raise RuntimeError(f"curvopt.torch.{type(self).__name__}: the parameters are on {self._device}, and "
                                   f"this libcurvopt cannot step them there: {why}")
            torch.cuda.set_device(self._device)
        self._engine = Engine(self.method, specs, group_hp, self._seed, self._pp, self._gp,
                              _lib.DEVICE_CUDA if on_gpu else _lib.DEVICE_CPU)
        self._on_gpu = on_gpu
        self._specs = specs
        self._needs = self._engine.needs
        keys = self._group_keys()
        self._snapshot = operator.itemgetter(*keys) if len(keys) > 1 else (lambda g, k=keys[0]: (g[k],))
        self._snaps = [self._snapshot(g) for g in self.param_groups]
        self._pushed = [self._c_values(g) for g in self.param_groups]
        self._recorders = [None] * len(specs)
        self._keep = []
        self._closure_fn = None
        self._callbacks = None
        if self._engine.needs & _lib.NEEDS_CAPTURE:
            self._attach_recorders(model, recorders_for)
        if self._engine.needs & (_lib.NEEDS_CLOSURE | _lib.NEEDS_CAPTURE):
            self._callbacks = CallbackClosure(self._reevaluate, self._capture)

    def _attach_recorders(self, model, modules):
        skipped = []
        for cg, (spec, m) in enumerate(zip(self._specs, modules)):
            if spec.kind != _lib.GROUP_DENSE and (isinstance(m, torch.nn.Linear) or _supported_conv(m)):
                self._recorders[cg] = _KfacRecorder(m)
            else:
                skipped.append(f"{spec.name} ({type(m).__name__ if m is not None else 'no module'})")
        if model is None:
            warnings.warn(f"curvopt.torch.{type(self).__name__}: no model was given, so there are no K-FAC statistics "
                          f"and every layer takes plain SGD steps; pass the model: {type(self).__name__}(model, ...) "
                          "or model=model", stacklevel=5)
        elif skipped:
            warnings.warn(f"curvopt.torch.{type(self).__name__}: no K-FAC statistics for {', '.join(skipped)}: "
                          "these take plain SGD steps, as in curvopt's own training stack (K-FAC hooks cover "
                          "nn.Linear and nn.Conv2d with groups=1 and zero padding)", stacklevel=5)

    def _group_keys(self):
        """The param group keys whose values go to the C library."""
        return tuple(self._keys)

    def _c_values(self, group):
        """{C hyperparameter: float} for one param group."""
        out = {}
        for k, v in self._to_c(group).items():
            if isinstance(v, torch.Tensor):
                v = v.item()
            if isinstance(v, bool):
                v = float(v)
            if not isinstance(v, (int, float)):
                raise TypeError(f"curvopt.torch.{type(self).__name__}: {k} must be a number, got {type(v).__name__}")
            out[k] = float(v)
        return out

    def _check_global(self, group_hp):
        for h in self._info.hparams:
            if h.is_global:
                values = {hp[h.name] for hp in group_hp if h.name in hp}
                if len(values) > 1:
                    raise ValueError(f"curvopt.torch.{type(self).__name__}: {h.name} is one value for the whole "
                                     f"optimizer, the param groups give {sorted(values)}")

    # ------------------------------------------------------------------ stepping

    def _no_grad_error(self, gi, j, p):
        return RuntimeError(f"curvopt.torch.{type(self).__name__}: parameter {j} of param group {gi} (shape "
                            f"{tuple(p.shape)}) has no gradient. curvopt steps every parameter it was given: leave out "
                            "the ones that get none (e.g. filter(lambda p: p.requires_grad, model.parameters()))")

    def _added_error(self):
        return RuntimeError(f"curvopt.torch.{type(self).__name__}: the parameters in param_groups changed after "
                            "construction; curvopt lays out its state once: create a new optimizer")

    def _sync_buffers(self):
        """Points the C optimizer at the tensors' current memory (a gradient may have been
        reallocated by zero_grad(set_to_none=True), a parameter's .data replaced)."""
        groups = self.param_groups
        if len(groups) != len(self._tindex):
            raise self._added_error()
        P, G, PP, GP = self._p, self._g, self._pp, self._gp
        changes = None
        for gi, group in enumerate(groups):
            params, tix = group["params"], self._tindex[gi]
            if len(params) != len(tix):
                raise self._added_error()
            for j, p in enumerate(params):
                t = tix[j]
                g = p.grad
                if p is not P[t]:
                    raise self._added_error()
                if g is None:
                    raise self._no_grad_error(gi, j, p)
                if g is not G[t] or g.data_ptr() != GP[t] or p.data_ptr() != PP[t]:
                    where = f"{type(self).__name__} param group {gi} parameter {j}"
                    _check_tensor(p, where, device=self._device)
                    _check_tensor(g, where, "gradient", self._device)
                    if g.shape != p.shape:
                        raise ValueError(f"{where}: gradient shape {tuple(g.shape)} != parameter shape {tuple(p.shape)}")
                    G[t], GP[t], PP[t] = g, g.data_ptr(), p.data_ptr()
                    if changes is None:
                        changes = {}
                    changes[t] = (PP[t], GP[t])
        if changes:
            self._engine.rebind(changes)

    def _sync_hparams(self):
        snaps = self._snaps
        for gi, group in enumerate(self.param_groups):
            snap = self._snapshot(group)
            if snap != snaps[gi]:
                self._push(gi, group, snap)

    def _push(self, gi, group, snap):
        values = self._c_values(group)
        pushed = self._pushed[gi]
        for name, v in values.items():
            if pushed.get(name) != v:
                if self._info.by_name[name].is_global:
                    others = {self._c_values(g)[name] for g in self.param_groups}
                    if len(others) > 1:
                        raise ValueError(f"curvopt.torch.{type(self).__name__}: {name} is one value for the whole "
                                         f"optimizer, the param groups give {sorted(others)}")
                for cg in self._cgroups[gi]:
                    self._engine.set(cg, name, v)
                pushed[name] = v
        self._snaps[gi] = snap

    def step(self, closure=None):
        """One update of every parameter from its .grad. closure() (zero the gradients,
        compute the loss, backward, return the loss) is called first when given, as torch
        does; LamaAdam also calls it again at perturbed parameters for its Hessian traces."""
        # torch.optim wraps every step in a profiler range (about 10 us); here only while a
        # profiler records.
        if _profiler_enabled():
            with torch.autograd.profiler.record_function(f"Optimizer.step#{type(self).__name__}.step"):
                return self._step(closure)
        return self._step(closure)

    step.hooked = True  # tells torch.optim.Optimizer not to add its own wrapper

    def _step(self, closure):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        elif self._needs & _lib.NEEDS_CLOSURE:
            raise RuntimeError(f"curvopt.torch.{type(self).__name__} needs step(closure): a function that zeroes the "
                               "gradients, evaluates the loss, calls backward() and returns the loss (LAMA-Adam "
                               "re-evaluates the gradients at perturbed parameters for its Hessian traces)")
        self._sync_buffers()
        self._sync_hparams()
        if self._on_gpu:
            # Queued after the backward's kernels on torch's stream, as torch's own step is.
            self._engine.set_stream(torch.cuda.current_stream(self._device).cuda_stream)
        cl = self._callbacks
        if cl is None:
            self._engine.step(None)
            return loss
        self._closure_fn = closure
        try:
            self._engine.step(cl.ref)
        except _lib.CurvoptError as e:
            if cl.pending is not None:
                pending, cl.pending = cl.pending, None
                raise pending from e
            raise
        finally:
            self._closure_fn = None
            self._keep = []
        cl.raise_pending()
        return loss

    def _reevaluate(self):
        """The C library's closure: the user's, with gradients it reallocated copied into the
        buffers the C optimizer reads (and put back on the parameters)."""
        with torch.enable_grad():
            loss = self._closure_fn()
        for t, p in enumerate(self._p):
            g = p.grad
            if g is not self._g[t]:
                if g is None:
                    raise RuntimeError(f"curvopt.torch.{type(self).__name__}: the closure left a parameter without "
                                       "a gradient")
                self._g[t].copy_(g)
                p.grad = self._g[t]
        return float(loss)

    def _capture(self, cg):
        rec = self._recorders[cg]
        if rec is None:
            return None
        got = rec.statistics()
        if got is None:
            return None
        a, g, batch = got
        self._keep.append((a, g))
        return a.data_ptr(), g.data_ptr(), a.shape[0], a.shape[1], g.shape[1], batch

    def epoch_end(self, val_loss=None, epoch=None):
        """Tells the optimizer an epoch ended (epoch: 1-based, default: one more than the
        last); TsoAlra switches to SGD after switch_epoch or when val_loss has not improved
        for patience epochs. Other methods ignore it."""
        self._epoch = self._epoch + 1 if epoch is None else int(epoch)
        if isinstance(val_loss, torch.Tensor):
            val_loss = val_loss.item()
        self._engine.epoch_end(self._epoch, val_loss)
        self._after_state_change()

    def _after_state_change(self):
        self._needs = self._engine.needs
        capture = bool(self._needs & _lib.NEEDS_CAPTURE)
        for rec in self._recorders:
            if rec is not None:
                rec.active = capture

    def diagnostic(self, name):
        """A method's named diagnostics (LamaAdam: "layer_trace", "alpha"; TsoAlra:
        "switched"; QuasiAdam: "accept_rate"), one value per C group or one in all."""
        return self._engine.diagnostic(name)

    @property
    def steps(self):
        return self._engine.steps

    # ------------------------------------------------------------------ state

    def _shapes(self):
        return [[tuple(p.shape) for p in g["params"]] for g in self.param_groups]

    def state_dict(self):
        """torch's layout ('state', 'param_groups' with parameter indices) plus 'curvopt':
        the method, the parameter shapes, the epoch count and the complete C state (moments,
        pairs, factors, random streams, step count) as a uint8 tensor."""
        n = self._engine.state_size()
        blob = torch.empty(n, dtype=torch.uint8)
        self._engine.state_into(blob.data_ptr(), n)
        groups, start = [], 0
        for g in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in g.items() if k != "params"}
            packed["params"] = list(range(start, start + len(g["params"])))
            start += len(g["params"])
            groups.append(packed)
        return {"state": {}, "param_groups": groups,
                "curvopt": {"format": STATE_FORMAT, "method": self.method, "shapes": self._shapes(),
                            "epoch": self._epoch, "state": blob}}

    def load_state_dict(self, state_dict):
        name = type(self).__name__
        extra = state_dict.get("curvopt") if isinstance(state_dict, dict) else None
        if not isinstance(extra, dict):
            raise ValueError(f"curvopt.torch.{name}.load_state_dict: not a curvopt state dict (no 'curvopt' entry; "
                             "a torch.optim state dict cannot seed a curvopt optimizer)")
        if extra.get("format") != STATE_FORMAT:
            raise ValueError(f"curvopt.torch.{name}.load_state_dict: state format {extra.get('format')}, "
                             f"this version reads {STATE_FORMAT}")
        if extra.get("method") != self.method:
            raise ValueError(f"curvopt.torch.{name}.load_state_dict: the state was saved by '{extra.get('method')}', "
                             f"this optimizer is '{self.method}'")
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"curvopt.torch.{name}.load_state_dict: {len(groups)} param groups saved, "
                             f"this optimizer has {len(self.param_groups)}")
        shapes = [[tuple(s) for s in g] for g in extra["shapes"]]
        if shapes != self._shapes():
            raise ValueError(f"curvopt.torch.{name}.load_state_dict: saved parameter shapes {shapes} do not match "
                             f"this optimizer's {self._shapes()}")
        blob = extra["state"]
        if not isinstance(blob, torch.Tensor) or blob.dtype != torch.uint8:
            raise ValueError(f"curvopt.torch.{name}.load_state_dict: the C state must be a uint8 tensor")
        blob = blob.detach().to("cpu").contiguous()
        self._engine.load_state_from(blob.data_ptr(), blob.numel())
        for mine, saved in zip(self.param_groups, groups):
            for k, v in saved.items():
                if k != "params":
                    mine[k] = copy.deepcopy(v)
        self._epoch = int(extra.get("epoch", 0))
        # The C state carries the hyperparameters it was saved with; the param groups are
        # pushed again, whole, before the next step.
        self._snaps = [None] * len(self.param_groups)
        self._pushed = [{} for _ in self.param_groups]
        self._after_state_change()

    def __del__(self):
        for rec in getattr(self, "_recorders", ()):
            if rec is not None:
                rec.remove()

    def __getstate__(self):
        raise TypeError(f"curvopt.torch.{type(self).__name__} holds a C optimizer: save optimizer.state_dict() "
                        "instead of the optimizer object")


# ---------------------------------------------------------------------- the baselines

_NOT_ON_CPU = ("capturable", "for CUDA graphs; curvopt steps CPU tensors")
_NOT_DIFFERENTIABLE = ("differentiable", "the update runs in C, outside autograd")
_NOT_FUSED = ("fused", "a CUDA kernel of torch's")


class SGD(CurvoptOptimizer):
    """torch.optim.SGD, step in C (bit-identical to torch 1.13's single-tensor path)."""
    method = "sgd"
    _keys = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize")
    _refused = (_NOT_DIFFERENTIABLE,)

    def __init__(self, params, lr=required, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False, foreach=None, differentiable=False, seed=0, model=None):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                        maximize=maximize, foreach=foreach, differentiable=differentiable)
        super().__init__(params, defaults, seed=seed, model=model)

    @staticmethod
    def _to_c(g):
        return {"lr": g["lr"], "momentum": g["momentum"], "dampening": g["dampening"],
                "weight_decay": g["weight_decay"], "nesterov": g["nesterov"], "maximize": g["maximize"]}


class Adagrad(CurvoptOptimizer):
    """torch.optim.Adagrad, step in C."""
    method = "adagrad"
    _keys = ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps", "maximize")

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
                 foreach=None, *, maximize=False, seed=0, model=None):
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach, maximize=maximize)
        super().__init__(params, defaults, seed=seed, model=model)

    def _to_c(self, g):
        out = {k: g[k] for k in self._keys}
        # torch.optim.Adagrad fills every accumulator from the constructor's value, whatever
        # a param group says; so does this class, for torch's numbers.
        out["initial_accumulator_value"] = self.defaults["initial_accumulator_value"]
        return out


class RMSprop(CurvoptOptimizer):
    """torch.optim.RMSprop, step in C."""
    method = "rmsprop"
    _keys = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize")
    _refused = (_NOT_DIFFERENTIABLE,)

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 foreach=None, maximize=False, differentiable=False, *, seed=0, model=None):
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered, weight_decay=weight_decay,
                        foreach=foreach, maximize=maximize, differentiable=differentiable)
        super().__init__(params, defaults, seed=seed, model=model)

    @staticmethod
    def _to_c(g):
        return {k: g[k] for k in RMSprop._keys}


class _AdamFamily(CurvoptOptimizer):
    _keys = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize")

    @staticmethod
    def _to_c(g):
        b1, b2 = g["betas"]
        return {"lr": g["lr"], "beta1": b1, "beta2": b2, "eps": g["eps"], "weight_decay": g["weight_decay"],
                "amsgrad": g["amsgrad"], "maximize": g["maximize"]}


class Adam(_AdamFamily):
    """torch.optim.Adam (amsgrad=True: AMSGrad), step in C."""
    method = "adam"
    _refused = (_NOT_ON_CPU, _NOT_DIFFERENTIABLE, _NOT_FUSED)

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 foreach=None, maximize=False, capturable=False, differentiable=False, fused=False, seed=0,
                 model=None):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                        foreach=foreach, capturable=capturable, differentiable=differentiable, fused=fused)
        super().__init__(params, defaults, seed=seed, model=model)


class AMSGrad(Adam):
    """curvopt's "amsgrad": torch.optim.Adam(amsgrad=True), step in C."""
    method = "amsgrad"

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=True, **kwargs):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, **kwargs)


class AdamW(_AdamFamily):
    """torch.optim.AdamW, step in C."""
    method = "adamw"
    _refused = (_NOT_ON_CPU,)

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, foreach=None, capturable=False, seed=0, model=None):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, foreach=foreach,
                        maximize=maximize, capturable=capturable)
        super().__init__(params, defaults, seed=seed, model=model)


# ---------------------------------------------------------------------- the curvature methods

class _Registered(CurvoptOptimizer):
    """A method whose arguments are its `curvopt list` hyperparameters, by name (a Python
    keyword such as lambda may be written lambda_; betas=(b1, b2) sets beta1 and beta2)."""

    def __init__(self, params, *, seed=0, model=None, **hparams):
        info = _lib.method_info(self.method)
        defaults = {h.name: h.python_default() for h in info.hparams}
        self._keys = tuple(defaults)
        given = {}
        self._translate(hparams, given, info)
        defaults.update(given)
        super().__init__(params, defaults, seed=seed, model=model)

    def _translate(self, src, dst, info=None):
        info = info or self._info
        for k, v in src.items():
            key = k[:-1] if k.endswith("_") and k[:-1] in info.by_name else k
            if key == "betas" and "beta1" in info.by_name:
                dst["beta1"], dst["beta2"] = v
            elif key in info.by_name:
                dst[key] = v
            else:
                raise TypeError(f"curvopt.torch.{type(self).__name__} has no hyperparameter '{k}'; it takes "
                                f"{', '.join(h.name for h in info.hparams)} (see `curvopt list`)")

    def _normalize_group(self, group):
        extra = {k: group.pop(k) for k in list(group) if k != "params" and k not in self.defaults}
        known = {k: v for k, v in extra.items() if k == "betas" or k.rstrip("_") in self._info.by_name}
        group.update({k: v for k, v in extra.items() if k not in known})  # the caller's own keys stay
        self._translate(known, group)

    def _to_c(self, g):
        return {k: g[k] for k in self._keys}


class OGR1d(_Registered):
    """OGR1d (paper 001, Algorithms 1-5): momentum + an online parabola in the momentum direction."""
    method = "ogr1d"


class OGR1ds(_Registered):
    """OGR1ds (Algorithm 6): OGR1d keeping averages for the old and the new direction."""
    method = "ogr1ds"


class OGR1dc(_Registered):
    """OGR1dc (Algorithm 7): OGR1d rotating its model about the current point."""
    method = "ogr1dc"


class OGRAsgd(_Registered):
    """ogr-asgd: coordinate-wise rate sigma_theta / sigma_g (adaptive SGD, paper 001)."""
    method = "ogr-asgd"


class OGRAsgdc(_Registered):
    """ogr-asgdc: ogr-asgd with a confidence-corrected curvature (paper 001)."""
    method = "ogr-asgdc"


class LamaAdam(_Registered):
    """LAMA-Adam (paper 002): per-layer momentum scaled by the Hutchinson Hessian trace.
    step(closure) is required: the traces come from gradients re-evaluated at perturbed
    parameters through the closure (which must zero the gradients before backward)."""
    method = "lama-adam"


class QuasiAdam(_Registered):
    """Quasi-Adam (paper 003): Adam's step plus an L-BFGS step from the last secant pair."""
    method = "quasi-adam"


class DaRmsprop(_Registered):
    """DA-RMSprop (paper 000): RMSprop with a low-rank curvature correction per layer and a
    gradient-momentum alignment gain."""
    method = "da-rmsprop"


class TsoAlra(_Registered):
    """TSO-ALRA (paper 004): K-FAC Fisher^-1/2 preconditioning, then plain SGD.
    TsoAlra(model, lr=...) hooks the model's nn.Linear and nn.Conv2d layers for the K-FAC
    statistics (other layers take SGD steps, and a warning says which); call
    epoch_end(val_loss=...) after every epoch for the switch to SGD."""
    method = "tso-alra"

    @property
    def switched(self):
        return bool(self.diagnostic("switched")[0])


_CLASSES = {c.method: c for c in (SGD, Adagrad, RMSprop, Adam, AdamW, AMSGrad, OGR1d, OGR1ds, OGR1dc, OGRAsgd,
                                  OGRAsgdc, LamaAdam, QuasiAdam, DaRmsprop, TsoAlra)}


def by_name(name):
    """The class of a `curvopt list` name: by_name("quasi-adam") is QuasiAdam."""
    _lib.method_info(name)
    try:
        return _CLASSES[name]
    except KeyError:
        raise NotImplementedError(f"curvopt.torch has no class for '{name}' yet") from None


__all__ = ["CurvoptOptimizer", "by_name"] + [c.__name__ for c in _CLASSES.values()]
