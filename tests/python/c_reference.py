"""The C training stack's pieces a test needs to feed a torch model exactly what `curvopt
train` sees: the initial parameters (co_model_new + co_model_init), the data (make_moons and
its split, or the first N samples of a dataset file) and the minibatch order (co_loader), all
through the library's public API."""
import ctypes as C

import numpy as np

from curvopt import _lib
from curvopt._lib import Dataset, Error, lib

P, I, E = C.c_void_p, C.c_int, C.POINTER(Error)
DS = C.POINTER(Dataset)


class Rng(C.Structure):
    _fields_ = [("s", C.c_uint64 * 4)]


class Loader(C.Structure):
    _fields_ = [("data", DS), ("batch", I), ("shuffle", I), ("order", C.POINTER(I)), ("pos", I), ("epoch", I),
                ("rng", Rng), ("xb", C.POINTER(C.c_float)), ("yb", C.POINTER(C.c_float))]


for name, res, args in [
        ("co_model_new", P, [C.c_char_p, E]),
        ("co_model_new_mlp", P, [C.c_char_p, I, I, E]),
        ("co_model_init", None, [P, C.c_uint64]),
        ("co_model_free", None, [P]),
        ("co_model_param_count", C.c_size_t, [P]),
        ("co_model_get_params", None, [P, C.POINTER(C.c_float)]),
        ("co_model_load", I, [P, C.c_char_p, E]),
        ("co_make_moons", DS, [I, C.c_double, C.c_uint64, E]),
        ("co_dataset_split", I, [DS, C.c_double, C.c_uint64, C.POINTER(DS), C.POINTER(DS), E]),
        ("co_dataset_subset", DS, [DS, C.POINTER(I), I, E]),
        ("co_loader_init", I, [C.POINTER(Loader), DS, I, I, C.c_uint64, E]),
        ("co_loader_free", None, [C.POINTER(Loader)]),
        ("co_loader_start_epoch", None, [C.POINTER(Loader)]),
        ("co_loader_next", I, [C.POINTER(Loader)])]:
    f = getattr(lib, name)
    f.restype, f.argtypes = res, args


def _ok(ptr, err):
    if not ptr:
        _lib.raise_error(err)
    return ptr


class Model:
    """A C model: model spec as on the command line (mlp:... with ReLU hidden, logits out)."""

    def __init__(self, spec):
        err = Error()
        if spec.startswith("mlp:"):
            self.ptr = _ok(lib.co_model_new_mlp(spec.encode(), 1, 0, C.byref(err)), err)
        else:
            self.ptr = _ok(lib.co_model_new(spec.encode(), C.byref(err)), err)

    def __del__(self):
        lib.co_model_free(self.ptr)

    def init(self, seed):
        lib.co_model_init(self.ptr, seed)

    def load(self, path):
        err = Error()
        _lib.check(lib.co_model_load(self.ptr, str(path).encode(), C.byref(err)), err)

    def params(self):
        n = lib.co_model_param_count(self.ptr)
        out = np.empty(n, np.float32)
        lib.co_model_get_params(self.ptr, out.ctypes.data_as(C.POINTER(C.c_float)))
        return out


def moons_train(n=1000, noise=0.2, test_frac=0.2, data_seed=0):
    """The training split `curvopt train --data moons` uses (default options)."""
    err = Error()
    everything = _ok(lib.co_make_moons(n, noise, data_seed, C.byref(err)), err)
    train, test = DS(), DS()
    _lib.check(lib.co_dataset_split(everything, test_frac, data_seed, C.byref(train), C.byref(test), C.byref(err)),
               err)
    lib.co_dataset_free(everything)
    lib.co_dataset_free(test)
    return train


def file_train(name, limit):
    """The first `limit` training samples of a file dataset (--train-limit)."""
    err = Error()
    d = DS()
    _lib.check(lib.co_dataset_load(name.encode(), None, 1, C.byref(d), C.byref(err)), err)
    idx = (I * limit)(*range(limit))
    sub = _ok(lib.co_dataset_subset(d, idx, limit, C.byref(err)), err)
    lib.co_dataset_free(d)
    return sub


def batches(dataset, batch, seed, epochs):
    """Yields (epoch, x, y) as numpy copies, in co_train's order, for `epochs` epochs."""
    d = dataset.contents
    loader = Loader()
    err = Error()
    _lib.check(lib.co_loader_init(C.byref(loader), dataset, batch, 1, seed, C.byref(err)), err)
    try:
        for e in range(epochs):
            lib.co_loader_start_epoch(C.byref(loader))
            while True:
                b = lib.co_loader_next(C.byref(loader))
                if b == 0:
                    break
                x = np.ctypeslib.as_array(loader.xb, shape=(b * d.x_dim,)).copy()
                y = np.ctypeslib.as_array(loader.yb, shape=(b * d.y_dim,)).copy()
                yield e, x.reshape(b, d.x_dim), y.reshape(b, d.y_dim)
    finally:
        lib.co_loader_free(C.byref(loader))
