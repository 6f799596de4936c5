#!/bin/sh
# Command-line tests of lora-quantize and lora-prune.
#   sh tests/cli/quant_prune.sh BUILD_DIR
# Inputs: BUILD_DIR/make_sample (an F16 adapter, 4 modules of rank 8) and
# spec/vectors (DoRA, quantized and invalid files). Prints "ok"/"not ok" per
# check and "quantprune: N passed, M failed" last.
set -u
BUILD=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VEC="$ROOT/spec/vectors"
Q="$BUILD/lora-quantize"
P="$BUILD/lora-prune"
VERIFY="$BUILD/lora-verify"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
ok() { echo "ok - $1"; pass=$((pass + 1)); }
notok() { echo "not ok - $1"; fail=$((fail + 1)); }
check() { # check NAME COMMAND...: the command must succeed
    name=$1; shift
    if "$@" >"$T/out" 2>"$T/err"; then ok "$name"; else notok "$name (exit $?)"; sed 's/^/    /' "$T/err" | head -5; fi
}
expect() { # expect NAME RC PATTERN COMMAND...: exit code RC and PATTERN on stderr
    name=$1 want=$2 pattern=$3; shift 3
    "$@" >"$T/out" 2>"$T/err"
    rc=$?
    if [ "$rc" -eq "$want" ] && grep -q -- "$pattern" "$T/err"; then ok "$name"; else
        notok "$name (exit $rc, want $want and '$pattern')"; sed 's/^/    /' "$T/err" | head -5; fi
}
# json FILE PYTHON-EXPR: the file parses as JSON and EXPR (over `d`) is true.
json() {
    python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2"
}
finish() {
    echo "quantprune: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit $?
}

for tool in "$Q" "$P" "$VERIFY" "$BUILD/make_sample"; do
    if [ ! -x "$tool" ]; then notok "$tool is not built"; finish; fi
done
"$BUILD/make_sample" "$T/s.lora" >/dev/null 2>&1 || { notok "make_sample"; finish; }
cp "$T/s.lora" "$T/orig.lora"

# ---- usage: exit 2 with the synopsis ---------------------------------------------
expect "quantize: no arguments" 2 "missing IN" "$Q"
expect "quantize: no -o" 2 "missing -o" "$Q" "$T/s.lora" --type q8_0
expect "quantize: no --type" 2 "missing --type" "$Q" "$T/s.lora" -o "$T/x.lora"
expect "quantize: unknown type" 2 "--type must be" "$Q" "$T/s.lora" -o "$T/x.lora" --type q5_1
expect "quantize: --type without a value" 2 "--type must be" "$Q" "$T/s.lora" -o "$T/x.lora" --type
expect "quantize: block not a power of two" 2 "power of two" "$Q" "$T/s.lora" -o "$T/x.lora" --type nf4 --block 48
expect "quantize: block 8192" 2 "power of two" "$Q" "$T/s.lora" -o "$T/x.lora" --type nf4 --block 8192
expect "quantize: block 16" 2 "power of two" "$Q" "$T/s.lora" -o "$T/x.lora" --type nf4 --block=16
expect "quantize: block not a number" 2 "power of two" "$Q" "$T/s.lora" -o "$T/x.lora" --type nf4 --block 6x4
expect "quantize: --block with q8_0" 2 "nf4 only" "$Q" "$T/s.lora" -o "$T/x.lora" --type q8_0 --block 64
expect "quantize: --only C" 2 "--only must be A or B" "$Q" "$T/s.lora" -o "$T/x.lora" --type f16 --only C
expect "quantize: unknown option" 2 "unknown option" "$Q" "$T/s.lora" -o "$T/x.lora" --type f16 --fast
expect "quantize: two inputs" 2 "more than one input" "$Q" "$T/s.lora" "$T/s.lora" -o "$T/x.lora" --type f16
expect "quantize: usage names the synopsis" 2 "Usage: lora-quantize IN -o OUT" "$Q" --bogus
expect "prune: no mode" 2 "one of --rank, --energy or --budget" "$P" "$T/s.lora" -o "$T/x.lora"
expect "prune: two modes" 2 "only one of" "$P" "$T/s.lora" -o "$T/x.lora" --rank 2 --energy 0.5
expect "prune: --rank 0" 2 "--rank must be" "$P" "$T/s.lora" -o "$T/x.lora" --rank 0
expect "prune: --rank -1" 2 "--rank must be" "$P" "$T/s.lora" -o "$T/x.lora" --rank -1
expect "prune: --energy 0" 2 "--energy must be" "$P" "$T/s.lora" -o "$T/x.lora" --energy 0
expect "prune: --energy 1.5" 2 "--energy must be" "$P" "$T/s.lora" -o "$T/x.lora" --energy 1.5
expect "prune: --energy nan" 2 "--energy must be" "$P" "$T/s.lora" -o "$T/x.lora" --energy nan
expect "prune: --energy abc" 2 "--energy must be" "$P" "$T/s.lora" -o "$T/x.lora" --energy abc
expect "prune: --budget 0" 2 "--budget must be" "$P" "$T/s.lora" -o "$T/x.lora" --budget 0
expect "prune: unknown --dtype" 2 "--dtype must be" "$P" "$T/s.lora" -o "$T/x.lora" --rank 2 --dtype f8
expect "prune: no -o without --dry-run" 2 "missing -o" "$P" "$T/s.lora" --rank 2
expect "prune: --block without nf4" 2 "nf4 only" "$P" "$T/s.lora" -o "$T/x.lora" --rank 2 --block 64
if [ ! -e "$T/x.lora" ]; then ok "no output after usage errors"; else notok "no output after usage errors"; fi
check "quantize --help exits 0" "$Q" --help
if grep -q "^Usage: lora-quantize" "$T/out"; then ok "quantize --help prints the usage"; else notok "quantize --help prints the usage"; fi
check "prune --help exits 0" "$P" --help
check "prune --version exits 0" "$P" --version

# ---- errors about files ----------------------------------------------------------------
expect "quantize: missing input: exit 2" 2 "LORA_E_IO" "$Q" "$T/none.lora" -o "$T/x.lora" --type f16
expect "quantize: over the input: exit 2" 2 "LORA_E_SAME_FILE" "$Q" "$T/s.lora" -o "$T/s.lora" --type q8_0
expect "prune: over the input: exit 2" 2 "LORA_E_SAME_FILE" "$P" "$T/s.lora" -o "$T/s.lora" --rank 2
expect "quantize: invalid file: exit 1" 1 "LORA_E_BAD_SHAPE" "$Q" "$VEC/invalid/nf4_block_shift_0.lora" -o "$T/x.lora" --type f16
expect "prune: corrupt blob: exit 1" 1 "LORA_E_BLOB_CHECKSUM" "$P" "$VEC/invalid/blob_data_flip.lora" -o "$T/x.lora" --rank 1
expect "prune: DoRA refused: exit 1" 1 "LORA_E_UNSUPPORTED_ADAPTER" "$P" "$VEC/valid/kinds.lora" -o "$T/x.lora" --rank 1
expect "prune --allow-dora: warning on stderr" 0 "warning: module" "$P" "$VEC/valid/kinds.lora" -o "$T/k1.lora" --rank 1 --allow-dora
check "the DoRA output verifies" "$VERIFY" -q "$T/k1.lora"

# ---- good runs ---------------------------------------------------------------------
check "quantize q8_0" "$Q" "$T/s.lora" -o "$T/q8.lora" --type q8_0
if grep -q "largest relative error" "$T/out" && grep -q "F16->Q8_0" "$T/out"; then ok "quantize prints the report"; else
    notok "quantize prints the report"; fi
check "lora-verify accepts the Q8_0 file" "$VERIFY" -q "$T/q8.lora"
check "quantize nf4 --block 128 --json" "$Q" "$T/s.lora" -o "$T/nf4.lora" --type nf4 --block 128 --json
cp "$T/out" "$T/nf4.json"
if json "$T/nf4.json" 'd["dtype"] == "NF4" and d["block"] == 128 and len(d["modules"]) == 4 and all(m["b"]["block"] == 128 and m["rel_error"] < 0.2 for m in d["modules"]) and d["file_size_out"] < d["file_size_in"]'; then
    ok "quantize --json parses, NF4 blocks of 128"; else notok "quantize --json parses, NF4 blocks of 128"; fi
check "quantize --json q8_0" "$Q" "$T/s.lora" -o "$T/q8b.lora" --type q8_0 --json
if json "$T/out" 'd["max_rel_error"] < 0.01 and all(m["a"]["action"] == "converted" for m in d["modules"])'; then
    ok "Q8_0 error under 1% in the JSON report"; else notok "Q8_0 error under 1% in the JSON report"; fi
check "quantize --only A -q" "$Q" "$T/s.lora" -o "$T/onlya.lora" --type bf16 --only A -q
if [ ! -s "$T/out" ]; then ok "-q prints nothing"; else notok "-q prints nothing"; fi
check "quantize a quantized input (NF4 -> Q4_0)" "$Q" "$T/nf4.lora" -o "$T/q4.lora" --type q4_0
check "quantize the spec's quantized vector to f32" "$Q" "$VEC/valid/quantized.lora" -o "$T/vq.lora" --type f32 --json
if json "$T/out" 'd["max_rel_error"] == 0.0'; then ok "dequantizing to F32 is exact"; else notok "dequantizing to F32 is exact"; fi

check "prune --rank 4" "$P" "$T/s.lora" -o "$T/r4.lora" --rank 4
check "lora-verify accepts the pruned file" "$VERIFY" -q "$T/r4.lora"
check "prune --rank 4 --json" "$P" "$T/s.lora" -o "$T/r4b.lora" --rank 4 --json
if json "$T/out" 'd["rank_in"] == 32 and d["rank_out"] == 16 and all(m["new_rank"] == 4 and 0 < m["rel_error"] < 1 for m in d["modules"])'; then
    ok "prune --json parses, ranks 32 -> 16"; else notok "prune --json parses, ranks 32 -> 16"; fi
check "prune --budget 10 --json" "$P" "$T/s.lora" -o "$T/b10.lora" --budget 10 --json
if json "$T/out" 'd["rank_out"] <= 10 and sum(m["new_rank"] for m in d["modules"]) <= 10'; then
    ok "--budget never keeps more than N"; else notok "--budget never keeps more than N"; fi
check "prune --energy 1.0 --refactor --dtype f32" "$P" "$T/s.lora" -o "$T/e1.lora" --energy 1.0 --refactor --dtype f32 --json
if json "$T/out" 'all(m["rewritten"] and m["energy_kept"] == 1.0 for m in d["modules"])'; then
    ok "--energy 1.0 keeps all the energy"; else notok "--energy 1.0 keeps all the energy"; fi
check "prune a quantized input (Q8_0)" "$P" "$T/q8.lora" -o "$T/q8r.lora" --energy 0.9 --dtype nf4 --block 32
check "lora-verify accepts it" "$VERIFY" -q "$T/q8r.lora"

# ---- dry run ----------------------------------------------------------------------
check "prune --dry-run with -o" "$P" "$T/s.lora" -o "$T/dry.lora" --energy 0.8 --dry-run
if [ ! -e "$T/dry.lora" ]; then ok "--dry-run writes nothing"; else notok "--dry-run writes nothing"; fi
if grep -q "dry run" "$T/out"; then ok "--dry-run says so"; else notok "--dry-run says so"; fi
check "prune --dry-run --json without -o" "$P" "$T/s.lora" --budget 7 --dry-run --json
if json "$T/out" 'd["dry_run"] is True and d["output"] is None and d["file_size_out"] is None and d["rank_out"] <= 7'; then
    ok "--dry-run --json parses"; else notok "--dry-run --json parses"; fi
if [ -z "$(find "$T" -name '.*.tmp')" ]; then ok "no temporary file left behind"; else notok "no temporary file left behind"; fi

# ---- the input never changes -------------------------------------------------------
if cmp -s "$T/s.lora" "$T/orig.lora"; then ok "the input is unchanged"; else notok "the input is unchanged"; fi
finish
