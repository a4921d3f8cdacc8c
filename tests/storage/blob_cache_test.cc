// BlobCache in front of a real trustmoe-store: verified fetches, hits, damaged files, LRU
// eviction, size limits and reopening a cache directory.
#include "storage/blob_cache.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "crypto/cid.h"
#include "tests/storage/store_process.h"

namespace trustmoe::storage {
namespace {

using ::testing::HasSubstr;
using testing::StoreProcess;
using testing::TempDir;

constexpr uint64_t kMiB = 1 << 20;

class BlobCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = StoreProcess::Start();
    ASSERT_NE(store_, nullptr);
    client_ = store_->Client(2);
    ASSERT_NE(client_, nullptr);
  }

  // Stores a blob of `size` random bytes; returns its CID and bytes.
  std::pair<crypto::Cid, Bytes> Stored(uint64_t size, uint64_t seed) {
    Bytes data = testing::RandomBytes(size, seed);
    auto put = client_->Put(data);
    EXPECT_TRUE(put.ok()) << put.status().ToString();
    return {put.ok() ? put->cid : crypto::Cid{}, std::move(data)};
  }

  std::unique_ptr<BlobCache> OpenCache(uint64_t bytes_max) {
    auto cache = BlobCache::Open({cache_dir_.Sub("cache"), bytes_max}, client_.get());
    EXPECT_TRUE(cache.ok()) << cache.status().ToString();
    return cache.ok() ? std::move(cache).value() : nullptr;
  }

  std::unique_ptr<StoreProcess> store_;
  std::unique_ptr<StoreClient> client_;
  TempDir cache_dir_;
};

TEST_F(BlobCacheTest, FetchDownloadsVerifiesAndThenHits) {
  auto [cid, data] = Stored(2 * kMiB + 100, 1);
  auto cache = OpenCache(64 * kMiB);
  ASSERT_NE(cache, nullptr);
  EXPECT_FALSE(cache->Contains(cid));

  auto path = cache->Fetch(cid);
  ASSERT_TRUE(path.ok()) << path.status().ToString();
  EXPECT_EQ(*path, cache->PathOf(cid));
  EXPECT_EQ(testing::ReadFileBytes(*path), data);
  CacheStats stats = cache->stats();
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.hits, 0u);
  EXPECT_EQ(stats.files, 1u);
  EXPECT_EQ(stats.bytes, data.size());
  EXPECT_TRUE(cache->Contains(cid));

  auto again = cache->Fetch(cid);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(*again, *path);
  stats = cache->stats();
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_EQ(stats.misses, 1u);
  // Nothing is left in the download directory.
  EXPECT_TRUE(std::filesystem::is_empty(cache_dir_.Sub("cache/tmp")));

  // A hit does not need the store.
  store_->Stop();
  auto offline = cache->Fetch(cid);
  ASSERT_TRUE(offline.ok()) << offline.status().ToString();
  EXPECT_EQ(cache->stats().hits, 2u);
}

TEST_F(BlobCacheTest, DamagedCachedFileIsDetectedAndFetchedAgain) {
  auto [cid, data] = Stored(3 * kMiB + 1, 2);
  auto cache = OpenCache(64 * kMiB);
  ASSERT_NE(cache, nullptr);
  auto path = cache->Fetch(cid);
  ASSERT_TRUE(path.ok()) << path.status().ToString();

  // Flip one byte in the middle of chunk 2, in place.
  int fd = ::open(path->c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  uint8_t byte = 0;
  const off_t where = 2 * kMiB + 12345;
  ASSERT_EQ(::pread(fd, &byte, 1, where), 1);
  byte ^= 0x01;
  ASSERT_EQ(::pwrite(fd, &byte, 1, where), 1);
  ::close(fd);
  ASSERT_NE(testing::ReadFileBytes(*path), data);

  auto refetched = cache->Fetch(cid);
  ASSERT_TRUE(refetched.ok()) << refetched.status().ToString();
  EXPECT_EQ(testing::ReadFileBytes(*refetched), data);
  CacheStats stats = cache->stats();
  EXPECT_EQ(stats.corrupt_refetches, 1u);
  EXPECT_EQ(stats.hits, 0u);
  EXPECT_EQ(stats.misses, 2u);
  EXPECT_EQ(stats.files, 1u);
  EXPECT_EQ(stats.bytes, data.size());

  // A truncated file is damaged too.
  ASSERT_EQ(::truncate(refetched->c_str(), 100), 0);
  auto after_truncate = cache->Fetch(cid);
  ASSERT_TRUE(after_truncate.ok()) << after_truncate.status().ToString();
  EXPECT_EQ(testing::ReadFileBytes(*after_truncate), data);
  EXPECT_EQ(cache->stats().corrupt_refetches, 2u);

  // A deleted file is fetched again as well.
  ASSERT_EQ(::unlink(after_truncate->c_str()), 0);
  auto after_delete = cache->Fetch(cid);
  ASSERT_TRUE(after_delete.ok()) << after_delete.status().ToString();
  EXPECT_EQ(testing::ReadFileBytes(*after_delete), data);
}

TEST_F(BlobCacheTest, EvictsLeastRecentlyUsedToStayWithinBytesMax) {
  auto a = Stored(kMiB, 10);
  auto b = Stored(kMiB, 11);
  auto c = Stored(kMiB, 12);
  auto d = Stored(kMiB, 13);
  auto cache = OpenCache(3 * kMiB);
  ASSERT_NE(cache, nullptr);
  for (const auto* blob : {&a, &b, &c}) ASSERT_TRUE(cache->Fetch(blob->first).ok());
  EXPECT_EQ(cache->stats().bytes, 3 * kMiB);
  EXPECT_EQ(cache->stats().evictions, 0u);
  ASSERT_TRUE(cache->Fetch(a.first).ok());  // a is now the most recently used; b the least

  auto path_d = cache->Fetch(d.first);
  ASSERT_TRUE(path_d.ok()) << path_d.status().ToString();
  EXPECT_EQ(testing::ReadFileBytes(*path_d), d.second);
  CacheStats stats = cache->stats();
  EXPECT_EQ(stats.evictions, 1u);
  EXPECT_EQ(stats.files, 3u);
  EXPECT_EQ(stats.bytes, 3 * kMiB);
  EXPECT_FALSE(cache->Contains(b.first));
  EXPECT_FALSE(testing::FileExists(cache->PathOf(b.first)));
  EXPECT_TRUE(cache->Contains(a.first));
  EXPECT_TRUE(cache->Contains(c.first));
  EXPECT_TRUE(cache->Contains(d.first));

  // b comes back (a miss) and pushes out c, now the least recently used.
  ASSERT_TRUE(cache->Fetch(b.first).ok());
  EXPECT_FALSE(cache->Contains(c.first));
  EXPECT_TRUE(cache->Contains(a.first));
  EXPECT_EQ(cache->stats().evictions, 2u);
}

TEST_F(BlobCacheTest, BlobLargerThanTheCacheIsResourceExhausted) {
  auto [cid, data] = Stored(2 * kMiB + 1, 20);
  auto cache = OpenCache(2 * kMiB);
  ASSERT_NE(cache, nullptr);
  auto fetched = cache->Fetch(cid);
  EXPECT_EQ(fetched.status().code(), StatusCode::kResourceExhausted) << fetched.status().ToString();
  EXPECT_THAT(fetched.status().message(), HasSubstr("bytes_max"));
  EXPECT_FALSE(cache->Contains(cid));
  EXPECT_EQ(cache->stats().bytes, 0u);
  EXPECT_FALSE(testing::FileExists(cache->PathOf(cid)));
}

TEST_F(BlobCacheTest, UnknownBlobIsNotFound) {
  auto cache = OpenCache(8 * kMiB);
  ASSERT_NE(cache, nullptr);
  auto fetched = cache->Fetch(crypto::ComputeCid(AsBytes("nobody stored this")));
  EXPECT_EQ(fetched.status().code(), StatusCode::kNotFound) << fetched.status().ToString();
  EXPECT_EQ(cache->stats().files, 0u);
}

TEST_F(BlobCacheTest, ReopenIndexesExistingFilesAndDropsLeftovers) {
  auto a = Stored(kMiB + 1, 30);
  auto b = Stored(100, 31);
  {
    auto cache = OpenCache(64 * kMiB);
    ASSERT_NE(cache, nullptr);
    ASSERT_TRUE(cache->Fetch(a.first).ok());
    ASSERT_TRUE(cache->Fetch(b.first).ok());
  }
  // A download that a crash interrupted, and a file that is not a cache entry.
  testing::WriteFileOrDie(cache_dir_.Sub("cache/tmp/half-written"), std::string_view("xx"));
  testing::WriteFileOrDie(cache_dir_.Sub("cache/README"), std::string_view("not a blob"));

  store_->Stop();  // everything below must come from the disk
  auto cache = OpenCache(64 * kMiB);
  ASSERT_NE(cache, nullptr);
  CacheStats stats = cache->stats();
  EXPECT_EQ(stats.files, 2u);
  EXPECT_EQ(stats.bytes, a.second.size() + b.second.size());
  EXPECT_TRUE(cache->Contains(a.first));
  EXPECT_TRUE(cache->Contains(b.first));
  EXPECT_FALSE(testing::FileExists(cache_dir_.Sub("cache/tmp/half-written")));
  EXPECT_TRUE(testing::FileExists(cache_dir_.Sub("cache/README")));

  auto path = cache->Fetch(a.first);
  ASSERT_TRUE(path.ok()) << path.status().ToString();
  EXPECT_EQ(testing::ReadFileBytes(*path), a.second);
  EXPECT_EQ(cache->stats().hits, 1u);
  EXPECT_EQ(cache->stats().misses, 0u);
}

TEST_F(BlobCacheTest, ReopenWithASmallerLimitEvictsTheOldest) {
  auto a = Stored(kMiB, 40);
  auto b = Stored(kMiB, 41);
  {
    auto cache = OpenCache(64 * kMiB);
    ASSERT_NE(cache, nullptr);
    ASSERT_TRUE(cache->Fetch(a.first).ok());
    auto path_b = cache->Fetch(b.first);
    ASSERT_TRUE(path_b.ok());
    // File times are coarse: let them move past b's before a is touched.
    const std::string probe = cache_dir_.Sub("probe");
    ASSERT_TRUE(testing::WaitFor([&] {
      testing::WriteFileOrDie(probe, std::string_view("p"));
      return std::filesystem::last_write_time(probe) > std::filesystem::last_write_time(*path_b);
    }));
    ASSERT_TRUE(cache->Fetch(a.first).ok());  // a touched last
  }
  auto cache = OpenCache(kMiB);
  ASSERT_NE(cache, nullptr);
  EXPECT_EQ(cache->stats().files, 1u);
  EXPECT_TRUE(cache->Contains(a.first));
  EXPECT_FALSE(cache->Contains(b.first));
}

TEST_F(BlobCacheTest, OpenWithoutADirectoryIsInvalidArgument) {
  auto cache = BlobCache::Open({"", kMiB}, client_.get());
  EXPECT_EQ(cache.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace trustmoe::storage
