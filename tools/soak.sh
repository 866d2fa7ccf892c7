#!/usr/bin/env bash
# Disk, memory and throughput under a steady load for a long time (docs/performance.md, "Soak").
#
#   tools/soak.sh [DURATION] [RATE]     e.g. tools/soak.sh 30m 5000 (the defaults)
#   tools/soak.sh short                 3m at 2000 events/s
#   tools/soak.sh burst                 10s at 2000 events/s: RSS idle, at its peak, and 30 s
#                                       after the inbox drained (does memory come back?)
#
# Builds the release binary and examples/loadgen.rs, writes a throwaway project in a temp dir
# (a webhook source verified with Standard Webhooks, a `set` step, a `send` to an `http`
# connector whose base_url is a local upstream, as tools/load.sh does), starts the upstream and
# `crossdock run`, and has `loadgen fire --rate RATE` post signed webhooks on a fixed schedule
# for DURATION. Every SOAK_EVERY seconds it writes a row to a CSV: crossdock's RSS, the state
# folder on disk (blocks used, and sled's own count), the trails' bytes, pending events,
# events accepted and delivered per second since the row before, and crossdock's CPU time
# (user and system) with the cores it used since the row before. At a rate the machine
# carries, its CPU time per event is a figure to compare builds by where the rate of a
# saturating firing (tools/load.sh) moves too much from run to run to tell them apart. Then it
# waits for the inbox to drain, keeps sampling a while, prints the table, the start, peak and
# end of RSS and disk with their slopes and the CPU time an event, and draws them (a PNG beside
# the CSV, with gnuplot when it is installed).
#
# Knobs (environment):
#   SOAK_EVERY=10         seconds between samples
#   SOAK_SETTLE=30        seconds of sampling after the inbox drained
#   SOAK_CONNECTIONS=16   connections the generator spreads the rate over
#   SOAK_CSV=target/soak.csv   (the plot: the same name, .png)
#   SOAK_PORT=18787 SOAK_UPSTREAM_PORT=18797
#   SOAK_CACHE=32MB       the project's `state.cache` (default: the engine's default)
#   SOAK_RETAIN=5m        the project's `dedup_window` and `keep_trails`
#   SOAK_TRAIL_BYTES=1GB  the project's `keep_trails_bytes`
#   SOAK_REOPEN_EVERY=N   the project's `state.reopen_every` (writes between reopens under
#                         load; 0: only when idle)
#   SOAK_SERVER=", work_nice: 0"   more `key: value` pairs for the project's `server:`
#   SOAK_KEEP=1           keep the temp project, state and logs
#   SOAK_BIN=PATH         run this engine binary and skip the build (e.g. the system-allocator
#                         build, target/release/examples/sysalloc); SOAK_GEN=PATH the generator
#   SOAK_WRAP="heaptrack -o FILE"  a command the engine runs under (RSS is then the wrapper's)
#
# The retention is 5 minutes by default, not the engine's 24 h of dedup keys and 7 days of
# trails: with those a store grows for a day before it levels off (docs/runtime.md, "Sizing").
#
# Bounded: after the build, DURATION + the drain (at most 120 s) + SOAK_SETTLE + a few seconds.
# It runs the load at the given rate, not as fast as it can: nice it on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."

case ${1:-} in
  short) set -- 3m 2000 ;;
  burst) set -- 10s 2000 ;;
esac
duration=${1:-30m}
rate=${2:-5000}
every=${SOAK_EVERY:-10}
settle=${SOAK_SETTLE:-30}
connections=${SOAK_CONNECTIONS:-16}
csv=${SOAK_CSV:-target/soak.csv}
retain=${SOAK_RETAIN:-5m}
port=${SOAK_PORT:-18787}
up_port=${SOAK_UPSTREAM_PORT:-18797}

say() { printf '%s\n' "soak: $*" >&2; }

# DURATION in seconds: 90, 90s, 10m, 1h.
case $duration in
  *h) secs=$((${duration%h} * 3600)) ;;
  *m) secs=$((${duration%m} * 60)) ;;
  *s) secs=${duration%s} ;;
  *) secs=$duration ;;
esac
[[ $secs =~ ^[0-9]+$ && $secs -gt 0 ]] || { say "DURATION must be like 90s, 10m or 1h"; exit 2; }
[[ $rate =~ ^[0-9]+$ && $rate -gt 0 ]] || { say "RATE must be a whole number of events/s"; exit 2; }

for p in "$port" "$up_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    say "port $p is in use (set SOAK_PORT / SOAK_UPSTREAM_PORT)"
    exit 1
  fi
done

bin=${SOAK_BIN:-$PWD/target/release/crossdock}
gen=${SOAK_GEN:-$PWD/target/release/examples/loadgen}
if [[ -z ${SOAK_BIN:-} || -z ${SOAK_GEN:-} ]]; then
  say "building (release)"
  cargo build --release --quiet --bin crossdock --example loadgen
fi
wrap=()
read -r -a wrap <<<"${SOAK_WRAP:-}"

work=$(mktemp -d -t crossdock-soak.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ ${SOAK_KEEP:-} == 1 ]]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

secret="whsec_$(head -c 24 /dev/urandom | base64 | tr -d '\n')"
project=$work/project
# shellcheck source=tools/project.sh
. tools/project.sh
write_project "$project" soak "$port" "$up_port" "$secret" \
  ", dedup_window: $retain, keep_trails: $retain${SOAK_TRAIL_BYTES:+, keep_trails_bytes: $SOAK_TRAIL_BYTES}${SOAK_SERVER:-}" \
  "${SOAK_CACHE:+, cache: $SOAK_CACHE}${SOAK_REOPEN_EVERY:+, reopen_every: $SOAK_REOPEN_EVERY}"
"$bin" check "$project" >"$work/check.log" 2>&1 || { cat "$work/check.log" >&2; exit 1; }

field() { { grep -o "\"$1\":[^,}]*" <<<"$2" || true; } | head -1 | cut -d: -f2 | tr -d '" '; }
# A line of /proc/PID/status in kB (VmRSS, RssAnon, RssFile).
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

"$gen" upstream --listen "127.0.0.1:$up_port" >"$work/upstream.out" 2>"$work/upstream.log" &
pids+=("$!")
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$up_port/count" >/dev/null && break; sleep 0.1; done

"${wrap[@]}" "$bin" run "$project" 2>"$work/crossdock.log" &
cd_pid=$!
pids+=("$cd_pid")
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
  kill -0 "$cd_pid" 2>/dev/null || break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$port/health" >/dev/null || {
  say "crossdock did not start:"; cat "$work/crossdock.log" >&2; exit 1
}

mkdir -p "$(dirname "$csv")"
state=$project/state
# A series of /metrics, summed over its labels.
metric() { awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%d", s }' <<<"$2"; }
# (a - b) / (t - u), printed with the format $5 (default: a whole number).
rate_of() { awk -v a="$1" -v b="$2" -v t="$3" -v u="$4" -v f="${5:-%d}" 'BEGIN { printf f, (t > u ? (a - b) / (t - u) : 0) }'; }
# CPU seconds (user + system) of a process: /proc/PID/stat's 14th and 15th fields, the 12th
# and 13th after the command name (which may hold spaces).
hz=$(getconf CLK_TCK)
cpu_of() { awk -v hz="$hz" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0; }
echo "t_s,phase,rss_kb,rss_anon_kb,disk_kb,sled_kb,trail_kb,pending,accepted,delivered,accepted_per_s,delivered_per_s,cpu_s,cores" >"$csv"
t0=$(date +%s.%N)
last_t=0 last_acc=0 last_del=0 last_cpu=0
sample() {
  local metrics t acc del disk cpu
  metrics=$(curl -sf "http://127.0.0.1:$port/metrics" || true)
  t=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.1f", a - b }')
  acc=$(metric crossdock_events_received_total "$metrics")
  del=$(field count "$(curl -sf "http://127.0.0.1:$up_port/count" || true)")
  del=${del:-0}
  disk=$(du -sk "$state" 2>/dev/null | cut -f1)
  cpu=$(cpu_of "$cd_pid")
  printf '%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n' "$t" "$1" "$(status_kb "$cd_pid" VmRSS)" \
    "$(status_kb "$cd_pid" RssAnon)" "${disk:-0}" \
    "$(($(metric crossdock_state_disk_bytes "$metrics") / 1024))" \
    "$(($(metric crossdock_trail_bytes "$metrics") / 1024))" \
    "$(metric crossdock_inbox_pending "$metrics")" "$acc" "$del" \
    "$(rate_of "$acc" "$last_acc" "$t" "$last_t")" "$(rate_of "$del" "$last_del" "$t" "$last_t")" \
    "$cpu" "$(rate_of "$cpu" "$last_cpu" "$t" "$last_t" %.2f)" >>"$csv"
  last_t=$t last_acc=$acc last_del=$del last_cpu=$cpu
}

sleep 2
sample idle
say "$rate events/s for ${secs}s over $connections connections; RSS every ${every}s to $csv"
"$gen" fire --url "http://127.0.0.1:$port/hooks/soak" --secret "$secret" \
  --connections "$connections" --duration "${secs}s" --warmup 0s --rate "$rate" \
  >"$work/fire.json" 2>"$work/fire.log" &
gen_pid=$!
pids+=("$gen_pid")
while kill -0 "$gen_pid" 2>/dev/null; do
  sleep "$every"
  kill -0 "$gen_pid" 2>/dev/null && sample load
done
wait "$gen_pid" || { say "loadgen failed:"; cat "$work/fire.log" >&2; exit 1; }
sample load

# The inbox drains (bounded), then the process idles; both sampled.
for _ in $(seq $((120 / every))); do
  [[ $(field pending "$(curl -sf "http://127.0.0.1:$port/health" || true)") == 0 ]] && break
  sleep "$every"
  sample drain
done
for _ in $(seq $((settle / every))); do
  sleep "$every"
  sample after
done
health=$(curl -sf "http://127.0.0.1:$port/health" || true)

echo
echo "fire: $(cat "$work/fire.json")"
echo "after: pending $(field pending "$health"), dead letters $(field dead_letters "$health")"
metrics=$(curl -sf "http://127.0.0.1:$port/metrics" || true)
# How long each reopen of the store held calls, from the engine's log (docs/runtime.md).
took=$({ grep -o 'took_ms=[0-9]*' "$work/crossdock.log" || true; } | cut -d= -f2 | paste -sd' ' -)
echo "store reopens: idle $(metric 'crossdock_state_reopens_total{why="idle"}' "$metrics"), under load $(metric 'crossdock_state_reopens_total{why="under_load"}' "$metrics"); each took (ms): ${took:-none}"
echo
column -s, -t "$csv"
echo
# start: the first sample under load; peak: over the whole run; end: the last one under load.
# Slopes: least squares over the samples under load, and over their second half alone (the
# first minutes fill caches, and the store, up to their bounds; a leak keeps climbing after).
summary() {
  awk -F, -v col="$1" -v what="$2" '
    NR == 1 { next }
    $2 == "idle" { idle = $col }
    $2 == "load" {
      n++; t[n] = $1; r[n] = $col
      if (start == "") start = $col
      end = $col
    }
    { if ($col > peak) peak = $col; last = $col }
    function slope(from, to,   i, k, st, sr, stt, str) {
      for (i = from; i <= to; i++) { k++; st += t[i]; sr += r[i]; stt += t[i] * t[i]; str += t[i] * r[i] }
      if (k < 2 || k * stt == st * st) return 0
      return (k * str - st * sr) / (k * stt - st * st) * 60 / 1024
    }
    END {
      printf "%s MB: idle %.1f, start %.1f, peak %.1f, end %.1f, after %.1f; slope under load %.2f MB/min, second half %.2f\n", what, idle / 1024, start / 1024, peak / 1024, end / 1024, last / 1024, slope(1, n), slope(int(n / 2) + 1, n)
    }' "$csv"
}
summary 3 RSS
summary 5 disk
# The first sample under load covers the idle moment before the generator started.
awk -F, 'NR > 1 && $2 == "load" { n++; if (n == 1) next; k++; s += $11; if (min == "" || $11 < min) min = $11 }
  END { if (k) printf "accepted/s per sample under load: mean %d, lowest %d (%d samples)\n", s / k, min, k }' "$csv"
# CPU an event: from the sample before the firing to the last one under load or draining (the
# settling after is left out: a reopen of the store when idle is not an event's cost).
awk -F, 'NR > 1 && $2 == "idle" { c0 = $13; d0 = $10 }
  NR > 1 && ($2 == "load" || $2 == "drain") { c1 = $13; d1 = $10 }
  END { if (d1 > d0) printf "crossdock CPU: %.1f s for %d events delivered, %.0f µs an event\n", c1 - c0, d1 - d0, (c1 - c0) / (d1 - d0) * 1e6 }' "$csv"
echo "(samples in $csv)"

png=${csv%.csv}.png
if command -v gnuplot >/dev/null; then
  gnuplot <<PLOT
set terminal png size 900,750
set output "$png"
set datafile separator ","
set key left top
set xlabel "s"
set multiplot layout 3,1 title "tools/soak.sh $duration at $rate events/s"
set ylabel "MB"
plot "$csv" every ::1 using 1:(\$3/1024) with lines title "RSS"
plot "$csv" every ::1 using 1:(\$5/1024) with lines title "state folder (du)", "" every ::1 using 1:(\$7/1024) with lines title "trails"
set ylabel "events/s"
plot "$csv" every ::1 using 1:11 with lines title "accepted/s", "" every ::1 using 1:12 with lines title "delivered/s"
unset multiplot
PLOT
  echo "(plot in $png)"
else
  echo "(no plot: install gnuplot, e.g. apt-get install gnuplot-nox)"
fi
