// The client against a store that lies: a flipped byte in one chunk, or a stream that ends
// early. An in-test gRPC server serves one in-memory blob with correct Merkle proofs and
// injects the fault.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/storage/fake_store.h"

namespace trustmoe::storage {
namespace {

using ::testing::HasSubstr;
using testing::ClientFor;
using testing::FakeServer;
using testing::Faults;
using testing::kMiB;
using testing::StoreProcess;
using testing::TempDir;

const Bytes& TestBlob() {
  static const Bytes blob = testing::RandomBytes(5 * kMiB + 4321, 77);  // 6 chunks
  return blob;
}

TEST(TamperTest, HonestFakeServesTheBlob) {
  FakeServer fake(TestBlob(), Faults{});
  auto client = ClientFor({fake.endpoint()}, 1);
  ASSERT_NE(client, nullptr);
  auto got = client->Get(fake.service().cid());
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(*got == TestBlob());
  EXPECT_EQ(client->stats().bad_chunks.load(), 0u);
}

TEST(TamperTest, FlippedByteIsDataLossNamingTheChunkAndLeavesNoFile) {
  FakeServer fake(TestBlob(), Faults{.flip_chunk = 3});
  auto client = ClientFor({fake.endpoint()}, 2);
  ASSERT_NE(client, nullptr);
  TempDir out;
  const std::string path = out.Sub("blob.bin");
  Status status = client->GetToFile(fake.service().cid(), path);
  EXPECT_EQ(status.code(), StatusCode::kDataLoss) << status.ToString();
  EXPECT_THAT(status.message(), HasSubstr("chunk 3 "));
  EXPECT_FALSE(testing::FileExists(path));
  EXPECT_FALSE(testing::FileExists(path + ".part"));
  // Every attempt met the bad chunk; the good chunks before it were not the problem.
  EXPECT_EQ(client->stats().bad_chunks.load(), 2u);
  EXPECT_GE(client->stats().resumes.load(), 1u);

  auto in_memory = client->Get(fake.service().cid());
  EXPECT_EQ(in_memory.status().code(), StatusCode::kDataLoss) << in_memory.status().ToString();
}

TEST(TamperTest, BadChunkFromOneStoreIsFetchedFromTheNext) {
  FakeServer fake(TestBlob(), Faults{.flip_chunk = 3});
  auto store = StoreProcess::Start();
  ASSERT_NE(store, nullptr);
  auto put = store->Client()->Put(TestBlob());
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  ASSERT_EQ(put->cid, fake.service().cid());

  auto client = ClientFor({fake.endpoint(), store->endpoint()}, 1);
  ASSERT_NE(client, nullptr);
  TempDir out;
  const std::string path = out.Sub("blob.bin");
  Status status = client->GetToFile(put->cid, path);
  ASSERT_TRUE(status.ok()) << status.ToString();
  auto bytes = testing::ReadFileBytes(path);
  ASSERT_TRUE(bytes.has_value());
  EXPECT_TRUE(*bytes == TestBlob());
  EXPECT_FALSE(testing::FileExists(path + ".part"));
  EXPECT_EQ(client->stats().bad_chunks.load(), 1u);
  EXPECT_EQ(client->stats().resumes.load(), 1u);  // the real store went on from chunk 3
  EXPECT_EQ(fake.service().get_calls(), 1);
}

class DropTest : public ::testing::TestWithParam<bool> {};

TEST_P(DropTest, StreamThatEndsEarlyIsResumed) {
  FakeServer fake(TestBlob(), Faults{.drop_after_chunks = 2, .drop_with_error = GetParam()});
  auto client = ClientFor({fake.endpoint()}, 2);
  ASSERT_NE(client, nullptr);
  TempDir out;
  const std::string path = out.Sub("blob.bin");
  Status status = client->GetToFile(fake.service().cid(), path);
  ASSERT_TRUE(status.ok()) << status.ToString();
  auto bytes = testing::ReadFileBytes(path);
  ASSERT_TRUE(bytes.has_value());
  EXPECT_TRUE(*bytes == TestBlob());
  EXPECT_GE(client->stats().resumes.load(), 1u);
  EXPECT_EQ(client->stats().bad_chunks.load(), 0u);
  EXPECT_EQ(fake.service().get_calls(), 2);
}

INSTANTIATE_TEST_SUITE_P(CleanEndAndError, DropTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Unavailable" : "CleanOk"; });

TEST(TamperTest, DroppedStreamWithOneRoundFails) {
  FakeServer fake(TestBlob(), Faults{.drop_after_chunks = 2});
  auto client = ClientFor({fake.endpoint()}, 1);
  ASSERT_NE(client, nullptr);
  TempDir out;
  Status status = client->GetToFile(fake.service().cid(), out.Sub("blob.bin"));
  EXPECT_EQ(status.code(), StatusCode::kUnavailable) << status.ToString();
  EXPECT_FALSE(testing::FileExists(out.Sub("blob.bin")));
  EXPECT_FALSE(testing::FileExists(out.Sub("blob.bin.part")));
}

}  // namespace
}  // namespace trustmoe::storage
