#!/bin/sh
# Replay fuzz/corpus/<name>/ and fuzz/crashers/<name>/ through each harness
# built with the regression driver, and print one closing line
#   fuzz: N passed, M failed
# where N counts inputs. When a harness fails, each of its inputs is rerun
# alone to name every failing one.
#   sh fuzz/replay.sh BUILD [NAME...]      (default: every line of fuzz/targets.txt)
set -u
cd "$(dirname "$0")/.."
build=$1
shift
[ $# -gt 0 ] || set -- $(sed -n 's/^\([a-z0-9_]*\)[[:space:]].*/\1/p' fuzz/targets.txt)
passed=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

for name in "$@"; do
    bin=$build/fuzzers/fuzz_$name
    set --
    for d in fuzz/corpus/$name fuzz/crashers/$name; do
        [ -d "$d" ] && set -- "$@" "$d"
    done
    if [ ! -x "$bin" ]; then
        echo "FAIL $name: $bin not built"
        failed=$((failed + 1))
        continue
    fi
    [ $# -gt 0 ] || { echo "ok   $name: no corpus"; continue; }
    if "$bin" "$@" >"$log" 2>&1; then
        n=$(sed -n 's/.*: \([0-9]*\) inputs replayed$/\1/p' "$log")
        passed=$((passed + ${n:-0}))
        echo "ok   $name: ${n:-0} inputs"
        continue
    fi
    # Something failed: find every input that fails on its own.
    for f in $(find "$@" -type f ! -name '.*' | sort); do
        if "$bin" "$f" >"$log" 2>&1; then
            passed=$((passed + 1))
        else
            failed=$((failed + 1))
            echo "FAIL $name: $f"
            grep -E 'ERROR|runtime error|fuzz: |SUMMARY' "$log" | head -n 5
        fi
    done
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
