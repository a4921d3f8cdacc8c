#!/usr/bin/env bash
# The Python example client (examples/python/trustmoe_jobs.py) against a real gate: starts, in a
# temporary directory under the build directory, a trustmoe-store, the 4-validator cluster of
# deploy/local/cluster.sh (verifying against the store), 2 edges and a gate, registers them with
# the `trustmoe` CLI, then with Debian's /usr/bin/python3:
#   - a key that is not registered is refused with PERMISSION_DENIED;
#   - a key file that group or others may read is refused before anything is sent;
#   - a tiny training job (2 experts, top-1, verify = sync) submitted with --watch completes
#     (exit 0, "completed"), and `list` and `get` show it.
# Every process it started is stopped on exit.
#
#   python_client_test.sh --bin-dir BUILD_DIR [--work-root DIR]
#
#   --bin-dir DIR    the build tree (DIR/src/cli/trustmoe, DIR/src/gate/trustmoe-gate, ...)
#   --work-root DIR  where the temporary directory goes (default: the build tree); it is removed
#                    when the test passes and kept, with every daemon's log, when it fails
#
# Exit status: 0 passed, 1 failed, 2 bad usage, 77 skipped (ctest's SKIP_RETURN_CODE): no
# /usr/bin/python3, a Python module or the Fashion-MNIST dataset missing (the message names the
# Debian package; deploy/lib/deps.sh lists them all).
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
bin=""
work_root=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin=${2:?--bin-dir needs a directory}; shift 2 ;;
    --work-root) work_root=${2:?--work-root needs a directory}; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "python_client_test.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$bin" ] || { echo "python_client_test.sh: --bin-dir is required" >&2; exit 2; }
bin=$(cd "$bin" && pwd)
work_root=${work_root:-$bin}

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }

py=/usr/bin/python3
[ -x "$py" ] || skip "$py not found: install the Debian package python3"
for pair in grpc:python3-grpcio google.protobuf:python3-protobuf \
  grpc_tools.protoc:python3-grpc-tools cryptography:python3-cryptography; do
  "$py" -c "import ${pair%%:*}" 2>/dev/null ||
    skip "$py cannot import ${pair%%:*}: install the Debian package ${pair#*:}"
done
dataset=/usr/share/datasets/fashion-mnist
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz \
  t10k-labels-idx1-ubyte.gz; do
  [ -f "$dataset/$f" ] || skip "$dataset/$f is missing: install the Debian package dataset-fashion-mnist"
done
cli="$bin/src/cli/trustmoe"
store_bin="$bin/src/storage/trustmoe-store"
edge_bin="$bin/src/edge/trustmoe-edge"
gate_bin="$bin/src/gate/trustmoe-gate"
for b in "$cli" "$store_bin" "$edge_bin" "$gate_bin" "$bin/src/chain/validator/trustmoe-validator"; do
  [ -x "$b" ] || fail "$b is not built (ninja trustmoe trustmoe-gate trustmoe-edge trustmoe-store trustmoe-validator)"
done

started=$(date +%s)
work=$(mktemp -d "$work_root/python_client_test.XXXXXX")
# Every step is bounded well inside ctest's TIMEOUT, so that the EXIT trap always gets to stop
# the validators (cluster.sh starts them in the background: they are not this script's children,
# and a ctest timeout, which kills the process tree, might miss them).
py_client=("$py" "$src/examples/python/trustmoe_jobs.py" --stubs-dir "$work/stubs")
client=(timeout -k 5 60 "${py_client[@]}")
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in the source tree

store_pid=""
gate_pid=""
edge_pids=()
cluster_dir=""
passed=""
stop() {  # PID: SIGTERM, up to 10 s, then SIGKILL
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null || true
}
stop_cluster() {
  [ -n "$cluster_dir" ] || return 0
  CLUSTER_DIR="$cluster_dir" BUILD_DIR="$bin" "$src/deploy/local/cluster.sh" down >/dev/null 2>&1 || true
  local pidfile
  for pidfile in "$cluster_dir"/v*/pid; do  # one that did not stop within cluster.sh's 30 s
    [ -f "$pidfile" ] && stop "$(cat "$pidfile")"
  done
  return 0
}
cleanup() {
  local rc=$?
  set +e
  [ -n "$gate_pid" ] && stop "$gate_pid"
  local p
  for p in "${edge_pids[@]}"; do stop "$p"; done
  stop_cluster
  [ -n "$store_pid" ] && stop "$store_pid"
  if [ -n "$passed" ]; then
    rm -rf "$work"
  else
    for log in "$work"/*.log "$cluster_dir"/v0/log; do
      [ -f "$log" ] || continue
      echo "---- tail of $log" >&2
      tail -n 15 "$log" >&2
    done
    echo "kept $work" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# Waits until daemon PID writes its port file (up to TENTHS tenths of a second).
wait_for_ports() {
  local pid=$1 ports=$2 log=$3 tenths=$4
  for _ in $(seq 1 "$tenths"); do
    [ -s "$ports" ] && return 0
    kill -0 "$pid" 2>/dev/null || fail "$(basename "$log" .log) exited during start (log $log)"
    sleep 0.1
  done
  fail "no port file from $(basename "$log" .log) after $((tenths / 10)) s (log $log)"
}

echo "==> keys"
for k in store researcher stranger gate edge1 edge2; do "$cli" keygen -o "$work/$k.key" >/dev/null; done
writers=""
for k in gate edge1 edge2; do writers="$writers${writers:+, }\"$("$cli" key pub "$work/$k.key")\""; done

echo "==> trustmoe-store"
cat >"$work/store.toml" <<TOML
listen = "127.0.0.1:0"
data_dir = "$work/store-data"
identity_key = "$work/store.key"
port_file = "$work/store.ports"
[http]
listen = "127.0.0.1:0"
[auth]
writers = [$writers]
TOML
"$store_bin" --config "$work/store.toml" 2>"$work/store.log" &
store_pid=$!
wait_for_ports "$store_pid" "$work/store.ports" "$work/store.log" 100
read -r store_port _ <"$work/store.ports"

# The validators listen on BASE_PORT..BASE_PORT+3, written into the genesis: a random base in
# 20000-32000 (below Linux's ephemeral ports, 32768 up, where port 0 listeners and outgoing
# connections land) whose 4 ports are free now, and another (with a new cluster) if one is
# taken before the validators bind it.
ports_free() {
  "$py" - "$1" <<'PY'
import socket, sys
base = int(sys.argv[1])
for port in range(base, base + 4):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        sys.exit(1)
    finally:
        s.close()
PY
}
echo "==> 4 validators (deploy/local/cluster.sh), verifying against the store"
for attempt in 1 2 3 4 5; do
  base=$((20000 + RANDOM % 12000))
  ports_free "$base" || continue
  cluster_dir="$work/cluster$attempt"
  if CLUSTER_DIR="$cluster_dir" BUILD_DIR="$bin" BASE_PORT="$base" \
    VERIFY_STORE="127.0.0.1:$store_port" "$src/deploy/local/cluster.sh" up >"$work/cluster.log" 2>&1; then
    break
  fi
  echo "    cluster on ports $base-$((base + 3)) did not start (attempt $attempt):" >&2
  tail -n 3 "$work/cluster.log" >&2
  stop_cluster
  cluster_dir=""
done
[ -n "$cluster_dir" ] || fail "no validator cluster after 5 attempts (log $work/cluster.log)"
genesis="$cluster_dir/genesis.json"
export TRUSTMOE_VALIDATOR="127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2)),127.0.0.1:$((base + 3))"
export TRUSTMOE_GENESIS="$genesis"
echo "    validators on 127.0.0.1:$base-$((base + 3))"

echo "==> 2 edges and the gate"
edge_ports=()
edge_https=()
for e in 1 2; do
  mkdir -p "$work/edge$e"
  cat >"$work/edge$e.toml" <<TOML
listen = "127.0.0.1:0"
identity_key = "$work/edge$e.key"
data_dir = "$work/edge$e"
genesis = "$genesis"
port_file = "$work/edge$e.ports"
[http]
listen = "127.0.0.1:0"
[store]
endpoints = ["127.0.0.1:$store_port"]
[chain]
registration_check_ms = 200
[runtime]
device = "cpu"
TOML
  "$edge_bin" --config "$work/edge$e.toml" 2>"$work/edge$e.log" &
  edge_pids+=($!)
done
mkdir -p "$work/gate"
cat >"$work/gate.toml" <<TOML
listen = "127.0.0.1:0"
identity_key = "$work/gate.key"
data_dir = "$work/gate"
genesis = "$genesis"
port_file = "$work/gate.ports"
[http]
listen = "127.0.0.1:0"
[store]
endpoints = ["127.0.0.1:$store_port"]
TOML
"$gate_bin" --config "$work/gate.toml" 2>"$work/gate.log" &
gate_pid=$!
for e in 1 2; do
  wait_for_ports "${edge_pids[$((e - 1))]}" "$work/edge$e.ports" "$work/edge$e.log" 300
  read -r port http <"$work/edge$e.ports"
  edge_ports+=("$port")
  edge_https+=("$http")
done
wait_for_ports "$gate_pid" "$work/gate.ports" "$work/gate.log" 300
read -r gate_port _ <"$work/gate.ports"
gate="127.0.0.1:$gate_port"
echo "    gate $gate"

echo "==> registrations (researcher, gate, edges)"
register() { timeout -k 5 60 "$cli" node register --key "$cluster_dir/admin.pem" "$@" >>"$work/register.log" 2>&1 ||
  fail "node register $* (log $work/register.log)"; }
register --node-key "$work/researcher.key.pub" --role researcher --name py-researcher
register --node-key "$work/gate.key.pub" --role gate --name py-gate --endpoint "$gate"
for e in 1 2; do
  register --node-key "$work/edge$e.key.pub" --role edge --name "py-edge$e" \
    --endpoint "127.0.0.1:${edge_ports[$((e - 1))]}"
done
for e in 1 2; do  # an edge serves once it sees its registration
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:${edge_https[$((e - 1))]}/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fsS "http://127.0.0.1:${edge_https[$((e - 1))]}/healthz" >/dev/null 2>&1 ||
    fail "edge$e is not healthy 10 s after its registration (log $work/edge$e.log)"
done

cat >"$work/tiny.toml" <<'TOML'
# A tiny job for the Python client test: 2 experts, top-1, verify = sync.
[job]
name = "py-client-tiny"
kind = "training"
dataset = "fashion-mnist"
seed = 1

[model]
experts = 2
top_k = 1
d_model = 8
d_ff = 16

[training]
epochs = 1
batch_size = 32
train_limit = 128
test_limit = 64
checkpoint_every = 2

[verify]
mode = "sync"
replication = 1
k_min = 1
TOML

echo "==> a key that is not registered: PERMISSION_DENIED"
set +e
"${client[@]}" --gate "$gate" --key "$work/stranger.key" --genesis "$genesis" \
  submit "$work/tiny.toml" >"$work/stranger.out" 2>"$work/stranger.err"
rc=$?
set -e
sed 's/^/    /' "$work/stranger.err"
[ "$rc" -ne 0 ] || fail "a job from an unregistered key was accepted"
grep -q "PERMISSION_DENIED" "$work/stranger.err" || fail "no PERMISSION_DENIED for an unregistered key"

echo "==> a key file others may read is refused"
cp -p "$work/researcher.key" "$work/open.key"
chmod 644 "$work/open.key"
if "${client[@]}" --gate "$gate" --key "$work/open.key" --genesis "$genesis" list \
  >/dev/null 2>"$work/open.err"; then
  fail "a world-readable key was used"
fi
sed 's/^/    /' "$work/open.err"
grep -q "chmod 600" "$work/open.err" || fail "the refusal of a world-readable key does not say chmod 600"

echo "==> submit --watch (2 experts, top-1, 128 items, verify = sync)"
export TRUSTMOE_GATE="$gate" TRUSTMOE_KEY="$work/researcher.key"
set +e
timeout -k 5 150 "${py_client[@]}" submit "$work/tiny.toml" --watch >"$work/submit.out" 2>"$work/submit.err"
rc=$?
set -e
sed 's/^/    /' "$work/submit.out" "$work/submit.err"
[ "$rc" -eq 0 ] || fail "submit --watch exited $rc"
grep -q "completed" "$work/submit.out" || fail "submit --watch did not print \"completed\""
job_id=$(head -n 1 "$work/submit.out")
[[ "$job_id" =~ ^[0-9a-f]{32}$ ]] || fail "the first line of submit is not a job id: $job_id"

echo "==> list and get"
"${client[@]}" list >"$work/list.out"
sed 's/^/    /' "$work/list.out"
grep -q "^$job_id .* completed " "$work/list.out" || fail "list does not show job $job_id completed"
"${client[@]}" get "$job_id" >"$work/get.out"
sed 's/^/    /' "$work/get.out"
grep -q "^state: *completed$" "$work/get.out" || fail "get does not show the job completed"
grep -q "^manifest: " "$work/get.out" || fail "get shows no manifest"

passed=1
echo "PASS in $(($(date +%s) - started)) s"
