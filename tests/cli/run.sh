#!/bin/sh
# shellcheck disable=SC2016 # check NAME eval '...' expands when the check runs, on purpose
# Command-line tests for lora-info and lora-verify.
#   sh tests/cli/run.sh BUILD_DIR            run the tests
#   sh tests/cli/run.sh BUILD_DIR --update   rewrite tests/cli/expected/* from this build
# Inputs: BUILD_DIR/make_sample (the sample adapter), BUILD_DIR/make_tricky (tests/gen/make_tricky.c)
# (built here against BUILD_DIR/liblora.a: NaN/Inf, DoRA, control characters),
# and spec/vectors/MANIFEST when present. Every check prints "ok - name" or
# "not ok - name"; the last line is "cli: N passed, M failed".
set -u
if [ $# -lt 1 ] || [ ! -d "$1" ]; then
    echo "usage: sh tests/cli/run.sh BUILD_DIR [--update]" >&2
    exit 2
fi
BUILD=$(cd "$1" && pwd)
UPDATE=${2:-}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
EXPECTED="$HERE/expected"
INFO="$BUILD/lora-info"
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
# check NAME CMD...: ok when CMD succeeds.
check() {
    name=$1
    shift
    if "$@"; then ok "$name"; else notok "$name"; fi
}
# run CMD...: stdout -> $T/out, stderr -> $T/err, status -> $rc. Always from $T,
# so file names in the output are the short relative ones.
run() {
    rc=0
    (cd "$T" && "$@") >"$T/out" 2>"$T/err" || rc=$?
}
has_out() { grep -q -e "$1" "$T/out"; }
has_err() { grep -q -e "$1" "$T/err"; }
no_out() { [ ! -s "$T/out" ]; }
no_err() { [ ! -s "$T/err" ]; }
rc_is() { [ "$rc" -eq "$1" ]; }
grouped() { python3 -c 'import sys; print(f"{int(sys.argv[1]):,}")' "$1"; }
size_of() { wc -c <"$1" | tr -d ' '; }

# compare_expected NAME FILE: $T/out must equal tests/cli/expected/FILE.
compare_expected() {
    if [ "$UPDATE" = "--update" ]; then
        mkdir -p "$EXPECTED"
        cp "$T/out" "$EXPECTED/$2"
        ok "$1 (expected/$2 rewritten)"
    elif [ ! -f "$EXPECTED/$2" ]; then
        notok "$1: expected/$2 is missing (run with --update)"
    elif cmp -s "$T/out" "$EXPECTED/$2"; then
        ok "$1"
    else
        notok "$1: differs from expected/$2"
        diff "$EXPECTED/$2" "$T/out" | head -n 20 | sed -e 's/^/#   /'
    fi
}

# ---- inputs ---------------------------------------------------------------------

for tool in "$INFO" "$VERIFY" "$BUILD/make_sample"; do
    if [ ! -x "$tool" ]; then
        echo "not ok - $tool is not built"
        echo "cli: 0 passed, 1 failed"
        exit 1
    fi
done
"$BUILD/make_sample" "$T/sample.lora" || { echo "not ok - make_sample"; echo "cli: 0 passed, 1 failed"; exit 1; }

have_tricky=0
if "$BUILD/make_tricky" "$T/tricky.lora" >"$T/err" 2>&1; then
    have_tricky=1
    ok "make_tricky writes the tricky sample"
else
    : >"$T/out"
    notok "make_tricky writes the tricky sample"
fi

mkdir "$T/orig"
cp "$T/sample.lora" "$T/orig/"
[ $have_tricky = 1 ] && cp "$T/tricky.lora" "$T/orig/"
version=$(sed -n 's/^#define LORA_VERSION_STRING "\(.*\)"/\1/p' "$ROOT/lib/lora.h")

# ---- help, version, usage errors --------------------------------------------------

for tool in lora-info lora-verify; do
    for opt in --help -h; do
        run "$BUILD/$tool" $opt
        check "$tool $opt: exit 0, usage and exit codes on stdout" \
            eval 'rc_is 0 && has_out "^Usage: $tool" && has_out "Exit status" && has_out "^  2 " && no_err'
    done
    for opt in --version -V; do
        run "$BUILD/$tool" $opt
        check "$tool $opt prints '$tool (liblora) $version'" \
            eval 'rc_is 0 && [ "$(cat "$T/out")" = "$tool (liblora) $version" ] && no_err'
    done
    run "$BUILD/$tool" --bogus sample.lora
    check "$tool --bogus: exit 2, usage on stderr" \
        eval 'rc_is 2 && no_out && has_err "unknown option .--bogus." && has_err "^Usage: $tool"'
    run "$BUILD/$tool" -Z sample.lora
    check "$tool -Z: exit 2" eval 'rc_is 2 && no_out && has_err "unknown option .-Z."'
    run "$BUILD/$tool"
    check "$tool without FILE: exit 2" eval 'rc_is 2 && no_out && has_err "missing FILE"'
    run "$BUILD/$tool" -
    check "$tool -: stdin is refused with exit 2" eval 'rc_is 2 && no_out && has_err "standard input is not supported"'
    run "$BUILD/$tool" missing.lora
    check "$tool missing.lora: exit 2, LORA_E_IO on stderr" \
        eval 'rc_is 2 && no_out && has_err "^$tool: missing.lora: LORA_E_IO: "'
    mkdir -p "$T/adir.lora"
    run "$BUILD/$tool" adir.lora
    check "$tool on a directory: exit 2, LORA_E_NOT_REGULAR_FILE" \
        eval 'rc_is 2 && has_err "^$tool: adir.lora: LORA_E_NOT_REGULAR_FILE: "'
done
run "$INFO" sample.lora sample.lora
check "lora-info with two files: exit 2" eval 'rc_is 2 && no_out && has_err "extra operand"'
run "$INFO" --json --yaml sample.lora
check "lora-info --json --yaml: exit 2" eval 'rc_is 2 && no_out && has_err "cannot be combined"'

# "--" ends options, so a file whose name starts with '-' can be named.
cp "$T/sample.lora" "$T/-x.lora"
run "$INFO" -x.lora
check "lora-info -x.lora is an unknown option" eval 'rc_is 2 && has_err "unknown option .-x."'
run "$INFO" -- -x.lora
check "lora-info -- -x.lora reads the file" eval 'rc_is 0 && has_out "^file      -x.lora  "'
run "$VERIFY" -q -- -x.lora sample.lora
check "lora-verify -q -- FILE FILE: options before --, files after" eval 'rc_is 0 && no_out && no_err'
run "$VERIFY" sample.lora --quiet
check "lora-verify FILE --quiet: options after files" eval 'rc_is 0 && no_out && no_err'

# ---- lora-info on the sample -------------------------------------------------------

run "$INFO" sample.lora
check "lora-info sample.lora: exit 0, nothing on stderr" eval 'rc_is 0 && no_err'
compare_expected "lora-info sample.lora text output" sample.info.txt
run "$INFO" --json sample.lora
check "lora-info --json: exit 0" eval 'rc_is 0 && no_err'
cp "$T/out" "$T/sample.json"
compare_expected "lora-info --json sample.lora output" sample.info.json
run "$INFO" sample.lora --yaml
check "lora-info --yaml: exit 0" eval 'rc_is 0 && no_err'
cp "$T/out" "$T/sample.yaml"
compare_expected "lora-info --yaml sample.lora output" sample.info.yaml

# The JSON against the file's own bytes (header fields read independently
# here) and against the layout rules of the format.
check_sample_json() {
    python3 - "$T/sample.json" "$T/sample.lora" <<'EOF'
import json, struct, sys
j = json.load(open(sys.argv[1]))
raw = open(sys.argv[2], "rb").read()
def need(cond, what):
    if not cond:
        print("#   failed:", what)
        sys.exit(1)
need(list(j) == ["file", "format_major", "format_minor", "file_size", "data_offset", "header_checksum",
                 "counts", "metadata", "modules", "tensors", "totals"], "top-level keys and order")
need(j["file"] == "sample.lora", "file")
need((j["format_major"], j["format_minor"]) == struct.unpack_from("<HH", raw, 8), "format version")
need(j["file_size"] == len(raw) == struct.unpack_from("<Q", raw, 24)[0], "file_size")
need(j["data_offset"] == struct.unpack_from("<Q", raw, 32)[0], "data_offset")
need(j["header_checksum"] == "%016x" % struct.unpack_from("<Q", raw, 120)[0], "header_checksum")
mc, tc = struct.unpack_from("<II", raw, 48)[0], struct.unpack_from("<I", raw, 72)[0]
need(j["counts"] == {"metadata": mc, "modules": struct.unpack_from("<I", raw, 52)[0], "tensors": tc,
                     "blobs": struct.unpack_from("<I", raw, 76)[0]}, "counts")
need(j["counts"] == {"metadata": 7, "modules": 4, "tensors": 1, "blobs": 9}, "sample counts")
meta = {m["key"]: m for m in j["metadata"]}
need(meta["lora.base_model"] == {"key": "lora.base_model", "type": "string", "length": 21,
                                 "value": "example/tiny-llama-64"}, "lora.base_model entry")
cfg = meta["lora.source.config"]["value"]
need(json.loads(cfg)["target_modules"] == ["q_proj", "v_proj"] and meta["lora.source.config"]["length"] == len(cfg),
     "lora.source.config is given in full")
need(meta["sample.seed"] == {"key": "sample.seed", "type": "int", "value": 20261129}, "sample.seed")
names = [m["name"] for m in j["modules"]]
need(names == ["model.layers.%d.self_attn.%s_proj" % (l, p) for l in (0, 1) for p in ("q", "v")], "module names")
for m in j["modules"]:
    out = 64 if m["name"].endswith("q_proj") else 32
    need(m["kind"] == "linear" and m["base_shape"] == [out, 64] and m["rank"] == 8, "module shape/rank")
    need(m["alpha"] == 16.0 and m["scale"] == 2.0 and m["scaling"] == "alpha/r" and m["flags"] == [], "alpha/scale")
    need(m["a"]["dtype"] == "F16" and m["a"]["shape"] == [8, 64] and m["b"]["shape"] == [out, 8], "A/B blobs")
    need(m["magnitude"] is None and m["bias"] is None, "no magnitude/bias")
    need(m["parameters"] == 8 * 64 + out * 8 and m["stored_bytes"] == 2 * m["parameters"], "module parameters")
t = j["tensors"][0]
need(t["name"] == "lm_head.weight" and t["blob"]["dtype"] == "BF16" and t["blob"]["shape"] == [32, 64], "tensor")
need(t["blob"]["compression"] == "zlib" and t["blob"]["raw_bytes"] == 32 * 64 * 2, "tensor compression")
blobs = sorted([m[k] for m in j["modules"] for k in ("a", "b")] + [t["blob"]], key=lambda b: b["index"])
need([b["index"] for b in blobs] == list(range(9)), "every blob appears once")
pos = j["data_offset"]
for b in blobs:
    need(b["offset"] == pos, "blob %d at its canonical offset" % b["index"])
    need(b["numel"] == b["shape"][0] * b["shape"][1], "numel")
    need(len(b["checksum"]) == 16 and int(b["checksum"], 16) == struct.unpack_from("<Q", raw, 128 + 24 * mc +
         96 * j["counts"]["modules"] + 16 * tc + 80 * b["index"] + 72)[0], "blob checksum as in the blob table")
    pos = (b["offset"] + b["stored_bytes"] + 63) // 64 * 64
need(blobs[-1]["offset"] + blobs[-1]["stored_bytes"] == j["file_size"], "last blob ends the file")
tot = j["totals"]
need(tot["parameters"] == sum(b["numel"] for b in blobs) and tot["module_parameters"] == tot["parameters"] - 2048,
     "totals parameters")
need(tot["stored_bytes"] == sum(b["stored_bytes"] for b in blobs) and tot["raw_bytes"] == sum(b["raw_bytes"] for b in blobs),
     "totals bytes")
need((tot["modules"], tot["tensors"], tot["blobs"]) == (4, 1, 9), "totals counts")
EOF
}
check "lora-info --json parses and agrees with the file's bytes" check_sample_json

# YAML must be the same structure as JSON (NaN aside: null there, .nan here).
same_yaml_json() {
    python3 - "$1" "$2" <<'EOF'
import json, math, sys
try:
    import yaml
except ImportError:
    print("#   python3 yaml module missing: checking lines only")
    text = open(sys.argv[1]).read()
    sys.exit(0 if "modules:" in text and "header_checksum: '" in text else 1)
y = yaml.safe_load(open(sys.argv[1]))
j = json.load(open(sys.argv[2]))
def norm(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items()}
    if isinstance(v, list):
        return [norm(x) for x in v]
    return v
if norm(y) != j:
    print("#   YAML and JSON differ")
    sys.exit(1)
EOF
}
check "lora-info --yaml parses to the same structure as --json" same_yaml_json "$T/sample.yaml" "$T/sample.json"

# ---- lora-verify on the sample and damaged copies ---------------------------------------

size=$(size_of "$T/sample.lora")
run "$VERIFY" sample.lora
check "lora-verify sample.lora: exit 0, OK line" \
    eval 'rc_is 0 && no_err && [ "$(cat "$T/out")" = "sample.lora: OK (4 modules, 9 blobs, $(grouped "$size") bytes verified)" ]'

blob0=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["modules"][0]["a"]["offset"])' "$T/sample.json")
cp "$T/sample.lora" "$T/corrupt.lora"
python3 - "$T/corrupt.lora" "$((blob0 + 10))" <<'EOF'
import sys
path, at = sys.argv[1], int(sys.argv[2])
data = bytearray(open(path, "rb").read())
data[at] ^= 0x01
open(path, "wb").write(data)
EOF
run "$VERIFY" corrupt.lora
check "lora-verify on a flipped blob byte: exit 1, LORA_E_BLOB_CHECKSUM with the blob offset" \
    eval 'rc_is 1 && no_out && has_err "^lora-verify: corrupt.lora: LORA_E_BLOB_CHECKSUM: .* (offset $blob0)\$"'
run "$INFO" corrupt.lora
check "lora-info on a flipped blob byte: exit 0 (blob checksums are lora-verify's job)" eval 'rc_is 0 && no_err'

head -c $((size - 100)) "$T/sample.lora" >"$T/truncated.lora"
run "$VERIFY" truncated.lora
check "lora-verify on a truncated copy: exit 1, LORA_E_TRUNCATED" \
    eval 'rc_is 1 && no_out && has_err "^lora-verify: truncated.lora: LORA_E_TRUNCATED: "'
run "$INFO" truncated.lora
check "lora-info on a truncated copy: exit 1, LORA_E_TRUNCATED" \
    eval 'rc_is 1 && no_out && has_err "^lora-info: truncated.lora: LORA_E_TRUNCATED: "'

cp "$T/sample.lora" "$T/header.lora"
python3 -c 'import sys; d = bytearray(open(sys.argv[1], "rb").read()); d[200] ^= 0x40; open(sys.argv[1], "wb").write(d)' \
    "$T/header.lora"
run "$INFO" header.lora
check "lora-info on a flipped table byte: exit 1, LORA_E_HEADER_CHECKSUM" \
    eval 'rc_is 1 && has_err "^lora-info: header.lora: LORA_E_HEADER_CHECKSUM: "'

printf 'this is not an adapter\n' >"$T/text.lora"
run "$VERIFY" text.lora
check "lora-verify on a text file: exit 1, LORA_E_BAD_MAGIC" \
    eval 'rc_is 1 && has_err "^lora-verify: text.lora: LORA_E_BAD_MAGIC: "'

run "$VERIFY" sample.lora corrupt.lora
check "lora-verify good + corrupt: exit 1, both reported" \
    eval 'rc_is 1 && has_out "^sample.lora: OK " && has_err "^lora-verify: corrupt.lora: LORA_E_BLOB_CHECKSUM"'
run "$VERIFY" corrupt.lora missing.lora sample.lora truncated.lora
check "lora-verify corrupt + missing + good + truncated: exit 2 (the maximum), all reported" \
    eval 'rc_is 2 && has_out "^sample.lora: OK " && [ $(wc -l <"$T/err") -eq 3 ] &&
          has_err "corrupt.lora: LORA_E_BLOB_CHECKSUM" && has_err "missing.lora: LORA_E_IO" &&
          has_err "truncated.lora: LORA_E_TRUNCATED"'
run "$VERIFY" -q sample.lora corrupt.lora
check "lora-verify -q: no OK line, errors still on stderr" \
    eval 'rc_is 1 && no_out && has_err "corrupt.lora: LORA_E_BLOB_CHECKSUM"'

run "$VERIFY" --json sample.lora corrupt.lora missing.lora
cp "$T/out" "$T/verify.json"
check_verify_json() {
    python3 - "$T/verify.json" "$size" "$blob0" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
size, blob0 = int(sys.argv[2]), int(sys.argv[3])
keys = ["file", "ok", "status", "detail", "offset", "modules", "blobs", "bytes", "warnings"]
def need(cond, what):
    if not cond:
        print("#   failed:", what)
        sys.exit(1)
need(isinstance(j, list) and len(j) == 3, "one object per file")
need(all(list(o) == keys for o in j), "keys and order")
need(j[0] == {"file": "sample.lora", "ok": True, "status": "LORA_OK", "detail": None, "offset": None,
              "modules": 4, "blobs": 9, "bytes": size, "warnings": []}, "valid file")
c = j[1]
need(c["file"] == "corrupt.lora" and c["ok"] is False and c["status"] == "LORA_E_BLOB_CHECKSUM", "corrupt status")
need(isinstance(c["detail"], str) and c["detail"] and c["offset"] == blob0, "corrupt detail/offset")
need(c["modules"] == 4 and c["blobs"] == 9 and c["bytes"] is None, "corrupt counts")
m = j[2]
need(m["status"] == "LORA_E_IO" and m["ok"] is False and m["modules"] is None and m["bytes"] is None, "missing file")
EOF
}
check "lora-verify --json good + corrupt + missing: exit 2, parses, fields and values" eval 'rc_is 2 && check_verify_json'

# ---- the tricky file: NaN/Inf, escaping, every kind of field ----------------------------

check_strict_json() {
    python3 - "$T/strict.json" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))[0]
w = j["warnings"]
ok = (j["ok"] is False and j["status"] == "LORA_E_NONFINITE" and isinstance(j["offset"], int) and len(w) == 2 and
      (w[0]["blob"], w[0]["owner"], w[0]["role"], w[0]["nonfinite"]) == (0, "transformer.h.0.attn.c_attn", "a", 2) and
      (w[1]["blob"], w[1]["owner"], w[1]["role"], w[1]["nonfinite"]) == (8, "lm_head.weight", "tensor", 2))
sys.exit(0 if ok else 1)
EOF
}

check_no_controls() {
    ! LC_ALL=C grep -q "$(printf '[\001-\011\013-\037\177]')" "$T/out" &&
        ! grep -q "$(printf '\342\200\256')" "$T/out"
}

check_escapes() {
    grep -F -q 'unet.conv\x1B[31mred\x07' "$T/out" &&
        grep -F -q '"abc\u202Efed"' "$T/out" &&
        grep -F -q '"say \"hi\" \\ tab\there"' "$T/out" &&
        grep -F -q "$(printf '"tricky/\303\274nic\303\266de-model"')" "$T/out"
}

check_tricky_json() {
    python3 - "$T/tricky.json" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
meta = {m["key"]: m["value"] for m in j["metadata"]}
mods = {m["name"]: m for m in j["modules"]}
conv = mods["unet.conv\x1b[31mred\x07"]
dora = mods["transformer.h.0.attn.c_attn"]
emb = mods["model.embed_tokens"]
checks = [
    meta["note.quoted"] == "say \"hi\" \\ tab\there",
    meta["note.bidi"] == "abc\u202efed",
    meta["note.empty"] == "",
    meta["lora.base_model"] == "tricky/\u00fcnic\u00f6de-model",
    meta["lora.source.config"].startswith("{\n  \"peft_type\"") and meta["lora.source.config"].endswith("}\n"),
    meta["train.steps"] == -42 and meta["train.lr"] == 0.0002 and meta["train.nan"] is None,
    meta["train.merged"] is True,
    dora["flags"] == ["fan_in_fan_out"] and dora["scaling"] == "alpha/sqrt(r)" and dora["scale"] == 4.0,
    dora["magnitude"]["dtype"] == "F32" and dora["bias"]["dtype"] == "F16" and dora["base_shape"] == [16, 48],
    conv["kind"] == "conv2d" and conv["scaling"] == "explicit" and conv["scale"] == 0.5 and conv["alpha"] == 1.0,
    conv["a"]["compression"] == "zlib" and conv["a"]["shape"] == [2, 4, 3, 3] and conv["b"]["shape"] == [8, 2, 1, 1],
    emb["kind"] == "embedding" and emb["a"]["dtype"] == "Q8_0" and emb["b"]["dtype"] == "Q4_0",
    emb["a"]["raw_bytes"] == 4 * 34 and emb["b"]["raw_bytes"] == 2 * 18,
]
for i, c in enumerate(checks):
    if not c:
        print("#   failed: check", i)
sys.exit(0 if all(checks) else 1)
EOF
}

if [ $have_tricky = 1 ]; then
    run "$VERIFY" tricky.lora
    check "lora-verify on NaN/Inf: exit 0 with two warnings naming blob and owner" \
        eval 'rc_is 0 && has_out "^tricky.lora: OK (3 modules, 9 blobs, .* bytes verified, 2 warnings)\$" &&
              [ $(wc -l <"$T/err") -eq 2 ] &&
              has_err "^lora-verify: tricky.lora: warning: blob 0 (module .transformer.h.0.attn.c_attn. A): 2 NaN/Inf values\$" &&
              has_err "^lora-verify: tricky.lora: warning: blob 8 (tensor .lm_head.weight.): 2 NaN/Inf values\$"'
    run "$VERIFY" -q tricky.lora
    check "lora-verify -q on NaN/Inf: silent, exit 0" eval 'rc_is 0 && no_out && no_err'
    run "$VERIFY" --strict tricky.lora sample.lora
    check "lora-verify --strict on NaN/Inf: exit 1, LORA_E_NONFINITE" \
        eval 'rc_is 1 && has_out "^sample.lora: OK" && [ $(wc -l <"$T/err") -eq 1 ] &&
              has_err "^lora-verify: tricky.lora: LORA_E_NONFINITE: blob 0 (module .transformer.h.0.attn.c_attn. A): 2 NaN/Inf values; 1 more blob has NaN/Inf (offset [0-9]*)\$"'
    run "$VERIFY" --strict --json tricky.lora
    cp "$T/out" "$T/strict.json"
    check "lora-verify --strict --json: status LORA_E_NONFINITE, warnings listed" eval 'rc_is 1 && check_strict_json'

    run "$INFO" tricky.lora
    check "lora-info tricky.lora: exit 0" eval 'rc_is 0 && no_err'
    check "lora-info text output holds no raw control or bidi characters" check_no_controls
    check "lora-info escapes names and strings" check_escapes
    compare_expected "lora-info tricky.lora text output" tricky.info.txt
    run "$INFO" --json tricky.lora
    cp "$T/out" "$T/tricky.json"
    check "lora-info --json tricky.lora: exact strings, NaN as null, every kind" eval 'rc_is 0 && check_tricky_json'
    run "$INFO" --yaml tricky.lora
    cp "$T/out" "$T/tricky.yaml"
    check "lora-info --yaml tricky.lora: same structure as JSON" \
        eval 'rc_is 0 && same_yaml_json "$T/tricky.yaml" "$T/tricky.json"'
fi

# ---- spec vectors ------------------------------------------------------------------------
# MANIFEST lines: path<TAB>expected<TAB>description; expected is a status name,
# or OK/LORA_OK/valid. lora-verify must report exactly that status.

vectors=${LORA_VECTORS:-$ROOT/spec/vectors}
manifest="$vectors/MANIFEST"
if [ -f "$manifest" ]; then
    tab=$(printf '\t')
    while IFS="$tab" read -r vpath vexpected vdesc; do
        case "$vpath" in '' | '#'*) continue ;; esac
        vfile="$vectors/$vpath"
        "$VERIFY" "$vfile" >"$T/out" 2>"$T/err"
        rc=$?
        case "$vexpected" in
        OK | LORA_OK | valid)
            check "vector $vpath: valid ($vdesc)" eval 'rc_is 0 && no_err' ;;
        *)
            check "vector $vpath: $vexpected ($vdesc)" \
                eval 'rc_is 1 && [ "$(sed -n "s/^lora-verify: [^:]*: \(LORA_[A-Z0-9_]*\): .*/\1/p" "$T/err")" = "$vexpected" ]' ;;
        esac
        # lora-info opens but does not hash blobs: blob-level faults pass there.
        case "$vexpected" in
        OK | LORA_OK | valid | LORA_E_BLOB_CHECKSUM | LORA_E_BAD_COMPRESSED_DATA | LORA_E_NONFINITE) want=OK ;;
        *) want=$vexpected ;;
        esac
        got=$("$INFO" "$vfile" 2>&1 >/dev/null | sed -n 's/^lora-info: [^:]*: \(LORA_[A-Z0-9_]*\): .*/\1/p')
        [ -n "$got" ] || got=OK
        [ "$got" = "$want" ] || echo "$vpath: expected $want, lora-info says $got" >>"$T/info_mismatch"
    done <"$manifest"
    : >"$T/out"
    cp "$T/info_mismatch" "$T/err" 2>/dev/null || : >"$T/err"
    check "lora-info reports the same status as the MANIFEST on every vector (blob faults aside)" no_err
fi

# ---- output errors, inputs untouched -------------------------------------------------------

if [ -w /dev/full ]; then
    rc=0
    (cd "$T" && "$INFO" sample.lora >/dev/full 2>"$T/err") || rc=$?
    : >"$T/out"
    check "lora-info > /dev/full: exit 2, write error reported" eval 'rc_is 2 && has_err "error writing"'
    rc=0
    (cd "$T" && "$VERIFY" --json sample.lora >/dev/full 2>"$T/err") || rc=$?
    check "lora-verify --json > /dev/full: exit 2" eval 'rc_is 2 && has_err "error writing"'
fi

: >"$T/out"
: >"$T/err"
check "inputs are unchanged by the tools" \
    eval 'cmp -s "$T/sample.lora" "$T/orig/sample.lora" && { [ $have_tricky = 0 ] || cmp -s "$T/tricky.lora" "$T/orig/tricky.lora"; }'

echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
