"""One C optimizer (co_optim) seen from Python, shared by the NumPy and the PyTorch front
ends: created over groups of raw float32 buffers (addresses as ints), stepped, rebound to
new buffers, its hyperparameters set, its complete state written to or read from memory.
No update arithmetic happens here: every step is one call into libcurvopt."""
import ctypes as C
import math

from . import _lib
from ._lib import lib


class GroupSpec:
    """One C group: up to four tensors of one layer, how to view tensor 0 (kind, rows x cols)
    and the element count of each tensor."""
    __slots__ = ("name", "kind", "rows", "cols", "sizes")

    def __init__(self, name, kind, sizes, rows=0, cols=0):
        if not 1 <= len(sizes) <= _lib.MAX_TENSORS:
            raise ValueError(f"a group holds 1 to {_lib.MAX_TENSORS} tensors, got {len(sizes)}")
        self.name, self.kind, self.sizes, self.rows, self.cols = name, kind, list(sizes), rows, cols

    def __repr__(self):
        kind = {0: "dense", 1: "linear", 2: "conv2d"}[self.kind]
        return f"GroupSpec({self.name!r}, {kind}, sizes={self.sizes}, rows={self.rows}, cols={self.cols})"


def hparam_text(values):
    """{"lr": 0.001, "amsgrad": True} -> "lr=0.001,amsgrad=1": repr() of a float reads back
    as the same double in C's strtod."""
    parts = []
    for k, v in values.items():
        v = float(v)
        parts.append(f"{k}={v!r}" if math.isfinite(v) else f"{k}={v}")
    return ",".join(parts)


class Engine:
    """Owns a co_optim. params/grads: one address per tensor, group by group."""

    def __init__(self, method, specs, group_hparams, seed, params, grads, device=0):
        """device: _lib.DEVICE_CPU, or DEVICE_CUDA with params and grads GPU addresses."""
        self.ptr = None
        self.method = method
        self.specs = list(specs)
        ntensors = sum(len(s.sizes) for s in self.specs)
        if len(params) != ntensors or len(grads) != ntensors:
            raise ValueError(f"{ntensors} tensors, {len(params)} parameter and {len(grads)} gradient buffers")
        groups = (_lib.Group * len(self.specs))()
        names = []
        t = 0
        for i, s in enumerate(self.specs):
            g = groups[i]
            names.append(s.name.encode())
            g.name, g.kind, g.ntensors, g.rows, g.cols = names[-1], s.kind, len(s.sizes), s.rows, s.cols
            for k, n in enumerate(s.sizes):
                g.param[k], g.grad[k], g.size[k] = params[t], grads[t], n
                t += 1
        texts = (C.c_char_p * len(self.specs))(*[hparam_text(h).encode() or None for h in group_hparams])
        self.err = _lib.Error()
        self._err = C.byref(self.err)
        ptr = lib.co_optim_new_on(device, method.encode(), groups, len(self.specs), None, texts, seed, self._err)
        if not ptr:
            _lib.raise_error(self.err)
        self.ptr = ptr
        self.ntensors = ntensors
        self._params = (C.c_void_p * ntensors)()
        self._grads = (C.c_void_p * ntensors)()
        self._step = lib.co_optim_step
        self._set = lib.co_optim_set

    def __del__(self):
        if self.ptr:
            lib.co_optim_free(self.ptr)
            self.ptr = None

    # ---------------------------------------------------------------- stepping

    def step(self, closure=None):
        """closure: a _lib.Closure (by reference) or None. Returns the status; raises on error."""
        st = self._step(self.ptr, closure, self._err)
        if st:
            _lib.raise_error(self.err, st)

    def set_stream(self, stream):
        """The cudaStream_t (an int address, 0: the thread's default stream) a GPU optimizer
        queues its steps on."""
        lib.co_optim_set_stream(self.ptr, stream or None)

    def rebind(self, changes):
        """changes: {tensor index: (param address or None, grad address or None)}."""
        for i in range(self.ntensors):
            self._params[i] = self._grads[i] = None
        for i, (p, g) in changes.items():
            self._params[i], self._grads[i] = p, g
        _lib.check(lib.co_optim_rebind(self.ptr, self._params, self._grads, self._err), self.err)

    # ---------------------------------------------------------------- hyperparameters

    def set(self, group, name, value):
        st = self._set(self.ptr, group, name.encode(), float(value), self._err)
        if st:
            _lib.raise_error(self.err, st)

    def get(self, group, name):
        return lib.co_optim_get(self.ptr, group, name.encode())

    def set_clip(self, max_norm):
        lib.co_optim_set_clip(self.ptr, float(max_norm))

    @property
    def needs(self):
        return lib.co_optim_needs(self.ptr)

    @property
    def steps(self):
        return lib.co_optim_steps(self.ptr)

    def epoch_end(self, epoch, val_loss=None):
        v = float("nan") if val_loss is None else float(val_loss)
        _lib.check(lib.co_optim_epoch_end(self.ptr, int(epoch), v, self._err), self.err)

    def diagnostic(self, name, max_values=4096):
        out = (C.c_double * max_values)()
        n = lib.co_optim_diagnostic(self.ptr, name.encode(), out, max_values)
        if n < 0:
            raise _lib.InvalidArgument(f"{self.method} has no diagnostic '{name}'", 1)
        return list(out[:n])

    # ---------------------------------------------------------------- state

    def state_size(self):
        return lib.co_optim_state_size(self.ptr)

    def state_into(self, address, length):
        _lib.check(lib.co_optim_state_to_buffer(self.ptr, address, length, self._err), self.err)

    def state_bytes(self):
        n = self.state_size()
        buf = C.create_string_buffer(n)
        self.state_into(C.addressof(buf), n)
        return buf.raw

    def load_state_from(self, address, length):
        _lib.check(lib.co_optim_state_from_buffer(self.ptr, address, length, self._err), self.err)

    def load_state_bytes(self, data):
        data = bytes(data)
        buf = C.create_string_buffer(data, len(data))
        self.load_state_from(C.addressof(buf), len(data))

    def save(self, path):
        _lib.check(lib.co_optim_save(self.ptr, str(path).encode(), self._err), self.err)

    def load(self, path):
        _lib.check(lib.co_optim_load(self.ptr, str(path).encode(), self._err), self.err)


class CallbackClosure:
    """A co_closure whose eval and capture are Python callables. An exception inside a
    callback cannot cross the C frames: it is kept, the callback reports failure (NaN / no
    capture), and raise_pending() re-raises it once the C call has returned."""

    def __init__(self, eval_fn=None, capture_fn=None):
        self.eval_fn, self.capture_fn = eval_fn, capture_fn
        self.pending = None
        self._eval = _lib.EVAL(self._on_eval) if eval_fn else _lib.EVAL()
        self._capture = _lib.CAPTURE(self._on_capture) if capture_fn else _lib.CAPTURE()
        self.struct = _lib.Closure(None, self._eval, self._capture)
        self.ref = C.byref(self.struct)

    def _on_eval(self, ctx):
        if self.pending is not None:
            return float("nan")
        try:
            return float(self.eval_fn())
        except BaseException as e:  # noqa: B902 -- handed back after the C call
            self.pending = e
            return float("nan")

    def _on_capture(self, ctx, group, out):
        if self.pending is not None:
            return 0
        try:
            got = self.capture_fn(group)
            if got is None:
                return 0
            a, g, n, a_dim, g_dim, batch = got
            o = out.contents
            o.a, o.g, o.n, o.a_dim, o.g_dim, o.batch = a, g, n, a_dim, g_dim, batch
            return 1
        except BaseException as e:  # noqa: B902
            self.pending = e
            return 0

    def raise_pending(self):
        e, self.pending = self.pending, None
        if e is not None:
            raise e
