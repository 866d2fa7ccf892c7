#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time each (docs/fuzzing.md).
#
#   tools/fuzz.sh [SECONDS_PER_TARGET]      default 60
#
# Each target runs nice'd with a 2 GB RSS limit, growing its corpus in fuzz/corpus/<target>/;
# a crash stops that target and leaves its input in fuzz/artifacts/<target>/. Prints one line
# per target: executions, seconds, and whether it crashed. Exits non-zero if any target did.
#
# Knobs (environment):
#   FUZZ_TARGETS="yaml mapping"   only these targets, in this order
#   FUZZ_CMIN=1                   minimise each corpus after its run (cargo fuzz cmin)
#   FUZZ_ARGS="-max_len=8192"     more libFuzzer options
#
# cargo fuzz needs nightly flags: RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
# No sanitizer: the crate forbids unsafe code, and without ASan a run does about twice the
# executions; debug assertions and overflow checks stay on (cargo fuzz's default).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${1:-60}
targets=${FUZZ_TARGETS:-yaml mapping projection jsonpath verify convert}
export RUSTC_BOOTSTRAP=1
build=(-s none --codegen-units 16)
logs=artifacts/logs
mkdir -p "$logs"

nice -n 10 cargo fuzz build "${build[@]}"

status=0
summary=()
for target in $targets; do
    mkdir -p "corpus/$target"
    log="$logs/$target.log"
    rc=0
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of options
    nice -n 10 cargo fuzz run "${build[@]}" "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 \
        ${FUZZ_ARGS:-} >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    if [ "$rc" -ne 0 ]; then
        status=1
        summary+=("$(printf '%-11s %12s execs  CRASH (rc %s), see %s' "$target" "${execs:-?}" "$rc" "$log")")
    else
        summary+=("$(printf '%-11s %12s execs  %5s s  ok' "$target" "${execs:-?}" "${took:-?}")")
    fi
    if [ "${FUZZ_CMIN:-0}" = 1 ]; then
        nice -n 10 cargo fuzz cmin "${build[@]}" "$target" "corpus/$target" -- -rss_limit_mb=2048 \
            >>"$log" 2>&1 || true
    fi
done
printf '%s\n' "${summary[@]}"
exit "$status"
