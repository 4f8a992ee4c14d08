"""The Python tests' harness, as tests/test_util.h is the C tests': check() records a
failure and goes on, finish() prints "N passed, N failed" and sets the exit code; a test
that cannot run here (no torch, a sanitizer build) exits 77, which ctest reports as skipped.
The package under test is the source tree's (PYTHONPATH) over the build tree's library
(CURVOPT_LIB), both set by tests/CMakeLists.txt."""
import os
import sys
import traceback

passed = failed = 0


def skip(why):
    print(f"skipped: {why}")
    sys.exit(77)


def need_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        skip("/usr/bin/python3 has no torch (Debian python3-torch; scripts/setup.sh installs it)")


def check(cond, msg=""):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        where = traceback.extract_stack()[-2]
        print(f"FAIL {os.path.basename(where.filename)}:{where.lineno}: {msg}", file=sys.stderr)
    return cond


def raises(exc_type, fn, *words):
    """fn() must raise exc_type whose message contains every word (case-insensitive)."""
    try:
        fn()
    except exc_type as e:
        text = str(e).lower()
        missing = [w for w in words if w.lower() not in text]
        return check(not missing, f"{exc_type.__name__} without {missing}: {e}")
    except Exception as e:  # noqa: BLE001
        return check(False, f"expected {exc_type.__name__}, got {type(e).__name__}: {e}")
    return check(False, f"expected {exc_type.__name__}, nothing raised")


def finish():
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
