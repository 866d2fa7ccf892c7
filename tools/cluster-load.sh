#!/usr/bin/env bash
# Durable webhooks through a cluster on NATS JetStream, beside the embedded sled engine, in one
# run on this machine (docs/cluster.md, "Figures").
#
#   tools/cluster-load.sh
#
# Builds the release binary and examples/loadgen.rs, starts a nats-server with JetStream (its
# store in a temp folder), the loadgen's upstream, and then in turn:
#   sled      one `crossdock run` on the embedded store (--flush group: fsync before each 202)
#   nats-1    one node with `cluster:` (202 after JetStream's publish acknowledgement)
#   nats-2    two nodes on the same NATS, each fired at by its own loadgen (half the connections)
# Each fires signed webhooks for the duration and prints accepted/s and latency percentiles;
# a cluster run also waits until the stream's consumer has nothing pending (every event
# delivered). The JSON lines go to target/cluster-load-results.jsonl. Then
#   stock     stock reserve + release pairs/s on the JetStream key-value store (the
#             `reserve_release_jetstream` group of benches/state.rs, on the same nats-server)
#
# Knobs (environment):
#   LOAD_CONNECTIONS=64  LOAD_DURATION=10s  LOAD_WARMUP=2s  LOAD_DRAIN_TIMEOUT=60
#   LOAD_PORT=18787 (and the next one for a second node)  LOAD_UPSTREAM_PORT=18797
#   LOAD_NATS_PORT (default: the upstream's port + 1)
#   LOAD_RUNS="sled nats-1 nats-2 stock"   LOAD_KEEP=1 (keep the temp folder)
#
# Needs `nats-server` on PATH (Debian: apt-get install nats-server).
set -euo pipefail
cd "$(dirname "$0")/.."

connections=${LOAD_CONNECTIONS:-64}
duration=${LOAD_DURATION:-10s}
warmup=${LOAD_WARMUP:-2s}
drain_timeout=${LOAD_DRAIN_TIMEOUT:-60}
port=${LOAD_PORT:-18787}
up_port=${LOAD_UPSTREAM_PORT:-18797}
runs=${LOAD_RUNS:-sled nats-1 nats-2 stock}
results=target/cluster-load-results.jsonl

say() { printf '%s\n' "cluster-load: $*" >&2; }
command -v nats-server >/dev/null || { say "nats-server is not installed"; exit 1; }

say "building (release)"
cargo build --release --quiet --bin crossdock --example loadgen
bin=$PWD/target/release/crossdock
gen=$PWD/target/release/examples/loadgen

work=$(mktemp -d -t crossdock-cluster-load.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ ${LOAD_KEEP:-} == 1 ]]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

field() { { grep -o "\"$1\":[^,}]*" <<<"$2" || true; } | head -1 | cut -d: -f2 | tr -d '" '; }
calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }

secret="whsec_$(head -c 24 /dev/urandom | base64 | tr -d '\n')"
nats_port=${LOAD_NATS_PORT:-$((up_port + 1))} # not port + 10: that is the upstream's default
nats-server -js -a 127.0.0.1 -p "$nats_port" -sd "$work/nats" >"$work/nats.log" 2>&1 &
pids+=($!)
"$gen" upstream --listen "127.0.0.1:$up_port" >"$work/upstream.out" 2>"$work/upstream.log" &
pids+=($!)
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$up_port/count" >/dev/null && break; sleep 0.1; done

write_project() { # $1: folder, $2: yes for a cluster block
  mkdir -p "$1/pipelines"
  {
    echo 'state: { path: state }'
    [[ $2 == yes ]] && echo "cluster: { nats: { url: \"nats://127.0.0.1:$nats_port\", prefix: \"$(basename "$1")\" }, node: \"\${NODE}\" }"
    cat <<EOF
connectors:
  upstream:
    kind: http
    base_url: "http://127.0.0.1:$up_port"
    operations:
      post: { method: POST, path: /orders }
EOF
  } >"$1/crossdock.yaml"
  cat >"$1/pipelines/load.yaml" <<EOF
pipeline: load
description: tools/cluster-load.sh - a signed webhook, one field set, one send
source:
  webhook:
    path: /hooks/load
    verify: { scheme: standard-webhooks, secret: "$secret" }
steps:
  - set: { order_id: { from: '\$.data.id' } }
  - send: { to: upstream, op: post }
on_error:
  retry: { attempts: 5, initial: 1s, max: 5s }
EOF
}

start_node() { # $1 project, $2 port, $3 node name, $4 log
  # Its stdout away from the $(...) that calls this, which would otherwise wait for it to exit.
  NODE=$3 "$bin" run "$1" --listen "127.0.0.1:$2" --flush group >"$4.out" 2>"$4" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$2/health" >/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:$2/health" >/dev/null || { say "crossdock did not start:"; cat "$4" >&2; exit 1; }
  echo "$pid"
}

: >"$results"
stock=no
for run in $runs; do
  project=$work/$run
  case $run in
    stock) stock=yes; continue ;;
    sled) write_project "$project" no; nodes=1 ;;
    nats-1) write_project "$project" yes; nodes=1 ;;
    nats-2) write_project "$project" yes; nodes=2 ;;
    *) say "unknown run $run"; exit 1 ;;
  esac
  # Each cluster run has streams of its own: the prefix is the run's name.
  node_pids=()
  for i in $(seq "$nodes"); do
    node_pids+=("$(start_node "$project" $((port + i - 1)) "node$i" "$work/$run-node$i.log")")
    pids+=("${node_pids[-1]}") # start_node ran in a subshell: its pids+= is lost
  done
  say "$run: $connections connections over $nodes node(s), $warmup warm-up + $duration"
  gens=()
  for i in $(seq "$nodes"); do
    "$gen" fire --url "http://127.0.0.1:$((port + i - 1))/hooks/load" --secret "$secret" \
      --connections $((connections / nodes)) --duration "$duration" --warmup "$warmup" \
      >"$work/$run-fire$i.json" 2>"$work/$run-fire$i.log" &
    gens+=($!)
  done
  for g in "${gens[@]}"; do wait "$g" || { say "loadgen failed"; cat "$work/$run-fire"*.log >&2; exit 1; }; done
  accepted=0; p50=0; p99=0; p999=0; non202=0
  for i in $(seq "$nodes"); do
    l=$(cat "$work/$run-fire$i.json")
    accepted=$(calc "$accepted + $(field accepted_per_s "$l")" 0)
    non202=$((non202 + $(field non_202 "$l")))
    # The worst node's percentiles: a client sees the slower one.
    p50=$(calc "($(field p50_ms "$l") > $p50) ? $(field p50_ms "$l") : $p50" 2)
    p99=$(calc "($(field p99_ms "$l") > $p99) ? $(field p99_ms "$l") : $p99" 2)
    p999=$(calc "($(field p999_ms "$l") > $p999) ? $(field p999_ms "$l") : $p999" 2)
  done
  # Delivery: until the node(s) report nothing pending (the stream's consumer, or sled's inbox).
  drained=false
  for _ in $(seq $((drain_timeout * 4))); do
    h=$(curl -sf "http://127.0.0.1:$port/health" || true)
    if [[ $run == sled ]]; then left=$(field pending "$h"); else
      left=$(( $(field pending "${h#*\"cluster\"}") + $(field ack_pending "$h") )); fi
    if [[ $left == 0 ]]; then drained=true; break; fi
    sleep 0.25
  done
  for p in "${node_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  printf '{"run":"%s","nodes":%s,"connections":%s,"accepted_per_s":%s,"p50_ms":%s,"p99_ms":%s,"p999_ms":%s,"non_202":%s,"drained":%s}\n' \
    "$run" "$nodes" "$connections" "$accepted" "$p50" "$p99" "$p999" "$non202" "$drained" >>"$results"
  say "  $(tail -1 "$results")"
done

echo
printf '%-8s %5s %6s %10s %8s %8s %8s %7s %8s\n' run nodes conns accepted/s p50_ms p99_ms p999_ms non202 drained
while read -r l; do
  printf '%-8s %5s %6s %10s %8s %8s %8s %7s %8s\n' "$(field run "$l")" "$(field nodes "$l")" \
    "$(field connections "$l")" "$(field accepted_per_s "$l")" "$(field p50_ms "$l")" \
    "$(field p99_ms "$l")" "$(field p999_ms "$l")" "$(field non_202 "$l")" "$(field drained "$l")"
done <"$results"

if [[ $stock == yes ]]; then
  echo
  say "stock: reserve + release pairs on JetStream KV (benches/state.rs)"
  CROSSDOCK_BENCH_NATS="nats://127.0.0.1:$nats_port" cargo bench --quiet --bench state -- \
    reserve_release_jetstream 2>&1 | grep -E '^reserve_release_jetstream|thrpt:|skipped' || true
fi
