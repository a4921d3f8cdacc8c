// Test harness: one real `trustmoe-gate` process on loopback port 0, with its own directory
// (config, key, data, log), started against a store and a validator cluster that the test runs,
// and a JobService client or stub for it.
//
// Every wait polls a condition until a deadline. The process dies with the test
// (PR_SET_PDEATHSIG, see store_process.h) and the destructor stops it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "crypto/ed25519.h"
#include "gate/job_client.h"
#include "tests/storage/store_process.h"
#include "trustmoe/v1/gate.grpc.pb.h"

namespace trustmoe::gate::testing {

const char* GateBinary();

struct GateProcessOptions {
  crypto::PrivateKey key;  // the gate's identity (written to the gate's directory, mode 0600)
  std::string genesis_path;
  std::vector<std::string> store_endpoints;
  std::string dataset_dir = "/usr/share/datasets/fashion-mnist";
  int64_t submit_timeout_ms = 30000;
  int64_t call_timeout_ms = 10000;
  int64_t verdict_timeout_ms = 30000;
  int torch_threads = 1;
  uint64_t edge_tensor_bytes_max = 1 << 20;  // equal to EdgeProcessOptions' default
};

class GateProcess {
 public:
  // Writes key and config and starts the daemon; fails the test (and returns nullptr) when it
  // does not write its port file within the deadline.
  static std::unique_ptr<GateProcess> Start(GateProcessOptions options);
  ~GateProcess();  // Stop(), then removes the directory
  GateProcess(const GateProcess&) = delete;
  GateProcess& operator=(const GateProcess&) = delete;

  // SIGTERM and wait (SIGKILL after a deadline, failing the test). The exit code, or -1 when it
  // was killed or not running.
  int Stop();
  // Starts again on the same data directory and key (after Stop); the ports change.
  Status Restart();
  bool running() const { return pid_ > 0; }

  const crypto::PrivateKey& key() const { return options_.key; }
  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(grpc_port_); }
  std::string data_dir() const { return dir_.Sub("data"); }
  // The daemon's log (stdout and stderr) so far, over all its runs.
  std::string Log() const;

  // A client of the current port signing with `researcher` for `chain_id`; fails the test and
  // returns nullptr when it cannot be made.
  std::unique_ptr<JobClient> Client(std::shared_ptr<const crypto::PrivateKey> researcher,
                                    const std::string& chain_id) const;
  // A raw stub on a fresh channel to the current port, for requests a JobClient would not send.
  std::unique_ptr<v1::JobService::Stub> Stub() const;

 private:
  GateProcess() = default;
  void WriteConfig() const;
  Status Launch();

  GateProcessOptions options_;
  storage::testing::TempDir dir_;
  pid_t pid_ = -1;
  int grpc_port_ = 0;
  int http_port_ = 0;
};

}  // namespace trustmoe::gate::testing
