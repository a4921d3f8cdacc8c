#include "chain/ledger/update.h"

#include <bit>
#include <cmath>
#include <cstdio>
#include <set>

#include "crypto/canonical.h"

namespace trustmoe::ledger {
namespace {

constexpr std::string_view kUpdateDomain = "trustmoe/tx/expert-updated/v1";
constexpr std::string_view kUpdateRecordDomain = "trustmoe/state/update/v1";

std::string NonceHex(uint64_t nonce) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(nonce));
  return buf;
}

Result<double> ReadDouble(crypto::CanonicalReader* r, const char* what) {
  TRUSTMOE_ASSIGN_OR_RETURN(uint64_t bits, r->U64());
  const double v = std::bit_cast<double>(bits);
  if (!std::isfinite(v)) {
    return Status::InvalidArgument(std::string("expert-updated: optimizer ") + what +
                                   " is not finite");
  }
  return v;
}

class ExpertUpdatedHandler : public TxHandler {
 public:
  std::string_view name() const override { return "expert-updated"; }
  Status Execute(const TxContext& ctx, const Tx& tx, StateOverlay* state) const override {
    TRUSTMOE_ASSIGN_OR_RETURN(auto node, state->GetNode(tx.signer));
    if (!node.has_value() || node->role != NodeRole::kEdge) {
      return Status::PermissionDenied("expert-updated: signer " + tx.signer.Hex().substr(0, 16) +
                                      "... is not a registered edge");
    }
    TRUSTMOE_ASSIGN_OR_RETURN(ExpertUpdatedBody body, ExpertUpdatedBody::Decode(tx.body));
    for (uint64_t nonce : body.sources) {
      TRUSTMOE_ASSIGN_OR_RETURN(auto bytes, state->Get(ResultKey(tx.signer, nonce)));
      if (!bytes.has_value()) {
        return Status::InvalidArgument("expert-updated: source " + NonceHex(nonce) +
                                       " is not a result of this edge");
      }
      auto source = ResultRecord::Decode(*bytes);
      if (!source.ok()) return Status::DataLoss("result record: " + source.status().message());
      if (source->body.kind != CallKind::kBackward || source->body.expert_cid != body.parent_cid) {
        return Status::InvalidArgument("expert-updated: source " + NonceHex(nonce) +
                                       " is not a backward result on the parent");
      }
    }
    // The parent's optimizer state is the one the chain recorded with the parent: the child
    // state of the update that made it, or a fresh state for an expert published directly.
    // (Otherwise an edge could name any state and steer the step with it.)
    TRUSTMOE_ASSIGN_OR_RETURN(auto lineage, state->Get(LineageKey(body.parent_cid)));
    std::string recorded_state;
    if (lineage.has_value()) {
      const std::string parent_update(lineage->begin(), lineage->end());
      TRUSTMOE_ASSIGN_OR_RETURN(auto parent_bytes, state->Get(parent_update));
      if (!parent_bytes.has_value()) return Status::DataLoss("lineage names a missing update");
      auto parent_update_record = UpdateRecord::Decode(*parent_bytes);
      if (!parent_update_record.ok()) {
        return Status::DataLoss("update record: " + parent_update_record.status().message());
      }
      recorded_state = parent_update_record->body.child_state_cid;
    }
    if (body.parent_state_cid != recorded_state) {
      return Status::InvalidArgument(
          "expert-updated: parent_state_cid must be the optimizer state recorded with the parent (" +
          (recorded_state.empty() ? std::string("none: a fresh state") : recorded_state) + ")");
    }
    TRUSTMOE_ASSIGN_OR_RETURN(auto child, state->Get(ExpertKey(body.child_cid)));
    if (child.has_value()) {
      return Status::AlreadyExists("expert-updated: child " + body.child_cid +
                                   " is published already");
    }
    UpdateRecord record{tx.signer, tx.nonce, body, ctx.height, ResultStatus::kPending, "", 0};
    TRUSTMOE_ASSIGN_OR_RETURN(auto parent_bytes, state->Get(ExpertKey(body.parent_cid)));
    if (!parent_bytes.has_value()) {
      return ApplyUpdateVerdict(ctx, Verdict::kRejected, RejectReason::kExpertNotPublished,
                                "parent " + body.parent_cid + " is not published on the ledger",
                                &record, state);
    }
    auto parent = ExpertRecord::Decode(*parent_bytes);
    if (!parent.ok()) return Status::DataLoss("expert record: " + parent.status().message());
    // The child is published as it is ordered, so that training goes on; its lineage names
    // the update, whose verdict follows.
    ExpertRecord child_record{body.child_cid,
                              (body.job + " step " + std::to_string(body.step)).substr(0, kNameBytesMax),
                              parent->arch, body.child_size, tx.signer, ctx.height};
    state->Put(ExpertKey(body.child_cid), child_record.Encode());
    // Both iterators of one string.
    const std::string update_key = UpdateKey(tx.signer, tx.nonce);
    state->Put(LineageKey(body.child_cid), Bytes(update_key.begin(), update_key.end()));
    state->Put(update_key, record.Encode());
    state->Put(PendingUpdateKey(tx.signer, tx.nonce), Bytes());
    return Status::Ok();
  }
};

}  // namespace

Bytes ExpertUpdatedBody::Encode() const {
  crypto::CanonicalWriter w(kUpdateDomain);
  w.Str(job).U64(step).Str(parent_cid).Str(parent_state_cid).Str(child_cid).Str(child_state_cid);
  w.U64(child_size).U8(static_cast<uint8_t>(optimizer.kind));
  for (double v : {optimizer.lr, optimizer.momentum, optimizer.beta1, optimizer.beta2,
                   optimizer.eps, optimizer.weight_decay}) {
    w.U64(std::bit_cast<uint64_t>(v));
  }
  w.U8(static_cast<uint8_t>(dtype)).Str(device);
  w.U32(static_cast<uint32_t>(sources.size()));
  for (uint64_t n : sources) w.U64(n);
  return w.Take();
}

Result<ExpertUpdatedBody> ExpertUpdatedBody::Decode(ByteSpan bytes) {
  crypto::CanonicalReader r(bytes);
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kUpdateDomain));
  ExpertUpdatedBody out;
  TRUSTMOE_ASSIGN_OR_RETURN(out.job, r.Str(kJobBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(out.step, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(out.parent_cid, r.Str(kCidBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(out.parent_state_cid, r.Str(kCidBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(out.child_cid, r.Str(kCidBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(out.child_state_cid, r.Str(kCidBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(out.child_size, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(uint8_t kind, r.U8());
  if (kind != 1 && kind != 2) {
    return Status::InvalidArgument("expert-updated: unknown optimizer " + std::to_string(kind));
  }
  out.optimizer.kind = static_cast<OptimizerKind>(kind);
  TRUSTMOE_ASSIGN_OR_RETURN(out.optimizer.lr, ReadDouble(&r, "lr"));
  TRUSTMOE_ASSIGN_OR_RETURN(out.optimizer.momentum, ReadDouble(&r, "momentum"));
  TRUSTMOE_ASSIGN_OR_RETURN(out.optimizer.beta1, ReadDouble(&r, "beta1"));
  TRUSTMOE_ASSIGN_OR_RETURN(out.optimizer.beta2, ReadDouble(&r, "beta2"));
  TRUSTMOE_ASSIGN_OR_RETURN(out.optimizer.eps, ReadDouble(&r, "eps"));
  TRUSTMOE_ASSIGN_OR_RETURN(out.optimizer.weight_decay, ReadDouble(&r, "weight_decay"));
  TRUSTMOE_ASSIGN_OR_RETURN(out.dtype, ReadComputeDType(&r, "expert-updated"));
  TRUSTMOE_ASSIGN_OR_RETURN(out.device, r.Str(kDeviceBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(uint32_t count, r.U32());
  if (count == 0 || count > kUpdateSourcesMax) {
    return Status::InvalidArgument("expert-updated: 1.." + std::to_string(kUpdateSourcesMax) +
                                   " source results");
  }
  std::set<uint64_t> seen;
  for (uint32_t i = 0; i < count; ++i) {
    TRUSTMOE_ASSIGN_OR_RETURN(uint64_t n, r.U64());
    if (!seen.insert(n).second) {
      return Status::InvalidArgument("expert-updated: source " + NonceHex(n) + " twice");
    }
    out.sources.push_back(n);
  }
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  const OptimizerParams& o = out.optimizer;
  if (!(o.lr > 0) || o.momentum < 0 || o.momentum >= 1 || o.beta1 < 0 || o.beta1 >= 1 ||
      o.beta2 < 0 || o.beta2 >= 1 || !(o.eps > 0) || o.weight_decay < 0) {
    return Status::InvalidArgument(
        "expert-updated: optimizer lr and eps must be > 0, momentum, beta1 and beta2 in [0, 1), "
        "weight_decay >= 0");
  }
  if (out.job.empty()) return Status::InvalidArgument("expert-updated: empty job");
  TRUSTMOE_RETURN_IF_ERROR(CheckCidSyntax(out.parent_cid).WithContext("expert-updated parent"));
  TRUSTMOE_RETURN_IF_ERROR(CheckCidSyntax(out.child_cid).WithContext("expert-updated child"));
  if (out.parent_cid == out.child_cid) {
    return Status::InvalidArgument("expert-updated: the child is the parent");
  }
  if (!out.parent_state_cid.empty()) {
    TRUSTMOE_RETURN_IF_ERROR(
        CheckCidSyntax(out.parent_state_cid).WithContext("expert-updated parent state"));
  }
  if (o.stateful() != !out.child_state_cid.empty()) {
    return Status::InvalidArgument(
        "expert-updated: a child optimizer state goes with a stateful optimizer (Adam, SGD with "
        "momentum) and only with one");
  }
  if (!out.child_state_cid.empty()) {
    TRUSTMOE_RETURN_IF_ERROR(
        CheckCidSyntax(out.child_state_cid).WithContext("expert-updated child state"));
  }
  TRUSTMOE_RETURN_IF_ERROR(CheckDevice(out.device, "expert-updated"));
  return out;
}

Bytes UpdateRecord::Encode() const {
  crypto::CanonicalWriter w(kUpdateRecordDomain);
  w.Blob(edge.bytes())
      .U64(nonce)
      .Blob(body.Encode());
  WriteVerdictFields({height, status, reason, verdict_height}, &w);
  return w.Take();
}

Result<UpdateRecord> UpdateRecord::Decode(ByteSpan bytes) {
  crypto::CanonicalReader r(bytes);
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kUpdateRecordDomain));
  UpdateRecord out;
  TRUSTMOE_ASSIGN_OR_RETURN(out.edge, ReadPublicKey(&r));
  TRUSTMOE_ASSIGN_OR_RETURN(out.nonce, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes body, r.Blob(64 * 1024));
  TRUSTMOE_ASSIGN_OR_RETURN(out.body, ExpertUpdatedBody::Decode(body));
  TRUSTMOE_ASSIGN_OR_RETURN(VerdictFields v, ReadVerdictFields(&r, "update record"));
  out.height = v.height;
  out.status = v.status;
  out.reason = std::move(v.reason);
  out.verdict_height = v.verdict_height;
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  return out;
}

std::string UpdateKey(const crypto::PublicKey& edge, uint64_t nonce) {
  return "update/" + edge.Hex() + "/" + NonceHex(nonce);
}

std::string PendingUpdateKey(const crypto::PublicKey& edge, uint64_t nonce) {
  return "pending-update/" + edge.Hex() + "/" + NonceHex(nonce);
}

std::string LineageKey(std::string_view child_cid) { return "lineage/" + std::string(child_cid); }

Status ApplyUpdateVerdict(const TxContext& ctx, Verdict verdict, RejectReason reason,
                          std::string_view detail, UpdateRecord* record, StateOverlay* state) {
  record->status = verdict == Verdict::kAccepted ? ResultStatus::kAccepted : ResultStatus::kRejected;
  record->verdict_height = ctx.height;
  record->reason = verdict == Verdict::kRejected ? VerdictReasonText(reason, detail) : "";
  state->Erase(PendingUpdateKey(record->edge, record->nonce));
  state->Put(UpdateKey(record->edge, record->nonce), record->Encode());
  const std::string blacklist_reason =
      verdict == Verdict::kRejected ? "update " + NonceHex(record->nonce) + " " + record->reason
                                    : "";
  return CountVerdict(ctx, record->edge, verdict, reason, blacklist_reason, state);
}

std::shared_ptr<const TxHandler> MakeExpertUpdatedHandler() {
  return std::make_shared<ExpertUpdatedHandler>();
}

}  // namespace trustmoe::ledger
