#include "chain/ledger/report.h"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <utility>

#include "crypto/canonical.h"
#include "crypto/sha256.h"

namespace trustmoe::ledger {
namespace {

constexpr std::string_view kReportDomain = "trustmoe/tx/report-commitment/v1";
constexpr std::string_view kReportRecordDomain = "trustmoe/state/report/v1";

std::string KeyPrefix(const crypto::PublicKey& key) { return key.Hex().substr(0, 16) + "..."; }

std::string NonceHex(uint64_t nonce) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(nonce));
  return buf;
}

// "sha256-tree:" and the first 16 hex digits: enough to tell two CIDs apart in a detail.
std::string ShortCid(std::string_view cid) { return std::string(cid.substr(0, 28)) + "..."; }

CommitmentFault Fault(RejectReason reason, std::string detail) {
  if (detail.size() > kReportDetailBytesMax) detail.resize(kReportDetailBytesMax);
  return {reason, std::move(detail)};
}

Status ProvesNothing(std::string_view why) {
  return Status::InvalidArgument("the commitment is valid (" + std::string(why) +
                                 "): it proves nothing against the edge");
}

// Decodes the commitment as an expert-result transaction; nullopt (and `*why`) when it is not one.
std::optional<std::pair<Tx, ExpertResultBody>> DecodeCommitment(const ReportCommitment& report,
                                                                uint32_t tx_bytes_max,
                                                                std::string* why) {
  auto tx = Tx::Decode(report.commitment, tx_bytes_max);
  if (!tx.ok()) {
    *why = tx.status().message();
    return std::nullopt;
  }
  if (tx->type != static_cast<uint8_t>(TxType::kExpertResult)) {
    *why = "a " + std::string(TxTypeName(tx->type)) + " transaction (type " +
           std::to_string(tx->type) + "), not an expert-result";
    return std::nullopt;
  }
  auto body = ExpertResultBody::Decode(tx->body);
  if (!body.ok()) {
    *why = body.status().message();
    return std::nullopt;
  }
  return std::pair{std::move(tx).value(), std::move(body).value()};
}

// The admin, or a registered gate: the nodes that call edges.
Status CheckReporter(const TxContext& ctx, const Tx& tx, const StateOverlay& state) {
  if (tx.signer == ctx.genesis->admin_key) return Status::Ok();
  TRUSTMOE_ASSIGN_OR_RETURN(auto node, state.GetNode(tx.signer));
  if (!node.has_value()) {
    return Status::PermissionDenied("signer " + KeyPrefix(tx.signer) + " is not a registered node");
  }
  if (node->role != NodeRole::kGate) {
    return Status::PermissionDenied("a node with role " + std::string(NodeRoleName(node->role)) +
                                    " may not report commitments (gate or admin only)");
  }
  return Status::Ok();
}

class ReportCommitmentHandler : public TxHandler {
 public:
  std::string_view name() const override { return "report-commitment"; }
  Status Execute(const TxContext& ctx, const Tx& tx, StateOverlay* state) const override {
    TRUSTMOE_RETURN_IF_ERROR(CheckReporter(ctx, tx, *state));
    TRUSTMOE_ASSIGN_OR_RETURN(ReportCommitment body,
                              ReportCommitment::Decode(tx.body, ctx.genesis->params.tx_bytes_max));
    TRUSTMOE_ASSIGN_OR_RETURN(auto edge, state->GetNode(body.edge));
    if (!edge.has_value() || edge->role != NodeRole::kEdge) {
      return Status::NotFound(KeyPrefix(body.edge) + " is not a registered edge");
    }
    const pbft::TxId commitment_id = pbft::ComputeTxId(body.commitment);
    const std::string key = ReportKey(body.edge, commitment_id);
    TRUSTMOE_ASSIGN_OR_RETURN(auto earlier, state->Get(key));
    if (earlier.has_value()) {
      return Status::AlreadyExists("commitment " + crypto::DigestHex(commitment_id) + " of edge " +
                                   KeyPrefix(body.edge) + " is already reported");
    }
    TRUSTMOE_ASSIGN_OR_RETURN(CommitmentFault fault, JudgeCommitment(ctx, body, *state));
    ReportRecord record{.edge = body.edge,
                        .commitment_id = commitment_id,
                        .reporter = tx.signer,
                        .report_nonce = tx.nonce,
                        .expert_cid = body.expert_cid,
                        .input_cid = body.input_cid,
                        .reason = fault.reason,
                        .detail = fault.detail,
                        .height = ctx.height};
    state->Put(key, record.Encode());
    const std::string blacklist_reason = "report " +
                                         crypto::DigestHex(commitment_id).substr(0, 16) + " " +
                                         VerdictReasonText(fault.reason, fault.detail);
    return CountVerdict(ctx, body.edge, Verdict::kRejected, fault.reason, blacklist_reason, state);
  }
};

}  // namespace

Result<CommitmentFault> JudgeCommitment(const TxContext& ctx, const ReportCommitment& report,
                                        const StateOverlay& state) {
  std::string why;
  auto decoded = DecodeCommitment(report, ctx.genesis->params.tx_bytes_max, &why);
  if (!decoded.has_value()) {
    return Fault(RejectReason::kBadSignature, "commitment does not decode: " + why);
  }
  const auto& [tx, body] = *decoded;
  if (tx.signer != report.edge) {
    return Fault(RejectReason::kBadSignature,
                 "signed by " + KeyPrefix(tx.signer) + ", not by the edge called");
  }
  if (!tx.VerifySignature(ctx.genesis->chain_id).ok()) {
    return Fault(RejectReason::kBadSignature,
                 "signature does not verify for chain '" + ctx.genesis->chain_id + "'");
  }
  // The edge signed these bytes. Equivocation needs no one's word: the ledger holds the other
  // body signed with the same nonce.
  TRUSTMOE_ASSIGN_OR_RETURN(auto used, state.Get(NonceKey(report.edge, tx.nonce)));
  if (used.has_value()) {
    const std::string result_key = ResultKey(report.edge, tx.nonce);
    TRUSTMOE_ASSIGN_OR_RETURN(auto stored, state.Get(result_key));
    if (!stored.has_value()) {
      return ProvesNothing("nonce " + NonceHex(tx.nonce) +
                           " is used, but by no expert result to compare it with");
    }
    auto record = ResultRecord::Decode(*stored);
    if (!record.ok()) {
      return Status::DataLoss("result " + result_key + ": " + record.status().message());
    }
    if (record->body != body) {
      return Fault(RejectReason::kReplayedNonce,
                   "nonce " + NonceHex(tx.nonce) + " signed over two bodies: result " +
                       NonceHex(tx.nonce) + " on the ledger is job '" + record->body.job +
                       "' step " + std::to_string(record->body.step) + ", this one job '" +
                       body.job + "' step " + std::to_string(body.step));
    }
  }
  if (body.expert_cid != report.expert_cid || body.input_cid != report.input_cid) {
    std::string detail = "commitment for another call:";
    if (body.expert_cid != report.expert_cid) {
      detail +=
          " expert " + ShortCid(body.expert_cid) + " instead of " + ShortCid(report.expert_cid);
    }
    if (body.input_cid != report.input_cid) {
      if (body.expert_cid != report.expert_cid) detail += ",";
      detail += " input " + ShortCid(body.input_cid) + " instead of " + ShortCid(report.input_cid);
    }
    return Fault(RejectReason::kMismatch, std::move(detail));
  }
  if (used.has_value()) {
    return ProvesNothing("it is result " + NonceHex(tx.nonce) + " of the edge on the ledger");
  }
  return ProvesNothing("the edge signed it for this call; submit it as its result");
}

Bytes ReportCommitment::Encode() const {
  crypto::CanonicalWriter w(kReportDomain);
  w.Blob(edge.bytes()).Blob(commitment).Str(expert_cid).Str(input_cid);
  return w.Take();
}

Result<ReportCommitment> ReportCommitment::Decode(ByteSpan body, uint32_t commitment_bytes_max) {
  crypto::CanonicalReader r(body);
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kReportDomain));
  ReportCommitment out;
  TRUSTMOE_ASSIGN_OR_RETURN(out.edge, ReadPublicKey(&r));
  auto commitment = r.Blob(commitment_bytes_max);
  if (!commitment.ok()) {
    return commitment.status().WithContext("report-commitment: commitment (at most " +
                                           std::to_string(commitment_bytes_max) + " bytes)");
  }
  out.commitment = std::move(commitment).value();
  TRUSTMOE_ASSIGN_OR_RETURN(out.expert_cid, r.Str(kCidBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(out.input_cid, r.Str(kCidBytesMax));
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  TRUSTMOE_RETURN_IF_ERROR(CheckCidSyntax(out.expert_cid).WithContext("report-commitment expert"));
  TRUSTMOE_RETURN_IF_ERROR(CheckCidSyntax(out.input_cid).WithContext("report-commitment input"));
  return out;
}

Bytes ReportRecord::Encode() const {
  crypto::CanonicalWriter w(kReportRecordDomain);
  w.Blob(edge.bytes())
      .Blob(commitment_id)
      .Blob(reporter.bytes())
      .U64(report_nonce)
      .Str(expert_cid)
      .Str(input_cid)
      .U8(static_cast<uint8_t>(reason))
      .Str(detail)
      .U64(height);
  return w.Take();
}

Result<ReportRecord> ReportRecord::Decode(ByteSpan bytes) {
  crypto::CanonicalReader r(bytes);
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kReportRecordDomain));
  ReportRecord out;
  TRUSTMOE_ASSIGN_OR_RETURN(out.edge, ReadPublicKey(&r));
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes id, r.Blob(32));
  if (id.size() != out.commitment_id.size()) {
    return Status::InvalidArgument("report record: commitment id is not 32 bytes");
  }
  std::copy(id.begin(), id.end(), out.commitment_id.begin());
  TRUSTMOE_ASSIGN_OR_RETURN(out.reporter, ReadPublicKey(&r));
  TRUSTMOE_ASSIGN_OR_RETURN(out.report_nonce, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(out.expert_cid, r.Str(kCidBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(out.input_cid, r.Str(kCidBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(uint8_t reason, r.U8());
  if (reason == 0 || reason > kRejectReasonMax) {
    return Status::InvalidArgument("report record: unknown reason " + std::to_string(reason));
  }
  out.reason = static_cast<RejectReason>(reason);
  TRUSTMOE_ASSIGN_OR_RETURN(out.detail, r.Str(kReportDetailBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(out.height, r.U64());
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  return out;
}

std::string ReportPrefix(const crypto::PublicKey& edge) { return "report/" + edge.Hex() + "/"; }

std::string ReportKey(const crypto::PublicKey& edge, const pbft::TxId& commitment_id) {
  return ReportPrefix(edge) + crypto::DigestHex(commitment_id);
}

std::shared_ptr<const TxHandler> MakeReportCommitmentHandler() {
  return std::make_shared<ReportCommitmentHandler>();
}

}  // namespace trustmoe::ledger
