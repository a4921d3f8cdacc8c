#include "chain/pbft/config.h"

#include <set>
#include <string>

namespace trustmoe::pbft {

uint64_t Config::MessageBytesNeeded() const {
  // Per block: the block and a few hundred bytes of framing; per window entry: a prepared
  // certificate of `quorum` signed envelopes (about 250 bytes each) in each of n view changes.
  const uint64_t envelope_bytes = 256;
  const uint64_t certificates = watermark_window * n() * (quorum() + 1) * envelope_bytes;
  return watermark_window * (BlockBytesMax() + 256) + certificates + 64 * 1024;
}

Status Config::Validate() const {
  if (validators.empty()) return Status::InvalidArgument("pbft config: no validators");
  if (n() < 3 * f + 1) {
    return Status::InvalidArgument("pbft config: " + std::to_string(n()) +
                                   " validators cannot tolerate f = " + std::to_string(f) +
                                   " faults (need n >= 3f + 1)");
  }
  std::set<crypto::PublicKey> distinct(validators.begin(), validators.end());
  if (distinct.size() != validators.size()) {
    return Status::InvalidArgument("pbft config: a validator key appears twice");
  }
  if (checkpoint_interval == 0) {
    return Status::InvalidArgument("pbft config: checkpoint_interval must be positive");
  }
  if (watermark_window < 2 * checkpoint_interval || watermark_window % checkpoint_interval != 0) {
    return Status::InvalidArgument(
        "pbft config: watermark_window must be a multiple of checkpoint_interval and at least "
        "twice it");
  }
  if (block_txs_max == 0 || block_bytes_max == 0 || tx_bytes_max == 0) {
    return Status::InvalidArgument("pbft config: block and transaction limits must be positive");
  }
  if (tx_bytes_max > block_bytes_max) {
    return Status::InvalidArgument("pbft config: tx_bytes_max exceeds block_bytes_max");
  }
  if (pool_txs_max == 0 || pool_bytes_max < tx_bytes_max || request_txs_max == 0) {
    return Status::InvalidArgument("pbft config: pool limits are too small");
  }
  if (message_bytes_max < MessageBytesNeeded() || message_bytes_max > (1ull << 31)) {
    return Status::InvalidArgument("pbft config: message_bytes_max must be between " +
                                   std::to_string(MessageBytesNeeded()) +
                                   " (a new-view with a full window of blocks) and 2 GiB");
  }
  if (view_change_timeout_ms <= 0 || view_change_timeout_max_ms < view_change_timeout_ms) {
    return Status::InvalidArgument("pbft config: bad view change timeouts");
  }
  if (status_interval_ms <= 0 || fetch_timeout_ms <= 0 || tx_pending_max_ms <= 0) {
    return Status::InvalidArgument("pbft config: intervals must be positive");
  }
  if (fetch_blocks_max == 0) {
    return Status::InvalidArgument("pbft config: fetch_blocks_max must be positive");
  }
  return Status::Ok();
}

}  // namespace trustmoe::pbft
