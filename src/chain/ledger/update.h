// Expert updates on the ledger (docs/verification.md, "Expert updates"; docs/formats/tx.md
// type 18).
//
// A training edge applies one optimizer step to an expert: the weight gradients of some of its
// own backward results on the parent weights, summed, then the optimizer with the parent's
// optimizer state. It uploads the child weights (and the child's optimizer state) and signs an
// ExpertUpdated transaction naming parent, child and the backward results it used. The chain
// records the update PENDING under update/<edge hex>/<nonce hex> and publishes the child CID,
// so that training goes on; validators re-run the step for a seeded fraction of updates and
// vote (the same Vote transactions as results: (edge, nonce) names a result or an update).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "chain/ledger/result.h"
#include "chain/ledger/state.h"
#include "chain/ledger/tx.h"
#include "chain/ledger/verdict.h"
#include "common/bytes.h"
#include "common/status.h"

namespace trustmoe::ledger {

inline constexpr uint32_t kUpdateSourcesMax = 1024;

enum class OptimizerKind : uint8_t { kSgd = 1, kAdam = 2 };

// canonical(u8 kind, then lr, momentum, beta1, beta2, eps, weight_decay as the u64 bit
// patterns of IEEE-754 doubles). Decode checks what the runtime checks: lr and eps > 0,
// momentum, beta1 and beta2 in [0, 1), weight_decay >= 0, all finite.
struct OptimizerParams {
  OptimizerKind kind = OptimizerKind::kSgd;
  double lr = 1e-3;
  double momentum = 0;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;
  // True when the step keeps state (SGD with momentum, Adam): the update then names the
  // child's optimizer state.
  bool stateful() const { return kind == OptimizerKind::kAdam || momentum > 0; }
  bool operator==(const OptimizerParams&) const = default;
};

// canonical("trustmoe/tx/expert-updated/v1", str job, u64 step, str parent_cid,
//           str parent_state_cid, str child_cid, str child_state_cid, u64 child_size,
//           optimizer, u8 dtype, str device, u32 count, u64 nonce...)
// parent_state_cid is empty for a fresh optimizer state; child_state_cid is present exactly
// when the optimizer is stateful. The nonces name 1..kUpdateSourcesMax backward results of the
// signing edge on parent_cid, distinct.
struct ExpertUpdatedBody {
  std::string job;
  uint64_t step = 0;
  std::string parent_cid;
  std::string parent_state_cid;
  std::string child_cid;
  std::string child_state_cid;
  uint64_t child_size = 0;
  OptimizerParams optimizer;
  ComputeDType dtype = ComputeDType::kF32;
  std::string device = "cpu";
  std::vector<uint64_t> sources;

  Bytes Encode() const;
  static Result<ExpertUpdatedBody> Decode(ByteSpan body);
  bool operator==(const ExpertUpdatedBody&) const = default;
};

// canonical("trustmoe/state/update/v1", bytes edge, u64 nonce, bytes body, u64 height,
//           u8 status, str reason, u64 verdict_height)
struct UpdateRecord {
  crypto::PublicKey edge;
  uint64_t nonce = 0;
  ExpertUpdatedBody body;
  uint64_t height = 0;
  ResultStatus status = ResultStatus::kPending;
  std::string reason;
  uint64_t verdict_height = 0;

  Bytes Encode() const;
  static Result<UpdateRecord> Decode(ByteSpan bytes);
};

std::string UpdateKey(const crypto::PublicKey& edge, uint64_t nonce);         // update/...
std::string PendingUpdateKey(const crypto::PublicKey& edge, uint64_t nonce);  // pending-update/...
std::string LineageKey(std::string_view child_cid);  // lineage/<child cid> -> UpdateKey

// Records the final verdict on an update (status, reason, verdict height; the pending index
// goes) and counts it on the edge's reputation as ApplyVerdict does for results.
Status ApplyUpdateVerdict(const TxContext& ctx, Verdict verdict, RejectReason reason,
                          std::string_view detail, UpdateRecord* record, StateOverlay* state);

// The handler of TxType::kExpertUpdated: signer a registered edge; the parent published
// (else the update is REJECTED at once, expert-not-published); every source a backward result
// of the signer on the parent (else InvalidArgument); the child not yet published
// (AlreadyExists). Records the update PENDING and publishes the child (publisher: the edge).
std::shared_ptr<const TxHandler> MakeExpertUpdatedHandler();

}  // namespace trustmoe::ledger
