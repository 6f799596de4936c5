#!/bin/sh
# libFuzzer runs over the harnesses listed in fuzz/targets.txt.
#   sh fuzz/fuzz.sh run   BUILD SECONDS NAME...   fuzz each NAME for SECONDS
#   sh fuzz/fuzz.sh merge BUILD 0 NAME...         minimise fuzz/corpus/NAME
# run: the working corpus is BUILD/corpus/NAME (new inputs go there; the
# checked-in fuzz/corpus/NAME and fuzz/crashers/NAME and the generated
# BUILD/seeds/NAME (make fuzz-seeds) are read-only seeds; FUZZ_EXTRA_SEEDS
# may name more seed directories, e.g. the real fixtures),
# crashes go to BUILD/artifacts/NAME/, the log to BUILD/logs/NAME.log.
# One summary line per harness: executions, cov, ft, corpus size. Exits 1
# if any harness found a crash, leak, timeout or OOM.
# merge: fuzz/corpus/NAME is replaced by the -merge=1 -use_counters=0
# minimisation of itself,
# BUILD/seeds/NAME and BUILD/corpus/NAME (run without FUZZ_EXTRA_SEEDS if
# those must not end up in the repository).
set -u
cd "$(dirname "$0")/.."
mode=$1 build=$2 secs=$3
shift 3
status=0

max_len() { awk -v n="$1" '$1 == n { print $2 }' fuzz/targets.txt; }

seed_dirs() {
    for d in fuzz/corpus/$1 fuzz/crashers/$1 "$build/seeds/$1" ${FUZZ_EXTRA_SEEDS:-}; do
        [ -d "$d" ] && printf '%s\n' "$d"
    done
}

run_one() {
    name=$1 bin=$build/fuzzers/fuzz_$1
    mkdir -p "$build/corpus/$name" "$build/artifacts/$name" "$build/logs"
    dict=""
    [ -f "fuzz/dict/$name.dict" ] && dict="-dict=fuzz/dict/$name.dict"
    log=$build/logs/$name.log
    # shellcheck disable=SC2046,SC2086  # word splitting of the seed list is intended
    "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -max_len="$(max_len "$name")" \
        -print_final_stats=1 -artifact_prefix="$build/artifacts/$name/" $dict \
        "$build/corpus/$name" $(seed_dirs "$name") >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    last=$(grep -E '^#[0-9]+' "$log" | grep 'cov:' | tail -n 1)
    cov=$(printf '%s' "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
    ft=$(printf '%s' "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
    corp=$(printf '%s' "$last" | sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p')
    if [ "$rc" -eq 0 ]; then
        printf '%-12s ok     execs %-10s cov %-6s ft %-7s corpus %s\n' "$name" "${execs:-?}" "${cov:-?}" \
            "${ft:-?}" "${corp:-?}"
    else
        printf '%-12s FAILED (exit %s), see %s and %s\n' "$name" "$rc" "$log" "$build/artifacts/$name/"
        grep -E 'ERROR|runtime error|fuzz: |SUMMARY|Test unit written' "$log" | head -n 10
        status=1
    fi
}

merge_one() {
    name=$1 bin=$build/fuzzers/fuzz_$1
    new=$build/merged/$name
    rm -rf "$new" && mkdir -p "$new"
    set -- "$new"
    for d in "fuzz/corpus/$name" "$build/seeds/$name" "$build/corpus/$name"; do
        [ -d "$d" ] && set -- "$@" "$d"
    done
    # Edges only (-use_counters=0): the checked-in corpus stays a few hundred
    # KB for all harnesses; hit-count diversity regrows within seconds of
    # fuzzing from it.
    if "$bin" -merge=1 -use_counters=0 -max_len="$(max_len "$name")" "$@" >"$build/logs/$name.merge.log" 2>&1; then
        rm -rf "fuzz/corpus/$name" && mkdir -p "fuzz/corpus/$name" && cp "$new"/* "fuzz/corpus/$name"/ 2>/dev/null
        printf '%-12s merged: %s files, %s bytes\n' "$name" "$(ls "fuzz/corpus/$name" | wc -l)" \
            "$(cat "fuzz/corpus/$name"/* 2>/dev/null | wc -c)"
    else
        echo "$name: merge failed, see $build/logs/$name.merge.log"
        status=1
    fi
}

for name in "$@"; do
    if [ ! -x "$build/fuzzers/fuzz_$name" ]; then
        echo "$name: $build/fuzzers/fuzz_$name is not built" >&2
        status=1
        continue
    fi
    case $mode in
    run) run_one "$name" ;;
    merge) mkdir -p "$build/logs"; merge_one "$name" ;;
    *) echo "usage: fuzz.sh run|merge BUILD SECONDS NAME..." >&2; exit 2 ;;
    esac
done
exit $status
