#include "chain/ledger/result.h"

#include <cstdio>

#include "chain/ledger/verdict.h"
#include "common/bytes.h"
#include "crypto/canonical.h"

namespace trustmoe::ledger {
namespace {

constexpr std::string_view kExpertResultDomain = "trustmoe/tx/expert-result/v1";
constexpr std::string_view kResultRecordDomain = "trustmoe/state/result/v1";
constexpr uint32_t kReasonBytesMax = 512;

class ExpertResultHandler : public TxHandler {
 public:
  std::string_view name() const override { return "expert-result"; }
  Status Execute(const TxContext& ctx, const Tx& tx, StateOverlay* state) const override {
    TRUSTMOE_ASSIGN_OR_RETURN(auto node, state->GetNode(tx.signer));
    if (!node.has_value() || node->role != NodeRole::kEdge) {
      return Status::PermissionDenied("expert-result: signer " + tx.signer.Hex().substr(0, 16) +
                                      "... is not a registered edge");
    }
    TRUSTMOE_ASSIGN_OR_RETURN(ExpertResultBody body, ExpertResultBody::Decode(tx.body));
    ResultRecord record{tx.signer, tx.nonce, std::move(body), ctx.height, ResultStatus::kPending,
                        "", 0};
    state->Put(JobResultKey(record.body.job, tx.signer, tx.nonce), Bytes());
    TRUSTMOE_ASSIGN_OR_RETURN(auto published, state->Get(ExpertKey(record.body.expert_cid)));
    if (!published.has_value()) {
      // Decided here, by every replica alike, without votes: the edge signed a result for an
      // expert version nobody published (an honest edge checks before it runs one).
      return ApplyVerdict(ctx, Verdict::kRejected, RejectReason::kExpertNotPublished,
                          record.body.expert_cid + " is not published on the ledger", &record,
                          state);
    }
    state->Put(ResultKey(tx.signer, tx.nonce), record.Encode());
    state->Put(PendingKey(tx.signer, tx.nonce), Bytes());
    return Status::Ok();
  }
};

}  // namespace

std::string_view CallKindName(CallKind kind) {
  return kind == CallKind::kForward ? "forward" : "backward";
}

std::string_view ComputeDTypeName(ComputeDType dtype) {
  switch (dtype) {
    case ComputeDType::kF32:
      return "f32";
    case ComputeDType::kBF16:
      return "bf16";
    case ComputeDType::kF16:
      return "f16";
  }
  return "unknown";
}

Result<ComputeDType> ParseComputeDType(std::string_view name) {
  if (name == "f32") return ComputeDType::kF32;
  if (name == "bf16") return ComputeDType::kBF16;
  if (name == "f16") return ComputeDType::kF16;
  return Status::InvalidArgument("unknown compute dtype '" + std::string(name) +
                                 "' (f32, bf16 or f16)");
}

std::string_view ResultStatusName(ResultStatus status) {
  switch (status) {
    case ResultStatus::kPending:
      return "pending";
    case ResultStatus::kAccepted:
      return "accepted";
    case ResultStatus::kRejected:
      return "rejected";
  }
  return "unknown";
}

Bytes ExpertResultBody::Encode() const {
  crypto::CanonicalWriter w(kExpertResultDomain);
  w.U8(static_cast<uint8_t>(kind))
      .Str(job)
      .U64(step)
      .Str(expert_cid)
      .Str(input_cid)
      .Str(grad_output_cid)
      .Str(output_cid)
      .U64(rows)
      .U8(static_cast<uint8_t>(dtype))
      .Str(device);
  return w.Take();
}

Result<ExpertResultBody> ExpertResultBody::Decode(ByteSpan bytes) {
  crypto::CanonicalReader r(bytes);
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kExpertResultDomain));
  ExpertResultBody out;
  TRUSTMOE_ASSIGN_OR_RETURN(uint8_t kind, r.U8());
  if (kind != static_cast<uint8_t>(CallKind::kForward) &&
      kind != static_cast<uint8_t>(CallKind::kBackward)) {
    return Status::InvalidArgument("expert-result: unknown call kind " + std::to_string(kind));
  }
  out.kind = static_cast<CallKind>(kind);
  TRUSTMOE_ASSIGN_OR_RETURN(out.job, r.Str(kJobBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(out.step, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(out.expert_cid, r.Str(kCidBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(out.input_cid, r.Str(kCidBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(out.grad_output_cid, r.Str(kCidBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(out.output_cid, r.Str(kCidBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(out.rows, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(out.dtype, ReadComputeDType(&r, "expert-result"));
  TRUSTMOE_ASSIGN_OR_RETURN(out.device, r.Str(kDeviceBytesMax));
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  TRUSTMOE_RETURN_IF_ERROR(CheckDevice(out.device, "expert-result"));
  if (out.job.empty()) return Status::InvalidArgument("expert-result: empty job");
  TRUSTMOE_RETURN_IF_ERROR(CheckCidSyntax(out.expert_cid).WithContext("expert-result expert"));
  TRUSTMOE_RETURN_IF_ERROR(CheckCidSyntax(out.input_cid).WithContext("expert-result input"));
  TRUSTMOE_RETURN_IF_ERROR(CheckCidSyntax(out.output_cid).WithContext("expert-result output"));
  if (out.kind == CallKind::kBackward) {
    TRUSTMOE_RETURN_IF_ERROR(
        CheckCidSyntax(out.grad_output_cid).WithContext("expert-result grad_output"));
  } else if (!out.grad_output_cid.empty()) {
    return Status::InvalidArgument("expert-result: a forward call has no grad_output");
  }
  if (out.rows == 0) return Status::InvalidArgument("expert-result: zero rows");
  return out;
}

Bytes ResultRecord::Encode() const {
  crypto::CanonicalWriter w(kResultRecordDomain);
  w.Blob(edge.bytes())
      .U64(nonce)
      .Blob(body.Encode());
  WriteVerdictFields({height, status, reason, verdict_height}, &w);
  return w.Take();
}

Result<ResultRecord> ResultRecord::Decode(ByteSpan bytes) {
  crypto::CanonicalReader r(bytes);
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kResultRecordDomain));
  ResultRecord out;
  TRUSTMOE_ASSIGN_OR_RETURN(out.edge, ReadPublicKey(&r));
  TRUSTMOE_ASSIGN_OR_RETURN(out.nonce, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes body, r.Blob(4096));
  TRUSTMOE_ASSIGN_OR_RETURN(out.body, ExpertResultBody::Decode(body));
  TRUSTMOE_ASSIGN_OR_RETURN(VerdictFields v, ReadVerdictFields(&r, "result record"));
  out.height = v.height;
  out.status = v.status;
  out.reason = std::move(v.reason);
  out.verdict_height = v.verdict_height;
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  return out;
}

void WriteVerdictFields(const VerdictFields& f, crypto::CanonicalWriter* w) {
  w->U64(f.height).U8(static_cast<uint8_t>(f.status)).Str(f.reason).U64(f.verdict_height);
}

Result<VerdictFields> ReadVerdictFields(crypto::CanonicalReader* r, std::string_view what) {
  VerdictFields f;
  TRUSTMOE_ASSIGN_OR_RETURN(f.height, r->U64());
  TRUSTMOE_ASSIGN_OR_RETURN(uint8_t status, r->U8());
  if (status > static_cast<uint8_t>(ResultStatus::kRejected)) {
    return Status::DataLoss(std::string(what) + ": unknown status " + std::to_string(status));
  }
  f.status = static_cast<ResultStatus>(status);
  TRUSTMOE_ASSIGN_OR_RETURN(f.reason, r->Str(kReasonBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(f.verdict_height, r->U64());
  return f;
}

Result<ComputeDType> ReadComputeDType(crypto::CanonicalReader* r, std::string_view what) {
  TRUSTMOE_ASSIGN_OR_RETURN(uint8_t dtype, r->U8());
  if (dtype < 1 || dtype > 3) {
    return Status::InvalidArgument(std::string(what) + ": unknown compute dtype " +
                                   std::to_string(dtype));
  }
  return static_cast<ComputeDType>(dtype);
}

Status CheckDevice(std::string_view device, std::string_view what) {
  if (device.empty() || device.size() > kDeviceBytesMax ||
      device.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789:") != std::string::npos) {
    return Status::InvalidArgument(std::string(what) + ": device must be 1..32 of [a-z0-9:]");
  }
  return Status::Ok();
}

std::string ResultKey(const crypto::PublicKey& edge, uint64_t nonce) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(nonce));
  return "result/" + edge.Hex() + "/" + buf;
}

std::string PendingKey(const crypto::PublicKey& edge, uint64_t nonce) {
  return "pending/" + ResultKey(edge, nonce).substr(7);
}

std::string JobResultPrefix(std::string_view job) {
  return "job-result/" + ToHex(ByteSpan(reinterpret_cast<const uint8_t*>(job.data()), job.size())) +
         "/";
}

std::string JobResultKey(std::string_view job, const crypto::PublicKey& edge, uint64_t nonce) {
  return JobResultPrefix(job) + ResultKey(edge, nonce).substr(7);
}

std::shared_ptr<const TxHandler> MakeExpertResultHandler() {
  return std::make_shared<ExpertResultHandler>();
}

}  // namespace trustmoe::ledger
