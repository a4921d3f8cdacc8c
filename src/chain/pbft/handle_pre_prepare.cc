// Pre-prepare from the primary of the current view: the proposal of block `seq`.
#include "chain/pbft/replica.h"

namespace trustmoe::pbft {

void Replica::HandlePrePrepare(const Envelope& e) {
  Result<PrePrepare> pp = PrePrepare::Parse(e);
  if (!pp.ok()) return Count(Reject::kMalformed);
  if (e.sender != config_.Primary(pp->view)) return Count(Reject::kNotPrimary);
  if (!view_active_ || pp->view != view_) return Count(Reject::kWrongView);
  if (pp->seq <= last_executed_ || pp->seq <= stable_.seq) return Count(Reject::kStale);
  if (!InWindow(pp->seq)) return Count(Reject::kOutsideWindow);
  if (e.payload.size() > config_.BlockBytesMax()) return Count(Reject::kOversized);

  auto existing = log_.find(pp->seq);
  if (existing != log_.end() && existing->second.pre_prepare) {
    // One proposal per (view, seq): a second, different one is equivocation.
    return Count(existing->second.digest == pp->digest ? Reject::kDuplicate : Reject::kConflict);
  }
  if (!Verify(e)) return Count(Reject::kBadSignature);
  // New primaries fill gaps with null blocks only through a new-view.
  if (e.payload.empty()) return Count(Reject::kInvalidBlock);
  Result<Digest> digest = app_->BlockDigest(e.payload);
  if (!digest.ok()) return Count(Reject::kInvalidBlock);
  if (*digest != pp->digest) return Count(Reject::kDigestMismatch);

  Slot& slot = log_[pp->seq];
  slot.pre_prepare = e.Stripped();
  slot.digest = pp->digest;
  slot.block = e.payload;
  slot.validated = false;
  slot.accepted_ms = now_ms_;
  // The primary proposes seq only after executing seq - 1.
  NotePeerExecuted(e.sender, pp->seq - 1);
  TryValidate(pp->seq);
  // Commits may have arrived before the pre-prepare.
  CheckCommitted(pp->seq);
  MaybeFetch();
}

}  // namespace trustmoe::pbft
