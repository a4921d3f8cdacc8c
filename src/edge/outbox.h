// The edge's outbox: every expert result the edge answered, persisted before the answer leaves,
// until its tensors are in the store and its ExpertResult transaction is on the chain.
//
// An entry is the signed transaction and the blobs (activations files) it names. Entries are
// stored in RocksDB (<data_dir>/outbox) with synced writes: an answered call survives a crash
// and is drained after the restart. Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "common/status.h"

namespace rocksdb {
class DB;
}

namespace trustmoe::edge {

struct OutboxEntry {
  uint64_t seq = 0;  // assigned by Append, increasing
  Bytes tx;          // the encoded, signed ExpertResult transaction
  std::vector<Bytes> blobs;  // activations files the transaction names, uploaded first
  uint32_t attempts = 0;     // failed delivery attempts so far

  // canonical("trustmoe/edge/outbox/v1", bytes tx, u32 count, bytes blob..., u32 attempts)
  Bytes Encode() const;
  static Result<OutboxEntry> Decode(ByteSpan bytes);
};

class Outbox {
 public:
  // Opens (creating) the outbox at `path`. `entries_max`: Append fails with ResourceExhausted
  // beyond it.
  static Result<std::unique_ptr<Outbox>> Open(const std::string& path, uint64_t entries_max);
  ~Outbox();

  // Persists `entry` (synced) and returns its sequence number.
  Result<uint64_t> Append(OutboxEntry entry);
  // Up to `limit` entries after `after_seq`, oldest first.
  Result<std::vector<OutboxEntry>> Read(uint64_t after_seq, size_t limit) const;
  // Removes a delivered entry (synced).
  Status Remove(uint64_t seq);
  // Records one more failed attempt of `entry` (rewrites it).
  Status RecordAttempt(const OutboxEntry& entry);
  // Moves an entry that can never be delivered (the chain refused it for good) to the dead
  // letters, kept for the operator under "dead/".
  Status Bury(const OutboxEntry& entry, const std::string& reason);

  uint64_t depth() const;
  uint64_t dead() const;

 private:
  Outbox() = default;
  std::unique_ptr<rocksdb::DB> db_;
  uint64_t entries_max_ = 0;
  mutable std::mutex mu_;
  uint64_t next_seq_ = 1;
  uint64_t depth_ = 0;
  uint64_t dead_ = 0;
};

}  // namespace trustmoe::edge
