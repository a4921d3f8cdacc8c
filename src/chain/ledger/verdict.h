// Verdicts on expert results (docs/verification.md, docs/formats/tx.md types 17 and 20).
//
// Every validator re-computes a sample of each PENDING result and signs a Vote transaction.
// The vote that brings one verdict to a quorum of matching votes (2f + 1 of 3f + 1) finalizes
// the result, ACCEPTED or REJECTED with the reason the rejecting voters agree on most, updates
// the edge's reputation and, past the genesis thresholds, blacklists it. Votes against a final
// verdict (before or after it) are counted on the voter's reputation as contradictions. All of
// it is a deterministic function of the state and the votes, executed by every replica.
//
// State:
//   vote/<edge hex>/<nonce hex>/<validator id, 4 hex>   VoteRecord
//   pending/<edge hex>/<nonce hex>                      (empty) until the verdict
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "chain/ledger/result.h"
#include "chain/ledger/state.h"
#include "chain/ledger/tx.h"
#include "common/bytes.h"
#include "common/status.h"

namespace trustmoe::ledger {

enum class Verdict : uint8_t { kAccepted = 1, kRejected = 2 };
std::string_view VerdictName(Verdict verdict);  // "accepted", "rejected"

// Why a result is REJECTED. Availability reasons count as strikes, the others as faults
// (ChainParams::strike_threshold, fault_threshold).
enum class RejectReason : uint8_t {
  kNone = 0,  // the reason of an ACCEPTED vote
  kMismatch = 1,            // a sampled row differs from the re-computation beyond tolerance
  kOutputMissing = 2,       // a tensor of the result is not in the store by the deadline
  kFetchTimeout = 3,        // the store did not answer by the deadline
  kMalformedTensor = 4,     // a tensor does not parse, or holds NaN/infinity where it matters
  kWrongShape = 5,          // rows or width differ from the commitment or the expert
  kBadSignature = 6,        // reported: a commitment that is not the edge's valid signature
  kReplayedNonce = 7,       // reported: a nonce the edge signed over two bodies
  kExpertNotPublished = 8,  // the expert CID is not published on the ledger
};
inline constexpr uint8_t kRejectReasonMax = 8;
std::string_view RejectReasonName(RejectReason reason);  // "mismatch", "output-missing", ...
bool IsAvailabilityReason(RejectReason reason);

inline constexpr uint32_t kVoteDetailBytesMax = 256;
inline constexpr uint32_t kLiftReasonBytesMax = 256;

// canonical("trustmoe/tx/vote/v1", bytes edge, u64 result_nonce, u8 verdict, u8 reason,
//           str detail)
// Signed by a genesis validator. ACCEPTED votes carry reason kNone; REJECTED ones another.
struct VoteBody {
  crypto::PublicKey edge;
  uint64_t result_nonce = 0;
  Verdict verdict = Verdict::kAccepted;
  RejectReason reason = RejectReason::kNone;
  std::string detail;  // e.g. "row 17: relative error 0.41 > tolerance 0.0001"

  Bytes Encode() const;
  static Result<VoteBody> Decode(ByteSpan body);
};

// canonical("trustmoe/state/vote/v1", u32 validator, u8 verdict, u8 reason, str detail,
//           u64 height)
struct VoteRecord {
  uint32_t validator = 0;
  Verdict verdict = Verdict::kAccepted;
  RejectReason reason = RejectReason::kNone;
  std::string detail;
  uint64_t height = 0;

  Bytes Encode() const;
  static Result<VoteRecord> Decode(ByteSpan bytes);
};

std::string VoteKey(const crypto::PublicKey& edge, uint64_t nonce, uint32_t validator);
// "vote/<edge hex>/<nonce hex>/": every vote on one result.
std::string VotePrefix(const crypto::PublicKey& edge, uint64_t nonce);

// canonical("trustmoe/tx/lift-blacklist/v1", bytes key, str reason)
// Signed by the genesis admin: clears the blacklisting of `key` and its strikes and faults.
struct LiftBlacklist {
  crypto::PublicKey key;
  std::string reason;  // why the admin lifts it, 1..kLiftReasonBytesMax bytes (for the audit)

  Bytes Encode() const;
  static Result<LiftBlacklist> Decode(ByteSpan body);
};

// The "reason" text stored with a REJECTED result: "<reason name>: <detail>".
std::string VerdictReasonText(RejectReason reason, std::string_view detail);

// Counts a final `verdict` on `edge`'s reputation: accepted or rejected, a strike or a fault
// by `reason`, and the blacklisting (at ctx.height, with `blacklist_reason` cut to 1024 bytes)
// once either reaches its genesis threshold. An edge already blacklisted stays blacklisted
// with its first reason. DataLoss when the stored reputation is corrupt.
Status CountVerdict(const TxContext& ctx, const crypto::PublicKey& edge, Verdict verdict,
                    RejectReason reason, std::string_view blacklist_reason, StateOverlay* state);

// Records the final `verdict` on `record` (status, reason text, verdict height; the pending
// index goes) and counts it on the edge's reputation (CountVerdict, the blacklist reason
// "result <nonce hex> <reason text>").
Status ApplyVerdict(const TxContext& ctx, Verdict verdict, RejectReason reason,
                    std::string_view detail, ResultRecord* record, StateOverlay* state);

// Handlers of TxType::kVote and kLiftBlacklist (registered in TxRegistry::Default()).
//  vote: signer must be a genesis validator (PermissionDenied), the result must exist
//  (NotFound), one vote per validator and result (AlreadyExists).
//  lift-blacklist: signer must be the admin (PermissionDenied), the key must be blacklisted
//  (FailedPrecondition).
std::shared_ptr<const TxHandler> MakeVoteHandler();
std::shared_ptr<const TxHandler> MakeLiftBlacklistHandler();

}  // namespace trustmoe::ledger
