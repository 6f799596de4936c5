#!/bin/sh
# make bench: lora-merge on a TinyLlama-1.1B-shaped F16 model (2.2 GB) with a
# rank-16 adapter on q, k, v, o, gate, up, down, against a plain copy (cp) of
# the same base file. Alternating, 5 runs each, `sync` between runs and the
# base read into the page cache before each, outside the timing (both then
# start from the same cache state); medians, the ratio merge/copy (target
# <= 1.25), GB/s, peak resident memory (target <= 256 MiB), then the merge
# kernels per ISA. lora-merge fsyncs its output before renaming it (crash
# safety); cp does not, so cp + fsync is printed as well.
#   sh bench/bench_merge.sh BUILD_DIR [RUNS]
# The generated files live in BUILD_DIR/bench/merge and are deleted at the end.
set -eu
BUILD=${1:-build}
RUNS=${2:-5}
D="$BUILD/bench/merge"
rm -rf "$D"
mkdir -p "$D"
trap 'rm -rf "$D"' EXIT INT TERM

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

"$BUILD/gen_merge_model" "$D"
base="$D/base.safetensors"
bytes=$(wc -c <"$base" | tr -d ' ')
echo "machine: $(nproc) online CPUs, kernels $(LORA_ISA= "$BUILD/bench_merge_kernels" 2>/dev/null | sed -n 's/.*selected ISA \([a-z0-9]*\).*/\1/p' | head -n 1)"
echo "base: $bytes bytes; lora-merge --threads 2 vs cp, alternating, $RUNS runs each"

copies="" merges="" rss="" syncs=""
sync
for i in $(seq 1 "$RUNS"); do
    cat "$base" >/dev/null
    t0=$(now)
    cp "$base" "$D/copy.safetensors"
    t1=$(now)
    sync "$D/copy.safetensors"
    t2=$(now)
    rm -f "$D/copy.safetensors"
    sync
    cat "$base" >/dev/null
    t3=$(now)
    "$BUILD/lora-merge" -q -v --threads 2 --base "$base" --adapter "$D/adapter.lora" -o "$D/merged.safetensors" \
        2>"$D/merge.err"
    t4=$(now)
    rm -f "$D/merged.safetensors"
    sync
    c=$(elapsed "$t0" "$t1")
    s=$(elapsed "$t0" "$t2")
    m=$(elapsed "$t3" "$t4")
    r=$(sed -n 's/.*peak resident memory \([0-9.]*\) MiB (ru_maxrss), \([0-9.]*\) MiB (VmHWM).*/\1/p' "$D/merge.err")
    echo "  run $i: cp $c s (cp + fsync $s s), lora-merge $m s, peak RSS $r MiB"
    copies="$copies $c"
    syncs="$syncs $s"
    merges="$merges $m"
    rss="$rss $r"
done

mc=$(echo "$copies" | median)
ms=$(echo "$syncs" | median)
mm=$(echo "$merges" | median)
maxrss=$(echo "$rss" | tr ' ' '\n' | grep . | sort -n | tail -n 1)
awk -v c="$mc" -v s="$ms" -v m="$mm" -v b="$bytes" -v r="$maxrss" 'BEGIN {
    printf "median: cp %.3f s, lora-merge %.3f s (it includes its fsync; cp + fsync: %.3f s)\n", c, m, s
    printf "ratio merge/copy %.2f (target <= 1.25); merge/(copy + fsync) %.2f\n", m / c, m / s
    printf "merge throughput %.2f GB/s of base; peak RSS %.1f MiB (target <= 256)\n", b / m / 1e9, r
}'

echo "== per-kernel throughput (bench_merge_kernels: GB/s of base, each ISA against ref)"
"$BUILD/bench_merge_kernels"
