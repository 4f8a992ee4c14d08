"""curvopt's optimizers from Python through ctypes (standard library only).

    CURVOPT_LIB=build/libcurvopt.so python3 examples/fit_line.py adam
"""
import ctypes as C
import os
import sys

MAX_TENSORS = 4


class Group(C.Structure):
    _fields_ = [("name", C.c_char_p), ("kind", C.c_int), ("ntensors", C.c_int),
                ("param", C.POINTER(C.c_float) * MAX_TENSORS), ("grad", C.POINTER(C.c_float) * MAX_TENSORS),
                ("size", C.c_size_t * MAX_TENSORS), ("rows", C.c_int), ("cols", C.c_int)]


class Error(C.Structure):
    _fields_ = [("code", C.c_int), ("msg", C.c_char * 512)]


def main():
    lib = C.CDLL(os.environ.get("CURVOPT_LIB", "libcurvopt.so"))
    lib.co_optim_new.restype = C.c_void_p
    lib.co_optim_new.argtypes = [C.c_char_p, C.POINTER(Group), C.c_int, C.c_char_p, C.c_uint64, C.POINTER(Error)]
    lib.co_optim_step.argtypes = [C.c_void_p, C.c_void_p, C.POINTER(Error)]
    lib.co_optim_free.argtypes = [C.c_void_p]
    name = sys.argv[1] if len(sys.argv) > 1 else "adam"
    params = (C.c_float * 2)(0.0, 0.0)  # w, b
    grads = (C.c_float * 2)(0.0, 0.0)
    g = Group(b"line", 0, 1)
    g.param[0] = C.cast(params, C.POINTER(C.c_float))
    g.grad[0] = C.cast(grads, C.POINTER(C.c_float))
    g.size[0] = 2
    err = Error()
    opt = lib.co_optim_new(name.encode(), C.byref(g), 1, b"lr=0.05", 42, C.byref(err))
    if not opt:
        print(err.msg.decode(), file=sys.stderr)
        return 2
    xs, ys = [0, 1, 2, 3], [1, 3, 5, 7]
    for _ in range(2000):
        w, b = params[0], params[1]
        r = [w * x + b - y for x, y in zip(xs, ys)]
        grads[0] = sum(ri * x for ri, x in zip(r, xs)) / 2
        grads[1] = sum(r) / 2
        if lib.co_optim_step(opt, None, C.byref(err)) != 0:
            print(err.msg.decode(), file=sys.stderr)
            return 1
    print(f"{name}: w={params[0]:.4f} b={params[1]:.4f}")
    lib.co_optim_free(opt)
    return 0


if __name__ == "__main__":
    sys.exit(main())
