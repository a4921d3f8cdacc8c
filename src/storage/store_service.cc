#include "storage/store_service.h"

#include <future>

#include "common/log.h"
#include "net/transport.h"
#include "storage/signing.h"

namespace trustmoe::storage {
namespace {

Result<crypto::Cid> ParseCidField(const std::string& text) {
  auto cid = crypto::Cid::Parse(text);
  if (!cid.ok()) return cid.status().WithContext("field cid");
  return cid;
}

}  // namespace

void FillBlobInfo(const BlobMeta& meta, v1::BlobInfo* info) {
  info->set_cid(meta.cid.ToString());
  info->set_size(meta.size);
  info->set_chunk_count(meta.chunk_count);
  info->set_pinned(meta.pinned);
  info->set_created_unix_ms(meta.created_unix_ms);
}

// Counts a stream against concurrent_streams_max for its lifetime.
class StoreService::StreamSlot {
 public:
  explicit StreamSlot(StoreService* service) : service_(service) {
    uint32_t before = service_->active_streams_.fetch_add(1);
    acquired_ = before < service_->options_.concurrent_streams_max;
    if (!acquired_) service_->active_streams_ -= 1;
    service_->streams_gauge_->Set(service_->active_streams_.load());
  }
  ~StreamSlot() {
    if (acquired_) service_->active_streams_ -= 1;
    service_->streams_gauge_->Set(service_->active_streams_.load());
  }
  Status status() const {
    if (acquired_) return Status::Ok();
    return Status::ResourceExhausted("store is serving its maximum of " +
                                     std::to_string(service_->options_.concurrent_streams_max) +
                                     " concurrent streams; retry later");
  }

 private:
  StoreService* service_;
  bool acquired_;
};

StoreService::StoreService(BlobStore* store, StoreServiceOptions options, MetricsRegistry* metrics)
    : store_(store),
      options_(std::move(options)),
      clock_(options_.clock ? options_.clock : SystemClock::Get()),
      metrics_(metrics) {
  bytes_in_ = metrics_->GetCounter("trustmoe_store_received_bytes_total",
                                   "Blob bytes received by Put");
  bytes_out_ = metrics_->GetCounter("trustmoe_store_sent_bytes_total", "Blob bytes sent by Get");
  streams_gauge_ = metrics_->GetGauge("trustmoe_store_active_streams",
                                      "Put and Get streams in progress");
}

void StoreService::Reject(const Status& status, const char* rpc) {
  metrics_
      ->GetCounter("trustmoe_store_rejected_total", "Requests refused, by RPC and status code",
                   {{"rpc", rpc}, {"code", std::string(StatusCodeName(status.code()))}})
      ->Inc();
  TM_INFO("{} refused: {}", rpc, status.ToString());
}

Result<crypto::PublicKey> StoreService::AcceptedWriter(const std::string& raw_key) const {
  auto key = crypto::PublicKey::FromBytes(AsBytes(raw_key));
  if (!key.ok()) return Status::Unauthenticated("writer key must be 32 bytes of Ed25519 key");
  if (!options_.writers.contains(*key)) {
    return Status::PermissionDenied("writer key " + key->Hex() +
                                    " is not accepted by this store: add it to [auth] writers "
                                    "in the store's config");
  }
  return key;
}

Status StoreService::CheckSigned(
    const v1::SignedBy& signed_by,
    const std::function<Bytes(const crypto::PublicKey&)>& message) const {
  TRUSTMOE_ASSIGN_OR_RETURN(crypto::PublicKey key, AcceptedWriter(signed_by.public_key()));
  int64_t skew = clock_->NowUnixMs() - signed_by.timestamp_unix_ms();
  if (skew > options_.signature_window_ms || -skew > options_.signature_window_ms) {
    return Status::Unauthenticated(
        "signature timestamp is " + std::to_string(skew / 1000) +
        " s away from the store's clock (window " +
        std::to_string(options_.signature_window_ms / 1000) + " s): check the clocks");
  }
  if (!key.Verify(message(key), AsBytes(signed_by.signature()))) {
    return Status::Unauthenticated("signature does not verify for writer key " + key.Hex());
  }
  return Status::Ok();
}

grpc::Status StoreService::Put(grpc::ServerContext*, grpc::ServerReader<v1::PutRequest>* reader,
                               v1::PutResponse* response) {
  Status status = DoPut(reader, response);
  if (!status.ok()) Reject(status, "Put");
  return net::ToGrpcStatus(status);
}

Status StoreService::DoPut(grpc::ServerReader<v1::PutRequest>* reader,
                           v1::PutResponse* response) {
  StreamSlot slot(this);
  TRUSTMOE_RETURN_IF_ERROR(slot.status());
  v1::PutRequest msg;
  if (!reader->Read(&msg)) return Status::InvalidArgument("Put stream ended before its header");
  if (!msg.has_header()) {
    return Status::InvalidArgument("the first message of a Put must be its header");
  }
  const v1::PutHeader header = msg.header();
  TRUSTMOE_ASSIGN_OR_RETURN(crypto::PublicKey writer, AcceptedWriter(header.writer_key()));
  std::optional<crypto::Cid> declared;
  if (!header.declared_cid().empty()) {
    TRUSTMOE_ASSIGN_OR_RETURN(declared, ParseCidField(header.declared_cid()));
  }
  TRUSTMOE_ASSIGN_OR_RETURN(std::unique_ptr<Upload> upload, store_->BeginUpload(header.size()));

  bool trailer_seen = false;
  v1::PutTrailer trailer;
  while (reader->Read(&msg)) {
    if (msg.has_chunk()) {
      const std::string& data = msg.chunk().data();
      if (data.empty()) return Status::InvalidArgument("empty PutChunk");
      if (data.size() > options_.put_message_bytes_max) {
        return Status::InvalidArgument("PutChunk of " + std::to_string(data.size()) +
                                       " bytes is over the limit of " +
                                       std::to_string(options_.put_message_bytes_max));
      }
      TRUSTMOE_RETURN_IF_ERROR(upload->Append(msg.chunk().offset(), AsBytes(data)));
      bytes_in_->Inc(static_cast<double>(data.size()));
    } else if (msg.has_trailer()) {
      trailer = msg.trailer();
      trailer_seen = true;
      break;
    } else {
      return Status::InvalidArgument("a Put may have only one header, first");
    }
  }
  if (!trailer_seen) {
    return Status::InvalidArgument("Put stream was cut after " +
                                   std::to_string(upload->received()) + " of " +
                                   std::to_string(header.size()) + " bytes; nothing stored");
  }
  if (reader->Read(&msg)) return Status::InvalidArgument("messages after the Put trailer");
  TRUSTMOE_ASSIGN_OR_RETURN(crypto::Cid computed, upload->Finish());
  TRUSTMOE_ASSIGN_OR_RETURN(crypto::Cid claimed, ParseCidField(trailer.cid()));
  for (const crypto::Cid* other : {&claimed, declared ? &*declared : nullptr}) {
    if (other && *other != computed) {
      return Status::InvalidArgument("declared CID " + other->ToString() +
                                     " differs from the CID of the bytes received, " +
                                     computed.ToString() + "; nothing stored");
    }
  }
  if (trailer.signed_by().public_key() != header.writer_key()) {
    return Status::Unauthenticated("trailer is signed by another key than the header's writer");
  }
  TRUSTMOE_RETURN_IF_ERROR(CheckSigned(trailer.signed_by(), [&](const crypto::PublicKey& key) {
    return PutSigningBytes(computed, header.size(), key, header.pin(),
                           trailer.signed_by().timestamp_unix_ms());
  }));
  TRUSTMOE_ASSIGN_OR_RETURN(auto committed, upload->Commit(header.pin()));
  FillBlobInfo(committed.first, response->mutable_blob());
  response->set_already_stored(committed.second);
  TM_INFO("stored {} ({} bytes, writer {}){}", computed.ToString(), header.size(),
          writer.Hex().substr(0, 16), committed.second ? " [already stored]" : "");
  return Status::Ok();
}

grpc::Status StoreService::Get(grpc::ServerContext* ctx, const v1::GetRequest* request,
                               grpc::ServerWriter<v1::GetResponse>* writer) {
  Status status = DoGet(ctx, *request, writer);
  if (!status.ok() && status.code() != StatusCode::kNotFound) Reject(status, "Get");
  return net::ToGrpcStatus(status);
}

Status StoreService::DoGet(grpc::ServerContext* ctx, const v1::GetRequest& request,
                           grpc::ServerWriter<v1::GetResponse>* writer) {
  StreamSlot slot(this);
  TRUSTMOE_RETURN_IF_ERROR(slot.status());
  TRUSTMOE_ASSIGN_OR_RETURN(crypto::Cid cid, ParseCidField(request.cid()));
  TRUSTMOE_ASSIGN_OR_RETURN(std::unique_ptr<BlobReader> reader, store_->OpenReader(cid));
  const BlobMeta& meta = reader->meta();
  uint64_t offset = request.offset();
  if (offset % crypto::kChunkBytes != 0 || (offset > 0 && offset >= meta.size)) {
    return Status::OutOfRange("offset " + std::to_string(offset) +
                              " must be a multiple of 1 MiB below the blob size " +
                              std::to_string(meta.size));
  }
  crypto::MerkleTree tree(reader->leaves());
  // Two responses in turn: the next chunk is read on a second thread while this one is sent.
  v1::GetResponse responses[2];
  auto read = [&](uint64_t index, v1::GetResponse* response) {
    return std::async(std::launch::async, [&reader, index, response] {
      return reader->ReadChunk(index, response->mutable_data());
    });
  };
  uint64_t first = offset / crypto::kChunkBytes;
  std::future<Status> next = read(first, &responses[first % 2]);
  for (uint64_t index = first; index < meta.chunk_count; ++index) {
    v1::GetResponse& response = responses[index % 2];
    TRUSTMOE_RETURN_IF_ERROR(next.get());
    if (index + 1 < meta.chunk_count) next = read(index + 1, &responses[(index + 1) % 2]);
    if (ctx->IsCancelled()) return Status::Cancelled("client went away");
    response.clear_proof();
    response.set_index(index);
    response.set_blob_size(meta.size);
    for (const crypto::Digest& sibling : tree.Proof(index)) {
      response.add_proof(sibling.data(), sibling.size());
    }
    if (!writer->Write(response)) return Status::Cancelled("client went away");
    bytes_out_->Inc(static_cast<double>(response.data().size()));
  }
  return Status::Ok();
}

grpc::Status StoreService::Stat(grpc::ServerContext*, const v1::StatRequest* request,
                                v1::BlobInfo* response) {
  auto cid = ParseCidField(request->cid());
  if (!cid.ok()) return net::ToGrpcStatus(cid.status());
  auto meta = store_->Stat(*cid);
  if (!meta.ok()) return net::ToGrpcStatus(meta.status());
  FillBlobInfo(*meta, response);
  return grpc::Status::OK;
}

Status StoreService::DoPin(const v1::PinRequest& request, bool pin, v1::BlobInfo* response) {
  TRUSTMOE_ASSIGN_OR_RETURN(crypto::Cid cid, ParseCidField(request.cid()));
  TRUSTMOE_RETURN_IF_ERROR(CheckSigned(request.signed_by(), [&](const crypto::PublicKey& key) {
    return PinSigningBytes(pin, cid, key, request.signed_by().timestamp_unix_ms());
  }));
  TRUSTMOE_ASSIGN_OR_RETURN(BlobMeta meta, store_->SetPinned(cid, pin));
  FillBlobInfo(meta, response);
  return Status::Ok();
}

grpc::Status StoreService::Pin(grpc::ServerContext*, const v1::PinRequest* request,
                               v1::BlobInfo* response) {
  Status status = DoPin(*request, true, response);
  if (!status.ok()) Reject(status, "Pin");
  return net::ToGrpcStatus(status);
}

grpc::Status StoreService::Unpin(grpc::ServerContext*, const v1::PinRequest* request,
                                 v1::BlobInfo* response) {
  Status status = DoPin(*request, false, response);
  if (!status.ok()) Reject(status, "Unpin");
  return net::ToGrpcStatus(status);
}

grpc::Status StoreService::List(grpc::ServerContext*, const v1::ListRequest* request,
                                v1::ListResponse* response) {
  std::optional<crypto::Cid> after;
  if (!request->after_cid().empty()) {
    auto cid = ParseCidField(request->after_cid());
    if (!cid.ok()) return net::ToGrpcStatus(cid.status().WithContext("after_cid"));
    after = *cid;
  }
  uint32_t limit = request->limit() == 0 ? 100 : request->limit();
  limit = std::min(limit, options_.list_limit_max);
  auto page = store_->List(after ? &*after : nullptr, limit, request->pinned_only());
  if (!page.ok()) return net::ToGrpcStatus(page.status());
  for (const BlobMeta& meta : *page) FillBlobInfo(meta, response->add_blobs());
  if (page->size() == limit) response->set_next_after_cid(page->back().cid.ToString());
  return grpc::Status::OK;
}

}  // namespace trustmoe::storage
