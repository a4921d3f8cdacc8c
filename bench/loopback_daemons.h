// Benchmark harness: real trustmoe daemons on loopback (four validators, a store, an edge), each
// with its own directory under one temporary directory, for benchmarks that measure a path end
// to end. Unlike the test harnesses (tests/integration), nothing here needs gtest: a failure is
// a Status naming the daemon and ending with its log, and the binaries' paths can be overridden
// at run time.
//
// Every wait polls a condition until a deadline. Children get PR_SET_PDEATHSIG(SIGTERM), so a
// benchmark that dies leaves no daemon behind; the destructors stop what they started (SIGTERM,
// SIGKILL after a deadline) and remove the directory.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bench/daemon_binaries.h"
#include "chain/client/chain_client.h"
#include "chain/ledger/genesis.h"
#include "common/status.h"
#include "crypto/ed25519.h"
#include "storage/store_client.h"
#include "trustmoe/v1/edge.grpc.pb.h"

namespace trustmoe::bench {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
 public:
  // Internal when mkdtemp fails.
  static Result<std::unique_ptr<TempDir>> Create(const std::string& prefix);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// One daemon started as `<binary> --config <config>`, with stdout and stderr appended to `log`.
// It is up once it writes "<grpc port> <http port>" to `port_file` (the `port_file` key of its
// config).
class Daemon {
 public:
  // Unavailable (with the log) when the daemon exits or writes no port file within
  // `start_timeout`; Internal when fork fails.
  static Result<std::unique_ptr<Daemon>> Start(std::string name, const std::string& binary,
                                               const std::string& config, std::string log,
                                               const std::string& port_file,
                                               std::chrono::milliseconds start_timeout);
  ~Daemon();  // Stop()
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // SIGTERM and wait, SIGKILL after a deadline. The exit code; -1 when it was killed, had to be
  // killed, or was not running.
  int Stop();
  // SIGTERM without waiting (Stop waits).
  void Terminate();
  bool running() const { return pid_ > 0; }
  const std::string& name() const { return name_; }
  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(grpc_port_); }
  // The last `bytes_max` bytes of its log.
  std::string LogTail(size_t bytes_max = 4000) const;

 private:
  Daemon() = default;

  std::string name_;
  std::string log_;
  pid_t pid_ = -1;
  int grpc_port_ = 0;
  int http_port_ = 0;
};

struct EdgeDaemonOptions {
  crypto::PrivateKey key;      // the edge's identity, registered on the chain by the caller
  std::string device = "cpu";  // [runtime] device
  std::string dtype = "f32";   // [runtime] dtype: f32, bf16, f16
  uint64_t gpu_memory_bytes_max = 16ull << 30;
  uint32_t batch_rows_max = 16384;
  int64_t batch_wait_us = 0;
  uint32_t rows_per_request_max = 8192;
  uint64_t tensor_bytes_max = 256ull << 20;
  int64_t registration_check_ms = 200;
  std::string log_level = "info";
};

// Four validators (f = 1) of a fresh chain, a store, and later an edge, on loopback.
class LoopbackDaemons {
 public:
  // Writes keys, genesis and configs and starts the validators and the store. The store accepts
  // uploads signed by writer() and by `store_writers`. Errors name the daemon that failed.
  // With `verify`, the store starts first and every validator verifies results against it
  // ([verify] store).
  static Result<std::unique_ptr<LoopbackDaemons>> Start(
      const DaemonBinaries& binaries, std::vector<crypto::PublicKey> store_writers,
      bool verify = false);
  ~LoopbackDaemons();  // Stop()
  LoopbackDaemons(const LoopbackDaemons&) = delete;
  LoopbackDaemons& operator=(const LoopbackDaemons&) = delete;

  // Starts the edge (one at most) against this chain and store.
  Status StartEdge(const EdgeDaemonOptions& options);
  // SIGTERM to the edge, the store and the validators, in that order; the number of daemons that
  // did not exit with code 0.
  int Stop();

  const ledger::Genesis& genesis() const { return genesis_; }
  const crypto::PrivateKey& admin() const { return admin_; }
  std::shared_ptr<const crypto::PrivateKey> writer() const { return writer_; }
  Daemon* edge() const { return edge_.get(); }
  Daemon& store() const { return *store_; }

  // Clients of the chain (all validators) and of the store (signing with writer()).
  Result<std::unique_ptr<chain::ChainClient>> ChainClient() const;
  Result<std::unique_ptr<storage::StoreClient>> StoreClient() const;
  // A stub on a fresh channel to the edge, taking messages up to `message_bytes_max`.
  Result<std::unique_ptr<v1::EdgeService::Stub>> EdgeStub(int message_bytes_max) const;

  // RegisterNode of `key` as an edge, signed by the admin and committed.
  Status RegisterEdge(const crypto::PublicKey& key, const std::string& name,
                      const std::string& endpoint) const;
  // PublishExpert of `cid`, signed by the admin and committed (edges run published experts
  // only). Ok when it is published already.
  Status PublishExpert(const std::string& cid, const std::string& arch, uint64_t size) const;

 private:
  LoopbackDaemons() = default;
  Status StartValidators(const std::string& verify_store);
  Status StartStore(const std::vector<crypto::PublicKey>& store_writers);

  DaemonBinaries binaries_;
  std::unique_ptr<TempDir> dir_;
  ledger::Genesis genesis_;
  crypto::PrivateKey admin_;
  std::shared_ptr<const crypto::PrivateKey> writer_;
  std::vector<std::unique_ptr<Daemon>> validators_;
  std::unique_ptr<Daemon> store_;
  std::unique_ptr<Daemon> edge_;
};

}  // namespace trustmoe::bench
