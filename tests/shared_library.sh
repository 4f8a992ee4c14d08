#!/usr/bin/env bash
# The README's library example: a C program built against the installed header and the
# shared library, and the same through Python's ctypes, both fit y = 2x + 1.
set -u
lib=${CURVOPT_SHARED_LIB:?}
src=${CURVOPT_SOURCE_DIR:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
check_fit() { # label output
    if echo "$2" | grep -qE "w=2\.0[0-9]* b=(1\.0|0\.99)"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL $1: $2"; fi
}
${CC:-cc} ${CURVOPT_SANITIZE_FLAGS:-} -std=c17 -Wall -Wextra -Werror "$src/examples/fit_line.c" -I"$src/include" -L"$(dirname "$lib")" -lcurvopt \
    -Wl,-rpath,"$(dirname "$lib")" -o "$tmp/fit_line" || { echo "FAIL compile"; echo "0 passed, 1 failed"; exit 1; }
for opt in adam sgd rmsprop; do
    out=$(cd "$tmp" && ./fit_line "$opt")
    check_fit "C $opt" "$out"
done
if [ -s "$tmp/fit_line.state" ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL no state file"; fi
out=$(cd "$tmp" && ./fit_line nosuch 2>&1); rc=$?
if [ $rc -eq 2 ] && echo "$out" | grep -q "unknown optimizer"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL unknown name: $out"; fi
# An ASan-instrumented library cannot be loaded into an uninstrumented Python.
if command -v python3 >/dev/null && [ -z "${CURVOPT_SANITIZE_FLAGS:-}" ]; then
    out=$(CURVOPT_LIB="$lib" python3 "$src/examples/fit_line.py" adam)
    check_fit "ctypes adam" "$out"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
