"""The datasets libcurvopt reads (MNIST, Fashion-MNIST from their installed IDX files;
CIFAR-10/100, SVHN from --data-dir or $CURVOPT_DATA_DIR), as NumPy arrays, through the
library's own parsers (so Python and `curvopt train` see the same numbers)."""
import ctypes as C

import numpy as np

from . import _lib
from ._lib import lib


def load_dataset(name, train=True, data_dir=None):
    """(x, y): x float32 of shape (n, channels, height, width) in [0, 1] (pixel / 255),
    y int64 class indices. name: mnist, fashion-mnist, cifar10, cifar100, svhn."""
    out = C.POINTER(_lib.Dataset)()
    err = _lib.Error()
    st = lib.co_dataset_load(name.encode(), data_dir.encode() if data_dir else None, 1 if train else 0,
                             C.byref(out), C.byref(err))
    if st:
        _lib.raise_error(err, st)
    try:
        d = out.contents
        x = np.ctypeslib.as_array(d.x, shape=(d.n * d.x_dim,)).reshape(d.n, d.c, d.h, d.w).copy()
        y = np.ctypeslib.as_array(d.y, shape=(d.n * d.y_dim,)).astype(np.int64)
    finally:
        lib.co_dataset_free(out)
    return x, y
