#!/usr/bin/env bash
# Hot reload benchmark: builds the release binary and examples/reloadbench.rs, then runs it
# (save -> serving latency over 50 edits; the throughput dip under load). Bounded to about
# two minutes once built. Figures and how to read them: docs/performance.md, "Hot reload".
#
#   tools/reload-bench.sh            # the last line of the output is one JSON object
#   RELOADBENCH_LOG=1 CROSSDOCK_LOG=debug tools/reload-bench.sh   # with the engine's log
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bin crossdock --example reloadbench
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
target_dir=${target_dir:-target}

export CROSSDOCK_BIN=${CROSSDOCK_BIN:-$target_dir/release/crossdock}
# The example kills the engine on every exit; the timeout bounds a hang.
exec timeout --kill-after=10s 150s "$target_dir/release/examples/reloadbench" "$@"
