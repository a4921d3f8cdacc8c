// The client against a store that lies: a flipped byte in one chunk, or a stream that ends
// early. An in-test gRPC server serves one in-memory blob with correct Merkle proofs and
// injects the fault.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>

#include "crypto/cid.h"
#include "net/transport.h"
#include "storage/store_client.h"
#include "tests/storage/store_process.h"
#include "trustmoe/v1/storage.grpc.pb.h"

namespace trustmoe::storage {
namespace {

using ::testing::HasSubstr;
using testing::StoreProcess;
using testing::TempDir;

constexpr uint64_t kMiB = 1 << 20;

struct Faults {
  int64_t flip_chunk = -1;         // flip one byte of this chunk, on every call
  int64_t drop_after_chunks = -1;  // first call only: end the stream after this many chunks
  bool drop_with_error = false;    // end it with UNAVAILABLE instead of a clean OK
};

class FakeStore final : public v1::StorageService::Service {
 public:
  FakeStore(Bytes blob, Faults faults)
      : blob_(std::move(blob)), cid_(crypto::ComputeCid(blob_)), faults_(faults) {
    std::vector<crypto::Digest> leaves;
    for (uint64_t i = 0; i < crypto::ChunkCount(blob_.size()); ++i) {
      leaves.push_back(crypto::LeafHash(ChunkAt(i)));
    }
    tree_ = std::make_unique<crypto::MerkleTree>(std::move(leaves));
    EXPECT_EQ(tree_->Root(), cid_.root);
  }

  grpc::Status Stat(grpc::ServerContext*, const v1::StatRequest* request,
                    v1::BlobInfo* info) override {
    if (request->cid() != cid_.ToString()) return {grpc::StatusCode::NOT_FOUND, "unknown"};
    info->set_cid(cid_.ToString());
    info->set_size(blob_.size());
    info->set_chunk_count(crypto::ChunkCount(blob_.size()));
    return grpc::Status::OK;
  }

  grpc::Status Get(grpc::ServerContext*, const v1::GetRequest* request,
                   grpc::ServerWriter<v1::GetResponse>* writer) override {
    const int call = get_calls_++;
    if (request->cid() != cid_.ToString()) return {grpc::StatusCode::NOT_FOUND, "unknown"};
    const uint64_t count = crypto::ChunkCount(blob_.size());
    int64_t sent = 0;
    for (uint64_t index = request->offset() / kMiB; index < count; ++index, ++sent) {
      if (call == 0 && sent == faults_.drop_after_chunks) {
        if (faults_.drop_with_error) return {grpc::StatusCode::UNAVAILABLE, "dropped"};
        return grpc::Status::OK;
      }
      v1::GetResponse response;
      response.set_index(index);
      response.set_blob_size(blob_.size());
      ByteSpan chunk = ChunkAt(index);
      std::string data(chunk.begin(), chunk.end());
      if (static_cast<int64_t>(index) == faults_.flip_chunk) data[data.size() / 2] ^= 0x20;
      response.set_data(data);
      for (const crypto::Digest& d : tree_->Proof(index)) response.add_proof(d.data(), d.size());
      if (!writer->Write(response)) return grpc::Status::OK;
    }
    return grpc::Status::OK;
  }

  const crypto::Cid& cid() const { return cid_; }
  int get_calls() const { return get_calls_.load(); }

 private:
  ByteSpan ChunkAt(uint64_t index) const {
    uint64_t begin = index * kMiB;
    return ByteSpan(blob_).subspan(begin, crypto::ChunkLength(blob_.size(), index));
  }

  Bytes blob_;
  crypto::Cid cid_;
  Faults faults_;
  std::unique_ptr<crypto::MerkleTree> tree_;
  std::atomic<int> get_calls_{0};
};

// A FakeStore served on 127.0.0.1:0.
class FakeServer {
 public:
  FakeServer(Bytes blob, Faults faults) : service_(std::move(blob), faults) {
    auto started = net::StartServer("127.0.0.1:0", net::TransportConfig{}, {&service_});
    EXPECT_TRUE(started.ok()) << started.status().ToString();
    if (started.ok()) server_ = std::move(started).value();
  }
  ~FakeServer() {
    if (server_.server) server_.server->Shutdown();
  }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(server_.bound_port); }
  FakeStore& service() { return service_; }

 private:
  FakeStore service_;
  net::StartedServer server_;
};

const Bytes& TestBlob() {
  static const Bytes blob = testing::RandomBytes(5 * kMiB + 4321, 77);  // 6 chunks
  return blob;
}

std::unique_ptr<StoreClient> ClientFor(std::vector<std::string> endpoints, int rounds_max) {
  auto client =
      StoreClient::Create(testing::ClientOptions(std::move(endpoints), nullptr, rounds_max));
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return client.ok() ? std::move(client).value() : nullptr;
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
