#include "storage/store_client.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "common/check.h"
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

// Runs one job at a time on its own thread, one thread per transfer rather than one per chunk:
// an upload hashes a piece here while gRPC copies it out, a download hashes chunk i here while
// the calling thread reads chunk i + 1 from the stream.
class ChunkWorker {
 public:
  ChunkWorker() : thread_([this] { Loop(); }) {}
  // Finishes the job in hand, if any, then stops the thread.
  ~ChunkWorker() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  ChunkWorker(const ChunkWorker&) = delete;
  ChunkWorker& operator=(const ChunkWorker&) = delete;

  // Hands over `job`; the one before must have been waited for.
  void Start(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      TRUSTMOE_CHECK(!job_);
      job_ = std::move(job);
    }
    cv_.notify_all();
  }
  // Returns once no job is in hand; what the job wrote is then visible to the caller.
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return !job_; });
  }

 private:
  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return stop_ || job_; });
      if (!job_) return;  // stopping, and nothing left to do
      std::function<void()> job = job_;
      lock.unlock();
      job();
      lock.lock();
      job_ = nullptr;
      cv_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::function<void()> job_;  // guarded by mu_; empty when idle
  bool stop_ = false;          // guarded by mu_
  std::thread thread_;
};

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
  ChunkWorker hasher;  // declared after the buffers: destroyed, its job finished, before them
  while (open && offset < size) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(kPutPieceBytes, size - offset));
    chunk->set_offset(offset);
    data->resize(n);
    read_status = read(offset, reinterpret_cast<uint8_t*>(data->data()), n);
    if (!read_status.ok()) break;
    // Hash on a second thread while gRPC copies the same bytes out; both only read them.
    hasher.Start([&builder, data] { builder.Update(AsBytes(*data)); });
    open = stream->Write(chunk_msg);
    hasher.Wait();
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

namespace {

// What is wrong with the shape of a chunk message (index, sizes, proof), or "" when nothing is;
// the proof's siblings go to `proof`. The hash is checked separately, off the reading thread.
std::string ChunkShapeError(const v1::GetResponse& response, uint64_t index, uint64_t blob_size,
                            std::vector<crypto::Digest>* proof) {
  if (response.blob_size() != blob_size) return "the store changed the blob size it claims";
  if (response.index() != index) return "the store sent chunk " + std::to_string(response.index());
  if (index >= crypto::ChunkCount(blob_size)) return "the store sent more chunks than the blob has";
  if (response.data().size() != crypto::ChunkLength(blob_size, index)) {
    return "wrong length " + std::to_string(response.data().size());
  }
  if (response.proof_size() > 64) return "proof too long";
  proof->clear();
  for (const std::string& sibling : response.proof()) {
    if (sibling.size() != 32) return "malformed proof";
    crypto::Digest d;
    std::memcpy(d.data(), sibling.data(), 32);
    proof->push_back(d);
  }
  return "";
}

}  // namespace

Status StoreClient::DownloadFrom(Endpoint& endpoint, const crypto::Cid& cid, uint64_t* next_index,
                                 uint64_t* blob_size, const DownloadSink& sink) {
  if (*next_index == 0) {
    // The size is needed for the stream's deadline; every chunk is checked against it below
    // (a wrong size fails at the last chunk at the latest, docs/formats/cid.md).
    TRUSTMOE_ASSIGN_OR_RETURN(StoredBlob info, StatOn(endpoint, cid));
    *blob_size = info.size;
    TRUSTMOE_RETURN_IF_ERROR(sink.begin(*blob_size));
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
  const uint64_t count = crypto::ChunkCount(*blob_size);

  // Two chunks in turn: chunk i is hashed on `worker` while chunk i + 1 is read into the other
  // message, then chunk i goes to the sink (only once verified) while chunk i + 1 is hashed.
  v1::GetResponse responses[2];
  std::vector<crypto::Digest> proofs[2];
  bool verified = false;  // written by the worker, read after Wait()
  ChunkWorker worker;     // declared last: destroyed (its job finished) before the buffers
  auto stop = [&](Status status) {
    ctx.TryCancel();
    worker.Wait();
    stream->Finish();
    return status;
  };
  auto bad = [&](uint64_t index, const std::string& why) {
    stats_.bad_chunks += 1;
    return stop(Status::DataLoss("chunk " + std::to_string(index) + " of " + cid.ToString() +
                                 " failed verification: " + why + "; it was not kept"));
  };

  bool hashing = false;  // chunk index - 1 is on the worker
  for (uint64_t index = *next_index;; ++index) {
    v1::GetResponse& response = responses[index % 2];
    const bool got = stream->Read(&response);
    if (hashing) {
      worker.Wait();
      if (!verified) return bad(index - 1, "its hash does not lead to the CID");
    }
    std::string shape_error;
    if (got) shape_error = ChunkShapeError(response, index, *blob_size, &proofs[index % 2]);
    if (got && shape_error.empty()) {
      worker.Start([&, index] {
        crypto::Digest leaf = crypto::LeafHash(AsBytes(responses[index % 2].data()));
        verified = crypto::VerifyMerkleProof(leaf, index, count, proofs[index % 2], cid.root);
      });
    }
    if (hashing) {
      Status sunk = sink.chunk(index - 1, AsBytes(responses[(index - 1) % 2].data()), *blob_size);
      if (!sunk.ok()) return stop(sunk);
      *next_index = index;
    }
    if (!got) break;
    if (!shape_error.empty()) return bad(index, shape_error);
    hashing = true;
  }
  grpc::Status status = stream->Finish();
  if (!status.ok()) return net::FromGrpcStatus(status);
  if (*next_index < count) return Status::Unavailable("stream ended before the last chunk");
  return Status::Ok();
}

Status StoreClient::Download(const crypto::Cid& cid, const DownloadSink& sink) {
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
  DownloadSink sink;
  sink.begin = [&](uint64_t blob_size) -> Status {
    if (blob_size > bytes_max) {
      return Status::FailedPrecondition("blob of " + std::to_string(blob_size) +
                                        " bytes is over the limit of " +
                                        std::to_string(bytes_max) + " for an in-memory read");
    }
    // Verified chunks are appended without a reallocation (bounded by bytes_max).
    out.reserve(static_cast<size_t>(blob_size));
    return Status::Ok();
  };
  sink.chunk = [&](uint64_t index, ByteSpan data, uint64_t) -> Status {
    TRUSTMOE_CHECK(out.size() == index * crypto::kChunkBytes);
    out.insert(out.end(), data.begin(), data.end());
    return Status::Ok();
  };
  Status status = Download(cid, sink);
  if (!status.ok()) return status;
  return out;
}

Status StoreClient::GetToFile(const crypto::Cid& cid, const std::string& path,
                              const ProgressFn& progress, uint64_t bytes_max) {
  std::string part = path + ".part";
  Fd file;
  file.fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (file.fd < 0) return ErrnoStatus("cannot create", part);
  DownloadSink sink;
  sink.begin = [&](uint64_t blob_size) -> Status {
    if (blob_size > bytes_max) {
      return Status::ResourceExhausted("blob " + cid.ToString() + " of " +
                                       std::to_string(blob_size) + " bytes is over the limit of " +
                                       std::to_string(bytes_max));
    }
    return Status::Ok();
  };
  sink.chunk = [&](uint64_t index, ByteSpan data, uint64_t blob_size) -> Status {
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
  };
  Status status = Download(cid, sink);
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
