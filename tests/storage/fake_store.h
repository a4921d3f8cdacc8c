// An in-test store for the client's fault tests: a gRPC StorageService that serves one
// in-memory blob with correct Merkle proofs and injects the faults it is given (a flipped byte
// in one chunk, a stream that ends early).
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "crypto/cid.h"
#include "net/transport.h"
#include "storage/store_client.h"
#include "tests/storage/store_process.h"
#include "trustmoe/v1/storage.grpc.pb.h"

namespace trustmoe::storage::testing {

inline constexpr uint64_t kMiB = 1 << 20;

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

// A client of `endpoints` alone; nullptr (and a test failure) when it cannot be created.
inline std::unique_ptr<StoreClient> ClientFor(std::vector<std::string> endpoints, int rounds_max) {
  auto client =
      StoreClient::Create(ClientOptions(std::move(endpoints), nullptr, rounds_max));
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return client.ok() ? std::move(client).value() : nullptr;
}

}  // namespace trustmoe::storage::testing
