# Sourced by shell tests (ctest runs tests/*.sh; this file is not one): the binary, a
# temporary folder removed on exit, pass/fail counting with the closing line, and
# check_figures.
set -u
bin=${CURVOPT_BIN:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }
# The closing line; the test's exit status.
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}

# check_figures DIR WHAT: every PNG in DIR is a PNG whose gnuplot script is DIR/plots/NAME.gp
# and redraws without an error or a complaint from gnuplot; no gnuplot log is left (one is
# kept only when gnuplot failed); scripts and plot data are not at the top of DIR; every
# figure a report.md or table.md in DIR links to exists. Prints what is wrong, returns 1.
check_figures() {
    local dir=$1 what=$2 n=0 png name f log
    command -v gnuplot >/dev/null || return 0
    log="$tmp/check_figures.log"
    for png in "$dir"/*.png; do
        [ -e "$png" ] || continue
        n=$((n + 1))
        name=$(basename "$png" .png)
        if [ "$(head -c 4 "$png" | od -An -tx1 | tr -d ' \n')" != "89504e47" ]; then
            echo "$what: $png is not a PNG"; return 1
        fi
        if [ ! -s "$dir/plots/$name.gp" ]; then
            echo "$what: $png has no plots/$name.gp"; return 1
        fi
        if ! (cd "$dir/plots" && gnuplot "$name.gp") >"$log" 2>&1 || [ -s "$log" ]; then
            echo "$what: redrawing plots/$name.gp:"; cat "$log"; return 1
        fi
    done
    if [ "$n" -eq 0 ]; then echo "$what: no figures in $dir"; return 1; fi
    for f in "$dir"/plots/*.log "$dir"/*.log "$dir"/*.gp "$dir"/*.dat "$dir"/*.contour "$dir"/curves_*.csv; do
        if [ -e "$f" ]; then echo "$what: $f should not be there"; return 1; fi
    done
    for f in "$dir"/report.md "$dir"/table.md; do
        [ -e "$f" ] || continue
        for png in $(grep -o '](\([^)]*\.png\))' "$f" | sed 's/^](//; s/)$//'); do
            if [ ! -s "$dir/$png" ]; then echo "$what: $f links to $png, which is missing"; return 1; fi
        done
    done
    return 0
}
