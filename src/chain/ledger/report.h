// Reports of bad commitments (docs/verification.md "Reports", docs/formats/tx.md type 21).
//
// The chain refuses a commitment whose signature does not verify, that another key signed, or
// that reuses a nonce, so such a commitment never becomes a result and never gets a verdict.
// The gate that called the edge holds it, though, and can put it on the ledger inside a
// ReportCommitment transaction. Every replica judges the evidence alike, from the report and
// the state alone: a report that proves something records the edge's commitment REJECTED
// under report/ and counts a fault on its reputation (and may blacklist it), as a verdict does;
// a report of a valid commitment is refused.
//
// What rests on the gate's word: that `edge` handed over these bytes as its answer to a call
// of `expert_cid` on `input_cid`. Only a nonce signed by the edge over two bodies (one of them
// on the ledger) proves itself. Gates are registered by the admin and their reports are signed
// and recorded, so a gate that frames an edge is accountable (docs/verification.md).
//
// State:
//   report/<edge hex>/<commitment id hex>   ReportRecord (one report per commitment)
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "chain/ledger/result.h"
#include "chain/ledger/state.h"
#include "chain/ledger/tx.h"
#include "chain/ledger/verdict.h"
#include "chain/pbft/messages.h"
#include "common/bytes.h"
#include "common/status.h"

namespace trustmoe::ledger {

// The detail stored with a report, e.g. "signed by 3d4017c3e843895a..., not by the edge
// called"; longer details are cut.
inline constexpr uint32_t kReportDetailBytesMax = 256;

// canonical("trustmoe/tx/report-commitment/v1", bytes edge (32), bytes commitment,
//           str expert_cid, str input_cid)
// Signed by a registered gate or the genesis admin.
struct ReportCommitment {
  crypto::PublicKey edge;  // the edge the gate called
  Bytes commitment;        // the transaction bytes the edge handed over, as received
  std::string expert_cid;  // the expert the gate asked for
  std::string input_cid;   // the CID of the input the gate sent

  Bytes Encode() const;
  // InvalidArgument on malformed bytes, a commitment over `commitment_bytes_max` bytes (the
  // chain's tx_bytes_max), or a CID that is not in canonical form.
  static Result<ReportCommitment> Decode(ByteSpan body, uint32_t commitment_bytes_max);
};

// What a report proves: the reason the commitment is REJECTED (kBadSignature, kReplayedNonce or
// kMismatch) and a detail.
struct CommitmentFault {
  RejectReason reason = RejectReason::kNone;
  std::string detail;
};

// Judges `report` against the state, in this order (the first that holds is the finding):
//  a. the commitment does not decode as an expert-result transaction with a valid body
//     -> kBadSignature "commitment does not decode: ...";
//  b. its signer is not report.edge -> kBadSignature "signed by <key>..., not by the edge called";
//  c. its signature does not verify for the chain id -> kBadSignature;
//  d. its nonce is used and result/<edge>/<nonce> holds another body -> kReplayedNonce;
//  e. its expert or input CID differs from the report's -> kMismatch "commitment for another
//     call: ...".
// InvalidArgument "the commitment is valid ..." when none holds; DataLoss when the stored
// result record is corrupt. Deterministic: reads only nonce/ and result/ keys of the edge.
Result<CommitmentFault> JudgeCommitment(const TxContext& ctx, const ReportCommitment& report,
                                        const StateOverlay& state);

// canonical("trustmoe/state/report/v1", bytes edge, bytes commitment_id (32), bytes reporter,
//           u64 report_nonce, str expert_cid, str input_cid, u8 reason, str detail, u64 height)
// A commitment of `edge` REJECTED on a report; `height` is the block that ordered the report.
struct ReportRecord {
  crypto::PublicKey edge;
  pbft::TxId commitment_id{};  // SHA-256 of the reported commitment bytes
  crypto::PublicKey reporter;  // the signer of the report
  uint64_t report_nonce = 0;   // with `reporter`, names the report transaction
  std::string expert_cid;
  std::string input_cid;
  RejectReason reason = RejectReason::kNone;
  std::string detail;
  uint64_t height = 0;

  Bytes Encode() const;
  static Result<ReportRecord> Decode(ByteSpan bytes);
};

// "report/<edge hex>/<commitment id hex>"; ReportPrefix(edge) is "report/<edge hex>/", the
// prefix of every report on one edge.
std::string ReportPrefix(const crypto::PublicKey& edge);
std::string ReportKey(const crypto::PublicKey& edge, const pbft::TxId& commitment_id);

// The handler of TxType::kReportCommitment (registered in TxRegistry::Default()): signer must
// be the admin or a registered gate (PermissionDenied); the body must decode
// (InvalidArgument); `edge` must be a registered edge (NotFound); one report per edge and
// commitment (AlreadyExists); the report must prove something (JudgeCommitment). Records the
// ReportRecord and counts a REJECTED verdict on the edge (CountVerdict, the blacklist reason
// "report <first 16 hex digits of the commitment id> <reason text>").
std::shared_ptr<const TxHandler> MakeReportCommitmentHandler();

}  // namespace trustmoe::ledger
