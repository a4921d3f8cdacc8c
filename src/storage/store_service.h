// gRPC StorageService over a BlobStore (proto/trustmoe/v1/storage.proto).
//
// Reads are open; Put, Pin and Unpin must be signed by a key in `writers`, with a timestamp
// within `signature_window_ms` of the store's clock. Every malformed, oversized or unsigned
// request is refused with a message that says what is wrong, and stores nothing.
#pragma once

#include <atomic>
#include <cstdint>
#include <set>

#include "common/clock.h"
#include "common/metrics.h"
#include "crypto/ed25519.h"
#include "storage/blob_store.h"
#include "trustmoe/v1/storage.grpc.pb.h"

namespace trustmoe::storage {

struct StoreServiceOptions {
  std::set<crypto::PublicKey> writers;
  uint32_t concurrent_streams_max = 64;     // Put and Get streams together
  int64_t signature_window_ms = 5 * 60 * 1000;
  uint32_t list_limit_max = 1000;
  uint32_t put_message_bytes_max = 4 << 20;  // data bytes in one PutChunk
  Clock* clock = nullptr;                    // SystemClock when null
};

class StoreService final : public trustmoe::v1::StorageService::Service {
 public:
  // `store` and `metrics` must outlive the service.
  StoreService(BlobStore* store, StoreServiceOptions options, MetricsRegistry* metrics);

  grpc::Status Put(grpc::ServerContext* ctx, grpc::ServerReader<v1::PutRequest>* reader,
                   v1::PutResponse* response) override;
  grpc::Status Get(grpc::ServerContext* ctx, const v1::GetRequest* request,
                   grpc::ServerWriter<v1::GetResponse>* writer) override;
  grpc::Status Stat(grpc::ServerContext* ctx, const v1::StatRequest* request,
                    v1::BlobInfo* response) override;
  grpc::Status Pin(grpc::ServerContext* ctx, const v1::PinRequest* request,
                   v1::BlobInfo* response) override;
  grpc::Status Unpin(grpc::ServerContext* ctx, const v1::PinRequest* request,
                     v1::BlobInfo* response) override;
  grpc::Status List(grpc::ServerContext* ctx, const v1::ListRequest* request,
                    v1::ListResponse* response) override;

  uint32_t active_streams() const { return active_streams_.load(); }

 private:
  class StreamSlot;
  Status DoPut(grpc::ServerReader<v1::PutRequest>* reader, v1::PutResponse* response);
  Status DoGet(grpc::ServerContext* ctx, const v1::GetRequest& request,
               grpc::ServerWriter<v1::GetResponse>* writer);
  Status DoPin(const v1::PinRequest& request, bool pin, v1::BlobInfo* response);
  // Checks key is an accepted writer, the timestamp is fresh and the signature verifies.
  Status CheckSigned(const v1::SignedBy& signed_by, const std::function<Bytes(
                         const crypto::PublicKey&)>& message) const;
  Result<crypto::PublicKey> AcceptedWriter(const std::string& raw_key) const;
  void Reject(const Status& status, const char* rpc);

  BlobStore* store_;
  StoreServiceOptions options_;
  Clock* clock_;
  MetricsRegistry* metrics_;
  std::atomic<uint32_t> active_streams_{0};
  Counter* bytes_in_;
  Counter* bytes_out_;
  Gauge* streams_gauge_;
};

void FillBlobInfo(const BlobMeta& meta, v1::BlobInfo* info);

}  // namespace trustmoe::storage
