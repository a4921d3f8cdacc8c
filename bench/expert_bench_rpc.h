// expert_bench's rpc section: the end-to-end Forward RPC of a real trustmoe-edge on loopback
// (tensor in, output and signed commitment out) against ExpertRuntime::Forward alone, host to
// host, on the same device and dtype, measured in the same run.
//
// Kept out of expert_bench.cc because it talks gRPC and starts daemons: this translation unit
// must not see libtorch (whose bundled fmt must not meet spdlog's, docs/gpu.md), and that one
// must not see the daemons' headers. Prints with printf, like the rest of the bench.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "bench/daemon_binaries.h"
#include "common/bytes.h"
#include "common/status.h"
#include "edge/safetensors.h"

namespace trustmoe::bench {

struct RpcShape {
  std::string label;  // as the other sections print it: "swiglu 256->1024->256"
  std::string group;  // "small" or "mixtral"
  std::string arch;
  int64_t d_model = 0;
  int64_t d_ff = 0;
};

struct RpcOptions {
  std::string device;  // "cpu", "cuda:N": the bench's runtime and the edge's
  edge::DType dtype = edge::DType::kF32;
  std::vector<RpcShape> shapes;
  std::vector<int64_t> rows;  // rows per call; points whose input exceeds the edge's limit skip
  int calls = 50;             // timed calls per latency measurement, and in all per throughput
  int threads = 4;            // concurrent callers in the throughput measurement
  DaemonBinaries binaries;
  // The expert file of a shape in `dtype` (the caller caches them across sections).
  std::function<const Bytes&(const RpcShape&)> expert_file;
};

// Starts 4 validators, a store and an edge, registers the edge, uploads one expert per shape,
// measures every (shape, rows) point, then times the drain of the edge's outbox; prints the
// table and the headline ratio and returns the figures as JSON. Every daemon is stopped and
// the temporary directory removed before it returns, on success or error. An error names what
// failed (and includes the daemon's log where one is involved).
Result<nlohmann::json> RunRpcSection(const RpcOptions& options);

}  // namespace trustmoe::bench
