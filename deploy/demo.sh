#!/usr/bin/env bash
# TrustMoE demo. Installs what is missing, builds, starts a local trustmoe-store on loopback,
# round-trips a blob through the `trustmoe` CLI, starts a cluster of 4 PBFT validators (each
# re-computes a sample of every expert result against the store), 3 edges and a gate, registers
# them on the chain, and has a researcher train an 8-expert top-2 MoE on Fashion-MNIST over the
# edges with verify = sync: progress, test accuracy, the job's record and verdicts on the
# ledger, then audits the ledger online and offline, and stops everything.
# BUILD_DIR overrides the build directory; the demo's state lives in .demo/ (removed at start).
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/lib/deps.sh

build_dir=${BUILD_DIR:-build}
trustmoe_install_deps
trustmoe_build "$build_dir" >/dev/null
bin="$PWD/$build_dir"
cli="$bin/src/cli/trustmoe"
demo="$PWD/.demo"
rm -rf "$demo"
mkdir -p "$demo"

store_pid=""
gate_pid=""
edge_pids=()
edge_ports=()
edge_https=()
cluster_up=""
cleanup() {
  if [ -n "$gate_pid" ] && kill -0 "$gate_pid" 2>/dev/null; then
    kill -TERM "$gate_pid"
    wait "$gate_pid" 2>/dev/null || true
  fi
  local p
  for p in "${edge_pids[@]}"; do
    if kill -0 "$p" 2>/dev/null; then
      kill -TERM "$p"
      wait "$p" 2>/dev/null || true
    fi
  done
  if [ -n "$cluster_up" ]; then
    deploy/local/cluster.sh down >/dev/null 2>&1 || true
  fi
  if [ -n "$store_pid" ] && kill -0 "$store_pid" 2>/dev/null; then
    kill -TERM "$store_pid"
    wait "$store_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

# Waits until daemon PID writes its port file (up to TENTHS tenths of a second); shows its
# log and fails if it exits first.
wait_for_ports() {
  local pid=$1 ports=$2 log=$3 tenths=$4
  for _ in $(seq 1 "$tenths"); do
    [ -s "$ports" ] && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1
  done
  echo "no port file from $log after $((tenths / 10)) s" >&2
  exit 1
}

echo "==> keys"
"$cli" keygen -o "$demo/store.key" >/dev/null
"$cli" keygen -o "$demo/writer.key" | sed 's/^/    /'
writer_hex=$("$cli" key pub "$demo/writer.key")
"$cli" keygen -o "$demo/researcher.key" >/dev/null
"$cli" keygen -o "$demo/gate.key" >/dev/null
for e in 1 2 3; do "$cli" keygen -o "$demo/edge$e.key" >/dev/null; done
writers="\"$writer_hex\", \"$("$cli" key pub "$demo/gate.key")\""
for e in 1 2 3; do writers="$writers, \"$("$cli" key pub "$demo/edge$e.key")\""; done

echo "==> starting trustmoe-store on loopback"
cat >"$demo/store.toml" <<TOML
listen = "127.0.0.1:0"
data_dir = "$demo/store-data"
identity_key = "$demo/store.key"
port_file = "$demo/store.ports"
[http]
listen = "127.0.0.1:0"
[auth]
writers = [$writers]   # the gate uploads experts and checkpoints, edges their results
TOML
"$bin/src/storage/trustmoe-store" --config "$demo/store.toml" 2>"$demo/store.log" &
store_pid=$!
wait_for_ports "$store_pid" "$demo/store.ports" "$demo/store.log" 100
read -r grpc_port http_port <"$demo/store.ports"
echo "    gRPC 127.0.0.1:$grpc_port, metrics http://127.0.0.1:$http_port/metrics"
export TRUSTMOE_STORE="127.0.0.1:$grpc_port" TRUSTMOE_KEY="$demo/writer.key"

echo "==> round trip of a 24 MiB blob through the CLI"
head -c $((24 << 20)) /dev/urandom >"$demo/blob.bin"
cid=$("$cli" store put "$demo/blob.bin" --pin)
echo "    put   -> $cid"
"$cli" store stat "$cid" | sed 's/^/    /'
"$cli" store get "$cid" -o "$demo/blob.out" | sed 's/^/    /'
cmp "$demo/blob.bin" "$demo/blob.out"
echo "    bytes identical: yes"
echo "    healthz: $(curl -fsS "http://127.0.0.1:$http_port/healthz")"
echo "    $(curl -fsS "http://127.0.0.1:$http_port/metrics" | grep '^trustmoe_store_received_bytes_total')"

echo "==> a PBFT cluster of 4 validators on loopback (deploy/local/cluster.sh), each verifying"
echo "    expert results against the store"
export CLUSTER_DIR="$demo/cluster" BUILD_DIR="$build_dir" BASE_PORT="${BASE_PORT:-7610}"
export VERIFY_STORE="127.0.0.1:$grpc_port"
cluster_up=1
deploy/local/cluster.sh up | sed 's/^/    /'
export TRUSTMOE_VALIDATOR="127.0.0.1:$BASE_PORT,127.0.0.1:$((BASE_PORT + 1)),127.0.0.1:$((BASE_PORT + 2)),127.0.0.1:$((BASE_PORT + 3))"
export TRUSTMOE_GENESIS="$CLUSTER_DIR/genesis.json"

echo "==> starting 3 edges (cpu, f32); each refuses to serve until the chain registers it"
for e in 1 2 3; do
  mkdir -p "$demo/edge$e"
  cat >"$demo/edge$e.toml" <<TOML
listen = "127.0.0.1:0"
identity_key = "$demo/edge$e.key"
data_dir = "$demo/edge$e"
genesis = "$CLUSTER_DIR/genesis.json"
port_file = "$demo/edge$e.ports"
[http]
listen = "127.0.0.1:0"
[store]
endpoints = ["127.0.0.1:$grpc_port"]
[chain]
registration_check_ms = 300
[runtime]
device = "cpu"
TOML
  "$bin/src/edge/trustmoe-edge" --config "$demo/edge$e.toml" 2>"$demo/edge$e.log" &
  edge_pids+=($!)
done
for e in 1 2 3; do
  wait_for_ports "${edge_pids[$((e - 1))]}" "$demo/edge$e.ports" "$demo/edge$e.log" 300
  read -r port http <"$demo/edge$e.ports"
  edge_ports+=("$port")
  edge_https+=("$http")
  echo "    edge$e gRPC 127.0.0.1:$port, healthz: $(curl -sS "http://127.0.0.1:$http/healthz")"
done

echo "==> starting trustmoe-gate (the job service; it keeps the backbone, gating and data)"
mkdir -p "$demo/gate"
cat >"$demo/gate.toml" <<TOML
listen = "127.0.0.1:0"
identity_key = "$demo/gate.key"
data_dir = "$demo/gate"
genesis = "$CLUSTER_DIR/genesis.json"
port_file = "$demo/gate.ports"
[http]
listen = "127.0.0.1:0"
[store]
endpoints = ["127.0.0.1:$grpc_port"]
TOML
"$bin/src/gate/trustmoe-gate" --config "$demo/gate.toml" 2>"$demo/gate.log" &
gate_pid=$!
wait_for_ports "$gate_pid" "$demo/gate.ports" "$demo/gate.log" 300
read -r gate_port gate_http <"$demo/gate.ports"
echo "    gRPC 127.0.0.1:$gate_port, healthz: $(curl -sS "http://127.0.0.1:$gate_http/healthz")"
export TRUSTMOE_GATE="127.0.0.1:$gate_port"

echo "==> the admin registers the researcher, the gate and the 3 edges on the chain"
"$cli" node register --key "$CLUSTER_DIR/admin.pem" --node-key "$demo/researcher.key.pub" \
  --role researcher --name demo-researcher | sed 's/^/    /'
"$cli" node register --key "$CLUSTER_DIR/admin.pem" --node-key "$demo/gate.key.pub" \
  --role gate --name demo-gate --endpoint "127.0.0.1:$gate_port" | sed 's/^/    /'
for e in 1 2 3; do
  "$cli" node register --key "$CLUSTER_DIR/admin.pem" --node-key "$demo/edge$e.key.pub" \
    --role edge --name "edge$e" --endpoint "127.0.0.1:${edge_ports[$((e - 1))]}" | sed 's/^/    /'
done
for e in 1 2 3; do
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:${edge_https[$((e - 1))]}/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "    edge$e healthz: $(curl -sS "http://127.0.0.1:${edge_https[$((e - 1))]}/healthz")"
done

echo "==> an unregistered key cannot submit a job"
if TRUSTMOE_KEY="$demo/writer.key" "$cli" job submit examples/jobs/fmnist-moe.toml \
  2>"$demo/unregistered.err"; then
  echo "a job from an unregistered key was accepted" >&2
  exit 1
fi
sed 's/^/    /' "$demo/unregistered.err"

echo "==> the researcher submits examples/jobs/fmnist-moe.toml: an 8-expert top-2 MoE trained"
echo "    on Fashion-MNIST over the 3 edges, every expert on 2 of them, verify = sync"
export TRUSTMOE_KEY="$demo/researcher.key"
job_id=$("$cli" job submit examples/jobs/fmnist-moe.toml)
echo "    job $job_id"
"$cli" job watch "$job_id" | sed 's/^/    /'
"$cli" job result "$job_id" | sed 's/^/    /'
echo "==> the job on the ledger: its record, placement and the verdicts on its expert results"
# The record and placement, then the summary of the verdicts (the per-result table is long).
"$cli" ledger job "$job_id" | awk 'NF == 0 { table = 1 } !table { print } END { print }' \
  | sed 's/^/    /'
job_json=$("$cli" ledger job "$job_id" --json)
if ! grep -q '"completed"' <<<"$job_json"; then
  echo "the job is not recorded as completed on the ledger" >&2
  exit 1
fi
echo "==> a registration signed by the researcher instead of the admin is refused (the CLI checks"
echo "    first; validators refuse such a transaction too, with PERMISSION_DENIED)"
if "$cli" node register --key "$demo/researcher.key" --node-key "$demo/edge1.key.pub" \
  --role gate --name forged 2>"$demo/forged.err"; then
  echo "forged registration was accepted" >&2
  exit 1
fi
sed 's/^/    /' "$demo/forged.err"

echo "==> the auditor's view"
"$cli" ledger head | sed 's/^/    /'
"$cli" ledger nodes | sed 's/^/    /'
"$cli" ledger verify | sed 's/^/    /'

echo "==> stopping the gate, the edges, the validators and the store (SIGTERM)"
kill -TERM "$gate_pid"
wait "$gate_pid"
gate_pid=""
for p in "${edge_pids[@]}"; do kill -TERM "$p"; done
for p in "${edge_pids[@]}"; do wait "$p"; done
edge_pids=()
deploy/local/cluster.sh down | sed 's/^/    /'
cluster_up=""
kill -TERM "$store_pid"
wait "$store_pid"
store_pid=""
echo "==> offline audit of validator v2's ledger (opened read-only)"
"$cli" ledger verify --data-dir "$CLUSTER_DIR/v2/data" | sed 's/^/    /'
echo
echo "demo OK"
