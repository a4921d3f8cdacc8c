#include "edge/outbox.h"

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include "crypto/canonical.h"

namespace trustmoe::edge {
namespace {

constexpr std::string_view kDomain = "trustmoe/edge/outbox/v1";
constexpr uint32_t kTxBytesMax = 1 << 20;
constexpr uint32_t kBlobsMax = 8;
constexpr uint32_t kBlobBytesMax = 0xffffffffu;
constexpr std::string_view kPending = "p/";
constexpr std::string_view kDead = "dead/";

std::string SeqKey(std::string_view prefix, uint64_t seq) {
  std::string key(prefix);
  for (int shift = 56; shift >= 0; shift -= 8) key.push_back(static_cast<char>(seq >> shift));
  return key;
}

uint64_t KeySeq(std::string_view key, std::string_view prefix) {
  uint64_t seq = 0;
  for (size_t i = prefix.size(); i < key.size(); ++i) {
    seq = (seq << 8) | static_cast<uint8_t>(key[i]);
  }
  return seq;
}

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  return Status::Internal("outbox " + std::string(what) + ": " + s.ToString());
}

rocksdb::Slice AsSlice(const Bytes& b) {
  return rocksdb::Slice(reinterpret_cast<const char*>(b.data()), b.size());
}

rocksdb::WriteOptions Synced() {
  rocksdb::WriteOptions options;
  options.sync = true;
  return options;
}

}  // namespace

Bytes OutboxEntry::Encode() const {
  crypto::CanonicalWriter w(kDomain);
  w.Blob(tx).U32(static_cast<uint32_t>(blobs.size()));
  for (const Bytes& b : blobs) w.Blob(b);
  w.U32(attempts);
  return w.Take();
}

Result<OutboxEntry> OutboxEntry::Decode(ByteSpan bytes) {
  crypto::CanonicalReader r(bytes);
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kDomain));
  OutboxEntry out;
  TRUSTMOE_ASSIGN_OR_RETURN(out.tx, r.Blob(kTxBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(uint32_t count, r.U32());
  if (count > kBlobsMax) return Status::DataLoss("outbox entry names " + std::to_string(count) + " blobs");
  for (uint32_t i = 0; i < count; ++i) {
    TRUSTMOE_ASSIGN_OR_RETURN(Bytes blob, r.Blob(kBlobBytesMax));
    out.blobs.push_back(std::move(blob));
  }
  TRUSTMOE_ASSIGN_OR_RETURN(out.attempts, r.U32());
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  return out;
}

Result<std::unique_ptr<Outbox>> Outbox::Open(const std::string& path, uint64_t entries_max) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.max_open_files = 64;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, path, &raw);
  if (!s.ok()) {
    return Status::Unavailable("cannot open the outbox at " + path + ": " + s.ToString() +
                               " (is another trustmoe-edge using this data_dir?)");
  }
  std::unique_ptr<Outbox> outbox(new Outbox());
  outbox->db_.reset(raw);
  outbox->entries_max_ = entries_max;
  std::unique_ptr<rocksdb::Iterator> it(raw->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(std::string(kPending)); it->Valid() && it->key().starts_with(std::string(kPending));
       it->Next()) {
    ++outbox->depth_;
    outbox->next_seq_ = std::max(outbox->next_seq_, KeySeq(it->key().ToStringView(), kPending) + 1);
  }
  for (it->Seek(std::string(kDead)); it->Valid() && it->key().starts_with(std::string(kDead));
       it->Next()) {
    ++outbox->dead_;
    outbox->next_seq_ = std::max(outbox->next_seq_, KeySeq(it->key().ToStringView(), kDead) + 1);
  }
  if (!it->status().ok()) return FromRocks(it->status(), "scan");
  return outbox;
}

Outbox::~Outbox() = default;

Result<uint64_t> Outbox::Append(OutboxEntry entry) {
  {
    std::lock_guard lock(mu_);
    if (depth_ >= entries_max_) {
      return Status::ResourceExhausted("the outbox holds " + std::to_string(depth_) +
                                       " undelivered results (entries_max): the store or the "
                                       "validators are not taking them");
    }
    entry.seq = next_seq_++;
    ++depth_;  // reserved; given back if the write fails
  }
  // Outside the lock: RocksDB groups concurrent synced writes into one fsync, so concurrent
  // calls share the cost instead of taking turns.
  rocksdb::Status s = db_->Put(Synced(), SeqKey(kPending, entry.seq), AsSlice(entry.Encode()));
  if (!s.ok()) {
    std::lock_guard lock(mu_);
    --depth_;
    return FromRocks(s, "append");
  }
  return entry.seq;
}

Result<std::vector<OutboxEntry>> Outbox::Read(uint64_t after_seq, size_t limit) const {
  std::vector<OutboxEntry> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(SeqKey(kPending, after_seq + 1));
       it->Valid() && it->key().starts_with(std::string(kPending)) && out.size() < limit;
       it->Next()) {
    const rocksdb::Slice value = it->value();
    auto entry = OutboxEntry::Decode(
        ByteSpan(reinterpret_cast<const uint8_t*>(value.data()), value.size()));
    if (!entry.ok()) return entry.status().WithContext("outbox entry");
    entry->seq = KeySeq(it->key().ToStringView(), kPending);
    out.push_back(std::move(*entry));
  }
  if (!it->status().ok()) return FromRocks(it->status(), "read");
  return out;
}

Status Outbox::Remove(uint64_t seq) {
  std::lock_guard lock(mu_);
  rocksdb::Status s = db_->Delete(Synced(), SeqKey(kPending, seq));
  if (!s.ok()) return FromRocks(s, "remove");
  if (depth_ > 0) --depth_;
  return Status::Ok();
}

Status Outbox::RecordAttempt(const OutboxEntry& entry) {
  std::lock_guard lock(mu_);
  rocksdb::Status s = db_->Put(rocksdb::WriteOptions(), SeqKey(kPending, entry.seq),
                               AsSlice(entry.Encode()));
  return s.ok() ? Status::Ok() : FromRocks(s, "update");
}

Status Outbox::Bury(const OutboxEntry& entry, const std::string& reason) {
  std::lock_guard lock(mu_);
  rocksdb::WriteBatch batch;
  batch.Delete(SeqKey(kPending, entry.seq));
  Bytes value = entry.Encode();
  batch.Put(SeqKey(kDead, entry.seq), AsSlice(value));
  batch.Put(SeqKey("dead-reason/", entry.seq), reason);
  rocksdb::Status s = db_->Write(Synced(), &batch);
  if (!s.ok()) return FromRocks(s, "bury");
  if (depth_ > 0) --depth_;
  ++dead_;
  return Status::Ok();
}

uint64_t Outbox::depth() const {
  std::lock_guard lock(mu_);
  return depth_;
}

uint64_t Outbox::dead() const {
  std::lock_guard lock(mu_);
  return dead_;
}

}  // namespace trustmoe::edge
