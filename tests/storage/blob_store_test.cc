// BlobStore on its own, in a temp dir, with a ManualClock: uploads, limits, pins, listing,
// garbage collection and recovery of an upload that never committed.
#include "storage/blob_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "common/clock.h"
#include "crypto/cid.h"
#include "tests/storage/store_process.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

namespace trustmoe::storage {
namespace {

using testing::CountKeys;
using ::testing::HasSubstr;
using testing::KeyCounts;
using testing::TempDir;

constexpr uint64_t kMiB = 1 << 20;
constexpr int64_t kHourMs = 3600 * 1000;

class BlobStoreTest : public ::testing::Test {
 protected:
  BlobStoreOptions Options() {
    BlobStoreOptions options;
    options.path = dir_.Sub("db");
    options.blob_bytes_max = 16 * kMiB;
    options.store_bytes_max = 32 * kMiB;
    options.retention_ms = 24 * kHourMs;
    options.clock = &clock_;
    return options;
  }

  void Open() {
    store_.reset();
    auto store = BlobStore::Open(Options());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
  }

  void SetUp() override { Open(); }

  // Uploads `data` in pieces of `piece` bytes and commits it.
  Result<std::pair<BlobMeta, bool>> Store(const Bytes& data, bool pin = false,
                                          uint64_t piece = 300'000) {
    TRUSTMOE_ASSIGN_OR_RETURN(auto upload, store_->BeginUpload(data.size()));
    for (uint64_t offset = 0; offset < data.size(); offset += piece) {
      uint64_t n = std::min<uint64_t>(piece, data.size() - offset);
      TRUSTMOE_RETURN_IF_ERROR(upload->Append(offset, ByteSpan(data).subspan(offset, n)));
    }
    return upload->Commit(pin);
  }

  Bytes ReadAll(const BlobMeta& meta) {
    Bytes out;
    for (uint64_t i = 0; i < meta.chunk_count; ++i) {
      auto chunk = store_->ReadChunk(meta, i);
      EXPECT_TRUE(chunk.ok()) << chunk.status().ToString();
      if (chunk.ok()) out.insert(out.end(), chunk->begin(), chunk->end());
    }
    return out;
  }

  TempDir dir_;
  ManualClock clock_;
  std::unique_ptr<BlobStore> store_;
};

TEST_F(BlobStoreTest, CommittedBlobIsReadableWithItsLeaves) {
  const Bytes data = testing::RandomBytes(2 * kMiB + 17, 1);
  auto stored = Store(data);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  const BlobMeta& meta = stored->first;
  EXPECT_FALSE(stored->second);
  EXPECT_EQ(meta.cid, crypto::ComputeCid(data));
  EXPECT_EQ(meta.size, data.size());
  EXPECT_EQ(meta.chunk_count, 3u);
  EXPECT_EQ(meta.created_unix_ms, clock_.NowUnixMs());
  EXPECT_EQ(store_->stored_bytes(), data.size());
  EXPECT_EQ(store_->reserved_bytes(), 0u);
  EXPECT_EQ(store_->blob_count(), 1u);

  auto stat = store_->Stat(meta.cid);
  ASSERT_TRUE(stat.ok());
  EXPECT_EQ(stat->size, data.size());
  EXPECT_EQ(stat->upload_id, meta.upload_id);
  auto leaves = store_->Leaves(*stat);
  ASSERT_TRUE(leaves.ok());
  EXPECT_EQ(crypto::MerkleRoot(*leaves), meta.cid.root);
  EXPECT_TRUE(ReadAll(*stat) == data);

  // The same bytes again: already stored, the second copy's chunks are dropped.
  auto again = Store(data, /*pin=*/false, kMiB);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->second);
  EXPECT_EQ(again->first.upload_id, meta.upload_id);
  EXPECT_EQ(store_->stored_bytes(), data.size());
  EXPECT_EQ(store_->blob_count(), 1u);

  // Counts survive a reopen, and no stray keys are left.
  Open();
  EXPECT_EQ(store_->stored_bytes(), data.size());
  EXPECT_EQ(store_->blob_count(), 1u);
  store_.reset();
  KeyCounts keys = CountKeys(dir_.Sub("db"));
  EXPECT_EQ(keys.meta, 1u);
  EXPECT_EQ(keys.leaves, 1u);
  EXPECT_EQ(keys.chunks, 3u);
  EXPECT_EQ(keys.uploads, 0u);
}

TEST_F(BlobStoreTest, EmptyBlobIsOneEmptyChunk) {
  auto stored = Store({});
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ(stored->first.cid, crypto::ComputeCid({}));
  EXPECT_EQ(stored->first.chunk_count, 1u);
  auto chunk = store_->ReadChunk(stored->first, 0);
  ASSERT_TRUE(chunk.ok());
  EXPECT_TRUE(chunk->empty());
}

TEST_F(BlobStoreTest, UploadRefusesBadAppendsAndLimits) {
  auto over = store_->BeginUpload(16 * kMiB + 1);
  EXPECT_EQ(over.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(over.status().message(), HasSubstr("blob_bytes_max"));

  auto upload = store_->BeginUpload(10);
  ASSERT_TRUE(upload.ok());
  const Bytes data = testing::RandomBytes(10, 2);
  EXPECT_EQ((*upload)->Append(1, ByteSpan(data).subspan(0, 5)).code(),
            StatusCode::kInvalidArgument);
  ASSERT_TRUE((*upload)->Append(0, ByteSpan(data).subspan(0, 5)).ok());
  EXPECT_EQ((*upload)->Append(5, testing::RandomBytes(6, 3)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*upload)->Finish().status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*upload)->received(), 5u);
  EXPECT_EQ(store_->reserved_bytes(), 10u);
  upload->reset();  // abandoned: reservation released, nothing visible
  EXPECT_EQ(store_->reserved_bytes(), 0u);

  // Reservations count against store_bytes_max while uploads are in flight.
  auto a = store_->BeginUpload(16 * kMiB);
  auto b = store_->BeginUpload(16 * kMiB);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  auto c = store_->BeginUpload(1);
  EXPECT_EQ(c.status().code(), StatusCode::kResourceExhausted);
  EXPECT_THAT(c.status().message(), HasSubstr("store_bytes_max"));
  a->reset();
  EXPECT_TRUE(store_->BeginUpload(1).ok());
  b->reset();
  EXPECT_EQ(store_->reserved_bytes(), 0u);

  auto list = store_->List(nullptr, 100, false);
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
  store_.reset();
  KeyCounts keys = CountKeys(dir_.Sub("db"));
  EXPECT_EQ(keys.chunks, 0u);
  EXPECT_EQ(keys.uploads, 0u);
}

TEST_F(BlobStoreTest, StatOfUnknownBlobIsNotFound) {
  auto stat = store_->Stat(crypto::ComputeCid(AsBytes("absent")));
  EXPECT_EQ(stat.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->SetPinned(crypto::ComputeCid(AsBytes("absent")), true).status().code(),
            StatusCode::kNotFound);
}

TEST_F(BlobStoreTest, ListPagesInCidOrder) {
  std::vector<crypto::Cid> cids;
  for (uint64_t i = 0; i < 7; ++i) {
    auto stored = Store(testing::RandomBytes(100 + i, 10 + i), /*pin=*/i % 3 == 0);
    ASSERT_TRUE(stored.ok());
    cids.push_back(stored->first.cid);
  }
  std::sort(cids.begin(), cids.end());

  std::vector<crypto::Cid> seen;
  const crypto::Cid* after = nullptr;
  crypto::Cid last;
  for (int page = 0; page < 10; ++page) {
    auto list = store_->List(after, 3, false);
    ASSERT_TRUE(list.ok());
    EXPECT_LE(list->size(), 3u);
    if (list->empty()) break;
    for (const BlobMeta& meta : *list) seen.push_back(meta.cid);
    last = list->back().cid;
    after = &last;
  }
  EXPECT_EQ(seen, cids);

  auto pinned = store_->List(nullptr, 100, true);
  ASSERT_TRUE(pinned.ok());
  EXPECT_EQ(pinned->size(), 3u);  // i = 0, 3, 6
  for (const BlobMeta& meta : *pinned) EXPECT_TRUE(meta.pinned);
  EXPECT_TRUE(std::is_sorted(pinned->begin(), pinned->end(),
                             [](const BlobMeta& x, const BlobMeta& y) { return x.cid < y.cid; }));

  // `after` need not be stored itself.
  crypto::Cid zero{};
  auto from_zero = store_->List(&zero, 100, false);
  ASSERT_TRUE(from_zero.ok());
  EXPECT_EQ(from_zero->size(), 7u);
}

TEST_F(BlobStoreTest, GarbageCollectionRemovesOnlyOldUnpinnedBlobs) {
  const Bytes old_unpinned = testing::RandomBytes(kMiB + 1, 20);
  const Bytes old_pinned = testing::RandomBytes(1000, 21);
  auto a = Store(old_unpinned);
  auto b = Store(old_pinned, /*pin=*/true);
  ASSERT_TRUE(a.ok() && b.ok());

  clock_.AdvanceMs(23 * kHourMs);
  const Bytes young = testing::RandomBytes(500, 22);
  auto c = Store(young);
  ASSERT_TRUE(c.ok());

  auto report = store_->CollectGarbage();  // nothing is old enough yet
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->blobs_removed, 0u);

  clock_.AdvanceMs(2 * kHourMs);  // a and b are 25 h old, c 2 h
  report = store_->CollectGarbage();
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->blobs_removed, 1u);
  EXPECT_EQ(report->bytes_removed, old_unpinned.size());
  EXPECT_EQ(store_->Stat(a->first.cid).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(store_->Stat(b->first.cid).ok());
  EXPECT_TRUE(store_->Stat(c->first.cid).ok());
  EXPECT_EQ(store_->blob_count(), 2u);
  EXPECT_EQ(store_->stored_bytes(), old_pinned.size() + young.size());

  // Unpinned, b goes at the next collection; pinning c keeps it however old it gets.
  ASSERT_TRUE(store_->SetPinned(b->first.cid, false).ok());
  ASSERT_TRUE(store_->SetPinned(c->first.cid, true).ok());
  clock_.AdvanceMs(100 * kHourMs);
  report = store_->CollectGarbage();
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->blobs_removed, 1u);
  EXPECT_EQ(store_->Stat(b->first.cid).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(ReadAll(*store_->Stat(c->first.cid)) == young);

  // A collected blob can be stored again.
  auto again = Store(old_unpinned);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->second);
  EXPECT_TRUE(ReadAll(again->first) == old_unpinned);

  store_.reset();
  KeyCounts keys = CountKeys(dir_.Sub("db"));
  EXPECT_EQ(keys.meta, 2u);
  EXPECT_EQ(keys.leaves, 2u);
  EXPECT_EQ(keys.chunks, 1u + 2u);  // c: 1 chunk, old_unpinned again: 2
}

// A download in progress reads through a snapshot: collecting the blob meanwhile does not cut
// it, while new readers see the blob gone.
TEST_F(BlobStoreTest, ReaderKeepsReadingABlobCollectedMeanwhile) {
  const Bytes data = testing::RandomBytes(2 * kMiB + 5, 23);
  auto stored = Store(data);
  ASSERT_TRUE(stored.ok());
  auto reader = store_->OpenReader(stored->first.cid);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  EXPECT_EQ((*reader)->leaves().size(), 3u);

  clock_.AdvanceMs(48 * kHourMs);
  auto report = store_->CollectGarbage();
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->blobs_removed, 1u);
  EXPECT_EQ(store_->OpenReader(stored->first.cid).status().code(), StatusCode::kNotFound);

  Bytes read;
  std::string chunk;
  for (uint64_t i = 0; i < 3; ++i) {
    ASSERT_TRUE((*reader)->ReadChunk(i, &chunk).ok());
    read.insert(read.end(), chunk.begin(), chunk.end());
  }
  EXPECT_TRUE(read == data);
}

// A process that dies mid-upload never runs the Upload's destructor. Simulate that by leaking
// the Upload (its chunks stay written, its u/ marker stays) and closing the database, then
// reopen: recovery must remove the chunks and the marker and show nothing. (The daemon test in
// tests/integration does the same with a real SIGKILL.) Run for a small and a large upload, as
// large ones may be written without the WAL.
class BlobStoreRecoveryTest : public BlobStoreTest,
                              public ::testing::WithParamInterface<uint64_t> {};

TEST_P(BlobStoreRecoveryTest, ReopenRemovesAnUploadThatNeverCommitted) {
  const Bytes kept = testing::RandomBytes(kMiB + 3, 30);
  auto stored = Store(kept);
  ASSERT_TRUE(stored.ok());

  const Bytes partial = testing::RandomBytes(GetParam(), 31);
  {
    auto upload = store_->BeginUpload(partial.size());
    ASSERT_TRUE(upload.ok());
    ASSERT_TRUE((*upload)->Append(0, ByteSpan(partial).subspan(0, 3 * kMiB + 10)).ok());
    Upload* leaked = upload->release();  // its destructor must not run: the "process" died
#if defined(__SANITIZE_ADDRESS__)
    __lsan_ignore_object(leaked);
#else
    (void)leaked;
#endif
  }
  store_.reset();
  KeyCounts before = CountKeys(dir_.Sub("db"));
  EXPECT_EQ(before.uploads, 1u);
  EXPECT_EQ(before.chunks, 2u + 3u);  // kept: 2, the dead upload: 3 full chunks

  Open();
  EXPECT_EQ(store_->blob_count(), 1u);
  EXPECT_EQ(store_->stored_bytes(), kept.size());
  EXPECT_EQ(store_->reserved_bytes(), 0u);
  auto list = store_->List(nullptr, 100, false);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].cid, stored->first.cid);
  EXPECT_TRUE(ReadAll((*list)[0]) == kept);
  EXPECT_EQ(store_->Stat(crypto::ComputeCid(partial)).status().code(), StatusCode::kNotFound);

  // The same bytes can be uploaded in full afterwards.
  auto full = Store(partial);
  ASSERT_TRUE(full.ok()) << full.status().ToString();
  EXPECT_FALSE(full->second);
  EXPECT_TRUE(ReadAll(full->first) == partial);

  store_.reset();
  KeyCounts after = CountKeys(dir_.Sub("db"));
  EXPECT_EQ(after.uploads, 0u);
  EXPECT_EQ(after.chunks, 2u + crypto::ChunkCount(partial.size()));
  EXPECT_EQ(after.meta, 2u);
}

INSTANTIATE_TEST_SUITE_P(UploadSizes, BlobStoreRecoveryTest,
                         ::testing::Values(5 * kMiB, 12 * kMiB + 1),
                         [](const auto& info) { return std::to_string(info.param) + "B"; });

TEST_F(BlobStoreTest, SecondOpenOfTheSameDirectoryIsRefused) {
  auto second = BlobStore::Open(Options());
  EXPECT_EQ(second.status().code(), StatusCode::kInternal);
  EXPECT_THAT(second.status().message(), HasSubstr(dir_.Sub("db")));
}

}  // namespace
}  // namespace trustmoe::storage
