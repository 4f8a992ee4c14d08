"""curvopt.Optimizer: any curvopt method over NumPy float32 arrays, updated in place (the C
library reads and writes the arrays' own memory)."""
import numpy as np

from . import _lib
from ._core import CallbackClosure, Engine, GroupSpec

_KINDS = {"dense": _lib.GROUP_DENSE, "linear": _lib.GROUP_LINEAR, "conv2d": _lib.GROUP_CONV2D}


def _check_array(a, what):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{what} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype != np.float32:
        raise TypeError(f"{what} has dtype {a.dtype}; curvopt works on float32 (use a.astype(np.float32) "
                        "and keep that array)")
    if not a.flags.c_contiguous:
        raise ValueError(f"{what} is not C-contiguous; curvopt updates the array's memory in place "
                         "(use np.ascontiguousarray and keep that array)")
    if not a.flags.writeable:
        raise ValueError(f"{what} is read-only")
    if a.size == 0:
        raise ValueError(f"{what} is empty")
    return a


class Optimizer:
    """An optimizer of the registry (`curvopt list`) over float32 arrays.

        w = np.zeros(3, np.float32); b = np.zeros(1, np.float32)
        opt = curvopt.Optimizer("adam", [w, b], lr=0.05)
        for ...:
            opt.grads[0][:] = dL_dw; opt.grads[1][:] = dL_db
            opt.step()                       # w and b change in place

    params: a list of arrays (one group each), or of group dicts
    {"params": [w, b], "grads": [gw, gb] (optional), "kind": "dense" | "linear" | "conv2d",
    and per-group hyperparameters}. A "linear" group views w as rows(out) x cols(in), a
    "conv2d" group w[out, in, kh, kw] as out x in*kh*kw; an optional second array is the
    bias. Gradient arrays the caller does not give are allocated (zeros) and listed in
    .grads, in the order of the parameters. hparams apply to every group; seed feeds the
    optimizer's own random stream. Errors from the library are raised as curvopt.CurvoptError
    subclasses carrying the C message (InvalidArgument is also a ValueError)."""

    def __init__(self, name, params, *, seed=0, **hparams):
        info = _lib.method_info(name)
        self.name = name
        groups = self._groups(params)
        specs, group_hp, self.params, self.grads = [], [], [], []
        for gi, grp in enumerate(groups):
            ps = [_check_array(p, f"group {gi} parameter {k}") for k, p in enumerate(grp["params"])]
            gs = grp.get("grads") or [np.zeros_like(p) for p in ps]
            if len(gs) != len(ps):
                raise ValueError(f"group {gi}: {len(ps)} parameters but {len(gs)} gradients")
            for k, (p, g) in enumerate(zip(ps, gs)):
                _check_array(g, f"group {gi} gradient {k}")
                if g.shape != p.shape:
                    raise ValueError(f"group {gi} tensor {k}: gradient shape {g.shape} != parameter shape {p.shape}")
            kind = _KINDS.get(grp.get("kind", "dense"))
            if kind is None:
                raise ValueError(f"group {gi}: kind {grp['kind']!r} is not one of {', '.join(_KINDS)}")
            rows = cols = 0
            if kind != _lib.GROUP_DENSE:
                w = ps[0]
                if w.ndim != (2 if kind == _lib.GROUP_LINEAR else 4):
                    raise ValueError(f"group {gi}: a {grp['kind']} weight needs {2 if kind == 1 else 4} dimensions, "
                                     f"got shape {w.shape}")
                rows, cols = w.shape[0], w.size // w.shape[0]
            specs.append(GroupSpec(grp.get("name", f"group{gi}"), kind, [p.size for p in ps], rows, cols))
            hp = dict(hparams)
            hp.update({k: v for k, v in grp.items() if k not in ("params", "grads", "kind", "name")})
            for k in hp:
                if k not in info.by_name:
                    raise TypeError(f"{name} has no hyperparameter '{k}' (it takes "
                                    f"{', '.join(h.name for h in info.hparams)}; see `curvopt list`)")
            group_hp.append(hp)
            self.params.extend(ps)
            self.grads.extend(gs)
        self._engine = Engine(name, specs, group_hp, seed, [p.ctypes.data for p in self.params],
                              [g.ctypes.data for g in self.grads])
        self.ngroups = len(specs)

    @staticmethod
    def _groups(params):
        if isinstance(params, np.ndarray):
            raise TypeError("params must be a list of arrays or of group dicts, not one array")
        params = list(params)
        if not params:
            raise ValueError("no parameters")
        return [p if isinstance(p, dict) else {"params": [p]} for p in params]

    def step(self, closure=None, capture=None):
        """One update from the gradients in .grads. closure() re-evaluates the loss at the
        current parameters, writing .grads (LAMA-Adam needs it); capture(group) returns None
        or (a, g, batch): float32 arrays of a layer's inputs (n x cols) and output gradients
        (n x rows) from the last evaluation (TSO-ALRA's K-FAC statistics)."""
        if closure is None and capture is None:
            self._engine.step(None)
            return
        keep = []

        def on_capture(group):
            got = capture(group)
            if got is None:
                return None
            a, g, batch = got
            a, g = np.ascontiguousarray(a, np.float32), np.ascontiguousarray(g, np.float32)
            if a.ndim != 2 or g.ndim != 2 or a.shape[0] != g.shape[0]:
                raise ValueError(f"capture({group}): a and g must be n x cols and n x rows, got {a.shape} and {g.shape}")
            keep.append((a, g))
            return a.ctypes.data, g.ctypes.data, a.shape[0], a.shape[1], g.shape[1], int(batch)

        cl = CallbackClosure(closure, on_capture if capture else None)
        try:
            self._engine.step(cl.ref)
        except _lib.CurvoptError as e:
            if cl.pending is not None:
                raise cl.pending from e
            raise
        cl.raise_pending()

    def set(self, name, value, group=None):
        """Sets a hyperparameter for one group or (group None) all; range-checked by the library."""
        self._engine.set(-1 if group is None else group, name, value)

    def get(self, name, group=0):
        return self._engine.get(group, name)

    def set_clip(self, max_norm):
        """torch.nn.utils.clip_grad_norm_ on every gradient at the start of each step (0: off)."""
        self._engine.set_clip(max_norm)

    def epoch_end(self, epoch, val_loss=None):
        """Drives epoch-level rules such as TSO-ALRA's switch to SGD."""
        self._engine.epoch_end(epoch, val_loss)

    def diagnostic(self, name):
        return self._engine.diagnostic(name)

    @property
    def steps(self):
        return self._engine.steps

    @property
    def needs(self):
        """Bit set of curvopt.NEEDS_CLOSURE, NEEDS_CAPTURE, NEEDS_EPOCH in the current state."""
        return self._engine.needs

    def state_bytes(self):
        """The complete state (every moment, pair, factor, RNG stream, step count)."""
        return self._engine.state_bytes()

    def load_state_bytes(self, data):
        self._engine.load_state_bytes(data)

    def save(self, path):
        """Atomic, versioned, CRC-checked file (the format `curvopt train` writes)."""
        self._engine.save(path)

    def load(self, path):
        self._engine.load(path)
