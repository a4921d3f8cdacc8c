// Status heartbeats, retransmission of the replica's own pending messages, and relayed client
// transactions. Status is how a replica learns that it is behind (state transfer) and how a
// replica that missed a new-view gets it again.
#include "chain/pbft/replica.h"

namespace trustmoe::pbft {

void Replica::SendStatus() {
  StatusMsg status{view_, view_active_, last_executed_, stable_.seq};
  Broadcast(Sign(MsgType::kStatus, status.Body(id_)));
}

void Replica::HandleStatus(const Envelope& e) {
  Result<StatusMsg> s = StatusMsg::Parse(e);
  if (!s.ok()) return Count(Reject::kMalformed);
  if (!Verify(e)) return Count(Reject::kBadSignature);
  NotePeerExecuted(e.sender, s->last_executed);
  MaybeFetch();
  // A peer still in an older view, or waiting for the new-view of ours, gets our new-view
  // (at most once per status interval, so that a liar cannot make us flood).
  const bool behind = s->view < view_ || (s->view == view_ && !s->view_active);
  if (view_active_ && new_view_ && behind) {
    auto last = new_view_resent_ms_.find(e.sender);
    if (last == new_view_resent_ms_.end() || now_ms_ - last->second >= config_.status_interval_ms) {
      new_view_resent_ms_[e.sender] = now_ms_;
      Send(e.sender, *new_view_);
    }
  }
}

// Messages get lost: every status interval a replica sends again what it has signed for the
// work still open (its pre-prepares, prepares and commits above its executed height, its
// checkpoints above the stable one, its view-change while waiting for a new-view).
void Replica::Retransmit() {
  if (view_active_) {
    const bool primary = config_.Primary(view_) == id_;
    for (auto it = log_.upper_bound(last_executed_); it != log_.end(); ++it) {
      const Slot& slot = it->second;
      if (!slot.pre_prepare || !slot.validated) continue;
      if (primary && slot.pre_prepare->sender == id_) {
        Envelope pp = *slot.pre_prepare;
        pp.payload = slot.block;
        Broadcast(pp);
      }
      auto prepare = slot.prepares.find(id_);
      if (prepare != slot.prepares.end()) Broadcast(prepare->second.envelope);
      auto commit = slot.commits.find(id_);
      if (commit != slot.commits.end()) Broadcast(commit->second.envelope);
    }
  } else if (own_vc_) {
    Broadcast(*own_vc_);
  }
  for (const auto& [seq, own] : own_checkpoints_) {
    if (seq > stable_.seq) Broadcast(own.second);
  }
}

void Replica::HandleRequest(const Envelope& e) {
  Result<Request> request = Request::Parse(e, limits_);
  if (!request.ok()) return Count(Reject::kMalformed);
  if (!Verify(e)) return Count(Reject::kBadSignature);
  bool added = false;
  for (Bytes& tx : request->txs) {
    Status status = AddToPool(std::move(tx), /*relay=*/false);
    if (status.ok()) {
      added = true;
    } else if (status.code() != StatusCode::kAlreadyExists) {
      Count(Reject::kBadTx);
    }
  }
  if (added) MaybePropose();
}

}  // namespace trustmoe::pbft
