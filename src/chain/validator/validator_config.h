// trustmoe-validator's configuration file (docs/validator.md lists every key;
// deploy/config/validator.toml is a commented example).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/log.h"
#include "common/status.h"
#include "net/transport.h"

namespace trustmoe::validator {

struct ValidatorConfig {
  // gRPC: ChainService for clients and ValidatorPeerService for the other validators. The
  // genesis file names the endpoint the peers dial; this is the address bound.
  std::string listen = "127.0.0.1:7600";
  std::string http_listen = "127.0.0.1:7601";  // [http] listen: /metrics and /healthz
  std::string data_dir;                        // RocksDB ledger
  std::string identity_key;                    // PEM, mode 0600; must be a genesis validator
  std::string genesis;                         // genesis JSON file
  std::string port_file;  // if set: "<grpc port> <http port>\n" written once serving
  LogOptions log;
  net::TransportConfig transport;
  // SIGTERM: how long unary calls in progress may take to finish.
  int64_t drain_timeout_ms = 5000;

  // [submit]
  int64_t submit_timeout_ms = 30000;       // wait bound when a request gives 0
  int64_t submit_timeout_max_ms = 300000;  // larger requested waits are cut to this
  uint32_t submit_waiters_max = 10000;     // SubmitTx calls waiting for their commit

  // [node]
  uint32_t event_queue_max = 65536;  // events waiting for the consensus thread
  uint64_t event_queue_bytes_max = 256ull << 20;
  uint32_t step_events_max = 4096;  // events drained into one step

  // [peers]
  uint32_t peer_queue_max = 4096;  // outgoing messages per peer; the oldest is dropped
  uint64_t peer_queue_bytes_max = 128ull << 20;
  int64_t peer_reconnect_min_ms = 100;
  int64_t peer_reconnect_max_ms = 5000;
  uint32_t peer_streams_max = 64;  // incoming Deliver streams open at once

  // [pool] local pool limits (the block limits come from the genesis file).
  uint32_t pool_txs_max = 100000;
  uint64_t pool_bytes_max = 256ull << 20;
  int64_t tx_pending_max_ms = 120000;

  // [watch]
  uint32_t watch_streams_max = 256;  // concurrent WatchBlocks streams
  // [query]
  uint32_t list_limit_max = 1000;   // ListNodes/ListExperts/ListModels page size
  uint32_t scan_limit_max = 10000;  // ScanState page size

  // [verify] re-computation of expert results and votes (docs/verification.md). On when
  // store_endpoints is set (and enabled is not false); a validator without it does not vote.
  bool verify_enabled = true;
  std::vector<std::string> verify_store_endpoints;  // trustmoe-store "host:port"s
  uint32_t verify_threads = 2;                      // results checked at once
  uint32_t verify_torch_threads = 0;                // CPU threads of one re-computation; 0 auto
  uint64_t verify_memory_bytes_max = 4ull << 30;    // expert weights held for re-computation
  uint64_t verify_tensor_bytes_max = 256ull << 20;  // one activations file
  uint64_t verify_expert_bytes_max = 4ull << 30;    // one expert file
  int64_t verify_resubmit_ms = 10000;               // a vote not committed by then: again

  bool verifying() const { return verify_enabled && !verify_store_endpoints.empty(); }
};

// Reads and checks the file: unknown keys, wrong types, missing required keys (data_dir,
// identity_key, genesis) and values out of range are InvalidArgument naming file and line;
// NotFound when the file itself is missing. Does not open the genesis or key files (the
// daemon does, and names them when they fail).
Result<ValidatorConfig> LoadValidatorConfig(const std::string& path);

// As LoadValidatorConfig, from text; `source_name` stands for the file name in messages.
Result<ValidatorConfig> ParseValidatorConfig(std::string_view text, std::string source_name);


}  // namespace trustmoe::validator
