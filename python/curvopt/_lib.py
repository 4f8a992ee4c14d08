"""libcurvopt through ctypes: where the library is, its structs, the prototypes of the
functions the package calls, and C errors turned into Python exceptions.

The library is looked for in $CURVOPT_LIB (a path to libcurvopt.so, e.g. a build tree's),
then where `cmake --install` put it (recorded in _install.py at install time), then by its
soname through the system loader."""
import ctypes as C
import os

MAX_TENSORS = 4

GROUP_DENSE, GROUP_LINEAR, GROUP_CONV2D = 0, 1, 2
HP_INT, HP_BOOL, HP_MIN_OPEN, HP_MAX_OPEN, HP_GLOBAL, HP_FIXED = 1, 2, 4, 8, 16, 32
NEEDS_CLOSURE, NEEDS_CAPTURE, NEEDS_EPOCH = 1, 2, 4


class Group(C.Structure):
    _fields_ = [("name", C.c_char_p), ("kind", C.c_int), ("ntensors", C.c_int),
                ("param", C.c_void_p * MAX_TENSORS), ("grad", C.c_void_p * MAX_TENSORS),
                ("size", C.c_size_t * MAX_TENSORS), ("rows", C.c_int), ("cols", C.c_int)]


class Error(C.Structure):
    _fields_ = [("code", C.c_int), ("msg", C.c_char * 512)]


class Capture(C.Structure):
    _fields_ = [("a", C.c_void_p), ("g", C.c_void_p), ("n", C.c_int), ("a_dim", C.c_int), ("g_dim", C.c_int),
                ("batch", C.c_int)]


EVAL = C.CFUNCTYPE(C.c_double, C.c_void_p)
CAPTURE = C.CFUNCTYPE(C.c_int, C.c_void_p, C.c_int, C.POINTER(Capture))


class Closure(C.Structure):
    # eval_whole: a distributed run's evaluation of the whole minibatch on one rank (NULL here).
    _fields_ = [("ctx", C.c_void_p), ("eval", EVAL), ("capture", CAPTURE), ("eval_whole", EVAL)]


class HParam(C.Structure):
    _fields_ = [("name", C.c_char_p), ("default", C.c_double), ("min", C.c_double), ("max", C.c_double),
                ("flags", C.c_int), ("doc", C.c_char_p)]


class Info(C.Structure):
    _fields_ = [("name", C.c_char_p), ("summary", C.c_char_p), ("source", C.c_char_p), ("nhparams", C.c_int),
                ("hparams", C.POINTER(HParam)), ("ops", C.c_void_p)]


class Dataset(C.Structure):
    _fields_ = [("n", C.c_int), ("x_dim", C.c_int), ("y_dim", C.c_int), ("nclasses", C.c_int), ("c", C.c_int),
                ("h", C.c_int), ("w", C.c_int), ("x", C.POINTER(C.c_float)), ("y", C.POINTER(C.c_float))]


# ------------------------------------------------------------------ exceptions

class CurvoptError(RuntimeError):
    """An error reported by libcurvopt: .code is the co_status, the message is the C one."""

    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code


class InvalidArgument(CurvoptError, ValueError):
    """CO_EINVAL: a bad argument, an unknown name, a value out of range."""


class IOFailure(CurvoptError, OSError):
    """CO_EIO: a file could not be opened, read or written."""


class FormatError(CurvoptError, ValueError):
    """CO_EFORMAT: a file or state that is malformed, truncated, corrupted or foreign."""


class OutOfMemory(CurvoptError, MemoryError):
    """CO_ENOMEM."""


class NumericError(CurvoptError, ArithmeticError):
    """CO_ENUMERIC: a NaN or Inf where a finite value was needed."""


class NotFound(CurvoptError, FileNotFoundError):
    """CO_ENOTFOUND: a dataset or file that is not installed."""


_BY_CODE = {1: InvalidArgument, 2: IOFailure, 3: FormatError, 4: OutOfMemory, 5: NumericError, 6: NotFound}


def raise_error(err, code=None):
    code = err.code if code is None else code
    raise _BY_CODE.get(code, CurvoptError)(err.msg.decode("utf-8", "replace"), code)


def check(status, err):
    if status != 0:
        raise_error(err, status)


# ------------------------------------------------------------------ loading

def library_path():
    """The library this process loads (see the module docstring for the order)."""
    env = os.environ.get("CURVOPT_LIB")
    if env:
        return env
    try:
        from ._install import LIBRARY
    except ImportError:
        LIBRARY = None
    if LIBRARY and os.path.exists(LIBRARY):
        return LIBRARY
    return "libcurvopt.so.0"


def _load():
    path = library_path()
    try:
        lib = C.CDLL(path)
    except OSError as e:
        raise ImportError(f"curvopt: cannot load {path}: {e}. Build the library (cmake --build build) and "
                          "point CURVOPT_LIB at build/libcurvopt.so, or install it (cmake --install build)") from e
    P, I, D, Z, S, E = C.c_void_p, C.c_int, C.c_double, C.c_size_t, C.c_char_p, C.POINTER(Error)
    protos = {
        "co_optim_count": (I, []),
        "co_optim_info_at": (C.POINTER(Info), [I]),
        "co_optim_common_hparams": (C.POINTER(HParam), [C.POINTER(I)]),
        "co_optim_new_per_group": (P, [S, C.POINTER(Group), I, S, C.POINTER(S), C.c_uint64, E]),
        "co_optim_new_on": (P, [I, S, C.POINTER(Group), I, S, C.POINTER(S), C.c_uint64, E]),
        "co_optim_set_stream": (None, [P, P]),
        "co_cuda_check": (I, [E]),
        "co_optim_free": (None, [P]),
        "co_optim_rebind": (I, [P, C.POINTER(P), C.POINTER(P), E]),
        "co_optim_set": (I, [P, I, S, D, E]),
        "co_optim_get": (D, [P, I, S]),
        "co_optim_needs": (I, [P]),
        "co_optim_steps": (C.c_uint64, [P]),
        "co_optim_ngroups": (I, [P]),
        "co_optim_set_clip": (None, [P, D]),
        "co_optim_set_lr_scale": (None, [P, D]),
        "co_optim_step": (I, [P, C.POINTER(Closure), E]),
        "co_optim_epoch_end": (I, [P, I, D, E]),
        "co_optim_diagnostic": (I, [P, S, C.POINTER(D), I]),
        "co_optim_state_size": (Z, [P]),
        "co_optim_state_to_buffer": (I, [P, P, Z, E]),
        "co_optim_state_from_buffer": (I, [P, P, Z, E]),
        "co_optim_save": (I, [P, S, E]),
        "co_optim_load": (I, [P, S, E]),
        "co_dataset_load": (I, [S, S, I, C.POINTER(C.POINTER(Dataset)), E]),
        "co_dataset_free": (None, [C.POINTER(Dataset)]),
    }
    for name, (res, args) in protos.items():
        f = getattr(lib, name)
        f.restype = res
        f.argtypes = args
    return lib


lib = _load()

DEVICE_CPU, DEVICE_CUDA = 0, 1


def cuda_problem():
    """None when this libcurvopt has CUDA and a GPU answers; else why not."""
    err = Error()
    return None if lib.co_cuda_check(C.byref(err)) == 0 else _text(err.msg)


def _text(b):
    return b.decode() if b is not None else ""


class HParamInfo:
    """One hyperparameter as `curvopt list` shows it."""
    __slots__ = ("name", "default", "min", "max", "flags", "doc")

    def __init__(self, h):
        self.name, self.default, self.min, self.max = _text(h.name), h.default, h.min, h.max
        self.flags, self.doc = h.flags, _text(h.doc)

    @property
    def is_int(self):
        return bool(self.flags & (HP_INT | HP_BOOL))

    @property
    def is_global(self):
        return bool(self.flags & HP_GLOBAL)

    def python_default(self):
        if self.flags & HP_BOOL:
            return bool(self.default)
        return int(self.default) if self.flags & HP_INT else self.default

    def __repr__(self):
        return f"HParamInfo({self.name}={self.default:g})"


class MethodInfo:
    """An optimizer of the registry: its name, summary, source and hyperparameters (the
    method's own, then the common ones such as maximize)."""

    def __init__(self, info, common):
        self.name, self.summary, self.source = _text(info.name), _text(info.summary), _text(info.source)
        self.own = [HParamInfo(info.hparams[i]) for i in range(info.nhparams)]
        self.hparams = self.own + common
        self.by_name = {h.name: h for h in self.hparams}

    def __repr__(self):
        return f"MethodInfo({self.name!r})"


def _registry():
    n = C.c_int()
    ptr = lib.co_optim_common_hparams(C.byref(n))
    common = [HParamInfo(ptr[i]) for i in range(n.value)]
    return {m.name: m for m in (MethodInfo(lib.co_optim_info_at(i).contents, common)
                                for i in range(lib.co_optim_count()))}


METHODS = _registry()


def method_info(name):
    try:
        return METHODS[name]
    except KeyError:
        raise InvalidArgument(f"unknown optimizer '{name}' (one of: {', '.join(METHODS)})", 1) from None
