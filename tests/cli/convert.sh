#!/bin/sh
# Command-line tests of lora-convert on the real fixtures and on bad input.
#   sh tests/cli/convert.sh BUILD_DIR
# Fixtures come from ../shared/fixtures/real (LORA_FIXTURES_DIR overrides);
# when they are missing the fixture checks fail under CI and are skipped
# otherwise.
set -u
BUILD=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
FIX=${LORA_FIXTURES_DIR:-$ROOT/../shared/fixtures/real}
CONVERT="$BUILD/lora-convert"
VERIFY="$BUILD/lora-verify"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
ok() { echo "ok - $1"; pass=$((pass + 1)); }
notok() { echo "not ok - $1"; fail=$((fail + 1)); }
check() { # check NAME COMMAND...: the command must succeed
    name=$1; shift
    if "$@" >"$T/out" 2>"$T/err"; then ok "$name"; else notok "$name"; sed 's/^/    /' "$T/err" | head -5; fi
}
expect() { # expect NAME RC PATTERN COMMAND...: exit code RC and PATTERN on stderr
    name=$1 want=$2 pattern=$3; shift 3
    "$@" >"$T/out" 2>"$T/err"
    rc=$?
    if [ "$rc" -eq "$want" ] && grep -q -- "$pattern" "$T/err"; then ok "$name"; else
        notok "$name (exit $rc, want $want and '$pattern')"; sed 's/^/    /' "$T/err" | head -5; fi
}

# ---- usage ---------------------------------------------------------------------
expect "no arguments: exit 2" 2 "missing INPUT" "$CONVERT"
expect "no -o: exit 2" 2 "missing -o" "$CONVERT" x.lora
expect "unknown option: exit 2" 2 "unknown option" "$CONVERT" --bogus x -o y
expect "unknown --to: exit 2" 2 "unknown format" "$CONVERT" x -o y --to onnx
expect "bad --dtype: exit 2" 2 "dtype" "$CONVERT" x -o y --dtype q8_0
expect "missing input: exit 2" 2 "LORA_E_IO" "$CONVERT" "$T/none" -o "$T/x.lora"
check "--help exits 0" "$CONVERT" --help
check "--version exits 0" "$CONVERT" --version

# ---- bad input -----------------------------------------------------------------
printf 'version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize 123\n' \
    0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef >"$T/lfs.safetensors"
expect "Git LFS pointer: exit 1, named" 1 "LORA_E_LFS_POINTER" "$CONVERT" "$T/lfs.safetensors" -o "$T/lfs.lora"
printf 'hello, not an adapter\n' >"$T/text.bin"
expect "unknown format: exit 1" 1 "LORA_E_UNKNOWN_FORMAT" "$CONVERT" "$T/text.bin" -o "$T/text.lora"
"$BUILD/make_sample" "$T/sample.lora" >/dev/null 2>&1 || notok "make_sample"
head -c 5000 "$T/sample.lora" >"$T/cut.lora"
expect "truncated .lora: exit 1" 1 "LORA_E_TRUNCATED" "$CONVERT" "$T/cut.lora" -o "$T/cut2.lora"
cp "$T/sample.lora" "$T/before.lora"
expect "output over the input: exit 2" 2 "LORA_E_SAME_FILE" "$CONVERT" "$T/sample.lora" -o "$T/sample.lora"
if cmp -s "$T/sample.lora" "$T/before.lora"; then ok "the input is unchanged after a refused overwrite"; else
    notok "the input is unchanged after a refused overwrite"; fi
check ".lora -> .lora with --dtype f32" "$CONVERT" "$T/sample.lora" -o "$T/sample32.lora" --dtype f32
check "lora-verify accepts the f32 copy" "$VERIFY" -q "$T/sample32.lora"
if [ -z "$(find "$T" -name '.*.tmp')" ]; then ok "no temporary file left behind"; else notok "no temporary file left behind"; fi

# ---- real fixtures -------------------------------------------------------------
if [ ! -d "$FIX" ]; then
    if [ -n "${CI:-}" ]; then notok "fixtures directory $FIX is missing"; else echo "skip - no fixtures at $FIX"; fi
    echo "convert: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit
fi
for d in peft-gemma3-gqa peft-gpt2-tigrinya peft-opencalm-f16-r1 peft-sd-unet mlx-llama3-discollama mlx-qwen2.5; do
    check "$d converts to .lora" "$CONVERT" -q "$FIX/$d" -o "$T/$d.lora"
    check "$d.lora passes lora-verify" "$VERIFY" -q "$T/$d.lora"
done
check "diffusers-sd-unet converts to .lora" "$CONVERT" -q "$FIX/diffusers-sd-unet/pytorch_lora_weights.safetensors" \
    -o "$T/diffusers.lora"
check "diffusers.lora passes lora-verify" "$VERIFY" -q "$T/diffusers.lora"

# PEFT -> .lora -> PEFT reproduces both files byte for byte.
for d in peft-gemma3-gqa peft-gpt2-tigrinya peft-opencalm-f16-r1 peft-sd-unet; do
    check "$d: .lora -> PEFT" "$CONVERT" -q "$T/$d.lora" -o "$T/$d-out/"
    if cmp -s "$FIX/$d/adapter_model.safetensors" "$T/$d-out/adapter_model.safetensors" &&
       cmp -s "$FIX/$d/adapter_config.json" "$T/$d-out/adapter_config.json"; then
        ok "$d: PEFT round trip is byte-identical"
    else
        notok "$d: PEFT round trip is byte-identical"
    fi
done

# MLX -> .lora -> MLX, and kohya both ways.
check "mlx-qwen2.5: .lora -> MLX" "$CONVERT" -q "$T/mlx-qwen2.5.lora" -o "$T/mlx-out" --to mlx
# MLX writes unaligned headers in its own key order; the reference layout we
# write differs in framing, so compare tensor by tensor.
if python3 - "$FIX/mlx-qwen2.5/adapters.safetensors" "$T/mlx-out/adapters.safetensors" <<'PY'
import json, struct, sys
def tensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]) for k, v in h.items()}
sys.exit(0 if tensors(sys.argv[1]) == tensors(sys.argv[2]) else 1)
PY
then ok "mlx-qwen2.5: every MLX tensor round trips bit for bit"; else notok "mlx-qwen2.5: every MLX tensor round trips bit for bit"; fi
check "peft-sd-unet: .lora -> kohya" "$CONVERT" -q "$T/peft-sd-unet.lora" -o "$T/sd-kohya.safetensors" --to kohya
check "kohya -> .lora (detected)" "$CONVERT" -q "$T/sd-kohya.safetensors" -o "$T/sd-kohya.lora"
check "kohya .lora passes lora-verify" "$VERIFY" -q "$T/sd-kohya.lora"

# GGUF: export, import back, same module count.
check "gemma3: .lora -> GGUF" "$CONVERT" -q "$T/peft-gemma3-gqa.lora" -o "$T/gemma3.gguf" --arch gemma3
check "gemma3: GGUF -> .lora" "$CONVERT" -q "$T/gemma3.gguf" -o "$T/gemma3-back.lora"
n1=$("$BUILD/lora-info" --json "$T/peft-gemma3-gqa.lora" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["modules"]))')
n2=$("$BUILD/lora-info" --json "$T/gemma3-back.lora" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["modules"]))')
if [ -n "$n1" ] && [ "$n1" = "$n2" ]; then ok "gemma3: GGUF round trip keeps $n1 modules"; else
    notok "gemma3: GGUF round trip keeps the modules ($n1 vs $n2)"; fi
expect "llama-family q/k to GGUF needs head counts: exit 2" 2 "base-config" \
    "$CONVERT" "$T/mlx-llama3-discollama.lora" -o "$T/llama3.gguf" --arch llama
printf '{"model_type": "llama", "num_attention_heads": 32, "num_key_value_heads": 8, "hidden_size": 4096}\n' \
    >"$T/llama3-config.json"
check "llama3 to GGUF with --base-config" "$CONVERT" -q "$T/mlx-llama3-discollama.lora" -o "$T/llama3.gguf" \
    --base-config "$T/llama3-config.json"
expect "a GGUF base model is not an adapter: exit 1" 1 "LORA_E_UNKNOWN_FORMAT" \
    "$CONVERT" "$FIX/gguf-llama2-tiny-random/llama-2-tiny-random.gguf" -o "$T/base.lora"

# What GGUF cannot hold is refused, or dropped with a warning per tensor.
"$BUILD/make_tricky" "$T/tricky.lora" >/dev/null 2>&1
expect "DoRA/bias/tensors to GGUF: refused (exit 1)" 1 "LORA_E_UNSUPPORTED_ADAPTER" \
    "$CONVERT" "$T/tricky.lora" -o "$T/tricky.gguf" --arch gpt2
if [ ! -e "$T/tricky.gguf" ]; then ok "no output after a refusal"; else notok "no output after a refusal"; fi

# A PEFT config flag that changes the math and is not implemented.
mkdir -p "$T/qalora"
cp "$FIX/peft-gemma3-gqa/adapter_model.safetensors" "$T/qalora/"
python3 - "$FIX/peft-gemma3-gqa/adapter_config.json" "$T/qalora/adapter_config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["use_qalora"] = True
json.dump(c, open(sys.argv[2], "w"))
PY
expect "use_qalora is refused: exit 1" 1 "use_qalora" "$CONVERT" "$T/qalora" -o "$T/qalora.lora"
# A truncated safetensors file.
mkdir -p "$T/cut"
head -c 100000 "$FIX/peft-gemma3-gqa/adapter_model.safetensors" >"$T/cut/adapter_model.safetensors"
cp "$FIX/peft-gemma3-gqa/adapter_config.json" "$T/cut/"
expect "truncated safetensors: exit 1" 1 "LORA_E_TRUNCATED" "$CONVERT" "$T/cut" -o "$T/cut.lora"

echo "convert: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
