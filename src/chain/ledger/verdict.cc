#include "chain/ledger/verdict.h"

#include <array>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "chain/ledger/result.h"
#include "chain/ledger/update.h"
#include "crypto/canonical.h"

namespace trustmoe::ledger {
namespace {

constexpr std::string_view kVoteDomain = "trustmoe/tx/vote/v1";
constexpr std::string_view kVoteRecordDomain = "trustmoe/state/vote/v1";
constexpr std::string_view kLiftDomain = "trustmoe/tx/lift-blacklist/v1";
constexpr size_t kResultReasonBytesMax = 512;
constexpr size_t kBlacklistReasonBytesMax = 1024;  // Reputation::Decode's bound

Result<std::pair<Verdict, RejectReason>> ReadVerdict(crypto::CanonicalReader* r) {
  TRUSTMOE_ASSIGN_OR_RETURN(uint8_t verdict, r->U8());
  TRUSTMOE_ASSIGN_OR_RETURN(uint8_t reason, r->U8());
  if (verdict != static_cast<uint8_t>(Verdict::kAccepted) &&
      verdict != static_cast<uint8_t>(Verdict::kRejected)) {
    return Status::InvalidArgument("vote: unknown verdict " + std::to_string(verdict));
  }
  if (reason > kRejectReasonMax) {
    return Status::InvalidArgument("vote: unknown reason " + std::to_string(reason));
  }
  const auto v = static_cast<Verdict>(verdict);
  const auto why = static_cast<RejectReason>(reason);
  if ((v == Verdict::kAccepted) != (why == RejectReason::kNone)) {
    return Status::InvalidArgument(
        "vote: an accepted vote has no reason and a rejected one needs one");
  }
  return std::pair{v, why};
}

Status AddContradiction(StateOverlay* state, const Genesis& genesis, uint32_t validator) {
  const crypto::PublicKey& key = genesis.validators[validator].key;
  TRUSTMOE_ASSIGN_OR_RETURN(Reputation rep, state->GetReputation(key));
  ++rep.contradictions;
  state->Put(ReputationKey(key), rep.Encode());
  return Status::Ok();
}

// The reason most rejecting voters give (ties go to the lower code) and the detail of the
// lowest validator id giving it; `votes` are sorted by validator id.
std::pair<RejectReason, std::string> MajorityReason(const std::vector<VoteRecord>& votes) {
  std::array<uint32_t, kRejectReasonMax + 1> counts{};
  for (const VoteRecord& v : votes) {
    if (v.verdict == Verdict::kRejected) ++counts[static_cast<uint8_t>(v.reason)];
  }
  uint8_t best = 1;
  for (uint8_t r = 1; r <= kRejectReasonMax; ++r) {
    if (counts[r] > counts[best]) best = r;
  }
  for (const VoteRecord& v : votes) {
    if (v.verdict == Verdict::kRejected && static_cast<uint8_t>(v.reason) == best) {
      return {v.reason, v.detail};
    }
  }
  return {static_cast<RejectReason>(best), ""};
}

}  // namespace

Status CountVerdict(const TxContext& ctx, const crypto::PublicKey& edge, Verdict verdict,
                    RejectReason reason, std::string_view blacklist_reason, StateOverlay* state) {
  TRUSTMOE_ASSIGN_OR_RETURN(Reputation rep, state->GetReputation(edge));
  if (verdict == Verdict::kAccepted) {
    ++rep.accepted;
  } else {
    ++rep.rejected;
    if (IsAvailabilityReason(reason)) {
      ++rep.strikes;
    } else {
      ++rep.faults;
    }
    const ChainParams& p = ctx.genesis->params;
    if (!rep.blacklisted && (rep.strikes >= p.strike_threshold || rep.faults >= p.fault_threshold)) {
      rep.blacklisted = true;
      rep.blacklisted_height = ctx.height;
      rep.blacklist_reason = std::string(blacklist_reason.substr(0, kBlacklistReasonBytesMax));
    }
  }
  state->Put(ReputationKey(edge), rep.Encode());
  return Status::Ok();
}

Status ApplyVerdict(const TxContext& ctx, Verdict verdict, RejectReason reason,
                    std::string_view detail, ResultRecord* record, StateOverlay* state) {
  record->status =
      verdict == Verdict::kAccepted ? ResultStatus::kAccepted : ResultStatus::kRejected;
  record->verdict_height = ctx.height;
  record->reason = verdict == Verdict::kRejected ? VerdictReasonText(reason, detail) : "";
  state->Erase(PendingKey(record->edge, record->nonce));
  state->Put(ResultKey(record->edge, record->nonce), record->Encode());

  std::string blacklist_reason;
  if (verdict == Verdict::kRejected) {
    char nonce_hex[17];
    std::snprintf(nonce_hex, sizeof(nonce_hex), "%016llx",
                  static_cast<unsigned long long>(record->nonce));
    blacklist_reason = "result " + std::string(nonce_hex) + " " + record->reason;
  }
  return CountVerdict(ctx, record->edge, verdict, reason, blacklist_reason, state);
}

namespace {

// What a vote is on: a result or an update, named by (edge, nonce) (a signer's nonces are
// unique across all its transactions), with its status and how to record the final verdict.
struct Subject {
  std::string key;
  ResultStatus status = ResultStatus::kPending;
  std::function<Status(Verdict, RejectReason, const std::string&)> apply;
};

Result<std::optional<Subject>> FindSubject(const TxContext& ctx, const VoteBody& body,
                                           StateOverlay* state) {
  const std::string result_key = ResultKey(body.edge, body.result_nonce);
  TRUSTMOE_ASSIGN_OR_RETURN(auto bytes, state->Get(result_key));
  if (bytes.has_value()) {
    auto record = ResultRecord::Decode(*bytes);
    if (!record.ok()) return Status::DataLoss(result_key + ": " + record.status().message());
    auto shared = std::make_shared<ResultRecord>(std::move(record).value());
    return std::optional<Subject>(Subject{
        result_key, shared->status,
        [&ctx, shared, state](Verdict v, RejectReason r, const std::string& detail) {
          return ApplyVerdict(ctx, v, r, detail, shared.get(), state);
        }});
  }
  const std::string update_key = UpdateKey(body.edge, body.result_nonce);
  TRUSTMOE_ASSIGN_OR_RETURN(bytes, state->Get(update_key));
  if (bytes.has_value()) {
    auto record = UpdateRecord::Decode(*bytes);
    if (!record.ok()) return Status::DataLoss(update_key + ": " + record.status().message());
    auto shared = std::make_shared<UpdateRecord>(std::move(record).value());
    return std::optional<Subject>(Subject{
        update_key, shared->status,
        [&ctx, shared, state](Verdict v, RejectReason r, const std::string& detail) {
          return ApplyUpdateVerdict(ctx, v, r, detail, shared.get(), state);
        }});
  }
  return std::optional<Subject>();
}

// Finalizes `subject` with `verdict` from `votes` and counts the votes against it as
// contradictions.
Status Finalize(const TxContext& ctx, Verdict verdict, const std::vector<VoteRecord>& votes,
                const Subject& subject, StateOverlay* state) {
  auto [reason, detail] = verdict == Verdict::kRejected
                              ? MajorityReason(votes)
                              : std::pair<RejectReason, std::string>{RejectReason::kNone, ""};
  TRUSTMOE_RETURN_IF_ERROR(subject.apply(verdict, reason, detail));
  for (const VoteRecord& v : votes) {
    if (v.verdict != verdict) {
      TRUSTMOE_RETURN_IF_ERROR(AddContradiction(state, *ctx.genesis, v.validator));
    }
  }
  return Status::Ok();
}

class VoteHandler : public TxHandler {
 public:
  std::string_view name() const override { return "vote"; }
  Status Execute(const TxContext& ctx, const Tx& tx, StateOverlay* state) const override {
    const Genesis& genesis = *ctx.genesis;
    const int id = genesis.ValidatorId(tx.signer);
    if (id < 0) {
      return Status::PermissionDenied("vote: signer " + tx.signer.Hex().substr(0, 16) +
                                      "... is not a validator of the genesis");
    }
    TRUSTMOE_ASSIGN_OR_RETURN(VoteBody body, VoteBody::Decode(tx.body));
    TRUSTMOE_ASSIGN_OR_RETURN(std::optional<Subject> subject, FindSubject(ctx, body, state));
    if (!subject.has_value()) {
      return Status::NotFound("vote: no result " + ResultKey(body.edge, body.result_nonce) +
                              " and no update of that edge and nonce");
    }
    const std::string& result_key = subject->key;
    const uint32_t validator = static_cast<uint32_t>(id);
    const std::string vote_key = VoteKey(body.edge, body.result_nonce, validator);
    TRUSTMOE_ASSIGN_OR_RETURN(auto earlier, state->Get(vote_key));
    if (earlier.has_value()) {
      return Status::AlreadyExists("vote: validator " + std::to_string(validator) +
                                   " already voted on " + result_key);
    }
    VoteRecord vote{validator, body.verdict, body.reason, body.detail, ctx.height};
    state->Put(vote_key, vote.Encode());

    if (subject->status != ResultStatus::kPending) {
      const Verdict final_verdict = subject->status == ResultStatus::kAccepted
                                        ? Verdict::kAccepted
                                        : Verdict::kRejected;
      if (vote.verdict != final_verdict) {
        TRUSTMOE_RETURN_IF_ERROR(AddContradiction(state, genesis, validator));
      }
      return Status::Ok();
    }
    // Every vote on this result, in validator order (at most n reads).
    std::vector<VoteRecord> votes;
    uint32_t accepted = 0, rejected = 0;
    for (uint32_t v = 0; v < genesis.validators.size(); ++v) {
      TRUSTMOE_ASSIGN_OR_RETURN(auto bytes, state->Get(VoteKey(body.edge, body.result_nonce, v)));
      if (!bytes.has_value()) continue;
      auto decoded = VoteRecord::Decode(*bytes);
      if (!decoded.ok()) return Status::DataLoss("vote record: " + decoded.status().message());
      (decoded->verdict == Verdict::kAccepted ? accepted : rejected) += 1;
      votes.push_back(std::move(decoded).value());
    }
    const uint32_t quorum = genesis.PbftConfig().quorum();
    if (accepted >= quorum) return Finalize(ctx, Verdict::kAccepted, votes, *subject, state);
    if (rejected >= quorum) return Finalize(ctx, Verdict::kRejected, votes, *subject, state);
    return Status::Ok();
  }
};

class LiftBlacklistHandler : public TxHandler {
 public:
  std::string_view name() const override { return "lift-blacklist"; }
  Status Execute(const TxContext& ctx, const Tx& tx, StateOverlay* state) const override {
    if (tx.signer != ctx.genesis->admin_key) {
      return Status::PermissionDenied("lift-blacklist: only the genesis admin key may sign it");
    }
    TRUSTMOE_ASSIGN_OR_RETURN(LiftBlacklist body, LiftBlacklist::Decode(tx.body));
    TRUSTMOE_ASSIGN_OR_RETURN(Reputation rep, state->GetReputation(body.key));
    if (!rep.blacklisted) {
      return Status::FailedPrecondition("lift-blacklist: " + body.key.Hex().substr(0, 16) +
                                        "... is not blacklisted");
    }
    rep.blacklisted = false;
    rep.blacklisted_height = 0;
    rep.blacklist_reason.clear();
    rep.strikes = 0;
    rep.faults = 0;
    state->Put(ReputationKey(body.key), rep.Encode());
    return Status::Ok();
  }
};

}  // namespace

std::string_view VerdictName(Verdict verdict) {
  return verdict == Verdict::kAccepted ? "accepted" : "rejected";
}

std::string_view RejectReasonName(RejectReason reason) {
  switch (reason) {
    case RejectReason::kNone: return "none";
    case RejectReason::kMismatch: return "mismatch";
    case RejectReason::kOutputMissing: return "output-missing";
    case RejectReason::kFetchTimeout: return "fetch-timeout";
    case RejectReason::kMalformedTensor: return "malformed-tensor";
    case RejectReason::kWrongShape: return "wrong-shape";
    case RejectReason::kBadSignature: return "bad-signature";
    case RejectReason::kReplayedNonce: return "replayed-nonce";
    case RejectReason::kExpertNotPublished: return "expert-not-published";
  }
  return "unknown";
}

bool IsAvailabilityReason(RejectReason reason) {
  return reason == RejectReason::kOutputMissing || reason == RejectReason::kFetchTimeout;
}

std::string VerdictReasonText(RejectReason reason, std::string_view detail) {
  std::string out(RejectReasonName(reason));
  if (!detail.empty()) out += ": " + std::string(detail);
  if (out.size() > kResultReasonBytesMax) out.resize(kResultReasonBytesMax);
  return out;
}

Bytes VoteBody::Encode() const {
  crypto::CanonicalWriter w(kVoteDomain);
  w.Blob(edge.bytes())
      .U64(result_nonce)
      .U8(static_cast<uint8_t>(verdict))
      .U8(static_cast<uint8_t>(reason))
      .Str(detail);
  return w.Take();
}

Result<VoteBody> VoteBody::Decode(ByteSpan bytes) {
  crypto::CanonicalReader r(bytes);
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kVoteDomain));
  VoteBody out;
  TRUSTMOE_ASSIGN_OR_RETURN(out.edge, ReadPublicKey(&r));
  TRUSTMOE_ASSIGN_OR_RETURN(out.result_nonce, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(auto verdict, ReadVerdict(&r));
  out.verdict = verdict.first;
  out.reason = verdict.second;
  TRUSTMOE_ASSIGN_OR_RETURN(out.detail, r.Str(kVoteDetailBytesMax));
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  return out;
}

Bytes VoteRecord::Encode() const {
  crypto::CanonicalWriter w(kVoteRecordDomain);
  w.U32(validator)
      .U8(static_cast<uint8_t>(verdict))
      .U8(static_cast<uint8_t>(reason))
      .Str(detail)
      .U64(height);
  return w.Take();
}

Result<VoteRecord> VoteRecord::Decode(ByteSpan bytes) {
  crypto::CanonicalReader r(bytes);
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kVoteRecordDomain));
  VoteRecord out;
  TRUSTMOE_ASSIGN_OR_RETURN(out.validator, r.U32());
  TRUSTMOE_ASSIGN_OR_RETURN(auto verdict, ReadVerdict(&r));
  out.verdict = verdict.first;
  out.reason = verdict.second;
  TRUSTMOE_ASSIGN_OR_RETURN(out.detail, r.Str(kVoteDetailBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(out.height, r.U64());
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  return out;
}

std::string VotePrefix(const crypto::PublicKey& edge, uint64_t nonce) {
  return "vote/" + ResultKey(edge, nonce).substr(7) + "/";
}

std::string VoteKey(const crypto::PublicKey& edge, uint64_t nonce, uint32_t validator) {
  char buf[9];
  std::snprintf(buf, sizeof(buf), "%04x", validator);
  return VotePrefix(edge, nonce) + buf;
}

Bytes LiftBlacklist::Encode() const {
  crypto::CanonicalWriter w(kLiftDomain);
  w.Blob(key.bytes()).Str(reason);
  return w.Take();
}

Result<LiftBlacklist> LiftBlacklist::Decode(ByteSpan bytes) {
  crypto::CanonicalReader r(bytes);
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kLiftDomain));
  LiftBlacklist out;
  TRUSTMOE_ASSIGN_OR_RETURN(out.key, ReadPublicKey(&r));
  TRUSTMOE_ASSIGN_OR_RETURN(out.reason, r.Str(kLiftReasonBytesMax));
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  if (out.reason.empty()) return Status::InvalidArgument("lift-blacklist: empty reason");
  return out;
}

std::shared_ptr<const TxHandler> MakeVoteHandler() { return std::make_shared<VoteHandler>(); }

std::shared_ptr<const TxHandler> MakeLiftBlacklistHandler() {
  return std::make_shared<LiftBlacklistHandler>();
}

}  // namespace trustmoe::ledger
