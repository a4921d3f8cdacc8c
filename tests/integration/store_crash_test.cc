// trustmoe-store killed with SIGKILL in the middle of a 100 MiB upload, then restarted on the
// same data directory: the half-written blob is neither visible nor left on disk, earlier blobs
// read back intact, and the upload can be done again.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "crypto/cid.h"
#include "storage/store_client.h"
#include "tests/storage/store_process.h"

namespace trustmoe::storage {
namespace {

using ::testing::HasSubstr;
using testing::StoreProcess;

constexpr uint64_t kMiB = 1 << 20;

// Lets a Put run up to `pause_at` bytes sent, holds it there until Release(), then lets it go on.
class PutGate {
 public:
  explicit PutGate(uint64_t pause_at) : pause_at_(pause_at) {}

  // The progress callback (runs on the Put's thread).
  void OnProgress(uint64_t done) {
    std::unique_lock<std::mutex> lock(mu_);
    if (done < pause_at_ || reached_) return;
    reached_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return released_; });
  }
  bool WaitReached(std::chrono::seconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return reached_; });
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  const uint64_t pause_at_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool reached_ = false;
  bool released_ = false;
};

TEST(StoreCrashTest, KillDuringPutLosesOnlyThePartialBlob) {
  auto store = StoreProcess::Start();
  ASSERT_NE(store, nullptr);

  // Blobs stored before the crash.
  std::vector<Bytes> earlier = {testing::RandomBytes(20 * kMiB + 5, 1),
                                testing::RandomBytes(3 * kMiB + 5, 2), testing::RandomBytes(1, 3),
                                testing::RandomBytes(0, 4)};
  std::vector<crypto::Cid> earlier_cids;
  uint64_t earlier_bytes = 0;
  uint64_t earlier_chunks = 0;
  {
    auto client = store->Client();
    ASSERT_NE(client, nullptr);
    for (const Bytes& data : earlier) {
      auto put = client->Put(data);
      ASSERT_TRUE(put.ok()) << put.status().ToString();
      earlier_cids.push_back(put->cid);
      earlier_bytes += data.size();
      earlier_chunks += put->chunk_count;
    }
  }
  std::sort(earlier_cids.begin(), earlier_cids.end());

  const Bytes big = testing::RandomBytes(100 * kMiB + 12345, 5);
  const crypto::Cid big_cid = crypto::ComputeCid(big);

  // The Put is held at 32 MiB sent until the store is dead, so the kill always lands mid-stream.
  PutGate gate(32 * kMiB);
  std::optional<Result<StoredBlob>> put_result;
  auto client = store->Client(/*rounds_max=*/1);
  ASSERT_NE(client, nullptr);
  std::thread putter([&] {
    put_result = client->Put(big, false, [&](uint64_t done, uint64_t) { gate.OnProgress(done); });
  });
  const bool reached = gate.WaitReached(std::chrono::seconds(120));
  const bool store_received =
      reached && testing::WaitFor([&] {
        return store->Metric("trustmoe_store_received_bytes_total").value_or(0) > 0;
      });
  store->Kill9();
  gate.Release();
  putter.join();
  ASSERT_TRUE(reached) << "the Put never sent 32 MiB";
  ASSERT_TRUE(store_received) << "the store never reported received bytes";
  ASSERT_TRUE(put_result.has_value());
  EXPECT_FALSE(put_result->ok()) << "the Put finished although the store was killed";
  EXPECT_EQ(put_result->status().code(), StatusCode::kUnavailable)
      << put_result->status().ToString();

  Status restarted = store->Restart();
  ASSERT_TRUE(restarted.ok()) << restarted.ToString();
  EXPECT_THAT(store->Log(), HasSubstr("removed 1 interrupted upload"));
  client = store->Client();  // the port changed
  ASSERT_NE(client, nullptr);

  auto stat = client->Stat(big_cid);
  EXPECT_EQ(stat.status().code(), StatusCode::kNotFound) << stat.status().ToString();
  auto list = client->List("", 0, false);
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  std::vector<crypto::Cid> listed;
  for (const StoredBlob& blob : list->blobs) listed.push_back(blob.cid);
  EXPECT_EQ(listed, earlier_cids);
  for (const Bytes& data : earlier) {
    auto got = client->Get(crypto::ComputeCid(data));
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_TRUE(*got == data);
  }
  EXPECT_TRUE(testing::WaitFor([&] {
    return store->Metric("trustmoe_store_stored_bytes") == static_cast<double>(earlier_bytes) &&
           store->Metric("trustmoe_store_reserved_bytes") == 0.0 &&
           store->Metric("trustmoe_store_blobs") == static_cast<double>(earlier.size());
  })) << store->Metrics().value_or("(no metrics)");

  // The same upload now completes.
  auto again = client->Put(big);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->cid, big_cid);
  EXPECT_FALSE(again->already_stored);
  testing::TempDir out;
  ASSERT_TRUE(client->GetToFile(big_cid, out.Sub("big")).ok());
  auto on_disk = testing::ReadFileBytes(out.Sub("big"));
  ASSERT_TRUE(on_disk.has_value());
  EXPECT_TRUE(*on_disk == big);

  // On disk: the blobs' chunks and nothing else.
  EXPECT_EQ(store->Stop(), 0) << store->Log();
  testing::KeyCounts keys = testing::CountKeys(store->data_dir());
  EXPECT_EQ(keys.uploads, 0u);
  EXPECT_EQ(keys.meta, earlier.size() + 1);
  EXPECT_EQ(keys.chunks, earlier_chunks + crypto::ChunkCount(big.size()));
}

// SIGKILL right after Puts returned: every blob the store acknowledged is durable, pins too.
TEST(StoreCrashTest, KillRightAfterPutKeepsTheAcknowledgedBlobs) {
  auto store = StoreProcess::Start();
  ASSERT_NE(store, nullptr);
  const std::vector<Bytes> blobs = {testing::RandomBytes(24 * kMiB + 3, 6),
                                    testing::RandomBytes(kMiB + 7, 7)};
  std::vector<crypto::Cid> cids;
  {
    auto client = store->Client();
    ASSERT_NE(client, nullptr);
    for (const Bytes& data : blobs) {
      auto put = client->Put(data, /*pin=*/true);
      ASSERT_TRUE(put.ok()) << put.status().ToString();
      cids.push_back(put->cid);
    }
    auto unpin = client->Unpin(cids[1]);
    ASSERT_TRUE(unpin.ok()) << unpin.status().ToString();
  }
  store->Kill9();
  Status restarted = store->Restart();
  ASSERT_TRUE(restarted.ok()) << restarted.ToString();
  auto client = store->Client();
  ASSERT_NE(client, nullptr);
  for (size_t i = 0; i < blobs.size(); ++i) {
    auto stat = client->Stat(cids[i]);
    ASSERT_TRUE(stat.ok()) << stat.status().ToString();
    EXPECT_EQ(stat->pinned, i == 0);
    auto got = client->Get(cids[i]);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_TRUE(*got == blobs[i]) << "blob " << i << " changed across the crash";
  }
}

// SIGTERM while an upload is in flight: the daemon drains (the upload completes) and exits 0.
TEST(StoreCrashTest, SigtermLetsAnInFlightPutFinish) {
  auto store = StoreProcess::Start();
  ASSERT_NE(store, nullptr);
  const Bytes data = testing::RandomBytes(24 * kMiB, 5);
  PutGate gate(8 * kMiB);
  std::optional<Result<StoredBlob>> put_result;
  auto client = store->Client(1);
  ASSERT_NE(client, nullptr);
  std::thread putter([&] {
    put_result = client->Put(data, false, [&](uint64_t done, uint64_t) { gate.OnProgress(done); });
  });
  const bool reached = gate.WaitReached(std::chrono::seconds(60));
  // SIGTERM on another thread; the Put goes on once the daemon has begun to drain.
  std::thread stopper([&] { store->Stop(); });
  const bool draining = testing::WaitFor(
      [&] { return store->Log().find("finishing in-flight streams") != std::string::npos; });
  gate.Release();
  putter.join();
  stopper.join();
  ASSERT_TRUE(reached);
  ASSERT_TRUE(draining) << store->Log();
  ASSERT_TRUE(put_result.has_value());
  ASSERT_TRUE(put_result->ok()) << put_result->status().ToString();
  EXPECT_EQ((*put_result)->cid, crypto::ComputeCid(data));
  EXPECT_THAT(store->Log(), HasSubstr("stopped cleanly"));

  ASSERT_TRUE(store->Restart().ok());
  auto got = store->Client()->Get(crypto::ComputeCid(data));
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(*got == data);
}

}  // namespace
}  // namespace trustmoe::storage
