#include "storage/blob_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <vector>

#include "common/files.h"
#include "common/log.h"

namespace trustmoe::storage {
namespace fs = std::filesystem;

BlobCache::BlobCache(BlobCacheOptions options, StoreClient* client)
    : options_(std::move(options)), client_(client) {}

Result<std::unique_ptr<BlobCache>> BlobCache::Open(BlobCacheOptions options,
                                                   StoreClient* client) {
  if (options.dir.empty()) return Status::InvalidArgument("cache directory is not set");
  std::unique_ptr<BlobCache> cache(new BlobCache(std::move(options), client));
  TRUSTMOE_RETURN_IF_ERROR(MakeDirs(cache->options_.dir + "/tmp", 0700));
  TRUSTMOE_RETURN_IF_ERROR(cache->Index());
  return cache;
}

std::string BlobCache::PathOf(const crypto::Cid& cid) const {
  return options_.dir + "/" + crypto::DigestHex(cid.root) + ".blob";
}

Status BlobCache::Index() {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(options_.dir + "/tmp", ec)) {
    fs::remove(entry.path(), ec);
  }
  struct Found {
    crypto::Cid cid;
    uint64_t size;
    fs::file_time_type mtime;
  };
  std::vector<Found> found;
  for (const auto& entry : fs::directory_iterator(options_.dir, ec)) {
    if (!entry.is_regular_file()) continue;
    std::string name = entry.path().filename().string();
    if (name.size() != 64 + 5 || !name.ends_with(".blob")) continue;
    auto digest = crypto::DigestFromHex(name.substr(0, 64));
    if (!digest.ok()) continue;
    found.push_back({crypto::Cid{*digest}, entry.file_size(), entry.last_write_time()});
  }
  if (ec) return Status::Internal("cannot list cache directory " + options_.dir + ": " + ec.message());
  std::sort(found.begin(), found.end(),
            [](const Found& a, const Found& b) { return a.mtime < b.mtime; });
  std::lock_guard<std::mutex> lock(mu_);
  for (const Found& f : found) InsertLocked(f.cid, f.size);  // newest ends at the front
  return Status::Ok();
}

void BlobCache::InsertLocked(const crypto::Cid& cid, uint64_t size) {
  if (entries_.contains(cid)) RemoveLocked(cid, false);
  while (!lru_.empty() && stats_.bytes + size > options_.bytes_max) {
    crypto::Cid victim = lru_.back();
    RemoveLocked(victim, true);
    stats_.evictions += 1;
  }
  lru_.push_front(cid);
  entries_[cid] = Entry{size, lru_.begin()};
  stats_.bytes += size;
  stats_.files = entries_.size();
}

void BlobCache::RemoveLocked(const crypto::Cid& cid, bool unlink_file) {
  auto it = entries_.find(cid);
  if (it == entries_.end()) return;
  stats_.bytes -= it->second.size;
  lru_.erase(it->second.position);
  entries_.erase(it);
  stats_.files = entries_.size();
  if (unlink_file) ::unlink(PathOf(cid).c_str());
}

void BlobCache::TouchLocked(const crypto::Cid& cid) {
  auto it = entries_.find(cid);
  if (it == entries_.end()) return;
  lru_.splice(lru_.begin(), lru_, it->second.position);
  ::utimensat(AT_FDCWD, PathOf(cid).c_str(), nullptr, 0);  // LRU order survives a restart
}

bool BlobCache::Contains(const crypto::Cid& cid) const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.contains(cid);
}

CacheStats BlobCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

Result<std::string> BlobCache::Fetch(const crypto::Cid& cid) {
  const std::string path = PathOf(cid);
  std::unique_lock<std::mutex> lock(mu_);
  fetched_.wait(lock, [&] { return !in_flight_.contains(cid); });
  in_flight_.insert(cid);
  bool cached = entries_.contains(cid);
  lock.unlock();

  // Whatever happens below, let the waiters for this CID go on.
  struct Release {
    BlobCache* cache;
    const crypto::Cid& cid;
    ~Release() {
      std::lock_guard<std::mutex> l(cache->mu_);
      cache->in_flight_.erase(cid);
      cache->fetched_.notify_all();
    }
  } release{this, cid};

  if (cached) {
    auto actual = crypto::ComputeFileCid(path);
    std::lock_guard<std::mutex> l(mu_);
    if (actual.ok() && *actual == cid) {
      stats_.hits += 1;
      TouchLocked(cid);
      return path;
    }
    TM_WARN("cached copy of {} is damaged or unreadable ({}); fetching it again", cid.ToString(),
            actual.ok() ? "hash mismatch" : actual.status().ToString());
    stats_.corrupt_refetches += 1;
    RemoveLocked(cid, true);
  }

  {
    std::lock_guard<std::mutex> l(mu_);
    stats_.misses += 1;
  }
  TRUSTMOE_ASSIGN_OR_RETURN(StoredBlob info, client_->Stat(cid));
  if (info.size > options_.bytes_max) {
    return Status::ResourceExhausted("blob " + cid.ToString() + " of " +
                                     std::to_string(info.size) +
                                     " bytes does not fit the cache's bytes_max of " +
                                     std::to_string(options_.bytes_max));
  }
  static std::atomic<uint64_t> counter{0};
  std::string tmp = options_.dir + "/tmp/" + crypto::DigestHex(cid.root) + "." +
                    std::to_string(::getpid()) + "." + std::to_string(counter++);
  Status status = client_->GetToFile(cid, tmp, {}, options_.bytes_max);
  if (!status.ok()) return status.WithContext("fetching " + cid.ToString() + " into the cache");
  // Account for the verified bytes on disk, not for what the store claimed in Stat.
  struct stat st {};
  if (::stat(tmp.c_str(), &st) != 0) {
    ::unlink(tmp.c_str());
    return Status::Internal("downloaded file " + tmp + " vanished");
  }
  std::lock_guard<std::mutex> l(mu_);
  InsertLocked(cid, static_cast<uint64_t>(st.st_size));  // evicts others first, then the rename makes it visible
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    RemoveLocked(cid, false);
    ::unlink(tmp.c_str());
    return Status::Internal("cannot move a download into the cache at " + path);
  }
  return path;
}

}  // namespace trustmoe::storage
