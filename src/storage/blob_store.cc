#include "storage/blob_store.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <cstring>
#include <future>
#include <random>

#include "common/log.h"
#include "crypto/canonical.h"

namespace trustmoe::storage {
namespace {

constexpr std::string_view kMetaDomain = "trustmoe/store/meta/v1";

void PutBe64(std::string* out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out->push_back(static_cast<char>(v >> shift));
}

uint64_t GetBe64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = v << 8 | static_cast<uint8_t>(p[i]);
  return v;
}

std::string MetaKey(const crypto::Cid& cid) {
  std::string key = "m/";
  key.append(reinterpret_cast<const char*>(cid.root.data()), cid.root.size());
  return key;
}

std::string LeavesKey(const crypto::Cid& cid) {
  std::string key = "l/";
  key.append(reinterpret_cast<const char*>(cid.root.data()), cid.root.size());
  return key;
}

std::string UploadKey(uint64_t id) {
  std::string key = "u/";
  PutBe64(&key, id);
  return key;
}

std::string ChunkKey(uint64_t id, uint64_t index) {
  std::string key = "d/";
  PutBe64(&key, id);
  PutBe64(&key, index);
  return key;
}

// [d/<id>, d/<id+1>) covers every chunk of upload `id`.
std::pair<std::string, std::string> ChunkRange(uint64_t id) {
  std::string begin = "d/";
  PutBe64(&begin, id);
  std::string end = "d/";
  PutBe64(&end, id + 1);
  return {begin, end};
}

std::string EncodeMeta(const BlobMeta& meta) {
  crypto::CanonicalWriter w(kMetaDomain);
  w.U64(meta.size).U64(meta.upload_id).I64(meta.created_unix_ms).Bool(meta.pinned);
  const Bytes& b = w.bytes();
  return std::string(b.begin(), b.end());
}

Result<BlobMeta> DecodeMeta(const crypto::Cid& cid, std::string_view value) {
  crypto::CanonicalReader r(AsBytes(value));
  BlobMeta meta;
  meta.cid = cid;
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kMetaDomain));
  TRUSTMOE_ASSIGN_OR_RETURN(meta.size, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(meta.upload_id, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(meta.created_unix_ms, r.I64());
  TRUSTMOE_ASSIGN_OR_RETURN(meta.pinned, r.Bool());
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  meta.chunk_count = crypto::ChunkCount(meta.size);
  return meta;
}

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::Ok();
  return Status::Internal(std::string(what) + ": " + s.ToString());
}

rocksdb::Slice AsSlice(ByteSpan data) {
  return rocksdb::Slice(reinterpret_cast<const char*>(data.data()), data.size());
}

}  // namespace

// ---- Upload ----

Upload::Upload(BlobStore* store, uint64_t id, uint64_t size) : store_(store), id_(id), size_(size) {
  buffer_.reserve(static_cast<size_t>(std::min<uint64_t>(size, crypto::kChunkBytes)));
}

Upload::~Upload() {
  if (!committed_) store_->Abort(id_, size_);
}

Status Upload::WriteChunk() {
  uint64_t index = leaves_.size();
  leaves_.push_back(crypto::LeafHash(buffer_));
  return WriteChunkBytes(index, buffer_);
}

Status Upload::WriteChunkBytes(uint64_t index, ByteSpan chunk) {
  // Large uploads skip the WAL: Commit() flushes the memtable before the blob becomes
  // visible, so a crash can lose only chunks of uploads that were never committed.
  rocksdb::WriteOptions options;
  options.disableWAL = size_ >= kUnloggedUploadBytesMin;
  rocksdb::Status s = store_->db_->Put(options, ChunkKey(id_, index), AsSlice(chunk));
  buffer_.clear();
  return FromRocks(s, "writing chunk");
}

Status Upload::Append(uint64_t offset, ByteSpan data) {
  if (cid_) return Status::FailedPrecondition("upload already finished");
  if (offset != received_) {
    return Status::InvalidArgument("chunk at offset " + std::to_string(offset) +
                                   " arrived out of order: expected offset " +
                                   std::to_string(received_));
  }
  if (data.size() > size_ - received_) {
    return Status::InvalidArgument("upload sends more than the declared " +
                                   std::to_string(size_) + " bytes");
  }
  while (!data.empty()) {
    if (buffer_.empty() && data.size() >= crypto::kChunkBytes) {
      // A whole chunk in the message: store it without copying it first, and hash it on a
      // second thread meanwhile (hashing and writing each cost about as much).
      ByteSpan chunk = data.first(crypto::kChunkBytes);
      std::future<crypto::Digest> leaf =
          std::async(std::launch::async, [chunk] { return crypto::LeafHash(chunk); });
      Status written = WriteChunkBytes(leaves_.size(), chunk);
      leaves_.push_back(leaf.get());
      TRUSTMOE_RETURN_IF_ERROR(written);
      data = data.subspan(crypto::kChunkBytes);
      received_ += crypto::kChunkBytes;
      continue;
    }
    size_t room = crypto::kChunkBytes - buffer_.size();
    size_t n = std::min(room, data.size());
    buffer_.insert(buffer_.end(), data.begin(), data.begin() + n);
    data = data.subspan(n);
    received_ += n;
    if (buffer_.size() == crypto::kChunkBytes) TRUSTMOE_RETURN_IF_ERROR(WriteChunk());
  }
  return Status::Ok();
}

Result<crypto::Cid> Upload::Finish() {
  if (cid_) return *cid_;
  if (received_ != size_) {
    return Status::InvalidArgument("upload ended after " + std::to_string(received_) + " of " +
                                   std::to_string(size_) + " declared bytes");
  }
  // The last, short chunk (or the single empty chunk of an empty blob).
  if (!buffer_.empty() || leaves_.empty()) TRUSTMOE_RETURN_IF_ERROR(WriteChunk());
  TRUSTMOE_CHECK(leaves_.size() == crypto::ChunkCount(size_));
  cid_ = crypto::Cid{crypto::MerkleRoot(leaves_)};
  return *cid_;
}

Result<std::pair<BlobMeta, bool>> Upload::Commit(bool pin) {
  TRUSTMOE_ASSIGN_OR_RETURN(crypto::Cid cid, Finish());
  std::lock_guard<std::mutex> lock(store_->mu_);
  auto existing = store_->Stat(cid);
  if (existing.ok()) {
    if (pin && !existing->pinned) {
      TRUSTMOE_ASSIGN_OR_RETURN(BlobMeta meta, store_->SetPinnedLocked(cid, true));
      return std::make_pair(meta, true);
    }
    return std::make_pair(*existing, true);  // the destructor drops our chunks
  }
  if (existing.status().code() != StatusCode::kNotFound) return existing.status();

  BlobMeta meta;
  meta.cid = cid;
  meta.size = size_;
  meta.chunk_count = leaves_.size();
  meta.pinned = pin;
  meta.created_unix_ms = store_->clock_->NowUnixMs();
  meta.upload_id = id_;
  std::string leaves;
  leaves.reserve(leaves_.size() * 32);
  for (const auto& leaf : leaves_) leaves.append(reinterpret_cast<const char*>(leaf.data()), 32);

  if (size_ >= kUnloggedUploadBytesMin) {
    rocksdb::FlushOptions flush;
    flush.wait = true;
    TRUSTMOE_RETURN_IF_ERROR(FromRocks(store_->db_->Flush(flush), "flushing chunks"));
  }
  rocksdb::WriteBatch batch;
  batch.Put(MetaKey(cid), EncodeMeta(meta));
  batch.Put(LeavesKey(cid), leaves);
  batch.Delete(UploadKey(id_));
  rocksdb::WriteOptions sync;
  sync.sync = true;
  TRUSTMOE_RETURN_IF_ERROR(FromRocks(store_->db_->Write(sync, &batch), "committing blob"));
  committed_ = true;
  store_->reserved_bytes_ -= size_;
  store_->stored_bytes_ += size_;
  store_->blob_count_ += 1;
  return std::make_pair(meta, false);
}

// ---- BlobStore ----

BlobStore::BlobStore(const BlobStoreOptions& options)
    : options_(options), clock_(options.clock ? options.clock : SystemClock::Get()) {}

BlobStore::~BlobStore() = default;

Result<std::unique_ptr<BlobStore>> BlobStore::Open(const BlobStoreOptions& options) {
  std::unique_ptr<BlobStore> store(new BlobStore(options));
  rocksdb::Options opts;
  opts.create_if_missing = true;
  opts.paranoid_checks = true;
  // Chunks are large: keep them in blob files so compaction does not rewrite them.
  opts.enable_blob_files = true;
  opts.min_blob_size = 64 << 10;
  opts.blob_file_size = 256ull << 20;
  // No blob relocation during compaction: chunks of one upload share blob files and are
  // deleted together, so a blob file is dropped whole once no key refers to it; relocating
  // live chunks would rewrite gigabytes behind every large upload.
  opts.enable_blob_garbage_collection = false;
  // Small memtables start flushing early, so a large upload's flush overlaps its stream
  // instead of all happening at commit.
  opts.write_buffer_size = 32ull << 20;
  opts.max_write_buffer_number = 6;
  opts.max_background_jobs = 2;
  opts.compression = rocksdb::kNoCompression;
  opts.blob_compression_type = rocksdb::kNoCompression;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(opts, options.path, &db);
  if (!s.ok()) {
    return Status::Internal("cannot open the store database at " + options.path + ": " +
                            s.ToString() + " (is another trustmoe-store using it?)");
  }
  store->db_.reset(db);
  TRUSTMOE_RETURN_IF_ERROR(store->Recover());
  return store;
}

Status BlobStore::Recover() {
  // Drop what interrupted uploads wrote.
  std::vector<uint64_t> abandoned;
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
    for (it->Seek("u/"); it->Valid() && it->key().starts_with("u/"); it->Next()) {
      if (it->key().size() != 10) return Status::DataLoss("malformed upload key in store");
      abandoned.push_back(GetBe64(it->key().data() + 2));
    }
    TRUSTMOE_RETURN_IF_ERROR(FromRocks(it->status(), "scanning uploads"));
  }
  for (uint64_t id : abandoned) {
    auto [begin, end] = ChunkRange(id);
    rocksdb::WriteBatch batch;
    batch.DeleteRange(begin, end);
    batch.Delete(UploadKey(id));
    rocksdb::WriteOptions sync;
    sync.sync = true;
    TRUSTMOE_RETURN_IF_ERROR(FromRocks(db_->Write(sync, &batch), "removing an abandoned upload"));
  }
  if (!abandoned.empty()) {
    TM_INFO("removed {} interrupted upload(s) left by an earlier run", abandoned.size());
  }
  // Count what is stored.
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek("m/"); it->Valid() && it->key().starts_with("m/"); it->Next()) {
    if (it->key().size() != 34) return Status::DataLoss("malformed metadata key in store");
    crypto::Cid cid;
    std::memcpy(cid.root.data(), it->key().data() + 2, 32);
    auto meta = DecodeMeta(cid, it->value().ToStringView());
    if (!meta.ok()) return meta.status().WithContext("metadata of " + cid.ToString());
    stored_bytes_ += meta->size;
    blob_count_ += 1;
  }
  return FromRocks(it->status(), "scanning metadata");
}

Result<std::unique_ptr<Upload>> BlobStore::BeginUpload(uint64_t size) {
  if (size > options_.blob_bytes_max) {
    return Status::InvalidArgument("blob of " + std::to_string(size) +
                                   " bytes is over this store's blob_bytes_max of " +
                                   std::to_string(options_.blob_bytes_max));
  }
  uint64_t reserved = reserved_bytes_.fetch_add(size) + size;
  if (stored_bytes_.load() + reserved > options_.store_bytes_max) {
    reserved_bytes_ -= size;
    return Status::ResourceExhausted(
        "store is full: " + std::to_string(stored_bytes_.load()) + " bytes stored, " +
        std::to_string(reserved - size) + " reserved, a blob of " + std::to_string(size) +
        " would exceed store_bytes_max " + std::to_string(options_.store_bytes_max));
  }
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  uint64_t id = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::string ignored;
    do {
      id = rng() >> 1;  // id + 1 must not overflow in ChunkRange
    } while (id == 0 || db_->Get(rocksdb::ReadOptions(), UploadKey(id), &ignored).ok());
    rocksdb::Status s = db_->Put(rocksdb::WriteOptions(), UploadKey(id), "");
    if (!s.ok()) {
      reserved_bytes_ -= size;
      return FromRocks(s, "starting upload");
    }
  }
  return std::unique_ptr<Upload>(new Upload(this, id, size));
}

void BlobStore::Abort(uint64_t upload_id, uint64_t reserved) {
  auto [begin, end] = ChunkRange(upload_id);
  rocksdb::WriteBatch batch;
  batch.DeleteRange(begin, end);
  batch.Delete(UploadKey(upload_id));
  rocksdb::Status s = db_->Write(rocksdb::WriteOptions(), &batch);
  if (!s.ok()) TM_WARN("dropping upload {}: {} (removed at next start)", upload_id, s.ToString());
  reserved_bytes_ -= reserved;
}

static rocksdb::ReadOptions ReadAt(const rocksdb::Snapshot* snapshot) {
  rocksdb::ReadOptions options;
  options.snapshot = snapshot;
  return options;
}

Result<BlobMeta> BlobStore::Stat(const crypto::Cid& cid) const { return StatAt(cid, nullptr); }

Result<BlobMeta> BlobStore::StatAt(const crypto::Cid& cid,
                                   const rocksdb::Snapshot* snapshot) const {
  std::string value;
  rocksdb::Status s = db_->Get(ReadAt(snapshot), MetaKey(cid), &value);
  if (s.IsNotFound()) return Status::NotFound("blob " + cid.ToString() + " is not stored here");
  TRUSTMOE_RETURN_IF_ERROR(FromRocks(s, "reading metadata"));
  return DecodeMeta(cid, value);
}

Result<std::vector<crypto::Digest>> BlobStore::Leaves(const BlobMeta& meta) const {
  return LeavesAt(meta, nullptr);
}

Result<std::vector<crypto::Digest>> BlobStore::LeavesAt(const BlobMeta& meta,
                                                        const rocksdb::Snapshot* snapshot) const {
  std::string value;
  rocksdb::Status s = db_->Get(ReadAt(snapshot), LeavesKey(meta.cid), &value);
  TRUSTMOE_RETURN_IF_ERROR(FromRocks(s, "reading leaf hashes of " + meta.cid.ToString()));
  if (value.size() != meta.chunk_count * 32) {
    return Status::DataLoss("leaf hashes of " + meta.cid.ToString() + " are damaged");
  }
  std::vector<crypto::Digest> leaves(meta.chunk_count);
  for (uint64_t i = 0; i < meta.chunk_count; ++i) {
    std::memcpy(leaves[i].data(), value.data() + i * 32, 32);
  }
  return leaves;
}

Result<Bytes> BlobStore::ReadChunk(const BlobMeta& meta, uint64_t index) const {
  std::string value;
  TRUSTMOE_RETURN_IF_ERROR(ReadChunkAt(meta, index, nullptr, &value));
  const auto* p = reinterpret_cast<const uint8_t*>(value.data());
  return Bytes(p, p + value.size());
}

Status BlobStore::ReadChunk(const BlobMeta& meta, uint64_t index, std::string* out) const {
  return ReadChunkAt(meta, index, nullptr, out);
}

Status BlobStore::ReadChunkAt(const BlobMeta& meta, uint64_t index,
                              const rocksdb::Snapshot* snapshot, std::string* out) const {
  TRUSTMOE_CHECK(index < meta.chunk_count);
  rocksdb::PinnableSlice value(out);
  // Chunks skip RocksDB's record checksum (software CRC32C in Debian's build, about a fifth of
  // a Get's CPU) and the block cache (a blob streams through once): every reader verifies every
  // chunk against the CID, which catches disk damage too (docs/decisions.md).
  rocksdb::ReadOptions options = ReadAt(snapshot);
  options.verify_checksums = false;
  options.fill_cache = false;
  rocksdb::Status s =
      db_->Get(options, db_->DefaultColumnFamily(), ChunkKey(meta.upload_id, index), &value);
  if (!s.ok()) {
    return Status::DataLoss("chunk " + std::to_string(index) + " of " + meta.cid.ToString() +
                            " cannot be read: " + s.ToString());
  }
  if (value.size() != crypto::ChunkLength(meta.size, index)) {
    return Status::DataLoss("chunk " + std::to_string(index) + " of " + meta.cid.ToString() +
                            " has the wrong length");
  }
  if (value.IsPinned()) out->assign(value.data(), value.size());
  return Status::Ok();
}

Result<std::unique_ptr<BlobReader>> BlobStore::OpenReader(const crypto::Cid& cid) const {
  std::unique_ptr<BlobReader> reader(new BlobReader(this, db_->GetSnapshot()));
  TRUSTMOE_ASSIGN_OR_RETURN(reader->meta_, StatAt(cid, reader->snapshot_));
  TRUSTMOE_ASSIGN_OR_RETURN(reader->leaves_, LeavesAt(reader->meta_, reader->snapshot_));
  return reader;
}

BlobReader::~BlobReader() { store_->db_->ReleaseSnapshot(snapshot_); }

Status BlobReader::ReadChunk(uint64_t index, std::string* out) const {
  return store_->ReadChunkAt(meta_, index, snapshot_, out);
}

Result<BlobMeta> BlobStore::SetPinned(const crypto::Cid& cid, bool pinned) {
  std::lock_guard<std::mutex> lock(mu_);
  return SetPinnedLocked(cid, pinned);
}

Result<BlobMeta> BlobStore::SetPinnedLocked(const crypto::Cid& cid, bool pinned) {
  TRUSTMOE_ASSIGN_OR_RETURN(BlobMeta meta, Stat(cid));
  if (meta.pinned == pinned) return meta;
  meta.pinned = pinned;
  rocksdb::WriteOptions sync;
  sync.sync = true;
  TRUSTMOE_RETURN_IF_ERROR(
      FromRocks(db_->Put(sync, MetaKey(cid), EncodeMeta(meta)), "updating pin"));
  return meta;
}

Result<std::vector<BlobMeta>> BlobStore::List(const crypto::Cid* after, uint32_t limit,
                                              bool pinned_only) const {
  std::vector<BlobMeta> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  if (after) {
    it->Seek(MetaKey(*after));
    if (it->Valid() && it->key() == MetaKey(*after)) it->Next();
  } else {
    it->Seek("m/");
  }
  for (; it->Valid() && it->key().starts_with("m/") && out.size() < limit; it->Next()) {
    if (it->key().size() != 34) return Status::DataLoss("malformed metadata key in store");
    crypto::Cid cid;
    std::memcpy(cid.root.data(), it->key().data() + 2, 32);
    TRUSTMOE_ASSIGN_OR_RETURN(BlobMeta meta, DecodeMeta(cid, it->value().ToStringView()));
    if (pinned_only && !meta.pinned) continue;
    out.push_back(meta);
  }
  TRUSTMOE_RETURN_IF_ERROR(FromRocks(it->status(), "listing blobs"));
  return out;
}

Result<GcReport> BlobStore::CollectGarbage() {
  std::lock_guard<std::mutex> lock(mu_);
  GcReport report;
  int64_t cutoff = clock_->NowUnixMs() - options_.retention_ms;
  std::vector<BlobMeta> doomed;
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
    for (it->Seek("m/"); it->Valid() && it->key().starts_with("m/"); it->Next()) {
      if (it->key().size() != 34) return Status::DataLoss("malformed metadata key in store");
      crypto::Cid cid;
      std::memcpy(cid.root.data(), it->key().data() + 2, 32);
      TRUSTMOE_ASSIGN_OR_RETURN(BlobMeta meta, DecodeMeta(cid, it->value().ToStringView()));
      if (!meta.pinned && meta.created_unix_ms < cutoff) doomed.push_back(meta);
    }
    TRUSTMOE_RETURN_IF_ERROR(FromRocks(it->status(), "scanning for garbage"));
  }
  for (const BlobMeta& meta : doomed) {
    auto [begin, end] = ChunkRange(meta.upload_id);
    rocksdb::WriteBatch batch;
    batch.Delete(MetaKey(meta.cid));
    batch.Delete(LeavesKey(meta.cid));
    batch.DeleteRange(begin, end);
    rocksdb::WriteOptions sync;
    sync.sync = true;
    TRUSTMOE_RETURN_IF_ERROR(FromRocks(db_->Write(sync, &batch), "collecting garbage"));
    stored_bytes_ -= meta.size;
    blob_count_ -= 1;
    report.blobs_removed += 1;
    report.bytes_removed += meta.size;
  }
  return report;
}

}  // namespace trustmoe::storage
