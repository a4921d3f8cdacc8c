// Counters a replica keeps: rejected messages by reason and protocol events, for /metrics.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace trustmoe::pbft {

enum class Reject : uint8_t {
  kOversized,       // over message_bytes_max or another size limit
  kMalformed,       // does not decode
  kUnknownSender,   // sender is not a validator
  kFromSelf,        // claims to come from this replica
  kBadSignature,    // signature does not verify
  kWrongView,       // not for the current (active) view
  kOutsideWindow,   // sequence number outside the watermarks
  kStale,           // already executed or below the stable checkpoint
  kDuplicate,       // already have it (retransmission)
  kNotPrimary,      // pre-prepare or new-view from a non-primary, prepare from the primary
  kDigestMismatch,  // digest does not match the block
  kInvalidBlock,    // application rejected the block, or its transactions break a rule
  kConflict,        // conflicts with a message already accepted from the same sender
  kBadCertificate,  // a checkpoint proof, prepared or commit certificate does not verify
  kBadViewChange,   // view-change inconsistent in itself
  kBadNewView,      // new-view whose pre-prepares do not follow from its view-changes
  kBadTx,           // relayed transaction refused by the pool
  kUnsolicited,     // state-transfer answer that does not extend the chain
};
inline constexpr size_t kRejectCount = static_cast<size_t>(Reject::kUnsolicited) + 1;

std::string_view RejectName(Reject reason);

struct Stats {
  std::array<uint64_t, kRejectCount> rejected{};
  uint64_t messages_received = 0;
  uint64_t messages_sent = 0;
  uint64_t blocks_executed = 0;
  uint64_t blocks_via_state_transfer = 0;
  uint64_t view_changes_started = 0;
  uint64_t new_views_entered = 0;
  uint64_t checkpoints_stable = 0;
  uint64_t signatures_verified = 0;
  uint64_t signature_cache_hits = 0;

  uint64_t Rejected(Reject reason) const { return rejected[static_cast<size_t>(reason)]; }
  uint64_t RejectedTotal() const;
};

}  // namespace trustmoe::pbft
