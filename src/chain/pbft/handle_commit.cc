// Commit from a replica that prepared (view, seq, digest).
#include "chain/pbft/replica.h"

#include <algorithm>

namespace trustmoe::pbft {

void Replica::HandleCommit(const Envelope& e) {
  Result<Commit> c = Commit::Parse(e);
  if (!c.ok()) return Count(Reject::kMalformed);
  if (!view_active_ || c->view != view_) return Count(Reject::kWrongView);
  if (c->seq <= last_executed_ || c->seq <= stable_.seq) return Count(Reject::kStale);
  if (!InWindow(c->seq)) return Count(Reject::kOutsideWindow);
  Slot& slot = log_[c->seq];
  auto existing = slot.commits.find(e.sender);
  if (existing != slot.commits.end()) {
    return Count(existing->second.digest == c->digest ? Reject::kDuplicate : Reject::kConflict);
  }
  if (!Verify(e)) return Count(Reject::kBadSignature);
  slot.commits[e.sender] = Vote{c->digest, e.Stripped()};
  CheckCommitted(c->seq);
}

// Decided: quorum matching commits of this view for the block this replica holds. A quorum
// of commits means at least f + 1 honest replicas prepared the block, so the block is decided
// even where this replica missed some prepares; its own commit still waits for prepared.
void Replica::CheckCommitted(uint64_t seq) {
  auto it = log_.find(seq);
  if (it == log_.end()) return;
  Slot& slot = it->second;
  if (!slot.pre_prepare || slot.commit_cert) return;
  CommitCertificate cert{view_, seq, slot.digest, {}};
  for (const auto& [sender, vote] : slot.commits) {
    if (vote.digest == slot.digest && cert.signatures.size() < config_.quorum()) {
      cert.signatures.emplace_back(sender, vote.envelope.signature);
    }
  }
  if (cert.signatures.size() < config_.quorum()) return;
  slot.commit_cert = std::move(cert);
  slot.decided_block = slot.block;
  AfterProgress();
}

}  // namespace trustmoe::pbft
