#!/usr/bin/env bash
# bench/robustness.sh: the robustness experiment (docs/results/robustness.md). The same 8-expert
# top-2 MoE on Fashion-MNIST over 8 edges, of which 0, 1 or 2 are malicious (edge/attack.h),
# with verify = sync and verify = off:
#   - attacks during training (fresh cluster per run), consistent (every result sign-flipped) or
#     intermittent (honest for a while, then a share of results altered with changing kinds:
#     scale, noise, sign, zero, replay);
#   - attacks at inference, on a model trained cleanly on the same cluster;
# and the centralised reference (the same model trained in one process). Writes
# docs/results/robustness.tsv, docs/results/robustness.md (table) and docs/results/robustness.png
# (gnuplot).
#
#   BUILD_DIR=build bench/robustness.sh [TRAIN_ITEMS [TEST_ITEMS]]
#   bench/robustness.sh --plot     only the plot, from docs/results/robustness.tsv
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${BUILD_DIR:-build}")
BASE_PORT=${BASE_PORT:-7810}
train_items=${1:-6000}
test_items=${2:-2000}
work="$PWD/.bench/robustness"
out="$PWD/docs/results"
py=${PYTHON:-/usr/bin/python3}
source bench/lib/stack.sh
trap stack_down EXIT
mkdir -p "$work" "$out"
started=$(date +%s)
plot_only=""
[ "${1:-}" = --plot ] && plot_only=1

spec() {  # spec FILE KIND MODE [BASE_MODEL]
  cat >"$1" <<TOML
[job]
name = "robustness"
kind = "$2"
seed = 1
[model]
experts = 8
top_k = 2
d_model = 64
d_ff = 128
${4:+base_model = \"$4\"}
[training]
batch_size = 64
train_limit = $train_items
test_limit = $test_items
checkpoint_every = 1000
[verify]
mode = "$3"
replication = 2
TOML
}

# attack_config KIND(consistent|intermittent) PHASE(training|inference) SEED
attack_config() {
  if [ "$1" = consistent ]; then
    printf '[attack]\nmode = "consistent"\nkinds = ["sign"]\nseed = %s\n' "$3"
  elif [ "$2" = training ]; then
    printf '[attack]\nmode = "intermittent"\nkinds = ["scale", "noise", "sign", "zero", "replay"]\nhonest_calls = 100\nfraction = 0.3\nseed = %s\n' "$3"
  else
    printf '[attack]\nmode = "intermittent"\nkinds = ["scale", "noise", "sign", "zero", "replay"]\nhonest_calls = 1\nfraction = 0.5\nseed = %s\n' "$3"
  fi
}

# Runs a submitted job to its end and appends a row: phase malicious attack mode accuracy
# imbalance verified rejected dropped.
record() {
  local phase=$1 m=$2 attack=$3 mode=$4 id=$5
  local result
  result=$(stack_wait "$id")
  local row
  row=$("$py" -c '
import json, sys
j = json.loads(sys.stdin.read()); p = j["progress"]
load = p.get("expert_load") or [0]
acc = p["test_accuracy"] if p["test_accuracy"] is not None else -1
print("%s\t%s\t%s\t%s\t%.4f\t%.3f\t%d\t%d\t%d\t%s" % (sys.argv[1], sys.argv[2], sys.argv[3],
      sys.argv[4], acc, max(load) * len(load), p["verified"], p["rejected"],
      p.get("blacklisted_edges", 0), p["state"]))' "$phase" "$m" "$attack" "$mode" <<<"$result")
  echo "$row" >>"$work/rows.tsv"
  echo "    $row"
}

if [ -z "$plot_only" ]; then
: >"$work/rows.tsv"
echo "==> centralised reference (one process)"
spec "$work/ref.toml" training off
ref=$("$BIN/bench/centralised_reference" "$work/ref.toml")
ref_acc=$("$py" -c 'import json,sys; print(json.loads(sys.stdin.read())["test_accuracy"])' <<<"$ref")
ref_imb=$("$py" -c 'import json,sys; print(json.loads(sys.stdin.read())["load_imbalance"])' <<<"$ref")
printf 'reference\t0\tnone\tnone\t%.4f\t%.3f\t0\t0\t0\tcompleted\n' "$ref_acc" "$ref_imb" >>"$work/rows.tsv"
echo "    test accuracy $ref_acc, load imbalance $ref_imb"

echo "==> attacks at inference: one cluster of 8 edges; a model trained cleanly (verify = sync)"
for i in $(seq 1 8); do unset "EDGE_EXTRA_$i"; done
stack_up "$work/inference" 8
spec "$work/clean-sync.toml" training sync
id=$(stack_submit "$work/clean-sync.toml")
record training 0 none sync "$id"
manifest=$("$BIN/src/cli/trustmoe" job result "$id" --json | "$py" -c 'import json,sys; print(json.loads(sys.stdin.read())["manifest_cid"])')
echo "    model manifest $manifest"
for mode in sync off; do
  spec "$work/inf-clean-$mode.toml" inference "$mode" "$manifest"
  record inference 0 none "$mode" "$(stack_submit "$work/inf-clean-$mode.toml")"
done
for m in 1 2; do
  for attack in consistent intermittent; do
    for mode in sync off; do
      for i in $(seq 1 8); do
        if [ "$i" -le "$m" ]; then
          printf -v "EDGE_EXTRA_$i" '%s' "$(attack_config "$attack" inference "$i")"
        else
          unset "EDGE_EXTRA_$i"
        fi
        stack_restart_edge "$work/inference" "$i"
      done
      echo "==> inference, $m malicious ($attack), verify = $mode"
      spec "$work/inf.toml" inference "$mode" "$manifest"
      record inference "$m" "$attack" "$mode" "$(stack_submit "$work/inf.toml")"
    done
  done
done
stack_down

echo "==> attacks during training: a fresh cluster of 8 edges per run"
run_training() {  # m attack mode
  local m=$1 attack=$2 mode=$3
  for i in $(seq 1 8); do
    if [ "$i" -le "$m" ]; then
      printf -v "EDGE_EXTRA_$i" '%s' "$(attack_config "$attack" training "$i")"
    else
      unset "EDGE_EXTRA_$i"
    fi
  done
  echo "==> training, $m malicious ($attack), verify = $mode"
  stack_up "$work/training" 8
  spec "$work/train.toml" training "$mode"
  record training "$m" "$attack" "$mode" "$(stack_submit "$work/train.toml")"
  stack_down
}
run_training 0 none off
for m in 1 2; do
  for attack in consistent intermittent; do
    for mode in sync off; do run_training "$m" "$attack" "$mode"; done
  done
done

elapsed=$(( $(date +%s) - started ))
cp "$work/rows.tsv" "$out/robustness.tsv"
"$py" - "$out" "$elapsed" "$train_items" "$test_items" <<'PY'
import sys
out, elapsed, train_items, test_items = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = [l.rstrip("\n").split("\t") for l in open(f"{out}/robustness.tsv")]
ref = next(float(r[4]) for r in rows if r[0] == "reference")
clean = {r[3]: float(r[4]) for r in rows if r[0] == "training" and r[1] == "0"}
lines = ["| phase | malicious edges | attack | verify | test accuracy | vs reference | load imbalance | verified | rejected | edges dropped |",
         "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
for r in rows:
    acc = float(r[4])
    lines.append(f"| {r[0]} | {r[1]} of 8 | {r[2]} | {r[3]} | {100*acc:.1f}% | {100*(acc-ref):+.1f} pt | {float(r[5]):.2f} | {r[6]} | {r[7]} | {r[8]} |")
open(f"{out}/robustness-table.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
print(f"\n{len(rows)} runs in {elapsed // 60} min {elapsed % 60} s; train items {train_items}, test items {test_items}")
PY
fi
ref_acc=$(awk -F'\t' '$1 == "reference" { print $5 }' "$out/robustness.tsv")

# The plot: accuracy against the number of malicious edges, one line per phase/attack/verify.
if ! command -v gnuplot >/dev/null; then
  echo "(gnuplot is missing: apt-get install gnuplot-nox; the table is written, the plot is not)"
  exit 0
fi
"$py" - "$out" <<'PY'
import sys, collections
out = sys.argv[1]
rows = [l.rstrip("\n").split("\t") for l in open(f"{out}/robustness.tsv")]
series = collections.OrderedDict()
for phase, m, attack, mode, acc, *_ in rows:
    if phase == "reference":
        continue
    for a in (["consistent", "intermittent"] if attack == "none" else [attack]):
        series.setdefault((phase, a, mode), {})[int(m)] = float(acc) * 100
with open(f"{out}/robustness.dat", "w") as f:
    for (phase, a, mode), pts in series.items():
        f.write(f'"{phase}, {a}, verify={mode}"\n')
        for m in sorted(pts):
            f.write(f"{m} {pts[m]:.2f}\n")
        f.write("\n\n")
PY
gnuplot <<GP
set terminal pngcairo size 900,700
set output "$out/robustness.png"
set title "Test accuracy with malicious edges\n(8 edges, 8-expert top-2 MoE, Fashion-MNIST)"
set xlabel "malicious edges (of 8)"
set ylabel "test accuracy (%)"
set xtics 0,1,2
set key below maxrows 5
set datafile missing "?"
stats "$out/robustness.dat" nooutput
plot for [i=0:STATS_blocks-1] "$out/robustness.dat" index i with linespoints title columnheader(1), \
     $(/usr/bin/python3 -c "print(100*$ref_acc)") with lines dashtype 2 lc "black" title "centralised reference"
GP
rm -f "$out/robustness.dat"
echo "plot: $out/robustness.png"
