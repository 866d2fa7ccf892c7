#!/usr/bin/env bash
# Instructions per webhook through `crossdock run`, independent of the machine's load
# (docs/performance.md, "Where an event's instructions go").
#
#   tools/callgrind-run.sh [RATE] [SECONDS]     e.g. tools/callgrind-run.sh 100 20 (the defaults)
#
# Builds the release binary and examples/loadgen.rs, writes the project of tools/project.sh
# (a webhook verified with Standard Webhooks, a `set` step, a `send` to a local upstream over
# HTTP), runs `crossdock run` under `valgrind --tool=callgrind`, posts signed webhooks at RATE
# for SECONDS (valgrind runs the engine about 50 times slower: keep the rate low), waits until
# the inbox is empty, stops the engine with SIGTERM and prints the instruction total, the
# events, and the top functions by inclusive count. Run it once with RATE 0 for the cost of
# starting and stopping alone, and take that from the total before dividing by the events.
#
# Knobs: CG_PORT=18922 CG_UPSTREAM_PORT=18921, CG_OUT=target/callgrind (kept: the raw profile
# for callgrind_annotate), CG_BIN (a crossdock binary to profile instead of the release build),
# CG_SERVER (more `server:` settings, e.g. ", keep_trails: 0s": no trail explanation),
# CG_KEYS (the pipeline's correlation keys, e.g. "order: \$.data.id"). Bounded: the build,
# SECONDS, the drain (at most 60 s), the shutdown.
set -euo pipefail
cd "$(dirname "$0")/.."

rate=${1:-100}
secs=${2:-20}
port=${CG_PORT:-18922}
up_port=${CG_UPSTREAM_PORT:-18921}
out=${CG_OUT:-target/callgrind}

command -v valgrind >/dev/null || { echo "callgrind-run: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
# With CG_BIN, the binary given is profiled as it is: only the load generator is built.
if [[ -n ${CG_BIN:-} ]]; then
  [[ -x target/release/examples/loadgen ]] || cargo build --release --quiet --example loadgen
else
  cargo build --release --quiet --bin crossdock --example loadgen
fi
bin=${CG_BIN:-$PWD/target/release/crossdock}
gen=$PWD/target/release/examples/loadgen

rm -rf "$out"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

secret="whsec_$(head -c 24 /dev/urandom | base64 | tr -d '\n')"
# shellcheck source=tools/project.sh
. tools/project.sh
write_project "$out/project" load "$port" "$up_port" "$secret" "${CG_SERVER:-}"
[[ -n ${CG_KEYS:-} ]] && echo "keys: { $CG_KEYS }" >>"$out/project/pipelines/load.yaml"

"$gen" upstream --listen "127.0.0.1:$up_port" >"$out/upstream.out" 2>"$out/upstream.log" &
pids+=("$!")
valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" "$bin" run "$out/project" \
  2>"$out/crossdock.log" &
cd_pid=$!
pids+=("$cd_pid")
# Starting under valgrind takes a minute or more on a busy machine: up to 5 minutes.
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 1; done
curl -sf "http://127.0.0.1:$port/health" >/dev/null || { echo "callgrind-run: crossdock did not start" >&2; exit 1; }
if [[ $rate -gt 0 ]]; then
  "$gen" fire --url "http://127.0.0.1:$port/hooks/load" --secret "$secret" --connections 4 \
    --duration "${secs}s" --warmup 0s --rate "$rate" >"$out/fire.json" 2>"$out/fire.log"
else
  sleep "$secs"
fi
for _ in $(seq 300); do
  curl -sf "http://127.0.0.1:$port/health" | grep -q '"pending":0' && break
  sleep 0.2
done
delivered=$(curl -sf "http://127.0.0.1:$up_port/count" | grep -o '[0-9]*' || echo 0)
kill -TERM "$cd_pid"
wait "$cd_pid" || true
total=$(awk '$1 == "totals:" { print $2 }' "$out/callgrind.out")
echo "instructions: $total; events delivered: $delivered"
# Inclusive counts, each also per event delivered (start and stop included: see above).
callgrind_annotate --inclusive=yes "$out/callgrind.out" 2>/dev/null \
  | grep -E 'crossdock::|sled::tree|verify|serde_json::ser|mi_malloc|mi_free|hyper::|reqwest::' \
  | sed -n "1,${CG_TOP:-60}p" \
  | awk -v n="$delivered" '{ c = $1; gsub(",", "", c); printf "%9d/event  %s\n", (n > 0 ? c / n : 0), $0 }' \
  | cut -c1-220
