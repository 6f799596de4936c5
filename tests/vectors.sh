#!/bin/sh
# The spec's test vectors (spec/vectors, Appendix B of spec/lora-format.md).
#   sh tests/vectors.sh BUILD_DIR
# 1. Every MANIFEST line through BUILD_DIR/lora-verify: exit 0 for OK, exit 1
#    and the expected LORA_E_* name on stderr otherwise. A signal (exit >= 128)
#    is always a failure.
# 2. Every valid vector under 4 KiB through BUILD_DIR/flip_check: each single-
#    bit flip and each truncation must be rejected. That is ~10^5 cases, so it
#    runs in-process rather than one lora-verify per case.
# Ends with "vectors: N passed, M failed"; exits non-zero on any failure.
set -u
BUILD=${1:-build}
DIR=spec/vectors
VERIFY=$BUILD/lora-verify
FLIP=$BUILD/flip_check
passed=0
failed=0
err=$(mktemp)
trap 'rm -f "$err"' EXIT

fail() {
    failed=$((failed + 1))
    echo "FAIL $*"
}

for tool in "$VERIFY" "$FLIP"; do
    if [ ! -x "$tool" ]; then
        echo "vectors: $tool is not built (make BUILD=$BUILD tools tests)"
        echo "vectors: 0 passed, 1 failed"
        exit 1
    fi
done
if [ ! -f "$DIR/MANIFEST" ]; then
    echo "vectors: $DIR/MANIFEST missing (make vectors)"
    echo "vectors: 0 passed, 1 failed"
    exit 1
fi

tab=$(printf '\t')
while IFS="$tab" read -r path expected desc; do
    [ -n "$path" ] || continue
    "$VERIFY" "$DIR/$path" >/dev/null 2>"$err"
    rc=$?
    if [ "$rc" -ge 128 ]; then
        fail "$path: lora-verify died with exit $rc ($desc)"
        continue
    fi
    if [ "$expected" = OK ]; then
        if [ "$rc" -eq 0 ]; then
            passed=$((passed + 1))
        else
            fail "$path: expected OK, got exit $rc: $(head -n 1 "$err")"
        fi
        continue
    fi
    # lora-verify: FILE: LORA_E_NAME: detail
    got=$(sed -n 's/^lora-verify: .*: \(LORA_E_[A-Z0-9_]*\): .*/\1/p' "$err" | head -n 1)
    if [ "$rc" -eq 1 ] && [ "$got" = "$expected" ]; then
        passed=$((passed + 1))
    else
        fail "$path: expected $expected, got exit $rc ${got:-(no status)} ($desc): $(head -n 1 "$err")"
    fi
done <"$DIR/MANIFEST"

small=""
for f in "$DIR"/valid/*.lora; do
    [ -f "$f" ] || continue
    size=$(wc -c <"$f")
    [ "$size" -lt 4096 ] && small="$small $f"
done
if [ -z "$small" ]; then
    fail "no valid vector under 4 KiB to flip"
else
    # shellcheck disable=SC2086 # word splitting of the file list is intended
    "$FLIP" $small >"$err" 2>&1
    rc=$?
    cat "$err"
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + $(grep -c ' 0 accepted$' "$err")))
    else
        fail "flip_check exit $rc (a flip or truncation was accepted, or it crashed)"
    fi
fi

echo "vectors: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
