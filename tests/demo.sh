#!/bin/sh
# make demo: write the sample adapter, then show and verify it.
set -eu
BUILD=${1:-build}
out="$BUILD/sample.lora"
echo "\$ make_sample $out"
"$BUILD/make_sample" "$out"
echo "\$ lora-info $out"
"$BUILD/lora-info" "$out"
echo
echo "\$ lora-verify $out"
"$BUILD/lora-verify" "$out"
