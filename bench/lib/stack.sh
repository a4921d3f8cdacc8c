# Sourced by bench/job_bench.sh and bench/robustness.sh: a whole TrustMoE system on loopback
# (a store, 4 validators that verify against it, N edges, a gate), registered on the chain.
#
#   stack_up DIR EDGES        start everything under DIR; edge i gets the extra config lines in
#                             the variable EDGE_EXTRA_<i> (e.g. an [attack] section), if set
#   stack_submit SPEC         submit a job as the researcher; prints its id
#   stack_wait ID             wait for the job to end; prints `trustmoe job result --json`
#   stack_down                stop everything (also on exit)
#
# Needs BIN (the build directory) and BASE_PORT (validators on BASE_PORT..BASE_PORT+3);
# EDGE_DEVICE (cpu; cuda on a GPU machine) and DATASET_DIR (Debian's Fashion-MNIST) are optional.
# shellcheck shell=bash

stack_pids=()
stack_cluster=""

stack_wait_ports() {
  local pid=$1 ports=$2 log=$3
  for _ in $(seq 1 600); do
    [ -s "$ports" ] && return 0
    kill -0 "$pid" 2>/dev/null || { tail -n 30 "$log" >&2; return 1; }
    sleep 0.1
  done
  echo "no port file from $log" >&2
  return 1
}

stack_up() {
  local dir=$1 edges=$2
  local cli="$BIN/src/cli/trustmoe"
  rm -rf "$dir"
  mkdir -p "$dir"
  "$cli" keygen -o "$dir/store.key" >/dev/null
  "$cli" keygen -o "$dir/researcher.key" >/dev/null
  "$cli" keygen -o "$dir/gate.key" >/dev/null
  local writers="\"$("$cli" key pub "$dir/gate.key")\""
  local i
  for i in $(seq 1 "$edges"); do
    "$cli" keygen -o "$dir/edge$i.key" >/dev/null
    writers="$writers, \"$("$cli" key pub "$dir/edge$i.key")\""
  done
  cat >"$dir/store.toml" <<TOML
listen = "127.0.0.1:0"
data_dir = "$dir/store-data"
identity_key = "$dir/store.key"
port_file = "$dir/store.ports"
[http]
listen = "127.0.0.1:0"
[auth]
writers = [$writers]
TOML
  "$BIN/src/storage/trustmoe-store" --config "$dir/store.toml" 2>"$dir/store.log" &
  stack_pids+=($!)
  stack_wait_ports "$!" "$dir/store.ports" "$dir/store.log" || return 1
  local store_port
  read -r store_port _ <"$dir/store.ports"
  export TRUSTMOE_STORE="127.0.0.1:$store_port"

  stack_cluster="$dir/cluster"
  CLUSTER_DIR="$stack_cluster" BUILD_DIR="$BIN" BASE_PORT="$BASE_PORT" VERIFY_STORE="127.0.0.1:$store_port" \
    deploy/local/cluster.sh up >"$dir/cluster.log" || { cat "$dir/cluster.log" >&2; return 1; }
  export TRUSTMOE_GENESIS="$stack_cluster/genesis.json"
  export TRUSTMOE_VALIDATOR="127.0.0.1:$BASE_PORT,127.0.0.1:$((BASE_PORT + 1)),127.0.0.1:$((BASE_PORT + 2)),127.0.0.1:$((BASE_PORT + 3))"

  for i in $(seq 1 "$edges"); do
    mkdir -p "$dir/edge$i"
    local extra_var="EDGE_EXTRA_$i"
    cat >"$dir/edge$i.toml" <<TOML
listen = "127.0.0.1:0"
identity_key = "$dir/edge$i.key"
data_dir = "$dir/edge$i"
genesis = "$TRUSTMOE_GENESIS"
port_file = "$dir/edge$i.ports"
[http]
listen = "127.0.0.1:0"
[store]
endpoints = ["127.0.0.1:$store_port"]
[chain]
registration_check_ms = 300
[runtime]
device = "${EDGE_DEVICE:-cpu}"
# extra
${!extra_var:-}
TOML
    "$BIN/src/edge/trustmoe-edge" --config "$dir/edge$i.toml" 2>"$dir/edge$i.log" &
    stack_pids+=($!)
  done
  cat >"$dir/gate.toml" <<TOML
listen = "127.0.0.1:0"
identity_key = "$dir/gate.key"
data_dir = "$dir/gate"
genesis = "$TRUSTMOE_GENESIS"
port_file = "$dir/gate.ports"
dataset_dir = "${DATASET_DIR:-/usr/share/datasets/fashion-mnist}"
[http]
listen = "127.0.0.1:0"
[store]
endpoints = ["127.0.0.1:$store_port"]
TOML
  "$BIN/src/gate/trustmoe-gate" --config "$dir/gate.toml" 2>"$dir/gate.log" &
  stack_pids+=($!)
  stack_wait_ports "$!" "$dir/gate.ports" "$dir/gate.log" || return 1
  local gate_port
  read -r gate_port _ <"$dir/gate.ports"
  export TRUSTMOE_GATE="127.0.0.1:$gate_port"
  export TRUSTMOE_KEY="$dir/researcher.key"

  local admin="$stack_cluster/admin.pem"
  "$cli" node register --key "$admin" --node-key "$dir/researcher.key.pub" --role researcher \
    --name researcher >/dev/null
  "$cli" node register --key "$admin" --node-key "$dir/gate.key.pub" --role gate --name gate \
    --endpoint "127.0.0.1:$gate_port" >/dev/null
  for i in $(seq 1 "$edges"); do
    local pid=${stack_pids[$((i))]}
    stack_wait_ports "$pid" "$dir/edge$i.ports" "$dir/edge$i.log" || return 1
    local port http
    read -r port http <"$dir/edge$i.ports"
    "$cli" node register --key "$admin" --node-key "$dir/edge$i.key.pub" --role edge \
      --name "edge$i" --endpoint "127.0.0.1:$port" >/dev/null
    for _ in $(seq 1 100); do
      curl -fsS "http://127.0.0.1:$http/healthz" >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
}

stack_submit() {
  "$BIN/src/cli/trustmoe" job submit "$1"
}

stack_wait() {
  "$BIN/src/cli/trustmoe" job watch "$1" >/dev/null 2>&1 || true
  "$BIN/src/cli/trustmoe" job result "$1" --json
}

stack_down() {
  local p
  for p in "${stack_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${stack_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  stack_pids=()
  if [ -n "$stack_cluster" ]; then
    CLUSTER_DIR="$stack_cluster" BUILD_DIR="$BIN" BASE_PORT="$BASE_PORT" deploy/local/cluster.sh down >/dev/null 2>&1 || true
    stack_cluster=""
  fi
}

# Restarts edge I of the stack in DIR with its config's extra lines from EDGE_EXTRA_<I> (now),
# on the same key and data, and registers its new endpoint.
stack_restart_edge() {
  local dir=$1 i=$2
  local cli="$BIN/src/cli/trustmoe"
  local pid=${stack_pids[$i]}
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local extra_var="EDGE_EXTRA_$i"
  # Everything up to the first blank line after [runtime] stays; the extra lines are replaced.
  sed -i '/^# extra$/,$d' "$dir/edge$i.toml"
  printf '# extra\n%s\n' "${!extra_var:-}" >>"$dir/edge$i.toml"
  rm -f "$dir/edge$i.ports"
  "$BIN/src/edge/trustmoe-edge" --config "$dir/edge$i.toml" 2>>"$dir/edge$i.log" &
  stack_pids[$i]=$!
  stack_wait_ports "$!" "$dir/edge$i.ports" "$dir/edge$i.log" || return 1
  local port http
  read -r port http <"$dir/edge$i.ports"
  "$cli" node register --key "$stack_cluster/admin.pem" --node-key "$dir/edge$i.key.pub" \
    --role edge --name "edge$i" --endpoint "127.0.0.1:$port" >/dev/null
  # Clear a blacklisting from an earlier run (the experiment's runs are independent).
  "$cli" node lift --key "$stack_cluster/admin.pem" --node "$dir/edge$i.key.pub" \
    --reason "next experiment run" >/dev/null 2>&1 || true
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$http/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
}
