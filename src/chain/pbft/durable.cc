// The replica's durable state (docs/consensus.md, "Persistence"):
//   pbft/view          "trustmoe/pbft/durable/view/v1" u64 view, bool active, then when not
//                      active bytes own view-change envelope (with payload)
//   pbft/checkpoint    "trustmoe/pbft/durable/checkpoint/v1" u64 seq, digest, digest,
//                      u32 count + bytes checkpoint envelopes (the proof)
//   pbft/slot/<seq>    "trustmoe/pbft/durable/slot/v1" u64 seq,
//                      bool has pre-prepare [u64 view, bytes envelope, bytes block, bool prepared],
//                      bool has certificate [u64 view, digest, bytes pre-prepare envelope,
//                                            u32 count + bytes prepare envelopes, bytes block]
// A slot is written before the replica's prepare or commit for it leaves (and a primary's
// pre-prepare), so a restarted replica never signs a different message for a (view, seq), and
// its view-change still carries every prepared certificate it had.
#include <cinttypes>
#include <cstdio>

#include "chain/pbft/replica.h"
#include "common/check.h"
#include "crypto/canonical.h"

namespace trustmoe::pbft {

namespace {

using crypto::CanonicalReader;
using crypto::CanonicalWriter;

constexpr std::string_view kViewKey = "pbft/view";
constexpr std::string_view kCheckpointKey = "pbft/checkpoint";
constexpr std::string_view kSlotPrefix = "pbft/slot/";
constexpr std::string_view kViewDomain = "trustmoe/pbft/durable/view/v1";
constexpr std::string_view kCheckpointDomain = "trustmoe/pbft/durable/checkpoint/v1";
constexpr std::string_view kSlotDomain = "trustmoe/pbft/durable/slot/v1";

uint32_t BlobMax(const Limits& limits) {
  return static_cast<uint32_t>(std::min<uint64_t>(limits.message_bytes_max, UINT32_MAX));
}

Result<Envelope> ReadEnvelope(CanonicalReader* r, const Limits& limits, MsgType type) {
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes wire, r->Blob(BlobMax(limits)));
  TRUSTMOE_ASSIGN_OR_RETURN(Envelope e, DecodeEnvelope(wire, limits));
  if (e.type != type) return Status::InvalidArgument("unexpected message type");
  return e;
}

}  // namespace

std::string Replica::SlotKey(uint64_t seq) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%020" PRIu64, seq);
  return std::string(kSlotPrefix) + buf;
}

void Replica::PersistView() {
  CanonicalWriter w(kViewDomain);
  w.U64(view_).Bool(view_active_);
  if (!view_active_) {
    TRUSTMOE_CHECK(own_vc_.has_value());
    w.Blob(own_vc_->Encode());
  }
  Persist(std::string(kViewKey), w.Take());
}

void Replica::PersistStable() {
  CanonicalWriter w(kCheckpointDomain);
  w.U64(stable_.seq).Fixed(stable_.block_digest).Fixed(stable_.state_digest);
  w.U32(static_cast<uint32_t>(stable_proof_.size()));
  for (const Envelope& e : stable_proof_) w.Blob(e.EncodeStripped());
  Persist(std::string(kCheckpointKey), w.Take());
}

void Replica::PersistSlot(uint64_t seq) {
  const Slot& slot = log_.at(seq);
  CanonicalWriter w(kSlotDomain);
  w.U64(seq).Bool(slot.pre_prepare.has_value());
  if (slot.pre_prepare) {
    w.U64(view_).Blob(slot.pre_prepare->EncodeStripped()).Blob(slot.block).Bool(slot.prepared);
  }
  w.Bool(slot.cert.has_value());
  if (slot.cert) {
    w.U64(slot.cert_view).Fixed(slot.cert_digest).Blob(slot.cert->pre_prepare.EncodeStripped());
    w.U32(static_cast<uint32_t>(slot.cert->prepares.size()));
    for (const Envelope& e : slot.cert->prepares) w.Blob(e.EncodeStripped());
    w.Blob(slot.cert_block);
  }
  persisted_slots_.insert(seq);
  Persist(SlotKey(seq), w.Take());
}

Status Replica::RestoreSlot(ByteSpan record) {
  CanonicalReader r(record);
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kSlotDomain));
  TRUSTMOE_ASSIGN_OR_RETURN(uint64_t seq, r.U64());
  Slot slot;
  TRUSTMOE_ASSIGN_OR_RETURN(bool has_pp, r.Bool());
  uint64_t pp_view = 0;
  bool prepared = false;
  if (has_pp) {
    TRUSTMOE_ASSIGN_OR_RETURN(pp_view, r.U64());
    TRUSTMOE_ASSIGN_OR_RETURN(Envelope pp, ReadEnvelope(&r, limits_, MsgType::kPrePrepare));
    TRUSTMOE_ASSIGN_OR_RETURN(slot.block, r.Blob(BlobMax(limits_)));
    TRUSTMOE_ASSIGN_OR_RETURN(prepared, r.Bool());
    TRUSTMOE_ASSIGN_OR_RETURN(PrePrepare parsed, PrePrepare::Parse(pp));
    slot.digest = parsed.digest;
    slot.pre_prepare = std::move(pp);
  }
  TRUSTMOE_ASSIGN_OR_RETURN(bool has_cert, r.Bool());
  if (has_cert) {
    PreparedCert cert;
    TRUSTMOE_ASSIGN_OR_RETURN(slot.cert_view, r.U64());
    TRUSTMOE_ASSIGN_OR_RETURN(slot.cert_digest, r.Fixed());
    TRUSTMOE_ASSIGN_OR_RETURN(cert.pre_prepare, ReadEnvelope(&r, limits_, MsgType::kPrePrepare));
    TRUSTMOE_ASSIGN_OR_RETURN(uint32_t count, r.U32());
    if (count > limits_.n) return Status::InvalidArgument("too many prepares");
    for (uint32_t i = 0; i < count; ++i) {
      TRUSTMOE_ASSIGN_OR_RETURN(Envelope e, ReadEnvelope(&r, limits_, MsgType::kPrepare));
      cert.prepares.push_back(std::move(e));
    }
    TRUSTMOE_ASSIGN_OR_RETURN(slot.cert_block, r.Blob(BlobMax(limits_)));
    slot.cert = std::move(cert);
  }
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  persisted_slots_.insert(seq);
  if (seq <= stable_.seq) return Status::Ok();  // garbage collection did not reach the disk

  // The pre-prepare counts only if it belongs to the view the replica resumes in.
  if (!slot.pre_prepare || pp_view != view_ || !view_active_ || seq <= last_executed_) {
    slot.pre_prepare.reset();
    slot.block.clear();
    prepared = false;
  } else {
    slot.validated = true;
    slot.accepted_ms = now_ms_;
    max_assigned_ = std::max(max_assigned_, seq);
    if (config_.Primary(view_) != id_) {
      Envelope prepare = Sign(MsgType::kPrepare, Prepare{view_, seq, slot.digest}.Body(id_));
      slot.prepares[id_] = Vote{slot.digest, prepare};
    }
    if (prepared) {
      slot.prepared = true;
      Envelope commit = Sign(MsgType::kCommit, Commit{view_, seq, slot.digest}.Body(id_));
      slot.commits[id_] = Vote{slot.digest, commit};
    }
  }
  if (slot.pre_prepare || slot.cert) log_[seq] = std::move(slot);
  return Status::Ok();
}

Status Replica::Restore(const DurableState& durable) {
  ExecutedHead head = app_->Head();
  last_executed_ = head.seq;
  last_block_digest_ = head.block_digest;
  last_state_digest_ = head.state_digest;

  auto corrupt = [](std::string_view key, const Status& s) {
    return Status::DataLoss("pbft durable state, key " + std::string(key) + ": " + s.message());
  };
  auto view_it = durable.find(std::string(kViewKey));
  if (view_it != durable.end()) {
    CanonicalReader r(view_it->second);
    Status s = r.ExpectDomain(kViewDomain);
    Result<uint64_t> view = s.ok() ? r.U64() : Result<uint64_t>(s);
    Result<bool> active = view.ok() ? r.Bool() : Result<bool>(view.status());
    if (!active.ok()) return corrupt(kViewKey, active.status());
    view_ = *view;
    view_active_ = *active;
    if (!view_active_) {
      Result<Envelope> vc_env = ReadEnvelope(&r, limits_, MsgType::kViewChange);
      if (!vc_env.ok()) return corrupt(kViewKey, vc_env.status());
      Result<ViewChange> vc = ViewChange::Parse(*vc_env, limits_);
      if (!vc.ok()) return corrupt(kViewKey, vc.status());
      Result<std::vector<AttachedBlock>> attached = DecodeAttachedBlocks(vc_env->payload, limits_);
      if (!attached.ok()) return corrupt(kViewKey, attached.status());
      ViewChangeEntry entry{std::move(*vc), *vc_env, {}};
      for (AttachedBlock& b : *attached) entry.blocks[b.seq] = std::move(b.block);
      own_vc_ = *vc_env;
      latest_vc_[id_] = std::move(entry);
    }
    if (Status end = r.ExpectEnd(); !end.ok()) return corrupt(kViewKey, end);
  }

  auto cp_it = durable.find(std::string(kCheckpointKey));
  if (cp_it != durable.end()) {
    CanonicalReader r(cp_it->second);
    auto read = [&]() -> Status {
      TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kCheckpointDomain));
      TRUSTMOE_ASSIGN_OR_RETURN(stable_.seq, r.U64());
      TRUSTMOE_ASSIGN_OR_RETURN(stable_.block_digest, r.Fixed());
      TRUSTMOE_ASSIGN_OR_RETURN(stable_.state_digest, r.Fixed());
      TRUSTMOE_ASSIGN_OR_RETURN(uint32_t count, r.U32());
      if (count > limits_.n) return Status::InvalidArgument("too many proof messages");
      for (uint32_t i = 0; i < count; ++i) {
        TRUSTMOE_ASSIGN_OR_RETURN(Envelope e, ReadEnvelope(&r, limits_, MsgType::kCheckpoint));
        stable_proof_.push_back(std::move(e));
      }
      return r.ExpectEnd();
    };
    if (Status s = read(); !s.ok()) return corrupt(kCheckpointKey, s);
  }

  for (const auto& [key, value] : durable) {
    if (key.rfind(kSlotPrefix, 0) == 0) {
      if (Status s = RestoreSlot(value); !s.ok()) return corrupt(key, s);
    } else if (key != kViewKey && key != kCheckpointKey) {
      return Status::DataLoss("pbft durable state: unknown key " + key);
    }
  }
  max_assigned_ = std::max(max_assigned_, stable_.seq);
  return Status::Ok();
}

}  // namespace trustmoe::pbft
