// Test harness: a cluster of real `trustmoe-validator` processes on loopback, with a genesis
// file made for the test (fresh validator and admin keys, free ports), and helpers to kill,
// restart and compare them.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "chain/client/chain_client.h"
#include "chain/ledger/genesis.h"
#include "chain/ledger/tx.h"
#include "crypto/ed25519.h"
#include "tests/storage/store_process.h"

namespace trustmoe::chain::testing {

const char* ValidatorBinary();

// A free TCP port on 127.0.0.1 (bound and released; the caller binds it soon after).
int FreePort();

// Verification by the validators ([verify] of their configs): off unless `store` is set.
struct VerifyConfig {
  std::vector<std::string> store;  // trustmoe-store endpoints
  std::set<uint32_t> off;          // members that do not verify (a byzantine one, in tests)
  uint32_t threads = 2;
};

class ValidatorCluster {
 public:
  // Writes keys, genesis and configs and starts `n` validators (n = 3f + 1); fails the test and
  // returns nullptr when one does not come up.
  static std::unique_ptr<ValidatorCluster> Start(uint32_t f = 1, ledger::ChainParams params = {},
                                                 const VerifyConfig& verify = {});
  // Member i's identity key (for tests that act as a byzantine validator).
  crypto::PrivateKey key(uint32_t i) const;
  ~ValidatorCluster();  // stops every validator

  uint32_t size() const { return static_cast<uint32_t>(members_.size()); }
  const ledger::Genesis& genesis() const { return genesis_; }
  const crypto::PrivateKey& admin() const { return admin_; }
  std::string genesis_path() const { return dir_.Sub("genesis.json"); }
  std::string endpoint(uint32_t i) const { return genesis_.validators[i].endpoint; }
  std::vector<std::string> endpoints() const;
  std::string data_dir(uint32_t i) const;
  int http_port(uint32_t i) const { return members_[i].http_port; }
  bool running(uint32_t i) const { return members_[i].pid > 0; }
  std::string Log(uint32_t i) const;

  void Kill9(uint32_t i);
  // SIGTERM; the exit code (-1 when killed or not running).
  int Stop(uint32_t i);
  Status Launch(uint32_t i);

  // A client of the given members (all when empty).
  std::unique_ptr<ChainClient> Client(std::vector<uint32_t> members = {},
                                      uint32_t commit_timeout_ms = 30000) const;
  std::optional<double> Metric(uint32_t i, const std::string& name) const;
  // Head as reported by member i; nullopt when it does not answer.
  std::optional<ReportedHead> Head(uint32_t i) const;

  // A RegisterNode transaction for a fresh edge key, signed by the admin.
  ledger::Tx RegisterEdge(const std::string& name) const;
  // A RegisterNode transaction for `key` with `role`, signed by the admin.
  ledger::Tx RegisterNode(const crypto::PublicKey& key, ledger::NodeRole role,
                          const std::string& name, const std::string& endpoint) const;

 private:
  struct Member {
    pid_t pid = -1;
    int http_port = 0;
  };
  ValidatorCluster() = default;
  std::string Sub(uint32_t i, const std::string& name) const;

  storage::testing::TempDir dir_;
  ledger::Genesis genesis_;
  crypto::PrivateKey admin_;
  std::vector<Member> members_;
};

// Every key of a closed (or copied) validator ledger except the replica's own consensus state
// ("pbft/...") and the commit certificates ("c..."), which legitimately differ between replicas
// (each keeps the quorum of commit signatures it received). Opened read-only.
std::map<std::string, std::string> LedgerContents(const std::string& ledger_path);

}  // namespace trustmoe::chain::testing
