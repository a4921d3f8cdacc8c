// Test harness: one real `trustmoe-edge` process on loopback (CPU, f32), with its own directory
// (config, data, log), started against a store and a validator cluster that the test runs, and
// a gRPC stub to call it.
//
// Every wait polls a condition until a deadline. The process dies with the test
// (PR_SET_PDEATHSIG, see store_process.h) and the destructor stops it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "crypto/ed25519.h"
#include "tests/storage/store_process.h"
#include "trustmoe/v1/edge.grpc.pb.h"

namespace trustmoe::edge::testing {

const char* EdgeBinary();

struct EdgeProcessOptions {
  crypto::PrivateKey key;  // the edge's identity (written to the edge's directory, mode 0600)
  std::string genesis_path;
  std::vector<std::string> store_endpoints;
  std::vector<std::string> validators;  // empty: the genesis endpoints
  int64_t registration_check_ms = 200;
  int64_t submit_timeout_ms = 10000;
  uint32_t rows_per_request_max = 64;
  uint64_t tensor_bytes_max = 1 << 20;
  int64_t outbox_retry_min_ms = 100;
  int64_t outbox_retry_max_ms = 1000;
  int64_t drain_timeout_ms = 10000;
};

class EdgeProcess {
 public:
  // Writes key and config and starts the daemon; fails the test (and returns nullptr) when it
  // does not write its port file within the deadline.
  static std::unique_ptr<EdgeProcess> Start(EdgeProcessOptions options);
  ~EdgeProcess();  // Stop(), then removes the directory
  EdgeProcess(const EdgeProcess&) = delete;
  EdgeProcess& operator=(const EdgeProcess&) = delete;

  // SIGTERM and wait (SIGKILL after a deadline, failing the test). The exit code, or -1 when it
  // was killed or not running.
  int Stop();
  // SIGKILL and reap: an edge that dies without draining.
  void Kill9();
  // Starts again on the same data directory and key (after Stop), with options() as they are
  // now; the ports change.
  Status Restart();
  bool running() const { return pid_ > 0; }

  EdgeProcessOptions& options() { return options_; }
  const crypto::PrivateKey& key() const { return options_.key; }
  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(grpc_port_); }
  std::string data_dir() const { return dir_.Sub("data"); }
  // The daemon's log (stdout and stderr) so far, over all its runs.
  std::string Log() const;

  // A stub on a fresh channel to the current port.
  std::unique_ptr<v1::EdgeService::Stub> Stub() const;
  // Health and Info, with a deadline; a failed RPC fails the test and returns an empty message.
  v1::HealthResponse Health() const;
  v1::InfoResponse Info() const;

 private:
  EdgeProcess() = default;
  void WriteConfig() const;
  Status Launch();

  EdgeProcessOptions options_;
  storage::testing::TempDir dir_;
  pid_t pid_ = -1;
  int grpc_port_ = 0;
  int http_port_ = 0;
};

}  // namespace trustmoe::edge::testing
