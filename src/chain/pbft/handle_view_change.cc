// View change: a replica that gives up on the primary of view v sends view-change(v + 1) with
// its stable checkpoint (and proof) and its prepared certificates above it.
#include <algorithm>
#include <set>

#include "chain/pbft/replica.h"
#include "common/check.h"

namespace trustmoe::pbft {

void Replica::HandleViewChange(const Envelope& e) {
  Result<ViewChange> vc = ViewChange::Parse(e, limits_);
  if (!vc.ok()) return Count(Reject::kMalformed);
  if (vc->new_view < view_ || (vc->new_view == view_ && view_active_)) {
    return Count(Reject::kStale);
  }
  auto existing = latest_vc_.find(e.sender);
  if (existing != latest_vc_.end() && existing->second.vc.new_view >= vc->new_view) {
    return Count(Reject::kDuplicate);
  }
  if (!Verify(e)) return Count(Reject::kBadSignature);
  std::map<uint64_t, Bytes> blocks;
  if (!CheckViewChange(*vc, e.payload, &blocks)) return;
  latest_vc_[e.sender] = ViewChangeEntry{std::move(*vc), e, std::move(blocks)};
  ApplyViewChangeRules();
}

// A prepared certificate: a pre-prepare of a view below `below_view` signed by that view's
// primary, and quorum - 1 matching prepares of distinct backups.
bool Replica::CheckPreparedCert(const PreparedCert& cert, uint64_t below_view, PrePrepare* out) {
  Result<PrePrepare> pp = PrePrepare::Parse(cert.pre_prepare);
  if (!pp.ok() || pp->view >= below_view) return false;
  const uint32_t primary = config_.Primary(pp->view);
  if (cert.pre_prepare.sender != primary) return false;
  std::set<uint32_t> senders;
  for (const Envelope& e : cert.prepares) {
    Result<Prepare> p = Prepare::Parse(e);
    if (!p.ok() || p->view != pp->view || p->seq != pp->seq || p->digest != pp->digest) {
      return false;
    }
    if (e.sender == primary || e.sender >= config_.n() || !senders.insert(e.sender).second) {
      return false;
    }
  }
  if (senders.size() + 1 < config_.quorum()) return false;
  // Signatures last: they cost the most.
  if (!Verify(cert.pre_prepare)) return false;
  for (const Envelope& e : cert.prepares) {
    if (!Verify(e)) return false;
  }
  *out = *pp;
  return true;
}

// Checks a view-change in itself (its signature is checked by the caller): the checkpoint
// proof, every prepared certificate, and the attached blocks against the certified digests.
bool Replica::CheckViewChange(const ViewChange& vc, ByteSpan payload,
                              std::map<uint64_t, Bytes>* blocks) {
  if (vc.new_view == 0 || vc.stable.seq % config_.checkpoint_interval != 0) {
    Count(Reject::kBadViewChange);
    return false;
  }
  if (vc.stable.seq == 0 ? !vc.checkpoint_proof.empty()
                         : !CheckCheckpointProof(vc.stable, vc.checkpoint_proof)) {
    Count(Reject::kBadCertificate);
    return false;
  }
  std::map<uint64_t, Digest> certified;
  for (const PreparedCert& cert : vc.prepared) {
    PrePrepare pp;
    if (!CheckPreparedCert(cert, vc.new_view, &pp)) {
      Count(Reject::kBadCertificate);
      return false;
    }
    if (pp.seq <= vc.stable.seq || pp.seq > vc.stable.seq + config_.watermark_window ||
        !certified.emplace(pp.seq, pp.digest).second) {
      Count(Reject::kBadViewChange);
      return false;
    }
  }
  Result<std::vector<AttachedBlock>> attached = DecodeAttachedBlocks(payload, limits_);
  if (!attached.ok()) {
    Count(Reject::kMalformed);
    return false;
  }
  for (AttachedBlock& b : *attached) {
    auto it = certified.find(b.seq);
    if (it == certified.end() || blocks->count(b.seq) != 0) {
      Count(Reject::kBadViewChange);
      return false;
    }
    bool matches = false;
    if (b.block.empty()) {
      matches = it->second == NullBlockDigest(b.seq);
    } else {
      Result<Digest> d = app_->BlockDigest(b.block);
      matches = d.ok() && *d == it->second;
    }
    if (!matches) {
      Count(Reject::kDigestMismatch);
      return false;
    }
    (*blocks)[b.seq] = std::move(b.block);
  }
  return true;
}

// Leaves the current view: sends view-change(new_view) and stops taking part in older views.
void Replica::StartViewChange(uint64_t new_view) {
  TRUSTMOE_CHECK(new_view > view_);
  view_ = new_view;
  view_active_ = false;
  new_view_deadline_ms_ = 0;
  ++view_change_streak_;
  ++stats_.view_changes_started;
  ResetViewState();
  for (auto it = latest_vc_.begin(); it != latest_vc_.end();) {
    it = it->second.vc.new_view < view_ ? latest_vc_.erase(it) : std::next(it);
  }

  ViewChange vc;
  vc.new_view = new_view;
  vc.stable = stable_;
  vc.checkpoint_proof = stable_proof_;
  std::vector<AttachedBlock> attached;
  std::map<uint64_t, Bytes> blocks;
  for (const auto& [seq, slot] : log_) {
    if (!slot.cert || seq <= stable_.seq) continue;
    vc.prepared.push_back(*slot.cert);
    // Blocks this replica has not executed may be missing elsewhere; executed ones can be
    // fetched with their commit certificates.
    if (seq > last_executed_) {
      attached.push_back(AttachedBlock{seq, slot.cert_block});
      blocks[seq] = slot.cert_block;
    }
  }
  Envelope env = Sign(MsgType::kViewChange, vc.Body(id_), EncodeAttachedBlocks(attached));
  own_vc_ = env;
  latest_vc_[id_] = ViewChangeEntry{std::move(vc), env, std::move(blocks)};
  PersistView();
  Broadcast(env);
  RelayPool();
  ApplyViewChangeRules();
}

void Replica::ApplyViewChangeRules() {
  // f + 1 replicas ask for later views: at least one of them is honest, so join the highest
  // view that f + 1 of them have reached.
  std::vector<uint64_t> later;
  for (const auto& [sender, entry] : latest_vc_) {
    if (sender != id_ && entry.vc.new_view > view_) later.push_back(entry.vc.new_view);
  }
  if (later.size() >= config_.f + 1) {
    std::sort(later.begin(), later.end(), std::greater<uint64_t>());
    StartViewChange(later[config_.f]);
    return;
  }
  if (view_active_) return;
  uint32_t count = 0;
  for (const auto& [sender, entry] : latest_vc_) count += entry.vc.new_view == view_ ? 1 : 0;
  if (count < config_.quorum()) return;
  // A quorum wants this view: wait for its new-view, for longer each time.
  if (new_view_deadline_ms_ == 0) new_view_deadline_ms_ = now_ms_ + Timeout();
  if (config_.Primary(view_) == id_) TryBuildNewView();
}

}  // namespace trustmoe::pbft
