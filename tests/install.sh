#!/usr/bin/env bash
# What `cmake --install` installs, used as a user would. First, when builds install
# themselves (CURVOPT_INSTALL_ON_BUILD), the system install the build made, from / and with an
# empty environment: what the README's commands leave behind. Then into a temporary prefix:
# a C program built with pkg-config (library flags before the source, as the issue writes
# it) and with find_package(curvopt), the CLI, and the Python package imported from another
# folder with no environment pointing at the build.
set -u
build=${CURVOPT_BUILD_DIR:?}
src=${CURVOPT_SOURCE_DIR:?}
cmake=${CMAKE_COMMAND:-cmake}
py=/usr/bin/python3
if [ -n "${CURVOPT_SANITIZE_FLAGS:-}" ]; then echo "skipped: a sanitizer build is not installed"; exit 77; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
ok() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
check_fit() { # label output
    if echo "$2" | grep -qE "w=2\.0[0-9]* b=(1\.0|0\.99)"; then ok; else fail "$1: $2"; fi
}

# The system install the build made (cmake --build runs cmake --install).
if [ "${CURVOPT_INSTALL_ON_BUILD:-OFF}" = "ON" ]; then
    sysprefix=${CURVOPT_INSTALL_PREFIX:-/usr/local}
    # The build's own record of what it installed (before the temporary install below
    # rewrites it). Other sessions on a shared machine may install their builds over it since,
    # so the files themselves are not compared.
    manifest=$build/install_manifest.txt
    for f in "$sysprefix/lib/libcurvopt.so.0.1" "$sysprefix/include/curvopt.h" "$sysprefix/lib/pkgconfig/curvopt.pc"; do
        grep -qx "$f" "$manifest" 2>/dev/null && ok || fail "the build did not install $f (install_manifest.txt)"
    done
    grep -q "/curvopt/torch.py$" "$manifest" 2>/dev/null && ok || fail "the build did not install the Python package"
    out=$(cd / && env -i PATH=/usr/bin:/bin "$py" -c 'import curvopt.torch, curvopt; print(curvopt.library_path(), len(curvopt.methods()))' 2>&1)
    if "$py" -c 'import torch' 2>/dev/null; then
        [ "$out" = "$sysprefix/lib/libcurvopt.so.0 15" ] && ok || fail "import curvopt.torch from /: $out"
    fi
    if (cd "$tmp" && env -i PATH=/usr/bin:/bin ${CC:-cc} $(env -i PATH=/usr/bin:/bin pkg-config --cflags --libs curvopt) \
            "$src/examples/fit_line.c" -o fit_sys 2>"$tmp/cc_sys.log"); then
        check_fit "system pkg-config build" "$(cd "$tmp" && env -i ./fit_sys rmsprop)"
    else
        fail "system pkg-config build"; cat "$tmp/cc_sys.log"
    fi
else
    echo "builds do not install here (CURVOPT_INSTALL_ON_BUILD=${CURVOPT_INSTALL_ON_BUILD:-}): system install not checked"
fi
prefix=$tmp/prefix
# cmake --install rewrites the build's install_manifest.txt: the system install's is kept.
[ -f "$build/install_manifest.txt" ] && cp "$build/install_manifest.txt" "$tmp/manifest"
"$cmake" --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 || { fail "cmake --install"; cat "$tmp/install.log"; }
if [ -f "$tmp/manifest" ]; then cp "$tmp/manifest" "$build/install_manifest.txt"; else rm -f "$build/install_manifest.txt"; fi
for f in include/curvopt.h lib/libcurvopt.so lib/libcurvopt.so.0 lib/pkgconfig/curvopt.pc \
         lib/cmake/curvopt/curvoptConfig.cmake lib/cmake/curvopt/curvoptConfigVersion.cmake bin/curvopt; do
    [ -e "$prefix/$f" ] && ok || fail "not installed: $f"
done
soname=$(objdump -p "$prefix/lib/libcurvopt.so" 2>/dev/null | awk '/SONAME/ {print $2}')
[ "$soname" = "libcurvopt.so.0" ] && ok || fail "soname '$soname'"
[ -L "$prefix/lib/libcurvopt.so" ] && [ -f "$(readlink -f "$prefix/lib/libcurvopt.so")" ] && ok || fail "libcurvopt.so is not a link to the versioned file"
"$prefix/bin/curvopt" list | grep -q "^quasi-adam" && ok || fail "installed CLI"

# C through pkg-config, the flags first.
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
if ${CC:-cc} $(pkg-config --cflags --libs curvopt) "$src/examples/fit_line.c" -o "$tmp/fit_pc" 2>"$tmp/cc.log"; then
    ok
    check_fit "pkg-config build" "$(cd "$tmp" && LD_LIBRARY_PATH=$prefix/lib ./fit_pc adam)"
    readelf -d "$tmp/fit_pc" | grep -q "NEEDED.*libcurvopt.so.0" && ok || fail "fit_pc does not need libcurvopt.so.0"
else
    fail "cc \$(pkg-config --cflags --libs curvopt) fit_line.c"; cat "$tmp/cc.log"
fi
unset PKG_CONFIG_PATH

# C through find_package(curvopt).
mkdir -p "$tmp/user"
cat >"$tmp/user/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.18)
project(user C)
find_package(curvopt 0.1 REQUIRED)
add_executable(fit "$src/examples/fit_line.c")
target_link_libraries(fit PRIVATE curvopt::curvopt)
CM
if "$cmake" -S "$tmp/user" -B "$tmp/user/build" -DCMAKE_PREFIX_PATH="$prefix" >"$tmp/user.log" 2>&1 &&
   "$cmake" --build "$tmp/user/build" >>"$tmp/user.log" 2>&1; then
    ok
    check_fit "find_package build" "$(cd "$tmp" && LD_LIBRARY_PATH=$prefix/lib "$tmp/user/build/fit" sgd)"
else
    fail "find_package(curvopt)"; cat "$tmp/user.log"
fi

# Python from the prefix, from another folder, without CURVOPT_LIB: _install.py names the library.
site=$(dirname "$(find "$prefix" -path '*/curvopt/_install.py' | head -1)")
if [ -d "$site" ]; then
    out=$(cd / && env -u CURVOPT_LIB PYTHONPATH="$(dirname "$site")" "$py" -c \
        'import curvopt, numpy as np; w = np.zeros(1, np.float32); o = curvopt.Optimizer("adam", [w], lr=0.1)
o.grads[0][0] = 1; o.step(); print(curvopt.library_path(), curvopt.__file__, w[0])' 2>&1)
    echo "$out" | grep -qE "^$prefix/lib/libcurvopt.so.0 $site/__init__.py -0\.(1|0999)" && ok || fail "python from the prefix: $out"
else
    fail "no installed python package under $prefix"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
