#!/usr/bin/env bash
# A local validator cluster on loopback: keys, genesis and configs, then 4 trustmoe-validator
# processes (n = 3f + 1, f = 1).
#
#   deploy/local/cluster.sh up      generate (first time) and start; prints the endpoints
#   deploy/local/cluster.sh down    stop every validator (SIGTERM) and wait
#   deploy/local/cluster.sh status  each validator's head, view and health
#   deploy/local/cluster.sh clean   down, then remove the cluster directory
#
# Environment: CLUSTER_DIR (default .cluster), BUILD_DIR (default build), BASE_PORT (default
# 7610: validator i serves gRPC on BASE_PORT + i), VERIFY_STORE (a trustmoe-store host:port:
# the validators re-compute expert results against it and vote; unset: they do not verify). The binaries must be built (tests/run.sh or
# deploy/demo.sh build them).
set -euo pipefail
cd "$(dirname "$0")/../.."

dir=$(realpath -m "${CLUSTER_DIR:-.cluster}")
bin=$(realpath -m "${BUILD_DIR:-build}")
base_port=${BASE_PORT:-7610}
n=4
cli="$bin/src/cli/trustmoe"
validator="$bin/src/chain/validator/trustmoe-validator"

die() { echo "cluster: $*" >&2; exit 1; }

need_binaries() {
  [ -x "$cli" ] || die "$cli is missing: build first (./tests/run.sh or ./deploy/demo.sh)"
  [ -x "$validator" ] || die "$validator is missing: build first"
}

generate() {
  mkdir -p "$dir"
  chmod 700 "$dir"
  echo "==> keys and genesis in $dir"
  "$cli" keygen -o "$dir/admin.pem" >/dev/null
  local args=()
  for i in $(seq 0 $((n - 1))); do
    mkdir -p "$dir/v$i"
    "$cli" keygen -o "$dir/v$i/key.pem" >/dev/null
    args+=(--validator "v$i=$dir/v$i/key.pem.pub@127.0.0.1:$((base_port + i))")
  done
  "$cli" genesis --chain-id local --f 1 --admin-key "$dir/admin.pem.pub" "${args[@]}" \
    --out "$dir/genesis.json" | sed 's/^/    /'
  for i in $(seq 0 $((n - 1))); do
    cat >"$dir/v$i/validator.toml" <<TOML
# Validator v$i of the local cluster (deploy/config/validator.toml documents every key).
listen = "127.0.0.1:$((base_port + i))"
data_dir = "$dir/v$i/data"
identity_key = "$dir/v$i/key.pem"
genesis = "$dir/genesis.json"
port_file = "$dir/v$i/ports"
[http]
listen = "127.0.0.1:0"
TOML
    if [ -n "${VERIFY_STORE:-}" ]; then
      printf '[verify]\nstore = ["%s"]\n' "$VERIFY_STORE" >>"$dir/v$i/validator.toml"
    fi
  done
}

running() { [ -f "$dir/v$1/pid" ] && kill -0 "$(cat "$dir/v$1/pid")" 2>/dev/null; }

up() {
  need_binaries
  [ -f "$dir/genesis.json" ] || generate
  for i in $(seq 0 $((n - 1))); do
    if running "$i"; then
      echo "    v$i already running (pid $(cat "$dir/v$i/pid"))"
      continue
    fi
    rm -f "$dir/v$i/ports"
    "$validator" --config "$dir/v$i/validator.toml" >>"$dir/v$i/log" 2>&1 &
    echo $! >"$dir/v$i/pid"
  done
  for i in $(seq 0 $((n - 1))); do
    for _ in $(seq 1 300); do
      [ -s "$dir/v$i/ports" ] && break
      running "$i" || { tail -n 20 "$dir/v$i/log" >&2; die "v$i exited during start"; }
      sleep 0.1
    done
    [ -s "$dir/v$i/ports" ] || die "v$i did not start within 30 s (log: $dir/v$i/log)"
    read -r grpc http <"$dir/v$i/ports"
    echo "    v$i  gRPC 127.0.0.1:$grpc  metrics http://127.0.0.1:$http/metrics  log $dir/v$i/log"
  done
  echo "    export TRUSTMOE_VALIDATOR=$(endpoints) TRUSTMOE_GENESIS=$dir/genesis.json"
}

endpoints() {
  local out=""
  for i in $(seq 0 $((n - 1))); do out="$out${out:+,}127.0.0.1:$((base_port + i))"; done
  echo "$out"
}

down() {
  for i in $(seq 0 $((n - 1))); do
    if running "$i"; then
      kill -TERM "$(cat "$dir/v$i/pid")"
    fi
  done
  for i in $(seq 0 $((n - 1))); do
    for _ in $(seq 1 300); do running "$i" || break; sleep 0.1; done
    running "$i" && die "v$i did not stop within 30 s"
    rm -f "$dir/v$i/pid"
  done
  echo "    validators stopped"
}

status() {
  need_binaries
  for i in $(seq 0 $((n - 1))); do
    if running "$i"; then
      local head
      head=$("$cli" ledger head --validator "127.0.0.1:$((base_port + i))" \
        --genesis "$dir/genesis.json" 2>&1 | tr '\n' ' ')
      echo "    v$i up    $head"
    else
      echo "    v$i down"
    fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  clean) [ -d "$dir" ] && down; rm -rf "$dir"; echo "    removed $dir" ;;
  *) echo "usage: $0 up|down|status|clean" >&2; exit 2 ;;
esac
