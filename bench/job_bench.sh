#!/usr/bin/env bash
# bench/job_bench.sh: training throughput of the same job with verify = off, async and sync on
# one cluster (a store, 4 verifying validators, 3 edges, a gate on loopback), in one run, and
# the ratios against off. Targets on CPU edges: sync >= 0.5x off, async >= 0.9x off
# (docs/results/job_bench.md).
#
#   BUILD_DIR=build bench/job_bench.sh [TRAIN_ITEMS]
#
# TRAIN_ITEMS (default 3200) sets the run's length: TRAIN_ITEMS / 64 steps per mode.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${BUILD_DIR:-build}")
BASE_PORT=${BASE_PORT:-7710}
items=${1:-3200}
work="$PWD/.bench/job_bench"
source bench/lib/stack.sh
trap stack_down EXIT
py=${PYTHON:-/usr/bin/python3}

echo "==> a store, 4 validators (verifying), 3 edges and a gate on loopback"
stack_up "$work" 3
declare -A rate acc verified rejected
seed=7
for mode in off async sync; do
  spec="$work/$mode.toml"
  seed=$((seed + 1))  # distinct starts: a step of one job never repeats another's
  cat >"$spec" <<TOML
[job]
name = "job-bench-$mode"
seed = $seed
[model]
experts = 8
top_k = 2
d_model = 64
d_ff = 128
[training]
batch_size = 64
train_limit = $items
test_limit = 500
checkpoint_every = 1000
[verify]
mode = "$mode"
replication = 2
TOML
  echo "==> verify = $mode: $((items / 64)) steps of 64 samples"
  id=$(stack_submit "$spec")
  result=$(stack_wait "$id")
  read -r rate[$mode] acc[$mode] verified[$mode] rejected[$mode] state < <(
    "$py" -c 'import json,sys; j=json.loads(sys.stdin.read()); p=j["progress"]
print(p["samples_per_second"], p["test_accuracy"], p["verified"], p["rejected"], p["state"])' \
      <<<"$result")
  [ "$state" = completed ] || { echo "job $id ended $state" >&2; exit 1; }
  printf '    %.1f samples/s, test accuracy %.1f%%, %s results verified, %s rejected\n' \
    "${rate[$mode]}" "$("$py" -c "print(100*${acc[$mode]})")" "${verified[$mode]}" "${rejected[$mode]}"
done
echo
printf '%-8s %14s %10s %12s\n' mode samples/s "vs off" target
for mode in off async sync; do
  ratio=$("$py" -c "print(f'{${rate[$mode]}/${rate[off]}:.2f}')")
  target=-
  [ "$mode" = async ] && target=">= 0.90"
  [ "$mode" = sync ] && target=">= 0.50"
  printf '%-8s %14.1f %9sx %12s\n' "$mode" "${rate[$mode]}" "$ratio" "$target"
done
