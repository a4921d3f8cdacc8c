// Client of the store: what edges, validators, the gate and the CLI use to move blobs.
//
// Downloads are verified chunk by chunk against the CID before a byte is kept, resume from the
// last verified chunk when a stream breaks, and move to the next configured endpoint when one
// fails or serves a bad chunk. Uploads compute the CID while streaming and sign it.
// Thread-safe: one client may serve many threads.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "common/clock.h"
#include "common/status.h"
#include "crypto/cid.h"
#include "crypto/ed25519.h"
#include "net/transport.h"

namespace trustmoe::storage {

struct StoreClientOptions {
  std::vector<std::string> endpoints;  // "host:port", tried in order
  net::TransportConfig transport;
  // Signs Put, Pin and Unpin; reads need no key.
  std::shared_ptr<const crypto::PrivateKey> writer;
  int64_t rpc_timeout_ms = 30'000;  // unary calls; streams get this plus size / rate_min
  uint64_t stream_rate_min_bytes_per_s = 1 << 20;
  int rounds_max = 3;  // passes over the endpoint list before giving up
  Clock* clock = nullptr;
};

struct StoredBlob {
  crypto::Cid cid;
  uint64_t size = 0;
  uint64_t chunk_count = 0;
  bool pinned = false;
  int64_t created_unix_ms = 0;
  bool already_stored = false;  // Put only
};

struct ListPage {
  std::vector<StoredBlob> blobs;
  std::string next_after_cid;  // "" at the end
};

// Called with (bytes done, bytes total) as a transfer goes.
using ProgressFn = std::function<void(uint64_t, uint64_t)>;

struct ClientStats {
  std::atomic<uint64_t> resumes{0};            // streams re-opened at an offset > 0
  std::atomic<uint64_t> endpoint_failures{0};  // attempts that failed on one endpoint
  std::atomic<uint64_t> bad_chunks{0};         // chunks that failed verification
};

class StoreClient {
 public:
  // InvalidArgument with no endpoints or a bad transport config.
  static Result<std::unique_ptr<StoreClient>> Create(StoreClientOptions options);
  ~StoreClient();

  // Uploads; FailedPrecondition without a writer key. The CID in the result is the one the
  // store computed, equal to the one computed here.
  Result<StoredBlob> Put(ByteSpan data, bool pin = false, const ProgressFn& progress = {});
  Result<StoredBlob> PutFile(const std::string& path, bool pin = false,
                             const ProgressFn& progress = {});

  Result<StoredBlob> Stat(const crypto::Cid& cid);
  // Verified download into memory. FailedPrecondition, before any chunk is fetched, when the
  // blob is larger than `bytes_max`; otherwise errors as GetToFile.
  Result<Bytes> Get(const crypto::Cid& cid, uint64_t bytes_max = 1ull << 30);
  // Verified download into `path`: verified chunks go to "<path>.part", renamed to `path` when
  // complete. DataLoss naming the chunk when no endpoint serves it correctly; the bad bytes are
  // never written. ResourceExhausted, with nothing left behind, when the blob is larger than
  // `bytes_max`.
  Status GetToFile(const crypto::Cid& cid, const std::string& path,
                   const ProgressFn& progress = {}, uint64_t bytes_max = UINT64_MAX);

  Result<StoredBlob> Pin(const crypto::Cid& cid);
  Result<StoredBlob> Unpin(const crypto::Cid& cid);
  Result<ListPage> List(const std::string& after_cid, uint32_t limit, bool pinned_only);

  const ClientStats& stats() const { return stats_; }

 private:
  struct Endpoint;
  // Where a download goes. Both are called on the downloading thread; non-OK stops it.
  struct DownloadSink {
    // Called with the size a store claims (checked against every chunk later) before the
    // first chunk is asked for, again for each store asked from chunk 0.
    std::function<Status(uint64_t blob_size)> begin;
    // Receives verified chunks in order, each once.
    std::function<Status(uint64_t index, ByteSpan data, uint64_t blob_size)> chunk;
  };
  explicit StoreClient(StoreClientOptions options);
  Status Download(const crypto::Cid& cid, const DownloadSink& sink);
  // Streams from `endpoint`, starting at chunk *next_index. Chunk i is hashed on a second
  // thread while chunk i + 1 is read; it reaches the sink only once verified, so at most two
  // chunks are held. On return *next_index is the first chunk the sink has not received.
  Status DownloadFrom(Endpoint& endpoint, const crypto::Cid& cid, uint64_t* next_index,
                      uint64_t* blob_size, const DownloadSink& sink);
  using ReadAt = std::function<Status(uint64_t offset, uint8_t* out, size_t n)>;
  Result<StoredBlob> PutFrom(uint64_t size, const ReadAt& read, bool pin,
                             const ProgressFn& progress);
  Result<StoredBlob> PutTo(Endpoint& endpoint, uint64_t size, const ReadAt& read, bool pin,
                           const ProgressFn& progress);
  Result<StoredBlob> SetPin(const crypto::Cid& cid, bool pin);
  Result<StoredBlob> StatOn(Endpoint& endpoint, const crypto::Cid& cid);
  // Runs `call` on each endpoint in turn until one succeeds or fails with a final error.
  template <typename T>
  Result<T> WithFailover(const std::function<Result<T>(Endpoint&)>& call);

  StoreClientOptions options_;
  Clock* clock_;
  std::vector<std::unique_ptr<Endpoint>> endpoints_;
  ClientStats stats_;
};

// A final answer that another endpoint cannot change (bad request, refused signature).
bool IsFinalError(const Status& status);

}  // namespace trustmoe::storage
