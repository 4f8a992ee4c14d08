"""curvopt: curvature-aware optimizers (DA-RMSprop, the OGR family, LAMA-Adam, Quasi-Adam,
TSO-ALRA) and torch.optim-exact baselines, from the C library libcurvopt.

    curvopt.Optimizer(name, params, **hparams)   any method over NumPy float32 arrays
    curvopt.torch.QuasiAdam(model.parameters())  the same methods as torch.optim optimizers
    curvopt.methods()                            what `curvopt list` shows

The arithmetic is the C library's: this package only hands it buffers (without copying)."""
from ._lib import (NEEDS_CAPTURE, NEEDS_CLOSURE, NEEDS_EPOCH, CurvoptError, FormatError, InvalidArgument,
                   IOFailure, NotFound, NumericError, OutOfMemory, library_path)
from ._lib import METHODS as _METHODS
from ._numpy import Optimizer
from .data import load_dataset

__version__ = "0.1"


def methods():
    """Every optimizer of the registry, in `curvopt list` order, as curvopt._lib.MethodInfo
    (name, summary, source, hparams with name/default/min/max/flags/doc)."""
    return list(_METHODS.values())


__all__ = ["Optimizer", "methods", "load_dataset", "library_path", "CurvoptError", "InvalidArgument", "IOFailure",
           "FormatError", "NumericError", "NotFound", "OutOfMemory", "NEEDS_CLOSURE", "NEEDS_CAPTURE", "NEEDS_EPOCH"]
