# Sourced by tests/run.sh and deploy/demo.sh: installs the Debian packages TrustMoE needs,
# running `apt-get update` once and only when something is missing.

TRUSTMOE_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  librocksdb-dev libssl-dev openssl libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev nlohmann-json3-dev libtomlplusplus-dev libcpp-httplib-dev libsystemd-dev
  systemd curl
  libtorch-dev zlib1g-dev
  dataset-fashion-mnist
  python3-numpy python3-torch
  python3-grpcio python3-protobuf python3-grpc-tools python3-cryptography  # examples/python
)

trustmoe_install_deps() {
  local missing=()
  local pkg
  for pkg in "${TRUSTMOE_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "==> dependencies: all ${#TRUSTMOE_PACKAGES[@]} Debian packages present"
    return 0
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then sudo="sudo"; else
      echo "error: missing packages (${missing[*]}) and not root; install them or run as root" >&2
      return 1
    fi
  fi
  echo "==> installing ${#missing[@]} missing Debian package(s): ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "==> dependencies installed"
}

# Configures and builds into $1 (default: build) with ninja, ccache when present.
trustmoe_build() {
  local dir=${1:-build}
  local jobs
  jobs=$(nproc)
  echo "==> configuring ($dir)"
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo ${TRUSTMOE_CMAKE_ARGS:-} >"$dir.configure.log" 2>&1 \
    || { cat "$dir.configure.log" >&2; return 1; }
  echo "==> building with $jobs jobs (this takes a while on a fresh clone)"
  cmake --build "$dir" -j "$jobs"
}
