// trustmoe-gate's configuration file (docs/gate.md "Configuration" lists every key;
// deploy/config/gate.toml is a commented example). No libtorch: the CLI and tests read it too.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/log.h"
#include "common/status.h"
#include "net/transport.h"

namespace trustmoe::gate {

struct GateConfig {
  std::string listen = "127.0.0.1:7800";       // gRPC JobService; plaintext only on loopback
  std::string http_listen = "127.0.0.1:7801";  // [http] listen: /metrics and /healthz
  std::string identity_key;  // PEM Ed25519 key (mode 0600), registered on the chain as a gate
  std::string data_dir;      // state; the job table lives in <data_dir>/jobs
  std::string genesis;       // the chain's genesis JSON file
  std::string port_file;     // if set: "<grpc port> <http port>\n" written once serving
  std::string dataset_dir = "/usr/share/datasets/fashion-mnist";  // Debian's dataset package
  LogOptions log;                                                 // [log] level and format
  net::TransportConfig transport;  // [tls]: serving, and dialing the store, validators, edges

  // [store]
  std::vector<std::string> store_endpoints;  // trustmoe-store "host:port"s; at least one
  // [chain]
  std::vector<std::string> chain_validators;  // "host:port"s; empty: the genesis file's endpoints
  int64_t submit_timeout_ms = 30000;          // wait for a submitted transaction to be committed

  // [jobs]
  uint32_t jobs_concurrent_max = 1;       // jobs running at once; more wait queued (1..64)
  int64_t call_timeout_ms = 10000;        // deadline of one edge call (100..600000)
  int64_t verdict_timeout_ms = 30000;     // verify=sync: wait for a verdict, then re-route
  int torch_threads = 0;                  // libtorch intra-op threads; 0: libtorch's default
  uint64_t request_bytes_max = 1u << 20;  // largest JobService request accepted (1 KiB..64 MiB)
  uint32_t watchers_max = 64;             // concurrent WatchJob streams (1..4096)

  // [edges]
  uint64_t edge_tensor_bytes_max = 256ull << 20;  // one inline tensor; mirror of the edges'
                                                  // [limits] tensor_bytes_max (1 KiB..4 GiB)
};

// Reads and checks the file: unknown keys, wrong types, missing required keys (identity_key,
// data_dir, genesis, [store] endpoints), empty paths, values out of range and plaintext gRPC to
// or from a non-loopback address (listen, [store] endpoints, [chain] validators) are
// InvalidArgument naming file, line and key; NotFound when the file itself is missing; a file
// that is not TOML is InvalidArgument with its line and column. Does not open the key, genesis,
// dataset or data files (the daemon does, and names them when they fail). Edges' addresses come
// from the chain, so plaintext to a non-loopback edge is refused when the gate dials it.
Result<GateConfig> LoadGateConfig(const std::string& path);

// As LoadGateConfig, from text; `source_name` stands for the file name in messages.
Result<GateConfig> ParseGateConfig(std::string_view text, std::string source_name);

}  // namespace trustmoe::gate
