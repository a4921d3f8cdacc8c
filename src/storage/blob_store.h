// The store's durable state: blobs in RocksDB, addressed by CID (docs/store.md).
//
// Keys (one column family, prefixes):
//   m/<cid 32 bytes>         -> blob metadata (size, upload id, created time, pinned)
//   l/<cid 32 bytes>         -> the blob's leaf hashes, 32 bytes each
//   d/<upload id><index>     -> chunk bytes (big-endian u64 id and index)
//   u/<upload id>            -> an upload in progress (its chunks are not visible)
// An upload writes its chunks under a fresh upload id; the blob becomes visible only when one
// synced WriteBatch adds m/ and l/ and removes u/. After a crash, Open() deletes the chunks of
// every upload still marked u/, so a half-written blob is never visible and leaves no bytes.
//
// Thread-safe: uploads run concurrently; commits, pins and garbage collection serialise on one
// mutex.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "crypto/cid.h"

namespace rocksdb {
class DB;
class Snapshot;
}

namespace trustmoe::storage {

// Uploads at least this large write their chunks without the WAL and flush the memtable
// before committing: half the disk writes for large blobs, no flush per small blob.
inline constexpr uint64_t kUnloggedUploadBytesMin = 8 << 20;

struct BlobStoreOptions {
  std::string path;                           // RocksDB directory (created if missing)
  uint64_t blob_bytes_max = 4ull << 30;       // largest single blob
  uint64_t store_bytes_max = 64ull << 30;     // all blobs together, uploads in flight included
  int64_t retention_ms = 24ll * 3600 * 1000;  // unpinned blobs older than this are collected
  Clock* clock = nullptr;                     // SystemClock when null
};

struct BlobMeta {
  crypto::Cid cid;
  uint64_t size = 0;
  uint64_t chunk_count = 0;
  bool pinned = false;
  int64_t created_unix_ms = 0;
  uint64_t upload_id = 0;
};

struct GcReport {
  uint64_t blobs_removed = 0;
  uint64_t bytes_removed = 0;
};

class BlobStore;

// A consistent view of one blob for one download: chunks stay readable through it even if the
// blob is unpinned and collected while the download runs. Thread-compatible.
class BlobReader {
 public:
  ~BlobReader();
  BlobReader(const BlobReader&) = delete;
  BlobReader& operator=(const BlobReader&) = delete;

  const BlobMeta& meta() const { return meta_; }
  const std::vector<crypto::Digest>& leaves() const { return leaves_; }
  // Chunk `index` into `out` (its buffer is reused). DataLoss when missing or of the wrong
  // length.
  Status ReadChunk(uint64_t index, std::string* out) const;

 private:
  friend class BlobStore;
  BlobReader(const BlobStore* store, const rocksdb::Snapshot* snapshot)
      : store_(store), snapshot_(snapshot) {}

  const BlobStore* store_;
  const rocksdb::Snapshot* snapshot_;
  BlobMeta meta_;
  std::vector<crypto::Digest> leaves_;
};

// One blob being written. Bytes are appended in order; Finish() computes the CID; Commit()
// makes the blob visible. Destroying an Upload that was not committed deletes its chunks and
// releases its reservation. Not thread-safe (one stream writes one upload).
class Upload {
 public:
  ~Upload();
  Upload(const Upload&) = delete;
  Upload& operator=(const Upload&) = delete;

  uint64_t declared_size() const { return size_; }
  uint64_t received() const { return received_; }

  // InvalidArgument when `offset` is not the number of bytes received so far or the data would
  // go past the declared size; Internal on a RocksDB write error.
  Status Append(uint64_t offset, ByteSpan data);
  // The CID of the bytes received; InvalidArgument when fewer than the declared size arrived.
  Result<crypto::Cid> Finish();
  // Makes the blob visible (pinned if asked; pins an existing blob too). Returns its metadata
  // and whether the same blob was already stored (then the new chunks are dropped).
  Result<std::pair<BlobMeta, bool>> Commit(bool pin);

 private:
  friend class BlobStore;
  Upload(BlobStore* store, uint64_t id, uint64_t size);
  Status WriteChunk();
  Status WriteChunkBytes(uint64_t index, ByteSpan chunk);

  BlobStore* store_;
  uint64_t id_;
  uint64_t size_;
  uint64_t received_ = 0;
  Bytes buffer_;
  std::vector<crypto::Digest> leaves_;
  std::optional<crypto::Cid> cid_;
  bool committed_ = false;
};

class BlobStore {
 public:
  // Opens or creates the store and removes what interrupted uploads left. Internal with
  // RocksDB's message when the directory cannot be opened (e.g. another process holds it).
  static Result<std::unique_ptr<BlobStore>> Open(const BlobStoreOptions& options);
  ~BlobStore();

  // Reserves `size` bytes for a new upload. InvalidArgument over blob_bytes_max;
  // ResourceExhausted when the store would exceed store_bytes_max.
  Result<std::unique_ptr<Upload>> BeginUpload(uint64_t size);

  // NotFound when the blob is not stored.
  Result<BlobMeta> Stat(const crypto::Cid& cid) const;
  // A snapshot reader of a stored blob (NotFound when it is not stored).
  Result<std::unique_ptr<BlobReader>> OpenReader(const crypto::Cid& cid) const;
  Result<std::vector<crypto::Digest>> Leaves(const BlobMeta& meta) const;
  // Chunk `index` of a stored blob. DataLoss when it is missing or has the wrong length.
  Result<Bytes> ReadChunk(const BlobMeta& meta, uint64_t index) const;
  // Same, into `out` (its buffer is reused).
  Status ReadChunk(const BlobMeta& meta, uint64_t index, std::string* out) const;

  Result<BlobMeta> SetPinned(const crypto::Cid& cid, bool pinned);
  // Blobs with CID > after (all when null), in CID order, at most `limit`.
  Result<std::vector<BlobMeta>> List(const crypto::Cid* after, uint32_t limit,
                                     bool pinned_only) const;
  // Deletes unpinned blobs created more than retention_ms ago.
  Result<GcReport> CollectGarbage();

  uint64_t stored_bytes() const { return stored_bytes_.load(); }
  uint64_t reserved_bytes() const { return reserved_bytes_.load(); }
  uint64_t blob_count() const { return blob_count_.load(); }
  const BlobStoreOptions& options() const { return options_; }

 private:
  friend class Upload;
  friend class BlobReader;
  explicit BlobStore(const BlobStoreOptions& options);
  Status Recover();
  void Abort(uint64_t upload_id, uint64_t reserved);
  Result<BlobMeta> SetPinnedLocked(const crypto::Cid& cid, bool pinned);  // mu_ held
  Result<BlobMeta> StatAt(const crypto::Cid& cid, const rocksdb::Snapshot* snapshot) const;
  Result<std::vector<crypto::Digest>> LeavesAt(const BlobMeta& meta,
                                               const rocksdb::Snapshot* snapshot) const;
  Status ReadChunkAt(const BlobMeta& meta, uint64_t index, const rocksdb::Snapshot* snapshot,
                     std::string* out) const;

  BlobStoreOptions options_;
  Clock* clock_;
  std::unique_ptr<rocksdb::DB> db_;
  std::mutex mu_;  // serialises commits, pins and collection
  std::atomic<uint64_t> stored_bytes_{0};
  std::atomic<uint64_t> reserved_bytes_{0};
  std::atomic<uint64_t> blob_count_{0};
};

}  // namespace trustmoe::storage
