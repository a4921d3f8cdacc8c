// PBFT replica configuration: the validator set and every limit of the protocol.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "crypto/ed25519.h"

namespace trustmoe::pbft {

struct Config {
  // Validator public keys; the validator id is the index. n = validators.size().
  std::vector<crypto::PublicKey> validators;
  // Faults tolerated; n >= 3f + 1.
  uint32_t f = 1;

  // A checkpoint is taken after every block whose sequence number is a multiple of K.
  uint64_t checkpoint_interval = 8;
  // High watermark window L: messages are accepted for low < seq <= low + L, where low is the
  // last stable checkpoint. A multiple of checkpoint_interval, at least twice it.
  uint64_t watermark_window = 16;

  // Block limits enforced by the replica before the application builds a block.
  uint32_t block_txs_max = 1000;
  uint64_t block_bytes_max = 1 << 20;  // sum of the transactions' bytes
  // Bytes the application may add to a block around its transactions (header, framing).
  uint64_t block_overhead_bytes_max = 64 * 1024;
  uint32_t tx_bytes_max = 64 * 1024;

  // Pending transaction pool.
  uint32_t pool_txs_max = 100000;
  uint64_t pool_bytes_max = 256ull << 20;
  // A transaction pending this long is dropped from the pool (the client resubmits).
  int64_t tx_pending_max_ms = 120000;
  // Transactions per forwarded Request message.
  uint32_t request_txs_max = 1000;

  // Largest message accepted or sent. Must hold a new-view message with a full window of
  // blocks: see MessageBytesNeeded().
  uint64_t message_bytes_max = 40ull << 20;

  // View change: a backup waiting this long for progress asks for a view change; the timeout
  // doubles with every view change that brings no progress, up to the max.
  int64_t view_change_timeout_ms = 2000;
  int64_t view_change_timeout_max_ms = 60000;
  // Period of status broadcasts and of retransmission of the replica's own pending messages.
  int64_t status_interval_ms = 500;
  // State transfer: blocks per request and how long to wait for an answer before asking
  // another peer.
  uint32_t fetch_blocks_max = 64;
  int64_t fetch_timeout_ms = 2000;

  // Entries of the verified-signature cache (envelopes seen again in certificates).
  uint32_t signature_cache_entries = 16384;

  uint32_t n() const { return static_cast<uint32_t>(validators.size()); }
  // Size of a quorum: any two quorums intersect in at least f + 1 replicas. 2f + 1 when
  // n = 3f + 1.
  uint32_t quorum() const { return (n() + f + 2) / 2; }
  uint32_t Primary(uint64_t view) const { return static_cast<uint32_t>(view % n()); }
  // Largest block (transactions plus overhead).
  uint64_t BlockBytesMax() const { return block_bytes_max + block_overhead_bytes_max; }
  // Lower bound for message_bytes_max: a new-view carries up to L blocks plus certificates.
  uint64_t MessageBytesNeeded() const;

  // InvalidArgument naming the first bad field.
  Status Validate() const;
};

}  // namespace trustmoe::pbft
