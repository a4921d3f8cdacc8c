#!/usr/bin/env bash
# On the development machine: downloads the Debian packages that the GPU machine lacks into
# .gpu-deps/ (git-ignored, about 35 MB), to be carried along and unpacked there by
# deploy/gpu/run.sh. libtorch comes from the GPU machine's own PyTorch.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .gpu-deps
cd .gpu-deps
pkgs=(
  # Not libupb0/libupb-dev: their libupb.so (an older upb) would shadow gRPC's own libupb.so.29
  # and crash gRPC on its error paths.
  libgrpc++-dev libgrpc++1.51 libgrpc29 libgrpc-dev protobuf-compiler-grpc
  libprotobuf-dev libprotobuf32 libprotoc32 libprotobuf-lite32 protobuf-compiler
  libabsl20220623 libabsl-dev libre2-9 libre2-dev libc-ares2 libc-ares-dev
  librocksdb7.8 librocksdb-dev libsnappy1v5 libsnappy-dev libgflags2.2 libgflags-dev liburing2
  libspdlog1.10 libspdlog-dev libfmt9 libfmt-dev libgtest-dev libgmock-dev libssl3 libssl-dev
  zlib1g-dev libbz2-dev liblz4-dev libzstd-dev libsystemd-dev nlohmann-json3-dev libcli11-dev
  libtomlplusplus-dev libtomlplusplus3 libcpp-httplib-dev libcpp-httplib0.11 libbrotli-dev
  libbrotli1 libbenchmark-dev libbenchmark1debian libsystemd0
  # Fashion-MNIST for bench/job_bench.sh (JOB_BENCH=1 deploy/gpu/run.sh)
  dataset-fashion-mnist
)
missing=()
for p in "${pkgs[@]}"; do
  ls "${p}"_*.deb >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get download "${missing[@]}" >/dev/null
fi
echo "==> .gpu-deps: $(ls *.deb | wc -l) packages, $(du -sh . | cut -f1)"
