#!/bin/sh
# make demo: the main job end to end on a small model.
#   1. generate (seeded) a llama-shaped F16 base model in safetensors and a
#      PEFT LoRA adapter for it (tests/gen/merge_demo.c);
#   2. convert the adapter to .lora, show it, verify it alone and against
#      the base;
#   3. merge it into the base;
#   4. check the merged file against an independent float64 reference.
# Everything goes to BUILD/demo.
set -eu
BUILD=${1:-build}
D="$BUILD/demo"
rm -rf "$D"
mkdir -p "$D"

step() {
    echo
    echo "\$ $*"
    "$@"
}

echo "== 1. a base model and a PEFT adapter (seeded)"
step "$BUILD/merge_demo" gen "$D"

echo
echo "== 2. convert the adapter to .lora, inspect and verify it"
step "$BUILD/lora-convert" "$D/adapter" -o "$D/adapter.lora"
echo
echo "\$ $BUILD/lora-info $D/adapter.lora | head -n 14"
"$BUILD/lora-info" "$D/adapter.lora" | head -n 14
step "$BUILD/lora-verify" "$D/adapter.lora"
step "$BUILD/lora-verify" "$D/adapter.lora" --base "$D/base/model.safetensors"

echo
echo "== 3. merge: W' = W + s * B @ A, streamed, written crash-safely"
step "$BUILD/lora-merge" --base "$D/base/model.safetensors" --adapter "$D/adapter.lora" -o "$D/merged.safetensors"

echo
echo "== 4. check the merge against a float64 reference computed independently"
step "$BUILD/merge_demo" check "$D" "$D/merged.safetensors"

echo
echo "demo: OK (files in $D)"
