#!/usr/bin/env bash
# On the GPU machine (docs/gpu.md): unpacks .gpu-deps/ (made by deploy/gpu/fetch-deps.sh on the
# development machine), builds against the machine's PyTorch libtorch, runs the tests and the
# benchmarks, and prints a short table of results last.
#   deploy/gpu/run.sh            build, test, bench
#   BENCH_ONLY=1 deploy/gpu/run.sh    build, bench (no tests)
#   EXPERT_ONLY=1 deploy/gpu/run.sh   build and run only edge_runtime_test and expert_bench
#   TESTS_ONLY=1 deploy/gpu/run.sh    build, test (no benchmarks)
#   VERIFY_BENCH=1 (with any mode)    also bench/verify_bench (Mixtral-size check cost against
#                                     the CUDA edge; verdict latency with 4 validators)
#   JOB_BENCH=1 (with any mode)       also bench/job_bench.sh with CUDA edges (training
#                                     throughput with verify off, async, sync)
#   JOB_BENCH_ONLY=1 deploy/gpu/run.sh  build the daemons and run only bench/job_bench.sh
# edge_runtime_test (its CPU tests and its RuntimeCuda.* GPU tests) runs on its own, in one
# process, writing the GPU-vs-CPU error of every row to $OUT/gpu_errors.jsonl;
# bench/expert_bench writes $OUT/expert_bench.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
deps=${GPU_DEPS_DIR:-/tmp/trustmoe-deps}
build=${BUILD_DIR:-build-gpu}
out=${OUT:-/tmp/trustmoe-gpu-out}
mkdir -p "$out"

# Unpacked again whenever the set of packages changes (a stale library would be linked).
stamp="$deps/.unpacked-$(ls .gpu-deps/*.deb | md5sum | cut -c1-12)"
if [ ! -e "$stamp" ]; then
  echo "==> unpacking $(ls .gpu-deps/*.deb | wc -l) Debian packages into $deps"
  rm -rf "$deps" "$build"
  mkdir -p "$deps"
  for f in .gpu-deps/*.deb; do dpkg -x "$f" "$deps"; done
  touch "$stamp"
fi
lib="$deps/usr/lib/x86_64-linux-gnu"
export LD_LIBRARY_PATH="$lib:${LD_LIBRARY_PATH:-}"
export LIBRARY_PATH="$lib"
export CPATH="$deps/usr/include"
export PKG_CONFIG_PATH="$lib/pkgconfig:$deps/usr/share/pkgconfig"
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')

echo "==> configuring ($build)"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$deps/usr;$lib/cmake" \
  -DProtobuf_PROTOC_EXECUTABLE="$deps/usr/bin/protoc" \
  -DGRPC_CPP_PLUGIN="$deps/usr/bin/grpc_cpp_plugin" \
  -DTORCH_CUDA_ARCH_LIST=9.0 -DTRUSTMOE_WITH_TORCH=ON >"$out/configure.log" 2>&1 \
  || { tail -40 "$out/configure.log"; exit 1; }
targets=()
[ -n "${EXPERT_ONLY:-}" ] && targets=(--target edge_runtime_test expert_bench trustmoe trustmoe-expert-run)
[ -n "${JOB_BENCH_ONLY:-}" ] && targets=(--target trustmoe trustmoe-gate trustmoe-edge trustmoe-store trustmoe-validator)
echo "==> building ${targets[*]:-everything} with $(nproc) jobs"
if ! cmake --build "$build" "${targets[@]}" -j "$(nproc)" -- -k 0 >"$out/build.log" 2>&1; then
  echo "!! some targets failed to build (going on with the rest):"
  grep -E "error:|FAILED" "$out/build.log" | head -20
fi

if [ -n "${JOB_BENCH_ONLY:-}" ]; then
  BENCH_ONLY=1 JOB_BENCH=1 TESTS_ONLY=1
fi
if [ -z "${BENCH_ONLY:-}" ] && [ -z "${EXPERT_ONLY:-}" ]; then
  echo "==> tests (edge_runtime_test runs next, on its own)"
  ctest --test-dir "$build" -j 8 --timeout 900 -E '^edge_runtime_test\.' >"$out/ctest.log" 2>&1 \
    || true
  tail -4 "$out/ctest.log"
fi

if [ -z "${BENCH_ONLY:-}" ]; then
  # The whole binary in one process (CPU and GPU tests): the GPU tests append one line per
  # shape and dtype to the errors file.
  echo "==> edge_runtime_test (CPU tests and RuntimeCuda.* GPU tests)"
  rm -f "$out/gpu_errors.jsonl" "$out/edge_runtime_test.log"
  if [ -x "$build/tests/edge/edge_runtime_test" ]; then
    TRUSTMOE_GPU_ERRORS_OUT="$out/gpu_errors.jsonl" timeout 900 \
      "$build/tests/edge/edge_runtime_test" >"$out/edge_runtime_test.log" 2>&1 || true
    grep -E '^gpu-vs-cpu|^\[  (PASSED|FAILED|SKIPPED) |tests? from .* ran' \
      "$out/edge_runtime_test.log" || tail -20 "$out/edge_runtime_test.log"
  else
    echo "!! edge_runtime_test was not built" | tee "$out/edge_runtime_test.log"
  fi
  # docs/formats/expert.md's export snippet with this machine's PyTorch, through the CLI.
  echo "==> python export snippet (docs/formats/expert.md) against PyTorch"
  python3 tests/edge/check_python_export.py "$build/src/cli/trustmoe" 2>&1 \
    | tee "$out/python_export.txt" || true
fi

if [ -n "${VERIFY_BENCH:-}" ]; then
  echo "==> verify_bench"
  if [ -x "$build/bench/verify_bench" ]; then
    "$build/bench/verify_bench" --d-model 4096 --d-ff 14336 --rows 1024 --reps 3 \
      --results 200 --rate 20 | tee "$out/verify_bench.txt" || echo "!! verify_bench failed"
  else
    echo "!! verify_bench was not built"
  fi
fi

if [ -n "${JOB_BENCH:-}" ]; then
  echo "==> job_bench (CUDA edges)"
  py=/usr/bin/python3
  [ -x "$py" ] || py=$(command -v python3)
  BUILD_DIR="$build" EDGE_DEVICE=cuda PYTHON="$py" \
    DATASET_DIR="$deps/usr/share/datasets/fashion-mnist" bench/job_bench.sh "${JOB_BENCH_ITEMS:-3200}" \
    2>&1 | tee "$out/job_bench.txt" || echo "!! job_bench failed"
fi

if [ -n "${TESTS_ONLY:-}" ]; then
  echo "==> benchmarks skipped (TESTS_ONLY)"
else
echo "==> benchmarks"
rm -f "$out/expert_bench.txt" "$out/expert_bench.json"
if [ -x "$build/bench/expert_bench" ]; then
  "$build/bench/expert_bench" --json "$out/expert_bench.json" | tee "$out/expert_bench.txt" \
    || echo "!! expert_bench failed"
else
  echo "!! expert_bench was not built"
fi
if [ -z "${EXPERT_ONLY:-}" ]; then
  "$build/bench/store_bench" --mib 1024 | tee "$out/store_bench.txt"
  "$build/bench/chain_bench" --seconds 10 | tee "$out/chain_bench.txt" \
    || echo "!! chain_bench failed (its validators' logs are in the temp dir it printed)"
fi
fi

echo
echo "==> results ($(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1), $(nproc) cores)"
if [ -z "${EXPERT_ONLY:-}" ]; then
  [ -f "$out/ctest.log" ] && grep -E "tests passed|failed out of" "$out/ctest.log"
  grep -sE "^ratio" "$out/store_bench.txt" || true
  grep -sE "verify /|verify\(cpu\)|p50|accepted" "$out/verify_bench.txt" || true
  grep -sE "^  (ed25519|committed|  commit latency|new view|ledger verify)|^ratio" \
    "$out/chain_bench.txt" || true
fi
if [ -f "$out/edge_runtime_test.log" ]; then
  summary=$(sed -nE 's/^\[  (PASSED|FAILED|SKIPPED) *\] ([0-9]+) tests?.*/\2 \L\1/p' \
    "$out/edge_runtime_test.log" | paste -sd, - | sed "s/,/, /g")
  echo "edge_runtime_test: ${summary:-no summary (crashed or not built: see edge_runtime_test.log)}"
fi
if [ -s "$out/gpu_errors.jsonl" ]; then
  # Per shape and dtype: the largest per-row relative L2 error of CUDA against the CPU in f32.
  python3 - "$out/gpu_errors.jsonl" <<'PY'
import json, sys
worst = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    key = (r["arch"], r["d_model"], r["d_ff"], r["dtype"])
    w = worst.setdefault(key, {"rows": 0})
    w["rows"] = max(w["rows"], r["rows"])
    for k in ("forward_max", "forward_p999", "grad_input_max", "grad_input_p999"):
        w[k] = max(w.get(k, 0.0), r[k])
print("gpu-vs-cpu per-row relative L2 error (CUDA in dtype vs CPU in f32):")
for (arch, m, f, dtype), w in sorted(worst.items()):
    print(f"  {arch:8} {m:>4}->{f:>5}->{m:<4} {dtype:4} rows {w['rows']:5}: forward max "
          f"{w['forward_max']:.2e} p99.9 {w['forward_p999']:.2e}; grad_input max "
          f"{w['grad_input_max']:.2e} p99.9 {w['grad_input_p999']:.2e}")
PY
fi
[ -f "$out/python_export.txt" ] && sed 's/^/python export: /' "$out/python_export.txt"
if [ -f "$out/expert_bench.txt" ]; then
  grep -E "^expert_bench:|^ratio|MISMATCH|^  edge holding" "$out/expert_bench.txt" || true
fi
