#!/usr/bin/env bash
# Webhook ingress under load, end to end on loopback (docs/performance.md).
#
#   tools/load.sh
#
# Builds the release binary and examples/loadgen.rs, writes a throwaway project (a webhook
# source verified with Standard Webhooks, a `set` step, a `send` to an `http` connector whose
# base_url is a local upstream), starts the upstream and `crossdock run`, fires signed webhooks
# at it over N connections, waits for the inbox to drain, and does it again per flush policy.
# Prints a table; the JSON lines go to target/load-results.jsonl.
#
# Knobs (environment):
#   LOAD_FLUSH="group periodic"  flush policies to run, in order
#   LOAD_CONNECTIONS=64  LOAD_DURATION=10s  LOAD_WARMUP=2s
#   LOAD_DRAIN_TIMEOUT=40        seconds to wait for the inbox to drain after a run
#   LOAD_CLIENT=hyper|reqwest    the load generator's HTTP client
#   LOAD_PORT=18787 LOAD_UPSTREAM_PORT=18797
#   LOAD_NO_VERIFY=1             the webhook source without `verify` (the loadgen still signs)
#   LOAD_SINK=file               a `kind: file` connector instead of http + upstream
#   LOAD_KEEP=1                  keep the temp project, state and logs
#
# Bounded: after the build, about 2 x (warm-up + duration + drain) plus a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

flushes=${LOAD_FLUSH:-group periodic}
connections=${LOAD_CONNECTIONS:-64}
duration=${LOAD_DURATION:-10s}
warmup=${LOAD_WARMUP:-2s}
drain_timeout=${LOAD_DRAIN_TIMEOUT:-40}
client=${LOAD_CLIENT:-hyper}
port=${LOAD_PORT:-18787}
up_port=${LOAD_UPSTREAM_PORT:-18797}
sink=${LOAD_SINK:-http}
verify=yes
[[ ${LOAD_NO_VERIFY:-} == 1 ]] && verify=no
results=target/load-results.jsonl

say() { printf '%s\n' "load: $*" >&2; }

for p in "$port" "$up_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    say "port $p is in use (set LOAD_PORT / LOAD_UPSTREAM_PORT)"
    exit 1
  fi
done

say "building (release)"
cargo build --release --quiet --bin crossdock --example loadgen
bin=$PWD/target/release/crossdock
gen=$PWD/target/release/examples/loadgen

work=$(mktemp -d -t crossdock-load.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ ${LOAD_KEEP:-} == 1 ]]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Standard Webhooks secret: whsec_ and the base64 of 24 random bytes.
secret="whsec_$(head -c 24 /dev/urandom | base64 | tr -d '\n')"

project=$work/project
mkdir -p "$project/pipelines"
if [[ $sink == file ]]; then
  connector='upstream: { kind: file, path: out/orders.jsonl }'
  op=append
else
  connector="upstream:
    kind: http
    base_url: \"http://127.0.0.1:$up_port\"
    operations:
      post: { method: POST, path: /orders }"
  op=post
fi
cat >"$project/crossdock.yaml" <<EOF
server: { listen: "127.0.0.1:$port" }
state: { path: state }
connectors:
  $connector
EOF
if [[ $verify == yes ]]; then
  verify_line="    verify: { scheme: standard-webhooks, secret: \"$secret\" }"
else
  verify_line=""
fi
cat >"$project/pipelines/load.yaml" <<EOF
pipeline: load
description: tools/load.sh - a BigCommerce order webhook, one field set, one send
source:
  webhook:
    path: /hooks/load
$verify_line
steps:
  - set:
      order_id: { from: '\$.data.id' }
      store: { from: '\$.store_id' }
      source: bigcommerce
  - send: { to: upstream, op: $op }
on_error:
  retry: { attempts: 3, backoff: exponential, initial: 1s, max: 5s }
  dead_letter: true
EOF

"$bin" check "$project" >"$work/check.log" 2>&1 || { cat "$work/check.log" >&2; exit 1; }

# CPU seconds (user + system) a process has used so far.
ticks=$(getconf CLK_TCK)
cpu_s() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  stat=${stat##*) }
  set -- $stat
  awk -v u="${12}" -v s="${13}" -v t="$ticks" 'BEGIN { printf "%.2f", (u + s) / t }'
}
# CPU seconds the whole machine has been busy (every process, ours and others').
busy_s() {
  local _cpu user nice system idle iowait irq softirq steal _rest
  read -r _cpu user nice system idle iowait irq softirq steal _rest </proc/stat
  awk -v b="$((user + nice + system + irq + softirq + steal))" -v t="$ticks" 'BEGIN { printf "%.2f", b / t }'
}
# CPU seconds of the shell's finished children, from the second line of `times` ("0m1.2s 0m0.3s"):
# across a `wait` for the load generator, its CPU time.
children_cpu_s() {
  sed -n 2p "$1" | tr 'ms' '  ' | awk '{ printf "%.2f", $1 * 60 + $2 + $3 * 60 + $4 }'
}
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }
# A number field of a one-line JSON object.
field() { { grep -o "\"$1\":[^,}]*" <<<"$2" || true; } | head -1 | cut -d: -f2 | tr -d '" '; }

delivered_count() {
  if [[ $sink == file ]]; then
    if [[ -f $project/out/orders.jsonl ]]; then wc -l <"$project/out/orders.jsonl"; else echo 0; fi
  else
    field count "$(curl -sf "http://127.0.0.1:$up_port/count")"
  fi
}

if [[ $sink != file ]]; then
  "$gen" upstream --listen "127.0.0.1:$up_port" >"$work/upstream.out" 2>"$work/upstream.log" &
  up_pid=$!
  pids+=("$up_pid")
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$up_port/count" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$up_port/count" >/dev/null || { say "the upstream did not start"; exit 1; }
fi

: >"$results"
for flush in $flushes; do
  rm -rf "$project/state" "$project/out"
  "$bin" run "$project" --listen "127.0.0.1:$port" --flush "$flush" 2>"$work/crossdock-$flush.log" &
  cd_pid=$!
  pids+=("$cd_pid")
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    kill -0 "$cd_pid" 2>/dev/null || break
    sleep 0.1
  done
  if ! curl -sf "http://127.0.0.1:$port/health" >/dev/null; then
    say "crossdock did not start:"; cat "$work/crossdock-$flush.log" >&2; exit 1
  fi

  say "flush $flush: $connections connections, $warmup warm-up + $duration"
  before=$(delivered_count)
  cd_cpu0=$(cpu_s "$cd_pid"); up_cpu0=$(cpu_s "${up_pid:-0}"); all0=$(busy_s)
  t0=$(now)
  times >"$work/times0"
  # In the background and waited for, so that a signal stops the script at once.
  "$gen" fire --url "http://127.0.0.1:$port/hooks/load" --secret "$secret" \
    --connections "$connections" --duration "$duration" --warmup "$warmup" --client "$client" \
    >"$work/fire-$flush.json" 2>"$work/fire-$flush.log" &
  gen_pid=$!
  pids+=("$gen_pid")
  wait "$gen_pid" || { say "loadgen failed:"; cat "$work/fire-$flush.log" >&2; exit 1; }
  times >"$work/times1"
  t_fire=$(now)
  cd_cpu1=$(cpu_s "$cd_pid"); up_cpu1=$(cpu_s "${up_pid:-0}"); all1=$(busy_s)
  line=$(cat "$work/fire-$flush.json")
  [[ -s $work/fire-$flush.log ]] && sed 's/^/  /' "$work/fire-$flush.log" >&2

  # Delivery: wait (bounded) until every accepted event has left the inbox.
  drained=false
  deadline=$(calc "$t_fire + $drain_timeout" 3)
  while :; do
    pending=$(field pending "$(curl -sf "http://127.0.0.1:$port/health" || true)")
    if [[ $pending == 0 ]]; then drained=true; break; fi
    if awk -v n="$(now)" -v d="$deadline" 'BEGIN { exit !(n > d) }'; then break; fi
    sleep 0.25
  done
  t1=$(now)
  health=$(curl -sf "http://127.0.0.1:$port/health" || true)
  after=$(delivered_count)
  delivered=$((after - before))
  fire_s=$(calc "$t_fire - $t0" 2)
  total_s=$(calc "$t1 - $t0" 2)
  wall=$(calc "$t_fire - $t0" 3)
  cpu_cd=$(calc "($cd_cpu1 - $cd_cpu0) / $wall" 2)
  gen_cpu=$(calc "$(children_cpu_s "$work/times1") - $(children_cpu_s "$work/times0")" 2)
  cpu_gen=$(calc "$gen_cpu / $wall" 2)
  cpu_up=$(calc "($up_cpu1 - $up_cpu0) / $wall" 2)
  # Everything else on the machine meanwhile (other builds share these cores).
  cpu_other=$(calc "(($all1 - $all0) - ($cd_cpu1 - $cd_cpu0) - $gen_cpu - ($up_cpu1 - $up_cpu0)) / $wall" 2)

  kill -TERM "$cd_pid" 2>/dev/null || true
  wait "$cd_pid" 2>/dev/null || true
  kept=()
  for p in "${pids[@]}"; do [[ $p == "$cd_pid" || $p == "$gen_pid" ]] || kept+=("$p"); done
  pids=("${kept[@]}")

  extra=$(printf '"flush":"%s","sink":"%s","verify":%s,"client":"%s","delivered":%s,"delivered_per_s":%s,"drained":%s,"drain_s":%s,"pending_left":%s,"dead_letters":%s,"cpu_cores":{"crossdock":%s,"loadgen":%s,"upstream":%s,"other":%s}' \
    "$flush" "$sink" "$([[ $verify == yes ]] && echo true || echo false)" "$client" "$delivered" \
    "$(calc "$delivered / $total_s" 0)" "$drained" "$(calc "$t1 - $t_fire" 2)" \
    "${pending:-null}" "$(field dead_letters "$health")" "$cpu_cd" "$cpu_gen" "$cpu_up" "$cpu_other")
  echo "${line%\}},$extra}" >>"$results"
  say "  $(tail -1 "$results")"
done

echo
printf '%-9s %6s %10s %8s %8s %8s %7s %6s %10s %11s  %s\n' \
  flush conns accepted/s p50_ms p99_ms p999_ms non202 errors delivered delivered/s \
  "CPU cores while firing: crossdock/loadgen/upstream/other"
while read -r l; do
  printf '%-9s %6s %10s %8s %8s %8s %7s %6s %10s %11s  %s/%s/%s/%s\n' \
    "$(field flush "$l")" "$(field connections "$l")" "$(field accepted_per_s "$l")" \
    "$(field p50_ms "$l")" "$(field p99_ms "$l")" "$(field p999_ms "$l")" "$(field non_202 "$l")" \
    "$(field errors "$l")" "$(field delivered "$l")" \
    "$(field delivered_per_s "$l")$([[ $(field drained "$l") == true ]] || echo '*')" \
    "$(field crossdock "$l")" "$(field loadgen "$l")" "$(field upstream "$l")" "$(field other "$l")"
done <"$results"
grep -q '"drained":false' "$results" && echo "* the inbox had not drained within ${drain_timeout}s: delivered/s up to then"
echo "(sink: $sink, verify: $verify; JSON lines in $results)"
