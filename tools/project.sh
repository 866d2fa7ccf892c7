# The throwaway project tools/soak.sh and tools/callgrind-run.sh run (source it, then call
# write_project): a BigCommerce order webhook verified with Standard Webhooks, one `set` step,
# one `send` to an `http` connector whose base_url is `loadgen upstream`; retried three times,
# then dead-lettered. tools/load.sh writes the same pipeline with knobs of its own.
#
#   write_project DIR NAME PORT UPSTREAM_PORT SECRET [SERVER_SETTINGS] [STATE_SETTINGS]
#
# SERVER_SETTINGS and STATE_SETTINGS are more `key: value` pairs for `server:` and `state:`,
# each starting with ", ". The webhook's path is /hooks/NAME.
write_project() {
  local dir=$1 name=$2 port=$3 up_port=$4 secret=$5 server=${6:-} state=${7:-}
  mkdir -p "$dir/pipelines"
  cat >"$dir/crossdock.yaml" <<YAML
server: { listen: "127.0.0.1:$port"$server }
state: { path: state$state }
connectors:
  upstream:
    kind: http
    base_url: "http://127.0.0.1:$up_port"
    operations:
      post: { method: POST, path: /orders }
YAML
  cat >"$dir/pipelines/$name.yaml" <<YAML
pipeline: $name
description: a BigCommerce order webhook, one field set, one send (tools/project.sh)
source:
  webhook:
    path: /hooks/$name
    verify: { scheme: standard-webhooks, secret: "$secret" }
steps:
  - set:
      order_id: { from: '\$.data.id' }
      store: { from: '\$.store_id' }
      source: bigcommerce
  - send: { to: upstream, op: post }
on_error:
  retry: { attempts: 3, backoff: exponential, initial: 1s, max: 5s }
  dead_letter: true
YAML
}
