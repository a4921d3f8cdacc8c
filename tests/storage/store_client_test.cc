// Round trips through StoreClient against a real trustmoe-store on loopback, and its download
// pipeline (chunk i verified while chunk i + 1 is read) against an in-test store with a bad chunk.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <tuple>

#include "crypto/cid.h"
#include "storage/store_client.h"
#include "tests/storage/fake_store.h"
#include "tests/storage/store_process.h"

namespace trustmoe::storage {
namespace {

using testing::ReadFileBytes;
using testing::StoreProcess;
using testing::TempDir;

constexpr uint64_t kMiB = 1 << 20;

// (blob size, chunk count the store must report)
class RoundTripTest : public ::testing::TestWithParam<std::tuple<uint64_t, uint64_t>> {};

TEST_P(RoundTripTest, PutGetStatAndPutAgain) {
  const auto [size, chunks] = GetParam();
  auto store = StoreProcess::Start();
  ASSERT_NE(store, nullptr);
  auto client = store->Client();
  ASSERT_NE(client, nullptr);
  const Bytes data = testing::RandomBytes(size, 0x5eed0000 + size);
  const crypto::Cid expected = crypto::ComputeCid(data);

  uint64_t last_done = 0;
  bool progress_ok = true;
  auto put = client->Put(data, false, [&](uint64_t done, uint64_t total) {
    progress_ok = progress_ok && total == size && done > last_done && done <= total;
    last_done = done;
  });
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_EQ(put->cid, expected) << put->cid.ToString() << " vs " << expected.ToString();
  EXPECT_EQ(put->size, size);
  EXPECT_EQ(put->chunk_count, chunks);
  EXPECT_FALSE(put->already_stored);
  EXPECT_FALSE(put->pinned);
  EXPECT_TRUE(progress_ok);
  EXPECT_EQ(last_done, size);

  auto stat = client->Stat(expected);
  ASSERT_TRUE(stat.ok()) << stat.status().ToString();
  EXPECT_EQ(stat->cid, expected);
  EXPECT_EQ(stat->size, size);
  EXPECT_EQ(stat->chunk_count, chunks);

  auto got = client->Get(expected);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->size(), data.size());
  EXPECT_TRUE(*got == data) << "Get returned different bytes";

  TempDir out;
  const std::string path = out.Sub("blob.bin");
  uint64_t file_progress = 0;
  Status to_file =
      client->GetToFile(expected, path, [&](uint64_t done, uint64_t) { file_progress = done; });
  ASSERT_TRUE(to_file.ok()) << to_file.ToString();
  auto on_disk = ReadFileBytes(path);
  ASSERT_TRUE(on_disk.has_value());
  EXPECT_TRUE(*on_disk == data) << "GetToFile wrote different bytes";
  EXPECT_FALSE(testing::FileExists(path + ".part"));
  EXPECT_EQ(file_progress, size);

  // The same bytes again, from a file this time: nothing new is written.
  const std::string source = out.Sub("source.bin");
  testing::WriteFileOrDie(source, data);
  auto again = client->PutFile(source);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->cid, expected);
  EXPECT_TRUE(again->already_stored);

  auto list = client->List("", 0, false);
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->blobs.size(), 1u);
  EXPECT_EQ(list->blobs[0].cid, expected);
  EXPECT_EQ(list->next_after_cid, "");
  EXPECT_TRUE(testing::WaitFor([&] {
    return store->Metric("trustmoe_store_stored_bytes") == static_cast<double>(size) &&
           store->Metric("trustmoe_store_blobs") == 1.0;
  })) << "metrics:\n"
      << store->Metrics().value_or("(none)");
}

INSTANTIATE_TEST_SUITE_P(Sizes, RoundTripTest,
                         ::testing::Values(std::make_tuple(0, 1), std::make_tuple(1, 1),
                                           std::make_tuple(kMiB - 1, 1), std::make_tuple(kMiB, 1),
                                           std::make_tuple(kMiB + 1, 2),
                                           std::make_tuple(100 * kMiB, 100)),
                         [](const auto& info) {
                           return std::to_string(std::get<0>(info.param)) + "B";
                         });

TEST(StoreClientTest, PinUnpinAndListPages) {
  auto store = StoreProcess::Start();
  ASSERT_NE(store, nullptr);
  auto client = store->Client();
  ASSERT_NE(client, nullptr);
  std::vector<crypto::Cid> cids;
  for (uint64_t i = 0; i < 5; ++i) {
    auto put = client->Put(testing::RandomBytes(1000 + i, i), /*pin=*/i == 3);
    ASSERT_TRUE(put.ok()) << put.status().ToString();
    EXPECT_EQ(put->pinned, i == 3);
    cids.push_back(put->cid);
  }
  std::vector<crypto::Cid> sorted = cids;
  std::sort(sorted.begin(), sorted.end());

  // Pages of 2, in CID order, with no gaps or repeats.
  std::vector<crypto::Cid> seen;
  std::string after;
  int pages = 0;
  do {
    auto page = client->List(after, 2, false);
    ASSERT_TRUE(page.ok()) << page.status().ToString();
    EXPECT_LE(page->blobs.size(), 2u);
    for (const StoredBlob& blob : page->blobs) seen.push_back(blob.cid);
    after = page->next_after_cid;
    ASSERT_LT(++pages, 10);
  } while (!after.empty());
  EXPECT_EQ(seen, sorted);

  auto pinned = client->List("", 0, true);
  ASSERT_TRUE(pinned.ok());
  ASSERT_EQ(pinned->blobs.size(), 1u);
  EXPECT_EQ(pinned->blobs[0].cid, cids[3]);

  auto pin = client->Pin(cids[0]);
  ASSERT_TRUE(pin.ok()) << pin.status().ToString();
  EXPECT_TRUE(pin->pinned);
  auto unpin = client->Unpin(cids[3]);
  ASSERT_TRUE(unpin.ok()) << unpin.status().ToString();
  EXPECT_FALSE(unpin->pinned);
  pinned = client->List("", 0, true);
  ASSERT_TRUE(pinned.ok());
  ASSERT_EQ(pinned->blobs.size(), 1u);
  EXPECT_EQ(pinned->blobs[0].cid, cids[0]);
  auto stat = client->Stat(cids[3]);
  ASSERT_TRUE(stat.ok());
  EXPECT_FALSE(stat->pinned);

  // Putting the same bytes with pin=true pins the stored blob.
  auto repin = client->Put(testing::RandomBytes(1003, 3), /*pin=*/true);
  ASSERT_TRUE(repin.ok()) << repin.status().ToString();
  EXPECT_TRUE(repin->already_stored);
  EXPECT_TRUE(repin->pinned);

  crypto::Cid unknown = crypto::ComputeCid(AsBytes("not stored"));
  auto missing = client->Pin(unknown);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound) << missing.status().ToString();
}

TEST(StoreClientTest, PinNeedsAnAcceptedWriter) {
  auto store = StoreProcess::Start();
  ASSERT_NE(store, nullptr);
  auto client = store->Client();
  auto put = client->Put(testing::RandomBytes(10, 1));
  ASSERT_TRUE(put.ok());

  auto stranger_key = crypto::PrivateKey::Generate();
  ASSERT_TRUE(stranger_key.ok());
  auto stranger = StoreClient::Create(testing::ClientOptions(
      {store->endpoint()}, std::make_shared<const crypto::PrivateKey>(*stranger_key)));
  ASSERT_TRUE(stranger.ok());
  auto pin = (*stranger)->Pin(put->cid);
  EXPECT_EQ(pin.status().code(), StatusCode::kPermissionDenied) << pin.status().ToString();

  auto reader = StoreClient::Create(testing::ClientOptions({store->endpoint()}, nullptr));
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ((*reader)->Pin(put->cid).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ((*reader)->Put(testing::RandomBytes(10, 2)).status().code(),
            StatusCode::kFailedPrecondition);
  auto stat = (*reader)->Stat(put->cid);
  ASSERT_TRUE(stat.ok());
  EXPECT_FALSE(stat->pinned);
}

TEST(StoreClientTest, CreateRefusesBadOptions) {
  EXPECT_EQ(StoreClient::Create(StoreClientOptions{}).status().code(),
            StatusCode::kInvalidArgument);
  // Plaintext to a non-loopback address is refused before any connection.
  auto remote = StoreClient::Create(testing::ClientOptions({"192.0.2.1:7400"}, nullptr));
  EXPECT_EQ(remote.status().code(), StatusCode::kInvalidArgument) << remote.status().ToString();
}

// A fake store (tests/storage/fake_store.h) with one byte flipped in chunk `flip_chunk` and the
// first stream ending with UNAVAILABLE after `chunks_max` chunks, and a client of it alone.
struct FlippingServer {
  FlippingServer(Bytes blob, int64_t flip_chunk, int64_t chunks_max, int rounds_max)
      : fake(std::move(blob), testing::Faults{.flip_chunk = flip_chunk,
                                              .drop_after_chunks = chunks_max,
                                              .drop_with_error = true}),
        service(fake.service()),
        client(testing::ClientFor({fake.endpoint()}, rounds_max)) {}

  testing::FakeServer fake;
  testing::FakeStore& service;
  std::unique_ptr<StoreClient> client;  // destroyed before the server stops
};

const Bytes& SixChunkBlob() {
  static const Bytes blob = testing::RandomBytes(5 * kMiB + 4321, 91);
  return blob;
}

uint64_t FileSize(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

// The chunk after a bad one is already read (or the stream already ended) when the bad one
// fails its hash: still nothing past the last good chunk reaches the file, each good chunk
// reaches it once and in order, and the error names the bad chunk.
class BadChunkTest : public ::testing::TestWithParam<int64_t> {};

TEST_P(BadChunkTest, NothingPastTheLastGoodChunkIsWritten) {
  const int64_t bad = GetParam();
  FlippingServer fake(SixChunkBlob(), bad, -1, /*rounds_max=*/2);
  ASSERT_NE(fake.client, nullptr);
  TempDir out;
  const std::string path = out.Sub("blob.bin");
  std::vector<uint64_t> done_seen;
  std::vector<uint64_t> part_sizes;
  Status status = fake.client->GetToFile(fake.service.cid(), path, [&](uint64_t done, uint64_t) {
    done_seen.push_back(done);
    part_sizes.push_back(FileSize(path + ".part"));
  });
  EXPECT_EQ(status.code(), StatusCode::kDataLoss) << status.ToString();
  EXPECT_THAT(status.message(), ::testing::HasSubstr("chunk " + std::to_string(bad) + " "));
  std::vector<uint64_t> expected;
  for (int64_t i = 1; i <= bad; ++i) expected.push_back(static_cast<uint64_t>(i) * kMiB);
  EXPECT_EQ(done_seen, expected);
  EXPECT_EQ(part_sizes, expected);  // at each step, the file held exactly the chunks reported
  EXPECT_FALSE(testing::FileExists(path));
  EXPECT_FALSE(testing::FileExists(path + ".part"));
  EXPECT_EQ(fake.client->stats().bad_chunks.load(), 2u);  // the second round resumed at it
  EXPECT_EQ(fake.client->stats().resumes.load(), bad > 0 ? 1u : 0u);
  EXPECT_EQ(fake.service.get_calls(), 2);

  auto in_memory = fake.client->Get(fake.service.cid());
  EXPECT_EQ(in_memory.status().code(), StatusCode::kDataLoss) << in_memory.status().ToString();
  EXPECT_THAT(in_memory.status().message(),
              ::testing::HasSubstr("chunk " + std::to_string(bad) + " "));
}

INSTANTIATE_TEST_SUITE_P(FirstMiddleLast, BadChunkTest, ::testing::Values(0, 3, 5),
                         [](const auto& info) { return "Chunk" + std::to_string(info.param); });

TEST(StoreClientTest, BadChunkBeforeABrokenStreamIsNamed) {
  // Chunk 2 is bad and the stream breaks right after chunk 3: the bad chunk is the answer.
  FlippingServer fake(SixChunkBlob(), /*flip_chunk=*/2, /*chunks_max=*/4, /*rounds_max=*/1);
  ASSERT_NE(fake.client, nullptr);
  uint64_t last_done = 0;
  TempDir out;
  Status status = fake.client->GetToFile(fake.service.cid(), out.Sub("blob.bin"),
                                         [&](uint64_t done, uint64_t) { last_done = done; });
  EXPECT_EQ(status.code(), StatusCode::kDataLoss) << status.ToString();
  EXPECT_THAT(status.message(), ::testing::HasSubstr("chunk 2 "));
  EXPECT_EQ(last_done, 2 * kMiB);
}

TEST(StoreClientTest, BlobOverTheLimitIsRefusedBeforeAnyChunkIsFetched) {
  FlippingServer fake(SixChunkBlob(), /*flip_chunk=*/-1, /*chunks_max=*/-1, /*rounds_max=*/1);
  ASSERT_NE(fake.client, nullptr);
  const uint64_t size = SixChunkBlob().size();
  auto got = fake.client->Get(fake.service.cid(), size - 1);
  EXPECT_EQ(got.status().code(), StatusCode::kFailedPrecondition) << got.status().ToString();
  TempDir out;
  const std::string path = out.Sub("blob.bin");
  Status to_file = fake.client->GetToFile(fake.service.cid(), path, {}, size - 1);
  EXPECT_EQ(to_file.code(), StatusCode::kResourceExhausted) << to_file.ToString();
  EXPECT_FALSE(testing::FileExists(path));
  EXPECT_FALSE(testing::FileExists(path + ".part"));
  EXPECT_EQ(fake.service.get_calls(), 0);

  // At the limit exactly, both succeed.
  got = fake.client->Get(fake.service.cid(), size);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(*got == SixChunkBlob());
  ASSERT_TRUE(fake.client->GetToFile(fake.service.cid(), path, {}, size).ok());
  auto on_disk = ReadFileBytes(path);
  ASSERT_TRUE(on_disk.has_value());
  EXPECT_TRUE(*on_disk == SixChunkBlob());
}

}  // namespace
}  // namespace trustmoe::storage
