#!/bin/sh
# AFL++ over one harness built by `make fuzz-afl` (afl-clang-fast with
# -fsanitize=fuzzer links AFL++'s libAFLDriver, which calls the same
# LLVMFuzzerTestOneInput in persistent mode).
#   sh fuzz/afl.sh BUILD NAME [SECONDS]      (SECONDS 0 or absent: until ^C)
# Seeds: fuzz/corpus/NAME; dictionary fuzz/dict/NAME.dict; findings under
# BUILD/afl/NAME/default/{crashes,hangs,queue}.
set -eu
cd "$(dirname "$0")/.."
build=$1 name=$2 secs=${3:-0}
bin=$build/fuzzers/fuzz_$name
command -v afl-fuzz >/dev/null || { echo "afl.sh: afl-fuzz not found (apt-get install afl++)" >&2; exit 2; }
out=$build/afl/$name
mkdir -p "$out"
set -- -i "fuzz/corpus/$name" -o "$out" -m none -t 10000
[ -f "fuzz/dict/$name.dict" ] && set -- "$@" -x "fuzz/dict/$name.dict"
[ "$secs" -gt 0 ] && set -- "$@" -V "$secs"
# No core-pattern or CPU-governor tuning from here: that is the machine
# owner's call (afl-system-config); these let AFL++ run without it.
AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 \
    afl-fuzz "$@" -- "$bin" >"$out/afl.log" 2>&1 || { tail -n 20 "$out/afl.log"; exit 1; }
afl_stat() { sed -n "s/^$1 *: *//p" "$out/default/fuzzer_stats"; }
crashes=$(find "$out/default/crashes" -type f ! -name README.txt 2>/dev/null | wc -l)
echo "afl: $name: execs $(afl_stat execs_done), corpus $(afl_stat corpus_count), map $(afl_stat bitmap_cvg)," \
    "$crashes crashes, $(afl_stat saved_hangs) hangs (in $out/default, log $out/afl.log)"
[ "$crashes" -eq 0 ]
