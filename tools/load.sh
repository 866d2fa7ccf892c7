#!/usr/bin/env bash
# Webhook ingress under load, end to end on loopback (docs/performance.md).
#
#   tools/load.sh
#
# Builds the release binary and examples/loadgen.rs, writes a throwaway project (a webhook
# source verified with Standard Webhooks, a `set` step, a `send` to an `http` connector whose
# base_url is a local upstream), starts the upstream and `crossdock run`, fires signed webhooks
# at it over N connections, waits for the inbox to drain, and does it again per flush policy
# (and per binary of LOAD_BINS). Before the first and after the last, the same firing at
# `loadgen ceiling`, so crossdock is read beside the ceiling of the same minutes.
# Prints a table; the JSON lines go to target/load-results.jsonl.
#
# Knobs (environment):
#   LOAD_FLUSH="group periodic"  flush policies to run, in order
#   LOAD_CONNECTIONS=64  LOAD_DURATION=10s  LOAD_WARMUP=2s
#   LOAD_DRAIN_TIMEOUT=40        seconds to wait for the inbox to drain after a run
#   LOAD_CLIENT=hyper|reqwest    the load generator's HTTP client
#   LOAD_PORT=18787 LOAD_UPSTREAM_PORT=18797 LOAD_CEILING_PORT=18807
#   LOAD_NO_VERIFY=1             the webhook source without `verify` (the loadgen still signs)
#   LOAD_SINK=file               a `kind: file` connector instead of http + upstream
#   LOAD_SERVER=", keep_trails: 0s"  more `key: value` pairs for the project's `server:`
#                                (that one: no trails, so no explanation recorded per step)
#   LOAD_STATE=", reopen_every: 0"  more `key: value` pairs for the project's `state:`
#   LOAD_CEILING=0               no `ceiling` run (`loadgen ceiling`: a bare axum handler that
#                                reads the body and answers 202, the most ingress could do)
#   LOAD_BINS="old=PATH new=PATH"  crossdock binaries to compare (default: the release build),
#                                run in turn for each flush policy, between ceiling runs
#   LOAD_ROUNDS=1                how many times the whole sequence runs
#   LOAD_KEEP=1                  keep the temp project, state and logs
#
# Bounded: after the build, rounds x (flushes x binaries x (warm-up + duration + drain) +
# warm-up + duration), one more warm-up + duration, and a few seconds.
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
ceil_port=${LOAD_CEILING_PORT:-18807}
rounds=${LOAD_ROUNDS:-1}
sink=${LOAD_SINK:-http}
verify=yes
[[ ${LOAD_NO_VERIFY:-} == 1 ]] && verify=no
results=target/load-results.jsonl

say() { printf '%s\n' "load: $*" >&2; }

for p in "$port" "$up_port" "$ceil_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    say "port $p is in use (set LOAD_PORT / LOAD_UPSTREAM_PORT)"
    exit 1
  fi
done

# With LOAD_BINS, the binaries given are run as they are: only the load generator is built.
if [[ -n ${LOAD_BINS:-} ]]; then
  [[ -x target/release/examples/loadgen ]] || cargo build --release --quiet --example loadgen
else
  say "building (release)"
  cargo build --release --quiet --bin crossdock --example loadgen
fi
gen=$PWD/target/release/examples/loadgen
bins=${LOAD_BINS:-crossdock=$PWD/target/release/crossdock}
for b in $bins; do
  [[ -x ${b#*=} ]] || { say "no binary at ${b#*=}"; exit 1; }
done

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
server: { listen: "127.0.0.1:$port"${LOAD_SERVER:-} }
state: { path: state${LOAD_STATE:-} }
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

first=${bins%% *}
"${first#*=}" check "$project" >"$work/check.log" 2>&1 || { cat "$work/check.log" >&2; exit 1; }

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

# Fires at URL with the knobs above; the one JSON line of `loadgen fire` goes to OUT.
fire() {
  local url=$1 out=$2
  # In the background and waited for, so that a signal stops the script at once.
  "$gen" fire --url "$url" --secret "$secret" \
    --connections "$connections" --duration "$duration" --warmup "$warmup" --client "$client" \
    >"$out" 2>"${out%.json}.log" &
  gen_pid=$!
  pids+=("$gen_pid")
  wait "$gen_pid" || { say "loadgen failed:"; cat "${out%.json}.log" >&2; exit 1; }
  [[ -s ${out%.json}.log ]] && sed 's/^/  /' "${out%.json}.log" >&2
  return 0
}

# Stops PID and forgets it (it is waited for here, not at exit).
stop() {
  local p kept=()
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  for p in "${pids[@]}"; do [[ $p == "$1" || $p == "${gen_pid:-}" ]] || kept+=("$p"); done
  pids=("${kept[@]}")
}

# The ceiling: `loadgen ceiling` on its own port, fired at as crossdock is.
ceiling_run() {
  local n=$1 ce_pid line t0 wall ce0 ce1 all0 all1 gen_cpu
  "$gen" ceiling --listen "127.0.0.1:$ceil_port" 2>"$work/ceiling.log" &
  ce_pid=$!
  pids+=("$ce_pid")
  for _ in $(seq 50); do
    curl -sf -X POST -d '{}' "http://127.0.0.1:$ceil_port/" >/dev/null && break
    sleep 0.1
  done
  say "ceiling (round $n): $connections connections, $warmup warm-up + $duration"
  ce0=$(cpu_s "$ce_pid"); all0=$(busy_s); t0=$(now)
  times >"$work/times0"
  fire "http://127.0.0.1:$ceil_port/hooks/load" "$work/fire-ceiling.json"
  times >"$work/times1"
  wall=$(calc "$(now) - $t0" 3)
  ce1=$(cpu_s "$ce_pid"); all1=$(busy_s)
  gen_cpu=$(calc "$(children_cpu_s "$work/times1") - $(children_cpu_s "$work/times0")" 2)
  stop "$ce_pid"
  line=$(cat "$work/fire-ceiling.json")
  echo "${line%\}},\"run\":\"ceiling\",\"flush\":\"-\",\"round\":$n,\"cpu_cores\":{\"crossdock\":$(calc "($ce1 - $ce0) / $wall" 2),\"loadgen\":$(calc "$gen_cpu / $wall" 2),\"upstream\":0,\"other\":$(calc "(($all1 - $all0) - ($ce1 - $ce0) - $gen_cpu) / $wall" 2)}}" >>"$results"
  say "  $(tail -1 "$results")"
}

# One crossdock binary (LABEL=PATH) with one flush policy, on a fresh state.
crossdock_run() {
  local label=${1%%=*} bin=${1#*=} flush=$2 n=$3
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

  say "$label, flush $flush (round $n): $connections connections, $warmup warm-up + $duration"
  before=$(delivered_count)
  cd_cpu0=$(cpu_s "$cd_pid"); up_cpu0=$(cpu_s "${up_pid:-0}"); all0=$(busy_s)
  t0=$(now)
  times >"$work/times0"
  fire "http://127.0.0.1:$port/hooks/load" "$work/fire-$flush.json"
  times >"$work/times1"
  t_fire=$(now)
  cd_cpu1=$(cpu_s "$cd_pid"); up_cpu1=$(cpu_s "${up_pid:-0}"); all1=$(busy_s)
  line=$(cat "$work/fire-$flush.json")

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
  total_s=$(calc "$t1 - $t0" 2)
  wall=$(calc "$t_fire - $t0" 3)
  cpu_cd=$(calc "($cd_cpu1 - $cd_cpu0) / $wall" 2)
  gen_cpu=$(calc "$(children_cpu_s "$work/times1") - $(children_cpu_s "$work/times0")" 2)
  cpu_gen=$(calc "$gen_cpu / $wall" 2)
  cpu_up=$(calc "($up_cpu1 - $up_cpu0) / $wall" 2)
  # Everything else on the machine meanwhile (other builds share these cores).
  cpu_other=$(calc "(($all1 - $all0) - ($cd_cpu1 - $cd_cpu0) - $gen_cpu - ($up_cpu1 - $up_cpu0)) / $wall" 2)
  stop "$cd_pid"

  extra=$(printf '"run":"%s","round":%s,"flush":"%s","sink":"%s","verify":%s,"client":"%s","delivered":%s,"delivered_per_s":%s,"drained":%s,"drain_s":%s,"pending_left":%s,"dead_letters":%s,"cpu_cores":{"crossdock":%s,"loadgen":%s,"upstream":%s,"other":%s}' \
    "$label" "$n" "$flush" "$sink" "$([[ $verify == yes ]] && echo true || echo false)" "$client" "$delivered" \
    "$(calc "$delivered / $total_s" 0)" "$drained" "$(calc "$t1 - $t_fire" 2)" \
    "${pending:-null}" "$(field dead_letters "$health")" "$cpu_cd" "$cpu_gen" "$cpu_up" "$cpu_other")
  echo "${line%\}},$extra}" >>"$results"
  say "  $(tail -1 "$results")"
}

: >"$results"
for n in $(seq "$rounds"); do
  [[ ${LOAD_CEILING:-1} == 1 ]] && ceiling_run "$n"
  for flush in $flushes; do
    for b in $bins; do crossdock_run "$b" "$flush" "$n"; done
  done
done
[[ ${LOAD_CEILING:-1} == 1 ]] && ceiling_run "$((rounds + 1))"

echo
printf '%-10s %-9s %6s %10s %8s %8s %8s %7s %6s %10s %11s  %s\n' \
  run flush conns accepted/s p50_ms p99_ms p999_ms non202 errors delivered delivered/s \
  "CPU cores while firing: server/loadgen/upstream/other"
while read -r l; do
  printf '%-10s %-9s %6s %10s %8s %8s %8s %7s %6s %10s %11s  %s/%s/%s/%s\n' \
    "$(field run "$l")" "$(field flush "$l")" "$(field connections "$l")" \
    "$(field accepted_per_s "$l")" \
    "$(field p50_ms "$l")" "$(field p99_ms "$l")" "$(field p999_ms "$l")" "$(field non_202 "$l")" \
    "$(field errors "$l")" "$(field delivered "$l")" \
    "$(field delivered_per_s "$l")$([[ $(field drained "$l") != false ]] || echo '*')" \
    "$(field crossdock "$l")" "$(field loadgen "$l")" "$(field upstream "$l")" "$(field other "$l")"
done <"$results"
grep -q '"drained":false' "$results" && echo "* the inbox had not drained within ${drain_timeout}s: delivered/s up to then"
echo "(sink: $sink, verify: $verify; the ceiling keeps and delivers nothing; JSON lines in $results)"
