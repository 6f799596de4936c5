#!/bin/sh
# Run every test suite against one build directory and print one closing line
# with the summed case counts. Exit non-zero if any suite failed.
#   BUILD=build sh tests/run_all.sh
set -u
BUILD=${BUILD:-build}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
passed=0
failed=0
bad_suites=""

count() { # add the counts a suite printed; $1 = suite name, $2 = exit code
    p=$(sed -n -e 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' -e 's/^[a-z-]*: \([0-9]*\) passed, [0-9]* failed.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    f=$(sed -n -e 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' -e 's/^[a-z-]*: [0-9]* passed, \([0-9]*\) failed.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    if [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi   # a crash counts as a failure
    passed=$((passed + p))
    failed=$((failed + f))
    [ "$2" -ne 0 ] && bad_suites="$bad_suites $1"
    return 0
}

for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    echo "== $(basename "$t")"
    "$t" >"$log" 2>&1
    rc=$?
    cat "$log"
    count "$(basename "$t")" $rc
done

if [ -f tests/vectors.sh ]; then
    echo "== spec vectors"
    sh tests/vectors.sh "$BUILD" >"$log" 2>&1
    rc=$?
    tail -n 20 "$log"
    count vectors $rc
fi

if [ -f tests/cli/run.sh ]; then
    echo "== command-line tests"
    sh tests/cli/run.sh "$BUILD" >"$log" 2>&1
    rc=$?
    grep -v '^ok ' "$log" | tail -n 40
    count cli $rc
fi

# One more script per tool family (convert.sh, merge.sh, ...): each prints
# "ok"/"not ok" lines and a closing "NAME: N passed, M failed".
for script in tests/cli/*.sh; do
    name=$(basename "$script" .sh)
    [ "$name" = run ] && continue
    echo "== command-line tests: $name"
    sh "$script" "$BUILD" >"$log" 2>&1
    rc=$?
    grep -v '^ok ' "$log" | tail -n 40
    count "$name" $rc
done

# Every fuzz corpus and crasher through its harness (fuzz/replay.sh), in
# both passes: the sanitizer pass catches memory errors, the plain -O2 pass
# checks that no assert() is the only guard (robustness.md item 32).
if [ -f fuzz/replay.sh ]; then
    echo "== fuzz regression"
    sh fuzz/replay.sh "$BUILD" >"$log" 2>&1
    rc=$?
    tail -n 20 "$log"
    count fuzz $rc
fi

# The installed library is checked once, from the plain build: a sanitizer
# build's liblora.so needs the sanitizer runtime preloaded.
if [ "${LORA_SKIP_INSTALL_CHECK:-0}" = 0 ]; then
    echo "== install"
    sh tests/install_check.sh "$BUILD" >"$log" 2>&1
    rc=$?
    grep -v '^ok ' "$log"
    count install $rc
fi

echo "$BUILD: $passed passed, $failed failed"
if [ -n "$bad_suites" ]; then
    echo "failing suites:$bad_suites" >&2
    exit 1
fi
exit 0
