// Checkpoints: every K blocks each replica signs (seq, block digest, state digest); quorum
// matching checkpoints make it stable, which moves the low watermark and drops the log below.
#include <set>

#include "chain/pbft/replica.h"
#include "common/check.h"

namespace trustmoe::pbft {

void Replica::HandleCheckpoint(const Envelope& e) {
  Result<Checkpoint> cp = Checkpoint::Parse(e);
  if (!cp.ok() || cp->seq == 0 || cp->seq % config_.checkpoint_interval != 0) {
    return Count(Reject::kMalformed);
  }
  if (cp->seq <= stable_.seq) return Count(Reject::kStale);
  if (!InWindow(cp->seq)) return Count(Reject::kOutsideWindow);
  auto& votes = checkpoint_votes_[cp->seq];
  auto existing = votes.find(e.sender);
  if (existing != votes.end()) {
    return Count(existing->second.first == *cp ? Reject::kDuplicate : Reject::kConflict);
  }
  if (!Verify(e)) return Count(Reject::kBadSignature);
  votes[e.sender] = {*cp, e.Stripped()};
  NotePeerExecuted(e.sender, cp->seq);
  CheckStable(cp->seq);
  MaybeFetch();
}

// Called after executing a block whose seq is a multiple of K.
void Replica::OwnCheckpoint(uint64_t seq, const Digest& block_digest, const Digest& state_digest) {
  Checkpoint cp{seq, block_digest, state_digest};
  if (seq == stable_.seq) {
    // Adopted from a proof before this replica executed it: its state must agree.
    TRUSTMOE_CHECK(cp == stable_);
    return;
  }
  if (seq < stable_.seq) return;
  Envelope env = Sign(MsgType::kCheckpoint, cp.Body(id_));
  own_checkpoints_[seq] = {cp, env};
  if (InWindow(seq)) checkpoint_votes_[seq][id_] = {cp, env};
  Broadcast(env);
  CheckStable(seq);
}

void Replica::CheckStable(uint64_t seq) {
  auto it = checkpoint_votes_.find(seq);
  if (it == checkpoint_votes_.end()) return;
  for (const auto& [sender, vote] : it->second) {
    std::vector<Envelope> proof;
    for (const auto& [other, other_vote] : it->second) {
      if (other_vote.first == vote.first) proof.push_back(other_vote.second);
    }
    if (proof.size() >= config_.quorum()) {
      proof.resize(config_.quorum());
      Checkpoint cp = vote.first;
      AdoptStable(cp, std::move(proof));
      return;
    }
  }
}

// A checkpoint proof: quorum checkpoint messages of distinct validators for `cp`.
bool Replica::CheckCheckpointProof(const Checkpoint& cp, const std::vector<Envelope>& proof) {
  if (cp.seq == 0 || cp.seq % config_.checkpoint_interval != 0) return false;
  std::set<uint32_t> senders;
  for (const Envelope& e : proof) {
    Result<Checkpoint> c = Checkpoint::Parse(e);
    if (!c.ok() || !(*c == cp) || !senders.insert(e.sender).second || !Verify(e)) return false;
  }
  return senders.size() >= config_.quorum();
}

// Makes `cp` the stable checkpoint: moves the watermarks and drops everything below.
void Replica::AdoptStable(const Checkpoint& cp, std::vector<Envelope> proof) {
  if (cp.seq <= stable_.seq) return;
  if (cp.seq <= last_executed_) {
    auto own = own_checkpoints_.find(cp.seq);
    // A quorum holds f + 1 honest replicas: a different state here means this replica's
    // application diverged, and it must stop rather than vote.
    if (own != own_checkpoints_.end()) TRUSTMOE_CHECK(own->second.first == cp);
  }
  stable_ = cp;
  stable_proof_ = std::move(proof);
  ++stats_.checkpoints_stable;
  log_.erase(log_.begin(), log_.upper_bound(cp.seq));
  for (auto it = persisted_slots_.begin(); it != persisted_slots_.end();) {
    if (*it <= cp.seq) {
      Persist(SlotKey(*it), std::nullopt);
      it = persisted_slots_.erase(it);
    } else {
      ++it;
    }
  }
  checkpoint_votes_.erase(checkpoint_votes_.begin(), checkpoint_votes_.upper_bound(cp.seq));
  own_checkpoints_.erase(own_checkpoints_.begin(), own_checkpoints_.upper_bound(cp.seq));
  PersistStable();
  MaybeFetch();
  MaybePropose();
}

}  // namespace trustmoe::pbft
