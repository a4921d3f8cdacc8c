#!/usr/bin/env bash
# On the GPU machine (docs/gpu.md): unpacks .gpu-deps/ (made by deploy/gpu/fetch-deps.sh on the
# development machine), builds against the machine's PyTorch libtorch, runs the tests and the
# benchmarks, and prints a short table of results last.
#   deploy/gpu/run.sh            build, test, bench
#   BENCH_ONLY=1 deploy/gpu/run.sh
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
echo "==> building with $(nproc) jobs"
if ! cmake --build "$build" -j "$(nproc)" -- -k 0 >"$out/build.log" 2>&1; then
  echo "!! some targets failed to build (going on with the rest):"
  grep -E "error:|FAILED" "$out/build.log" | head -20
fi

if [ -z "${BENCH_ONLY:-}" ]; then
  echo "==> tests"
  ctest --test-dir "$build" -j 8 --timeout 900 >"$out/ctest.log" 2>&1 || true
  tail -4 "$out/ctest.log"
fi

echo "==> benchmarks"
"$build/bench/store_bench" --mib 1024 | tee "$out/store_bench.txt"
"$build/bench/chain_bench" --seconds 10 | tee "$out/chain_bench.txt" \
  || echo "!! chain_bench failed (its validators' logs are in the temp dir it printed)"

echo
echo "==> results ($(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1), $(nproc) cores)"
[ -f "$out/ctest.log" ] && grep -E "tests passed|failed out of" "$out/ctest.log"
grep -E "^ratio" "$out/store_bench.txt"
grep -E "^  (ed25519|committed|  commit latency|new view|ledger verify)|^ratio" \
  "$out/chain_bench.txt" || true
