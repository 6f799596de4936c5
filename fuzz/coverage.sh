#!/bin/sh
# Source coverage of the checked-in corpora: every harness built with
# clang's -fprofile-instr-generate and the replay driver (make
# fuzz-coverage), each corpus and crasher replayed, one llvm-cov report per
# library directory over all harnesses together.
#   sh fuzz/coverage.sh BUILD [NAME...]
set -eu
cd "$(dirname "$0")/.."
build=$1
shift
[ $# -gt 0 ] || set -- $(sed -n 's/^\([a-z0-9_]*\)[[:space:]].*/\1/p' fuzz/targets.txt)
prof=$build/profiles
rm -rf "$prof" && mkdir -p "$prof"
first=""
objects=""
for name in "$@"; do
    bin=$build/fuzzers/fuzz_$name
    dirs=""
    for d in fuzz/corpus/$name fuzz/crashers/$name; do [ -d "$d" ] && dirs="$dirs $d"; done
    [ -n "$dirs" ] || continue
    # shellcheck disable=SC2086
    LLVM_PROFILE_FILE="$prof/$name.profraw" "$bin" $dirs >/dev/null
    if [ -z "$first" ]; then first=$bin; else objects="$objects -object $bin"; fi
done
llvm-profdata merge -sparse "$prof"/*.profraw -o "$prof/all.profdata"
# The whole table to a file, one line of totals per directory on stdout.
# shellcheck disable=SC2086
llvm-cov report "$first" $objects -instr-profile="$prof/all.profdata" format lib | sed -e "s|$(pwd)/||" \
    >"$build/coverage.txt"
printf '%-14s %8s %8s %8s\n' directory lines missed covered
for d in format lib/read lib/write lib/io lib/ops lib/kernels lib/common; do
    grep -q "^$d/" "$build/coverage.txt" || continue # no harness links it yet
    # shellcheck disable=SC2086
    llvm-cov report "$first" $objects -instr-profile="$prof/all.profdata" "$d" 2>/dev/null |
        awk -v d="$d" '$1 == "TOTAL" { printf "%-14s %8s %8s %8s\n", d, $8, $9, $10 }'
done
echo "per file: $build/coverage.txt"
