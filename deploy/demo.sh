#!/usr/bin/env bash
# TrustMoE demo. Installs what is missing, builds, starts a local trustmoe-store on loopback,
# round-trips a blob through the `trustmoe` CLI (put, stat, get, verify), starts a cluster of
# 4 PBFT validators, records nodes and an expert on the ledger, starts an edge that refuses to
# serve until it is registered, calls the expert on it and checks the result commitment it
# signs and commits, waits for the validators' verdict on it (they re-compute a sample of its
# rows), audits the ledger online and offline, and stops everything.
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
edge_pid=""
cluster_up=""
cleanup() {
  if [ -n "$edge_pid" ] && kill -0 "$edge_pid" 2>/dev/null; then
    kill -TERM "$edge_pid"
    wait "$edge_pid" 2>/dev/null || true
  fi
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
"$cli" keygen -o "$demo/edge.key" >/dev/null
edge_hex=$("$cli" key pub "$demo/edge.key")

echo "==> starting trustmoe-store on loopback"
cat >"$demo/store.toml" <<TOML
listen = "127.0.0.1:0"
data_dir = "$demo/store-data"
identity_key = "$demo/store.key"
port_file = "$demo/store.ports"
[http]
listen = "127.0.0.1:0"
[auth]
writers = ["$writer_hex", "$edge_hex"]   # the edge uploads the tensors of its results
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

echo "==> a researcher makes an expert file (swiglu 256 -> 1024 -> 256) and stores it"
"$cli" expert new --arch swiglu --d-model 256 --d-ff 1024 --seed 1 \
  -o "$demo/expert.safetensors" | sed 's/^/    /'
expert_cid=$("$cli" store put "$demo/expert.safetensors" --pin)
expert_size=$(stat -c %s "$demo/expert.safetensors")

echo "==> starting trustmoe-edge (cpu, f32): it refuses to serve until the chain registers it"
mkdir -p "$demo/edge"
cat >"$demo/edge.toml" <<TOML
listen = "127.0.0.1:0"
identity_key = "$demo/edge.key"
data_dir = "$demo/edge"
genesis = "$CLUSTER_DIR/genesis.json"
port_file = "$demo/edge.ports"
[http]
listen = "127.0.0.1:0"
[store]
endpoints = ["127.0.0.1:$grpc_port"]
[chain]
registration_check_ms = 300
[runtime]
device = "cpu"
TOML
"$bin/src/edge/trustmoe-edge" --config "$demo/edge.toml" 2>"$demo/edge.log" &
edge_pid=$!
wait_for_ports "$edge_pid" "$demo/edge.ports" "$demo/edge.log" 300
read -r edge_port edge_http <"$demo/edge.ports"
sleep 1
echo "    gRPC 127.0.0.1:$edge_port, healthz: $(curl -sS "http://127.0.0.1:$edge_http/healthz")"

echo "==> admin registers a researcher and the edge; the researcher publishes the expert"
"$cli" node register --key "$CLUSTER_DIR/admin.pem" --node-key "$demo/researcher.key.pub" \
  --role researcher --name demo-researcher | sed 's/^/    /'
"$cli" node register --key "$CLUSTER_DIR/admin.pem" --node-key "$demo/edge.key.pub" \
  --role edge --name demo-edge --endpoint "127.0.0.1:$edge_port" | sed 's/^/    /'
"$cli" expert publish --key "$demo/researcher.key" --cid "$expert_cid" --name demo/expert-0 \
  --arch swiglu --size "$expert_size" | sed 's/^/    /'
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$edge_http/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
echo "    edge healthz: $(curl -sS "http://127.0.0.1:$edge_http/healthz")"

echo "==> the expert runs on the edge; its signed result commitment is checked and committed"
"$cli" expert input --rows 64 --d-model 256 --seed 7 -o "$demo/x.safetensors" >/dev/null
"$cli" expert call --edge "127.0.0.1:$edge_port" --cid "$expert_cid" --job demo-job --step 1 \
  --input "$demo/x.safetensors" -o "$demo/y-edge.safetensors" | sed 's/^/    /'
"$cli" expert run "$demo/expert.safetensors" --input "$demo/x.safetensors" \
  -o "$demo/y-local.safetensors" >/dev/null
cmp "$demo/y-edge.safetensors" "$demo/y-local.safetensors"
echo "    the edge's output is byte-identical to trustmoe expert run on this machine"
curl -fsS "http://127.0.0.1:$edge_http/metrics" \
  | grep -E '^trustmoe_edge_(requests_total|rows_total|outbox_depth|results_delivered_total) ' \
  | sed 's/^/    /'
echo "==> the validators re-compute a sample of the result's rows and vote; 3 of 4 make the verdict"
job_json=""
for _ in $(seq 1 300); do
  job_json=$("$cli" ledger job demo-job --json 2>/dev/null || true)
  if grep -q '"results": 1' <<<"$job_json" && grep -q '"pending": 0' <<<"$job_json"; then break; fi
  sleep 0.1
done
"$cli" ledger job demo-job | sed 's/^/    /'
if ! grep -q '"accepted": 1' <<<"$job_json"; then
  echo "the demo's result did not get an ACCEPTED verdict within 30 s" >&2
  exit 1
fi
echo "==> a registration signed by the researcher instead of the admin is refused (the CLI checks"
echo "    first; validators refuse such a transaction too, with PERMISSION_DENIED)"
if "$cli" node register --key "$demo/researcher.key" --node-key "$demo/edge.key.pub" \
  --role gate --name forged 2>"$demo/forged.err"; then
  echo "forged registration was accepted" >&2
  exit 1
fi
sed 's/^/    /' "$demo/forged.err"

echo "==> the auditor's view"
"$cli" ledger head | sed 's/^/    /'
"$cli" ledger nodes | sed 's/^/    /'
"$cli" ledger verify | sed 's/^/    /'

echo "==> stopping the edge, the validators and the store (SIGTERM)"
kill -TERM "$edge_pid"
wait "$edge_pid"
edge_pid=""
deploy/local/cluster.sh down | sed 's/^/    /'
cluster_up=""
kill -TERM "$store_pid"
wait "$store_pid"
store_pid=""
echo "==> offline audit of validator v2's ledger (opened read-only)"
"$cli" ledger verify --data-dir "$CLUSTER_DIR/v2/data" | sed 's/^/    /'
echo
echo "demo OK. Still to come: a gate training an 8-expert top-2 model on Fashion-MNIST over 3 edges."
