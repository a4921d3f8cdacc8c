// A job's experts on edges (docs/gate.md, "Placement and routing"): each expert version is held
// by R edges chosen from the chain's registry (never a blacklisted one); the placement is
// recorded on the ledger. A call goes to one holder; a call that times out, fails, carries a
// commitment that does not match the call, or (verify = sync) is not ACCEPTED in time or is
// REJECTED, goes again to another holder. An edge that is rejected, reported or keeps failing is
// dropped and its experts are placed on other edges, which download the current version from
// the store. After each training step every expert with backward results is updated by the edge
// that computed them (EdgeService.Update), and the new version is used once it is on the chain.
// No gRPC type in this header.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "chain/client/chain_client.h"
#include "chain/ledger/job.h"
#include "crypto/ed25519.h"
#include "gate/experts.h"
#include "gate/job_spec.h"
#include "net/transport.h"

namespace trustmoe::gate {

struct EdgeExpertsOptions {
  std::string job;  // the job id: ExpertResults name it
  JobSpec spec;
  int64_t call_timeout_ms = 10'000;     // one edge call
  int64_t verdict_timeout_ms = 30'000;  // verify = sync: wait for a verdict, then re-route
  int64_t commit_timeout_ms = 30'000;   // wait for a transaction (an update) to commit
  uint64_t tensor_bytes_max = 256ull << 20;
  net::TransportConfig transport;       // dialing edges
  uint64_t verdicts_from_height = 1;    // the verdict watch starts at this block
  // Called (from the calling thread) when the placement changes, with every entry.
  std::function<void(const std::vector<ledger::PlacementEntry>&)> on_placement;
};

class EdgeExperts final : public ExpertBackend {
 public:
  // Places expert i's version cids[i] (published) on R edges each, or takes `placement` as it
  // is (a resumed job: entries from the job table; holders no longer usable are replaced), and
  // records it on the chain. FailedPrecondition when no registered edge is serving.
  static Result<std::unique_ptr<EdgeExperts>> Create(EdgeExpertsOptions options,
                                                     chain::ChainClient* chain,
                                                     const crypto::PrivateKey* key,
                                                     std::vector<std::string> cids,
                                                     std::vector<ledger::PlacementEntry> placement);
  ~EdgeExperts() override;

  std::vector<std::optional<edge::HostTensor>> Forward(uint32_t layer, uint64_t step,
                                                       const std::vector<ExpertRows>& routed) override;
  std::vector<std::optional<edge::HostTensor>> Backward(
      uint32_t layer, uint64_t step, const std::vector<ExpertRows>& routed,
      const std::vector<std::optional<edge::HostTensor>>& grad_outputs) override;
  Status Settle() override;
  Status Update(uint64_t step) override;
  std::vector<std::string> ExpertCids() const override;
  ExpertCallStats Stats() const override;
  std::vector<ledger::PlacementEntry> Placement() const;

  class Impl;

 private:
  explicit EdgeExperts(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace trustmoe::gate
