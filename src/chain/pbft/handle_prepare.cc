// Prepare from a backup: it accepted the pre-prepare for (view, seq, digest).
#include "chain/pbft/replica.h"

namespace trustmoe::pbft {

void Replica::HandlePrepare(const Envelope& e) {
  Result<Prepare> p = Prepare::Parse(e);
  if (!p.ok()) return Count(Reject::kMalformed);
  if (e.sender == config_.Primary(p->view)) return Count(Reject::kNotPrimary);
  if (!view_active_ || p->view != view_) return Count(Reject::kWrongView);
  if (p->seq <= last_executed_ || p->seq <= stable_.seq) return Count(Reject::kStale);
  if (!InWindow(p->seq)) return Count(Reject::kOutsideWindow);
  Slot& slot = log_[p->seq];
  auto existing = slot.prepares.find(e.sender);
  if (existing != slot.prepares.end()) {
    return Count(existing->second.digest == p->digest ? Reject::kDuplicate : Reject::kConflict);
  }
  if (!Verify(e)) return Count(Reject::kBadSignature);
  slot.prepares[e.sender] = Vote{p->digest, e.Stripped()};
  CheckPrepared(p->seq);
}

// Prepared: the validated pre-prepare and quorum - 1 matching prepares of this view. The
// certificate is persisted before the commit leaves.
void Replica::CheckPrepared(uint64_t seq) {
  auto it = log_.find(seq);
  if (it == log_.end()) return;
  Slot& slot = it->second;
  if (!slot.pre_prepare || !slot.validated || slot.prepared) return;
  std::vector<Envelope> matching;
  for (const auto& [sender, vote] : slot.prepares) {
    if (vote.digest == slot.digest && matching.size() + 1 < config_.quorum()) {
      matching.push_back(vote.envelope);
    }
  }
  if (matching.size() + 1 < config_.quorum()) return;
  slot.prepared = true;
  slot.cert = PreparedCert{*slot.pre_prepare, std::move(matching)};
  slot.cert_view = view_;
  slot.cert_digest = slot.digest;
  slot.cert_block = slot.block;
  PersistSlot(seq);
  Envelope commit = Sign(MsgType::kCommit, Commit{view_, seq, slot.digest}.Body(id_));
  slot.commits[id_] = Vote{slot.digest, commit};
  Broadcast(commit);
  CheckCommitted(seq);
}

}  // namespace trustmoe::pbft
