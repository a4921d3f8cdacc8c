#include "storage/store_client.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <future>

#include "common/log.h"
#include "storage/signing.h"
#include "trustmoe/v1/storage.grpc.pb.h"

namespace trustmoe::storage {

struct StoreClient::Endpoint {
  std::string address;
  std::unique_ptr<v1::StorageService::Stub> stub;
};

namespace {

constexpr size_t kPutPieceBytes = 1 << 20;

StoredBlob FromInfo(const v1::BlobInfo& info, const crypto::Cid& cid) {
  StoredBlob blob;
  blob.cid = cid;
  blob.size = info.size();
  blob.chunk_count = info.chunk_count();
  blob.pinned = info.pinned();
  blob.created_unix_ms = info.created_unix_ms();
  return blob;
}

Result<StoredBlob> ParseInfo(const v1::BlobInfo& info) {
  auto cid = crypto::Cid::Parse(info.cid());
  if (!cid.ok()) return Status::DataLoss("store answered a malformed CID: " + cid.status().message());
  return FromInfo(info, *cid);
}

void SetDeadline(grpc::ClientContext* ctx, int64_t ms) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(ms));
}

// Closes a file descriptor on scope exit.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

Status ErrnoStatus(const std::string& what, const std::string& path) {
  int err = errno;
  std::string msg = what + " " + path + ": " + std::strerror(err);
  if (err == ENOENT) return Status::NotFound(msg);
  if (err == EACCES || err == EPERM) return Status::PermissionDenied(msg);
  return Status::Internal(msg);
}

}  // namespace

bool IsFinalError(const Status& status) {
  switch (status.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kPermissionDenied:
    case StatusCode::kUnauthenticated:
    case StatusCode::kFailedPrecondition:
    case StatusCode::kOutOfRange:
      return true;
    default:
      return false;
  }
}

StoreClient::StoreClient(StoreClientOptions options)
    : options_(std::move(options)), clock_(options_.clock ? options_.clock : SystemClock::Get()) {}

StoreClient::~StoreClient() = default;

Result<std::unique_ptr<StoreClient>> StoreClient::Create(StoreClientOptions options) {
  if (options.endpoints.empty()) {
    return Status::InvalidArgument("no store endpoint configured (expected host:port)");
  }
  if (options.rounds_max < 1) return Status::InvalidArgument("rounds_max must be at least 1");
  std::unique_ptr<StoreClient> client(new StoreClient(std::move(options)));
  for (const std::string& address : client->options_.endpoints) {
    auto channel = net::MakeChannel(address, client->options_.transport);
    if (!channel.ok()) return channel.status().WithContext("store endpoint " + address);
    auto endpoint = std::make_unique<Endpoint>();
    endpoint->address = address;
    endpoint->stub = v1::StorageService::NewStub(*channel);
    client->endpoints_.push_back(std::move(endpoint));
  }
  return client;
}

template <typename T>
Result<T> StoreClient::WithFailover(const std::function<Result<T>(Endpoint&)>& call) {
  Status last = Status::Unavailable("no store endpoint answered");
  bool all_not_found = true;
  for (int round = 0; round < options_.rounds_max; ++round) {
    for (auto& endpoint : endpoints_) {
      Result<T> result = call(*endpoint);
      if (result.ok()) return result;
      last = result.status().WithContext("store " + endpoint->address);
      if (IsFinalError(result.status())) return last;
      if (result.status().code() != StatusCode::kNotFound) all_not_found = false;
      stats_.endpoint_failures += 1;
    }
    // NotFound from every store is an answer, not a failure to retry.
    if (all_not_found) return last;
  }
  return last;
}

// ---- Put ----

Result<StoredBlob> StoreClient::Put(ByteSpan data, bool pin, const ProgressFn& progress) {
  return PutFrom(
      data.size(),
      [&](uint64_t offset, uint8_t* out, size_t n) {
        std::memcpy(out, data.data() + offset, n);
        return Status::Ok();
      },
      pin, progress);
}

Result<StoredBlob> StoreClient::PutFile(const std::string& path, bool pin,
                                        const ProgressFn& progress) {
  Fd file;
  file.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (file.fd < 0) return ErrnoStatus("cannot open", path);
  struct stat st {};
  if (::fstat(file.fd, &st) != 0) return ErrnoStatus("cannot stat", path);
  if (!S_ISREG(st.st_mode)) return Status::InvalidArgument(path + " is not a regular file");
  uint64_t size = static_cast<uint64_t>(st.st_size);
  return PutFrom(
      size,
      [&](uint64_t offset, uint8_t* out, size_t n) -> Status {
        size_t done = 0;
        while (done < n) {
          ssize_t got = ::pread(file.fd, out + done, n - done, static_cast<off_t>(offset + done));
          if (got < 0 && errno == EINTR) continue;
          if (got < 0) return ErrnoStatus("cannot read", path);
          if (got == 0) return Status::Aborted(path + " shrank while it was being uploaded");
          done += static_cast<size_t>(got);
        }
        return Status::Ok();
      },
      pin, progress);
}

Result<StoredBlob> StoreClient::PutFrom(uint64_t size, const ReadAt& read, bool pin,
                                        const ProgressFn& progress) {
  if (!options_.writer) {
    return Status::FailedPrecondition("uploading needs a writer key (trustmoe keygen; --key)");
  }
  return WithFailover<StoredBlob>(
      [&](Endpoint& endpoint) { return PutTo(endpoint, size, read, pin, progress); });
}

Result<StoredBlob> StoreClient::PutTo(Endpoint& endpoint, uint64_t size, const ReadAt& read,
                                      bool pin, const ProgressFn& progress) {
  const crypto::PrivateKey& key = *options_.writer;
  grpc::ClientContext ctx;
  SetDeadline(&ctx, options_.rpc_timeout_ms +
                        static_cast<int64_t>(size * 1000 / options_.stream_rate_min_bytes_per_s));
  v1::PutResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::PutRequest>> stream(
      endpoint.stub->Put(&ctx, &response));

  v1::PutRequest msg;
  v1::PutHeader* header = msg.mutable_header();
  header->set_size(size);
  const auto& raw_key = key.public_key().bytes();
  header->set_writer_key(raw_key.data(), raw_key.size());
  header->set_pin(pin);
  bool open = stream->Write(msg);

  crypto::CidBuilder builder;
  Status read_status;
  uint64_t offset = 0;
  v1::PutRequest chunk_msg;  // reused: its buffer is allocated once
  v1::PutChunk* chunk = chunk_msg.mutable_chunk();
  std::string* data = chunk->mutable_data();
  while (open && offset < size) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(kPutPieceBytes, size - offset));
    chunk->set_offset(offset);
    data->resize(n);
    read_status = read(offset, reinterpret_cast<uint8_t*>(data->data()), n);
    if (!read_status.ok()) break;
    // Hash on a second thread while gRPC copies the same bytes out; both only read them.
    std::future<void> hashed =
        std::async(std::launch::async, [&builder, data] { builder.Update(AsBytes(*data)); });
    open = stream->Write(chunk_msg);
    hashed.get();
    offset += n;
    if (progress) progress(offset, size);
  }
  if (!read_status.ok()) {
    ctx.TryCancel();
    stream->Finish().ok();
    // A local read error is not the store's fault: report it as final.
    return Status::FailedPrecondition(read_status.message());
  }
  if (open) {
    crypto::Cid cid = builder.Finish();
    int64_t now = clock_->NowUnixMs();
    msg.Clear();
    v1::PutTrailer* trailer = msg.mutable_trailer();
    trailer->set_cid(cid.ToString());
    v1::SignedBy* signed_by = trailer->mutable_signed_by();
    signed_by->set_public_key(raw_key.data(), raw_key.size());
    signed_by->set_timestamp_unix_ms(now);
    crypto::Signature sig = key.Sign(PutSigningBytes(cid, size, key.public_key(), pin, now));
    signed_by->set_signature(sig.data(), sig.size());
    stream->Write(msg);
  }
  stream->WritesDone();
  grpc::Status status = stream->Finish();
  if (!status.ok()) return net::FromGrpcStatus(status);
  auto blob = ParseInfo(response.blob());
  if (!blob.ok()) return blob.status();
  blob->already_stored = response.already_stored();
  return blob;
}

// ---- Get ----

Status StoreClient::DownloadFrom(Endpoint& endpoint, const crypto::Cid& cid, uint64_t* next_index,
                                 uint64_t* blob_size, const ChunkSink& sink) {
  if (*next_index == 0) {
    // The size is needed for the stream's deadline; every chunk is checked against it below
    // (a wrong size fails at the last chunk at the latest, docs/formats/cid.md).
    TRUSTMOE_ASSIGN_OR_RETURN(StoredBlob info, StatOn(endpoint, cid));
    *blob_size = info.size;
  }
  grpc::ClientContext ctx;
  uint64_t remaining = *blob_size - std::min(*blob_size, *next_index * crypto::kChunkBytes);
  SetDeadline(&ctx, options_.rpc_timeout_ms +
                        static_cast<int64_t>(remaining * 1000 / options_.stream_rate_min_bytes_per_s));
  v1::GetRequest request;
  request.set_cid(cid.ToString());
  request.set_offset(*next_index * crypto::kChunkBytes);
  if (*next_index > 0) stats_.resumes += 1;
  auto stream = endpoint.stub->Get(&ctx, request);
  v1::GetResponse response;
  std::vector<crypto::Digest> proof;
  while (stream->Read(&response)) {
    uint64_t index = *next_index;
    auto bad = [&](const std::string& why) {
      stats_.bad_chunks += 1;
      ctx.TryCancel();
      stream->Finish();
      return Status::DataLoss("chunk " + std::to_string(index) + " of " + cid.ToString() +
                              " failed verification: " + why + "; it was not kept");
    };
    if (response.blob_size() != *blob_size) {
      return bad("the store changed the blob size it claims");
    }
    uint64_t count = crypto::ChunkCount(*blob_size);
    if (response.index() != index) return bad("the store sent chunk " + std::to_string(response.index()));
    if (index >= count) return bad("the store sent more chunks than the blob has");
    if (response.data().size() != crypto::ChunkLength(*blob_size, index)) {
      return bad("wrong length " + std::to_string(response.data().size()));
    }
    if (response.proof_size() > 64) return bad("proof too long");
    proof.clear();
    for (const std::string& sibling : response.proof()) {
      if (sibling.size() != 32) return bad("malformed proof");
      crypto::Digest d;
      std::memcpy(d.data(), sibling.data(), 32);
      proof.push_back(d);
    }
    crypto::Digest leaf = crypto::LeafHash(AsBytes(response.data()));
    if (!crypto::VerifyMerkleProof(leaf, index, count, proof, cid.root)) {
      return bad("its hash does not lead to the CID");
    }
    Status sunk = sink(index, AsBytes(response.data()), *blob_size);
    if (!sunk.ok()) {
      ctx.TryCancel();
      stream->Finish();
      return sunk;
    }
    *next_index = index + 1;
  }
  grpc::Status status = stream->Finish();
  if (!status.ok()) return net::FromGrpcStatus(status);
  if (*next_index < crypto::ChunkCount(*blob_size)) {
    return Status::Unavailable("stream ended before the last chunk");
  }
  return Status::Ok();
}

Status StoreClient::Download(const crypto::Cid& cid, const ChunkSink& sink) {
  uint64_t next_index = 0;
  uint64_t blob_size = 0;  // learnt from the endpoint that serves the first chunk
  auto result = WithFailover<bool>([&](Endpoint& endpoint) -> Result<bool> {
    Status status = DownloadFrom(endpoint, cid, &next_index, &blob_size, sink);
    if (!status.ok()) {
      TM_WARN("download of {} from {} stopped at chunk {}: {}", cid.ToString(), endpoint.address,
              next_index, status.ToString());
      return status;
    }
    return true;
  });
  return result.ok() ? Status::Ok() : result.status();
}

Result<Bytes> StoreClient::Get(const crypto::Cid& cid, uint64_t bytes_max) {
  Bytes out;
  Status status = Download(cid, [&](uint64_t, ByteSpan data, uint64_t blob_size) -> Status {
    if (blob_size > bytes_max) {
      return Status::FailedPrecondition("blob of " + std::to_string(blob_size) +
                                        " bytes is over the limit of " +
                                        std::to_string(bytes_max) + " for an in-memory read");
    }
    if (out.empty()) out.reserve(static_cast<size_t>(blob_size));
    out.insert(out.end(), data.begin(), data.end());
    return Status::Ok();
  });
  if (!status.ok()) return status;
  return out;
}

Status StoreClient::GetToFile(const crypto::Cid& cid, const std::string& path,
                              const ProgressFn& progress, uint64_t bytes_max) {
  std::string part = path + ".part";
  Fd file;
  file.fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (file.fd < 0) return ErrnoStatus("cannot create", part);
  Status status = Download(cid, [&](uint64_t index, ByteSpan data, uint64_t blob_size) -> Status {
    if (blob_size > bytes_max) {
      return Status::ResourceExhausted("blob " + cid.ToString() + " of " +
                                       std::to_string(blob_size) + " bytes is over the limit of " +
                                       std::to_string(bytes_max));
    }
    uint64_t offset = index * crypto::kChunkBytes;
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::pwrite(file.fd, data.data() + done, data.size() - done,
                           static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoStatus("cannot write", part);
      done += static_cast<size_t>(n);
    }
    if (progress) progress(offset + data.size(), blob_size);
    return Status::Ok();
  });
  if (status.ok() && ::fsync(file.fd) != 0) status = ErrnoStatus("cannot sync", part);
  if (status.ok() && ::rename(part.c_str(), path.c_str()) != 0) {
    status = ErrnoStatus("cannot rename into", path);
  }
  if (!status.ok()) ::unlink(part.c_str());
  return status;
}

// ---- Unary calls ----

Result<StoredBlob> StoreClient::StatOn(Endpoint& endpoint, const crypto::Cid& cid) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, options_.rpc_timeout_ms);
  v1::StatRequest request;
  request.set_cid(cid.ToString());
  v1::BlobInfo info;
  grpc::Status status = endpoint.stub->Stat(&ctx, request, &info);
  if (!status.ok()) return net::FromGrpcStatus(status);
  return ParseInfo(info);
}

Result<StoredBlob> StoreClient::Stat(const crypto::Cid& cid) {
  return WithFailover<StoredBlob>(
      [&](Endpoint& endpoint) { return StatOn(endpoint, cid); });
}

Result<StoredBlob> StoreClient::SetPin(const crypto::Cid& cid, bool pin) {
  if (!options_.writer) {
    return Status::FailedPrecondition("pinning needs a writer key (trustmoe keygen; --key)");
  }
  const crypto::PrivateKey& key = *options_.writer;
  return WithFailover<StoredBlob>([&](Endpoint& endpoint) -> Result<StoredBlob> {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, options_.rpc_timeout_ms);
    v1::PinRequest request;
    request.set_cid(cid.ToString());
    int64_t now = clock_->NowUnixMs();
    v1::SignedBy* signed_by = request.mutable_signed_by();
    const auto& raw_key = key.public_key().bytes();
    signed_by->set_public_key(raw_key.data(), raw_key.size());
    signed_by->set_timestamp_unix_ms(now);
    crypto::Signature sig = key.Sign(PinSigningBytes(pin, cid, key.public_key(), now));
    signed_by->set_signature(sig.data(), sig.size());
    v1::BlobInfo info;
    grpc::Status status = pin ? endpoint.stub->Pin(&ctx, request, &info)
                              : endpoint.stub->Unpin(&ctx, request, &info);
    if (!status.ok()) return net::FromGrpcStatus(status);
    return ParseInfo(info);
  });
}

Result<StoredBlob> StoreClient::Pin(const crypto::Cid& cid) { return SetPin(cid, true); }
Result<StoredBlob> StoreClient::Unpin(const crypto::Cid& cid) { return SetPin(cid, false); }

Result<ListPage> StoreClient::List(const std::string& after_cid, uint32_t limit,
                                   bool pinned_only) {
  return WithFailover<ListPage>([&](Endpoint& endpoint) -> Result<ListPage> {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, options_.rpc_timeout_ms);
    v1::ListRequest request;
    request.set_after_cid(after_cid);
    request.set_limit(limit);
    request.set_pinned_only(pinned_only);
    v1::ListResponse response;
    grpc::Status status = endpoint.stub->List(&ctx, request, &response);
    if (!status.ok()) return net::FromGrpcStatus(status);
    ListPage page;
    for (const v1::BlobInfo& info : response.blobs()) {
      TRUSTMOE_ASSIGN_OR_RETURN(StoredBlob blob, ParseInfo(info));
      page.blobs.push_back(blob);
    }
    page.next_after_cid = response.next_after_cid();
    return page;
  });
}

}  // namespace trustmoe::storage
