// Where a job's experts run, as the training loop sees them (docs/gate.md, "Routing"): on edges
// (EdgeExperts, edge_pool.h) or in this process for the centralised reference
// (LocalExperts). No libtorch and no gRPC in this header.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "common/status.h"
#include "edge/numeric.h"
#include "gate/job_spec.h"
#include "gate/moe_model.h"

namespace trustmoe::gate {

// Counters of a job's expert calls (since the backend was made).
struct ExpertCallStats {
  uint64_t calls = 0;         // calls answered and used
  uint64_t rerouted = 0;      // calls sent again to another holder
  uint64_t unanswered = 0;    // routed experts no holder answered (the row fell back)
  uint64_t verified = 0;      // results with an ACCEPTED verdict seen
  uint64_t rejected = 0;      // results with a REJECTED verdict seen
  uint64_t reported = 0;      // commitments reported to the chain
  uint64_t updates = 0;       // expert updates committed
  uint64_t dropped_edges = 0; // edges removed from the placement
};

class ExpertBackend {
 public:
  virtual ~ExpertBackend() = default;
  // The outputs of Route's entries for `layer` (nullopt where no holder answered).
  virtual std::vector<std::optional<edge::HostTensor>> Forward(uint32_t layer, uint64_t step,
                                                               const std::vector<ExpertRows>& routed) = 0;
  // grad_input for each entry that has a grad_output (nullopt otherwise, or unanswered).
  virtual std::vector<std::optional<edge::HostTensor>> Backward(
      uint32_t layer, uint64_t step, const std::vector<ExpertRows>& routed,
      const std::vector<std::optional<edge::HostTensor>>& grad_outputs) = 0;
  // verify = sync: waits for the verdicts on every result used since the last Settle. Aborted
  // when one was REJECTED or had no verdict in time (its edge is dropped or avoided): the caller
  // runs the step again, and nothing of it (backward results, updates) is kept. Ok at once in
  // the other modes.
  virtual Status Settle() { return Status::Ok(); }
  // One optimizer step on every expert with backward results since the last Update; an expert
  // whose update fails keeps its version (and the error is logged, not returned, unless every
  // update failed).
  virtual Status Update(uint64_t step) = 0;
  // The version of each expert now, index layer * experts + expert.
  virtual std::vector<std::string> ExpertCids() const = 0;
  virtual ExpertCallStats Stats() const = 0;
};

// Expert `index`'s initial file for a job: NewExpertFile(arch, d_model, d_ff, f32) seeded with
// SHA-256(job seed, index) (the same job spec gives the same experts everywhere).
Result<Bytes> InitialExpertFile(const JobSpec& spec, uint32_t index);

// The experts of `spec` in this process on the CPU (edge::ExpertRuntime): the centralised
// reference. Starts from `expert_files` (one per index), or fresh ones when empty.
Result<std::unique_ptr<ExpertBackend>> MakeLocalExperts(const JobSpec& spec,
                                                        std::vector<Bytes> expert_files);

}  // namespace trustmoe::gate
