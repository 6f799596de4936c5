#!/bin/sh
# Command-line tests for lora-merge and lora-verify --base.
#   sh tests/cli/merge.sh BUILD_DIR
# Inputs come from BUILD_DIR/merge_demo (a small llama-shaped F16 model and a
# PEFT adapter, with its own float64 check of a merged file) and
# BUILD_DIR/lora-convert. Every check prints "ok - name" or "not ok - name";
# the last line is "merge: N passed, M failed".
set -u
if [ $# -lt 1 ] || [ ! -d "$1" ]; then
    echo "usage: sh tests/cli/merge.sh BUILD_DIR" >&2
    exit 2
fi
BUILD=$(cd "$1" && pwd)
MERGE="$BUILD/lora-merge"
VERIFY="$BUILD/lora-verify"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0
fail=0

ok() { pass=$((pass + 1)); echo "ok - $1"; }
notok() {
    fail=$((fail + 1))
    echo "not ok - $1"
    if [ -s "$T/out" ]; then sed -e 's/^/#   stdout: /' "$T/out" | head -n 8; fi
    if [ -s "$T/err" ]; then sed -e 's/^/#   stderr: /' "$T/err" | head -n 8; fi
}
check() {
    name=$1
    shift
    if "$@"; then ok "$name"; else notok "$name"; fi
}
run() {
    rc=0
    (cd "$T" && "$@") >"$T/out" 2>"$T/err" || rc=$?
}
has_out() { grep -q -e "$1" "$T/out"; }
has_err() { grep -q -e "$1" "$T/err"; }
no_out() { [ ! -s "$T/out" ]; }
no_err() { [ ! -s "$T/err" ]; }
rc_is() { [ "$rc" -eq "$1" ]; }
# only_files DIR N: DIR holds exactly N entries (no temp file left behind)
only_files() { [ "$(ls -A "$1" | wc -l | tr -d ' ')" -eq "$2" ]; }

for tool in "$MERGE" "$VERIFY" "$BUILD/lora-convert" "$BUILD/merge_demo"; do
    if [ ! -x "$tool" ]; then
        echo "not ok - $tool is not built"
        echo "merge: 0 passed, 1 failed"
        exit 1
    fi
done
"$BUILD/merge_demo" gen "$T/m" >/dev/null || { echo "not ok - merge_demo gen"; echo "merge: 0 passed, 1 failed"; exit 1; }
"$BUILD/lora-convert" -q "$T/m/adapter" -o "$T/m/adapter.lora" || { echo "not ok - lora-convert"; echo "merge: 0 passed, 1 failed"; exit 1; }
mkdir "$T/o"

# ---- merging ---------------------------------------------------------------------

run "$MERGE" --base m/base/model.safetensors --adapter m/adapter.lora -o o/merged.safetensors
check "merge: exit 0" rc_is 0
check "merge: summary line" has_out "^o/merged.safetensors: merged 14 tensors (14 modules), replaced 0, converted 0, copied 7; [0-9,]* bytes in [0-9.]* s ([0-9.]* GB/s, [0-9]* threads\{0,1\}, [a-z0-9]*)$"
check "merge: no progress bar when stderr is not a terminal" no_err
run "$BUILD/merge_demo" check m o/merged.safetensors
check "merge: equals the float64 reference rounded once" has_out "^OK$"

run "$MERGE" -q --base m/base/model.safetensors --adapter m/adapter -o o/from-peft.safetensors
check "merge: -q prints nothing" no_out
check "merge: a PEFT directory is imported on the fly" cmp -s "$T/o/merged.safetensors" "$T/o/from-peft.safetensors"

for n in 1 2 3; do
    run "$MERGE" -q --threads $n --base m/base/model.safetensors --adapter m/adapter.lora -o "o/t$n.safetensors"
    check "merge: --threads $n gives the same bytes" cmp -s "$T/o/merged.safetensors" "$T/o/t$n.safetensors"
done
for isa in ref avx2 avx512; do
    run env LORA_ISA=$isa "$MERGE" --base m/base/model.safetensors --adapter m/adapter.lora -o "o/$isa.safetensors"
    check "merge: LORA_ISA=$isa gives the same bytes" cmp -s "$T/o/merged.safetensors" "$T/o/$isa.safetensors"
done

run "$MERGE" --base m/base/model.safetensors --adapter m/adapter.lora:0.5 --adapter m/adapter:0.5 \
    -o o/halves.safetensors --dtype f32 -v
check "merge: two adapters, --dtype f32" has_out "merged 14 tensors (28 modules), replaced 0, converted 7, copied 0"
check "merge: -v prints the peak resident memory" has_err "peak resident memory [0-9.]* MiB (ru_maxrss)"

run "$MERGE" --check --base m/base/model.safetensors --adapter m/adapter.lora
check "merge --check: exit 0" rc_is 0
check "merge --check: says what a merge would do" has_out "OK: 14 modules of 1 adapter match the base (safetensors, 21 tensors): 14 to merge, 0 to replace"

# Merge, then unmerge: back to the base within a rounding or two.
run "$MERGE" -q --unmerge --base o/merged.safetensors --adapter m/adapter.lora -o o/unmerged.safetensors
check "merge --unmerge: exit 0" rc_is 0
check "merge --unmerge: same size as the base" \
    [ "$(wc -c <"$T/o/unmerged.safetensors")" -eq "$(wc -c <"$T/m/base/model.safetensors")" ]

# ---- lora-verify --base ---------------------------------------------------------------

run "$VERIFY" m/adapter.lora --base m/base/model.safetensors
check "verify --base: exit 0" rc_is 0
check "verify --base: the base line" has_out "^m/adapter.lora: OK against m/base/model.safetensors (safetensors): 14 modules match their base tensors; 14 to merge, 0 to replace$"
run "$VERIFY" m/adapter.lora
check "verify without --base: unchanged output" has_out "^m/adapter.lora: OK (14 modules, 28 blobs, [0-9,]* bytes verified)$"
check "verify without --base: one line" [ "$(wc -l <"$T/out")" -eq 1 ]
run "$VERIFY" m/adapter.lora --base m/base/model.safetensors --map-prefix model.=decoder.
check "verify --base, no match: exit 1" rc_is 1
check "verify --base, no match: names the module and the prefix" \
    has_err "lora-verify: m/adapter.lora: LORA_E_NOT_FOUND: module 'model.layers.0.mlp.down_proj' (renamed 'decoder.layers.0.mlp.down_proj'): no base tensor 'decoder.layers.0.mlp.down_proj.weight'; names differ by a prefix: 'decoder.' -> 'model.'"
run "$VERIFY" m/adapter.lora --base m/missing.safetensors
check "verify --base, missing base: exit 2, named" has_err "lora-verify: m/missing.safetensors: LORA_E_IO"
check "verify --base, missing base: exit 2" rc_is 2

# ---- errors leave no file ------------------------------------------------------------------

run "$MERGE" --base m/base/model.safetensors --adapter m/adapter.lora -o m/base/model.safetensors
check "merge over the base: exit 2" rc_is 2
check "merge over the base: LORA_E_SAME_FILE" has_err "^lora-merge: m/base/model.safetensors: LORA_E_SAME_FILE: "
check "merge over the base: base untouched, nothing left" only_files "$T/m/base" 2
run "$MERGE" --base m/base/model.safetensors --adapter m/adapter.lora -o m/adapter.lora
check "merge over the adapter: LORA_E_SAME_FILE" has_err "LORA_E_SAME_FILE"

run "$MERGE" --base m/base/model.safetensors --adapter m/adapter.lora --map-prefix model.layers.0.=model.layers.7. \
    -o o/x.safetensors
check "merge, missing tensor: exit 1" rc_is 1
check "merge, missing tensor: names the module" has_err "LORA_E_NOT_FOUND: module 'model.layers.0.mlp.down_proj'"
check "merge, missing tensor: no output" [ ! -e "$T/o/x.safetensors" ]

# A write that fails halfway (file size limit, SIGXFSZ ignored: EFBIG).
mkdir "$T/small"
rc=0
(cd "$T" && trap '' XFSZ && ulimit -f 64 && exec "$MERGE" --base m/base/model.safetensors \
    --adapter m/adapter.lora -o small/out.safetensors) >"$T/out" 2>"$T/err" || rc=$?
check "merge, write fails: exit 2" rc_is 2
check "merge, write fails: LORA_E_IO on the output" has_err "^lora-merge: small/out.safetensors: LORA_E_IO: "
check "merge, write fails: no partial file, no temp file" only_files "$T/small" 0

run "$MERGE" --base m/base/model.safetensors -o o/y.safetensors
check "usage: missing --adapter" has_err "^lora-merge: error: missing --adapter"
check "usage: exit 2" rc_is 2
run "$MERGE" --base m/base/model.safetensors --adapter m/adapter.lora -o o/y.safetensors --dtype q8_0
check "usage: bad --dtype" has_err "^lora-merge: error: --dtype must be keep, f32, f16 or bf16"
run "$MERGE" --bogus
check "usage: unknown option" has_err "^lora-merge: error: unknown option: '--bogus'"
run "$MERGE" --help
check "--help: exit 0 and the synopsis" has_out "^Usage: lora-merge --base MODEL --adapter"
check "errors left nothing in o/" [ ! -e "$T/o/y.safetensors" ]

echo "merge: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
