// A verified, size-bounded on-disk cache of blobs (LRU), in front of a StoreClient.
//
// Files live in `dir` as "<hex of CID root>.blob". Every hit is re-hashed before it is handed
// out, so a file damaged on disk is detected, deleted and fetched again. Least-recently used
// files are evicted to keep the total within bytes_max. Downloads go to "<dir>/tmp/" and are
// renamed in when complete and verified. Thread-safe; concurrent requests for one CID share one
// download.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "common/status.h"
#include "crypto/cid.h"
#include "storage/store_client.h"

namespace trustmoe::storage {

struct BlobCacheOptions {
  std::string dir;
  uint64_t bytes_max = 8ull << 30;
};

struct CacheStats {
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t corrupt_refetches = 0;  // cached files that failed verification
  uint64_t evictions = 0;
  uint64_t bytes = 0;              // bytes held now
  uint64_t files = 0;
};

class BlobCache {
 public:
  // Creates `dir` if needed, removes leftover temporary files and indexes what is there
  // (oldest modification first). `client` must outlive the cache.
  static Result<std::unique_ptr<BlobCache>> Open(BlobCacheOptions options, StoreClient* client);

  // Path of a verified local copy of `cid`, downloading it if needed. ResourceExhausted when
  // the blob alone is larger than bytes_max. The file may be evicted by later calls: open it
  // promptly (an open descriptor stays valid after eviction).
  Result<std::string> Fetch(const crypto::Cid& cid);

  // True when a file for `cid` is present (not verified).
  bool Contains(const crypto::Cid& cid) const;
  CacheStats stats() const;
  std::string PathOf(const crypto::Cid& cid) const;

 private:
  BlobCache(BlobCacheOptions options, StoreClient* client);
  Status Index();
  // Adds a file to the LRU and evicts others to make room. mu_ held.
  void InsertLocked(const crypto::Cid& cid, uint64_t size);
  void RemoveLocked(const crypto::Cid& cid, bool unlink_file);
  void TouchLocked(const crypto::Cid& cid);

  BlobCacheOptions options_;
  StoreClient* client_;
  mutable std::mutex mu_;
  std::condition_variable fetched_;
  std::list<crypto::Cid> lru_;  // front: most recently used
  struct Entry {
    uint64_t size;
    std::list<crypto::Cid>::iterator position;
  };
  std::map<crypto::Cid, Entry> entries_;
  std::set<crypto::Cid> in_flight_;
  CacheStats stats_;
};

}  // namespace trustmoe::storage
