#!/usr/bin/env bash
# Installs what is missing (Debian packages), builds, and runs every test with ctest.
# Exits non-zero when anything fails. BUILD_DIR overrides the build directory.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/lib/deps.sh

build_dir=${BUILD_DIR:-build}
trustmoe_install_deps
trustmoe_build "$build_dir"
echo "==> running tests"
ctest --test-dir "$build_dir" --output-on-failure -j "$(nproc)" --timeout 900
