// Where a benchmark finds the trustmoe daemons it starts (loopback_daemons.h). A header of its
// own so that expert_bench.cc, which sees libtorch, can take the paths as flags without seeing
// gRPC or the daemons' clients.
#pragma once

#include <string>

#include "common/status.h"

namespace trustmoe::bench {

struct DaemonBinaries {
  std::string validator;  // trustmoe-validator
  std::string store;      // trustmoe-store
  std::string edge;       // trustmoe-edge
};

// The paths CMake compiled in (TRUSTMOE_VALIDATOR_BIN, TRUSTMOE_STORE_BIN, TRUSTMOE_EDGE_BIN),
// each replaced by the environment variable of the same name when that is set.
DaemonBinaries DefaultDaemonBinaries();

// FailedPrecondition naming the first binary that is missing or not executable, and how to
// build it or point at another.
Status CheckDaemonBinaries(const DaemonBinaries& binaries);

}  // namespace trustmoe::bench
