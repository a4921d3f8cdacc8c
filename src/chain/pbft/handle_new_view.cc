// New-view: the primary of view v proves with a quorum of view-changes that v may start, and
// re-proposes every sequence number that may have committed before (null blocks in gaps).
#include <algorithm>
#include <set>

#include "chain/pbft/replica.h"
#include "common/check.h"

namespace trustmoe::pbft {

// min-s is the highest stable checkpoint among the view-changes; for each seq in
// (min-s, max-s] the digest of the prepared certificate of the highest view, or the null
// digest when none prepared it. Deterministic in the set of view-changes.
Replica::NewViewPlan Replica::PlanNewView(const std::vector<const ViewChange*>& vcs) const {
  TRUSTMOE_CHECK(!vcs.empty());
  NewViewPlan plan;
  plan.stable = vcs.front()->stable;
  plan.proof = vcs.front()->checkpoint_proof;
  for (const ViewChange* vc : vcs) {
    if (vc->stable.seq > plan.stable.seq) {
      plan.stable = vc->stable;
      plan.proof = vc->checkpoint_proof;
    }
  }
  plan.max_seq = plan.stable.seq;
  std::map<uint64_t, std::pair<uint64_t, Digest>> best;  // seq -> (view, digest)
  for (const ViewChange* vc : vcs) {
    for (const PreparedCert& cert : vc->prepared) {
      // Checked on receipt: parses.
      PrePrepare pp = *PrePrepare::Parse(cert.pre_prepare);
      if (pp.seq <= plan.stable.seq) continue;
      auto it = best.find(pp.seq);
      if (it == best.end() || pp.view > it->second.first ||
          (pp.view == it->second.first && pp.digest < it->second.second)) {
        best[pp.seq] = {pp.view, pp.digest};
      }
      plan.max_seq = std::max(plan.max_seq, pp.seq);
    }
  }
  for (uint64_t seq = plan.stable.seq + 1; seq <= plan.max_seq; ++seq) {
    auto it = best.find(seq);
    plan.entries[seq] = it == best.end() ? NullBlockDigest(seq) : it->second.second;
  }
  return plan;
}

// The primary of view_ with a quorum of view-changes for it sends the new-view.
void Replica::TryBuildNewView() {
  if (view_active_ || config_.Primary(view_) != id_) return;
  std::vector<const ViewChangeEntry*> chosen;
  auto own = latest_vc_.find(id_);
  if (own == latest_vc_.end() || own->second.vc.new_view != view_) return;
  chosen.push_back(&own->second);
  for (const auto& [sender, entry] : latest_vc_) {
    if (sender != id_ && entry.vc.new_view == view_ && chosen.size() < config_.quorum()) {
      chosen.push_back(&entry);
    }
  }
  if (chosen.size() < config_.quorum()) return;
  std::vector<const ViewChange*> vcs;
  for (const ViewChangeEntry* entry : chosen) vcs.push_back(&entry->vc);
  NewViewPlan plan = PlanNewView(vcs);

  // Every re-proposed block must be at hand.
  std::map<uint64_t, Bytes> blocks;
  for (const auto& [seq, digest] : plan.entries) {
    if (digest == NullBlockDigest(seq)) continue;
    bool found = false;
    for (const ViewChangeEntry* entry : chosen) {
      auto b = entry->blocks.find(seq);
      if (b != entry->blocks.end()) {
        blocks[seq] = b->second;
        found = true;
        break;
      }
    }
    auto slot = log_.find(seq);
    if (!found && slot != log_.end() && slot->second.cert && slot->second.cert_digest == digest) {
      blocks[seq] = slot->second.cert_block;
      found = true;
    }
    if (!found && slot != log_.end() && slot->second.commit_cert &&
        slot->second.commit_cert->digest == digest) {
      blocks[seq] = slot->second.decided_block;
      found = true;
    }
    if (!found && seq <= last_executed_) {
      Result<CommittedBlock> stored = app_->ReadBlock(seq);
      if (stored.ok() && stored->digest == digest) {
        blocks[seq] = stored->block;
        found = true;
      }
    }
    // Committed elsewhere: catch up first, then try again (from OnTick or after execution).
    if (!found) return MaybeFetch();
  }

  NewView nv;
  nv.view = view_;
  for (const ViewChangeEntry* entry : chosen) nv.view_changes.push_back(entry->envelope.Stripped());
  std::vector<AttachedBlock> attached;
  for (const auto& [seq, digest] : plan.entries) {
    Envelope pp = Sign(MsgType::kPrePrepare, PrePrepare{view_, seq, digest}.Body(id_));
    nv.pre_prepares.push_back(pp);
    auto b = blocks.find(seq);
    if (b != blocks.end()) attached.push_back(AttachedBlock{seq, b->second});
  }
  Envelope env = Sign(MsgType::kNewView, nv.Body(id_), EncodeAttachedBlocks(attached));
  EnterNewView(view_, plan, nv.pre_prepares, blocks, env);
  Broadcast(env);
  AfterProgress();
}

void Replica::HandleNewView(const Envelope& e) {
  Result<NewView> nv = NewView::Parse(e, limits_);
  if (!nv.ok()) return Count(Reject::kMalformed);
  if (e.sender != config_.Primary(nv->view)) return Count(Reject::kNotPrimary);
  if (nv->view < view_) return Count(Reject::kStale);
  if (nv->view == view_ && view_active_) return Count(Reject::kDuplicate);
  if (nv->view == 0) return Count(Reject::kBadNewView);
  if (!Verify(e)) return Count(Reject::kBadSignature);

  // A quorum of valid view-changes for this view from distinct replicas.
  std::set<uint32_t> senders;
  std::vector<ViewChange> vcs;
  for (const Envelope& vc_env : nv->view_changes) {
    Result<ViewChange> vc = ViewChange::Parse(vc_env, limits_);
    if (!vc.ok()) return Count(Reject::kMalformed);
    if (vc->new_view != nv->view || !senders.insert(vc_env.sender).second) {
      return Count(Reject::kBadNewView);
    }
    if (!Verify(vc_env)) return Count(Reject::kBadSignature);
    std::map<uint64_t, Bytes> unused;
    if (!CheckViewChange(*vc, {}, &unused)) return;
    vcs.push_back(std::move(*vc));
  }
  if (senders.size() < config_.quorum()) return Count(Reject::kBadNewView);
  std::vector<const ViewChange*> vc_ptrs;
  for (const ViewChange& vc : vcs) vc_ptrs.push_back(&vc);
  NewViewPlan plan = PlanNewView(vc_ptrs);

  // Its pre-prepares must be exactly the plan, signed by the new primary.
  if (nv->pre_prepares.size() != plan.entries.size()) return Count(Reject::kBadNewView);
  size_t i = 0;
  for (const auto& [seq, digest] : plan.entries) {
    const Envelope& pp_env = nv->pre_prepares[i++];
    Result<PrePrepare> pp = PrePrepare::Parse(pp_env);
    if (!pp.ok() || pp_env.sender != e.sender || pp->view != nv->view || pp->seq != seq ||
        pp->digest != digest) {
      return Count(Reject::kBadNewView);
    }
    if (!Verify(pp_env)) return Count(Reject::kBadSignature);
  }
  Result<std::vector<AttachedBlock>> attached = DecodeAttachedBlocks(e.payload, limits_);
  if (!attached.ok()) return Count(Reject::kMalformed);
  std::map<uint64_t, Bytes> blocks;
  for (AttachedBlock& b : *attached) {
    auto it = plan.entries.find(b.seq);
    if (it == plan.entries.end() || b.block.empty() || blocks.count(b.seq) != 0) {
      return Count(Reject::kBadNewView);
    }
    Result<Digest> d = app_->BlockDigest(b.block);
    if (!d.ok() || *d != it->second) return Count(Reject::kDigestMismatch);
    blocks[b.seq] = std::move(b.block);
  }
  for (const auto& [seq, digest] : plan.entries) {
    if (digest != NullBlockDigest(seq) && blocks.count(seq) == 0) {
      return Count(Reject::kBadNewView);
    }
  }
  // Jumping from an older view: leave it as a view change would.
  if (nv->view > view_) ResetViewState();
  EnterNewView(nv->view, plan, nv->pre_prepares, blocks, e);
  AfterProgress();
}

// Starts view `view` with the pre-prepares of its new-view (validated by the caller).
void Replica::EnterNewView(uint64_t view, const NewViewPlan& plan, const std::vector<Envelope>& pps,
                           const std::map<uint64_t, Bytes>& blocks, const Envelope& nv) {
  view_ = view;
  view_active_ = true;
  view_entered_ms_ = now_ms_;
  new_view_deadline_ms_ = 0;
  new_view_ = nv;
  own_vc_.reset();
  ++stats_.new_views_entered;
  for (auto it = latest_vc_.begin(); it != latest_vc_.end();) {
    it = it->second.vc.new_view <= view_ ? latest_vc_.erase(it) : std::next(it);
  }
  PersistView();
  // Before adopting the checkpoint, which may call MaybePropose: nothing is proposed at or
  // below max-s in this view except through this new-view.
  max_assigned_ = std::max(plan.max_seq, plan.stable.seq);
  if (plan.stable.seq > stable_.seq) AdoptStable(plan.stable, plan.proof);
  const bool primary = config_.Primary(view_) == id_;
  size_t i = 0;
  for (const auto& [seq, digest] : plan.entries) {
    const Envelope& pp = pps[i++];
    if (seq <= last_executed_ || seq <= stable_.seq) continue;
    Slot& slot = log_[seq];
    if (slot.commit_cert && slot.commit_cert->digest != digest) {
      // Decided here but not re-proposed: more than f replicas lied. Keep what was decided.
      Count(Reject::kBadNewView);
      continue;
    }
    auto b = blocks.find(seq);
    slot.pre_prepare = pp.Stripped();
    slot.digest = digest;
    slot.block = b == blocks.end() ? Bytes{} : b->second;
    slot.validated = true;  // certified by a prepared certificate (or null)
    slot.accepted_ms = now_ms_;
    PersistSlot(seq);
    if (!primary) {
      Envelope prepare = Sign(MsgType::kPrepare, Prepare{view_, seq, digest}.Body(id_));
      slot.prepares[id_] = Vote{digest, prepare};
      Broadcast(prepare);
    }
    CheckPrepared(seq);
  }
  RelayPool();
}

}  // namespace trustmoe::pbft
