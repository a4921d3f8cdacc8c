#!/usr/bin/env bash
# TrustMoE demo. Installs what is missing, builds, starts a local trustmoe-store on loopback,
# round-trips a blob through the `trustmoe` CLI (put, stat, get, verify), and stops it.
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
cleanup() {
  if [ -n "$store_pid" ] && kill -0 "$store_pid" 2>/dev/null; then
    kill -TERM "$store_pid"
    wait "$store_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

echo "==> keys"
"$cli" keygen -o "$demo/store.key" >/dev/null
"$cli" keygen -o "$demo/writer.key" | sed 's/^/    /'
writer_hex=$("$cli" key pub "$demo/writer.key")

echo "==> starting trustmoe-store on loopback"
cat >"$demo/store.toml" <<TOML
listen = "127.0.0.1:0"
data_dir = "$demo/store-data"
identity_key = "$demo/store.key"
port_file = "$demo/store.ports"
[http]
listen = "127.0.0.1:0"
[auth]
writers = ["$writer_hex"]
TOML
"$bin/src/storage/trustmoe-store" --config "$demo/store.toml" 2>"$demo/store.log" &
store_pid=$!
for _ in $(seq 1 100); do
  [ -s "$demo/store.ports" ] && break
  kill -0 "$store_pid" 2>/dev/null || { cat "$demo/store.log" >&2; exit 1; }
  sleep 0.1
done
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

echo "==> stopping the store (SIGTERM)"
kill -TERM "$store_pid"
wait "$store_pid"
store_pid=""
echo "    stopped cleanly"
echo
echo "demo OK. The full demo will add: 4 PBFT validators, 3 edges and a gate on loopback,"
echo "training an 8-expert top-2 model on Fashion-MNIST with every expert result verified."
