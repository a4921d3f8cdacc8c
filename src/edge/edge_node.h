// The edge's work, without gRPC: serve expert calls on the runtime, commit every result.
//
// Forward/Backward: check the caller's input, get the expert (runtime, else the verified blob
// cache, else the store), run it, sign an ExpertResult transaction naming the input and output
// files by CID, persist transaction and files in the outbox, answer. A delivery thread uploads
// the files to the store and submits the transaction to the validators, retrying with back-off,
// so no answered call is ever lost (the outbox survives restarts). A registration thread reads
// the edge's registry entry from the chain: an edge that is not registered as an edge, or is
// blacklisted, refuses to serve.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "chain/client/chain_client.h"
#include "chain/ledger/genesis.h"
#include "chain/ledger/result.h"
#include "chain/ledger/update.h"
#include "common/metrics.h"
#include "common/status.h"
#include "crypto/ed25519.h"
#include "edge/edge_config.h"
#include "edge/outbox.h"
#include "edge/runtime.h"
#include "storage/blob_cache.h"
#include "storage/store_client.h"

namespace trustmoe::edge {

struct CallRequest {
  ledger::CallKind kind = ledger::CallKind::kForward;
  std::string job;
  uint64_t step = 0;
  std::string expert_cid;
  Bytes input;        // activations file x
  Bytes grad_output;  // backward: activations file of dL/dy
};

// One optimizer step (EdgeService.Update).
struct UpdateRequest {
  std::string job;
  uint64_t step = 0;
  std::string parent_cid;
  std::vector<uint64_t> sources;  // this edge's backward results on the parent
  ledger::OptimizerParams optimizer;
};

struct UpdateResult {
  std::string child_cid;
  std::string child_state_cid;
  Bytes update_tx;
  ledger::TxId update_id{};
};

struct CallResult {
  Bytes output;     // activations file: y (forward) or grad_input (backward)
  Bytes result_tx;  // the signed ExpertResult transaction
  ledger::TxId result_id{};
  std::string input_cid;
  std::string output_cid;
  int64_t rows = 0;
};

enum class Standing { kUnknown, kRegistered, kNotRegistered, kWrongRole, kBlacklisted };

struct EdgeStatus {
  Standing standing = Standing::kUnknown;
  std::string detail;  // one line for logs and /healthz
  bool serving() const { return standing == Standing::kRegistered; }
};

struct EdgeInfo {
  std::string edge_key_hex;
  std::string device;
  std::string compute_dtype;
  std::vector<std::string> experts_held;
  uint32_t in_flight = 0;
  uint64_t requests = 0;
  uint64_t rows = 0;
  uint64_t outbox_depth = 0;
  uint64_t device_bytes_used = 0;
  uint64_t device_bytes_max = 0;
  uint32_t rows_per_request_max = 0;
  EdgeStatus status;
};

class EdgeNode {
 public:
  struct Parts {
    EdgeConfig config;
    crypto::PrivateKey key;
    ledger::Genesis genesis;
    std::unique_ptr<ExpertRuntime> runtime;
    std::unique_ptr<storage::StoreClient> store;
    std::unique_ptr<storage::BlobCache> cache;
    std::unique_ptr<chain::ChainClient> chain;
    std::unique_ptr<Outbox> outbox;
  };

  // Builds every part from the config: key, genesis, runtime, store client, cache, chain client,
  // outbox. Errors name the file or setting at fault.
  static Result<Parts> Build(const EdgeConfig& config, std::unique_ptr<ExpertRuntime> runtime);

  EdgeNode(Parts parts, MetricsRegistry* metrics);
  ~EdgeNode();  // stops the threads; undelivered entries stay in the outbox

  // Starts the registration and delivery threads.
  void Start();
  // Stops taking calls (new ones get UNAVAILABLE); those in progress finish.
  void StopServing();
  // After StopServing: waits until no call is in progress or `timeout_ms` passes; true when
  // none is. A call either sees StopServing and is refused, or is waited for.
  bool WaitCallsDone(int64_t timeout_ms);

  Result<CallResult> Call(const CallRequest& request);
  // Applies one optimizer step to `parent_cid` (published) from the listed backward results of
  // this edge on it, which must be committed (waited for up to submit_timeout_ms). The parent's
  // optimizer state is the one the chain recorded with it. Child weights (f32) and optimizer
  // state are uploaded and an ExpertUpdated transaction signed and committed, through the
  // outbox like results. InvalidArgument for a bad request or a source that is not a backward
  // result on the parent; FailedPrecondition for an unpublished parent; Unavailable when the
  // chain or store cannot be reached or a source is not committed in time.
  Result<UpdateResult> Update(const UpdateRequest& request);

  EdgeStatus status() const;
  EdgeInfo Info() const;
  const crypto::PublicKey& edge_key() const { return key_.public_key(); }
  // Checks registration now (also done periodically); returns the new status.
  EdgeStatus CheckRegistration();
  // Waits until the outbox is empty or `timeout_ms` passes; true when empty.
  bool WaitOutboxEmpty(int64_t timeout_ms);

 private:
  // Counts a call in flight for its lifetime. Taken before the serving check, so that
  // WaitCallsDone after StopServing cannot miss a call that was admitted.
  class InFlight {
   public:
    explicit InFlight(EdgeNode* node);
    ~InFlight();
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;
    uint32_t count() const { return count_; }

   private:
    EdgeNode* node_;
    uint32_t count_;
  };
  Status Admit();
  // Admit(), then the concurrent_requests_max bound for a call counted `in_flight`-th.
  Status AdmitCall(uint32_t in_flight);
  // Appends `entry` to the outbox (synced) and wakes the delivery thread.
  Status Enqueue(OutboxEntry entry);
  // Ok when the expert CID is published on the ledger (asked once per CID);
  // FailedPrecondition when it is not, Unavailable when the chain cannot be asked.
  Status CheckPublished(const std::string& cid);
  Result<ExpertSpec> EnsureLoaded(const std::string& cid);
  // The verified file of expert `cid` (through the cache).
  Result<Bytes> ReadExpertFile(const std::string& cid);
  void RegistrationLoop();
  void DeliveryLoop();
  // Uploads the entry's blobs and submits its transaction. Ok when delivered (or already on the
  // chain). The chain's final refusals come back as InvalidArgument / PermissionDenied /
  // Unauthenticated (the entry becomes a dead letter); anything else, including every error of
  // the store, is retried.
  Status Deliver(const OutboxEntry& entry);

  const EdgeConfig config_;
  const crypto::PrivateKey key_;
  const ledger::Genesis genesis_;
  std::unique_ptr<ExpertRuntime> runtime_;
  std::unique_ptr<storage::StoreClient> store_;
  std::unique_ptr<storage::BlobCache> cache_;
  std::unique_ptr<chain::ChainClient> chain_;
  std::unique_ptr<Outbox> outbox_;
  std::unique_ptr<Attacker> attacker_;  // [attack] fault injection; null unless configured

  mutable std::mutex mu_;
  std::condition_variable cv_;
  EdgeStatus status_;
  bool stop_ = false;
  std::atomic<bool> serving_calls_{true};
  std::atomic<uint32_t> in_flight_{0};
  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> rows_{0};
  std::mutex load_mu_;  // one expert load at a time
  // Expert CIDs seen published on the ledger (a publication is never undone).
  std::mutex published_mu_;
  std::set<std::string> published_;
  std::thread registration_thread_;
  std::thread delivery_thread_;

  Counter* requests_total_;
  Counter* rows_total_;
  Counter* refused_total_;
  Counter* cache_hits_;
  Counter* cache_misses_;
  Counter* delivered_total_;
  Counter* delivery_failures_;
  Counter* dead_total_;
  Gauge* outbox_depth_;
  Gauge* in_flight_gauge_;
  Gauge* device_allocated_;
  Gauge* device_peak_;
  Gauge* device_resident_;
  Gauge* cache_bytes_;
  Gauge* cache_files_;
  Gauge* cache_disk_hits_;
  Gauge* cache_disk_misses_;
  Gauge* registered_;
  Histogram* call_seconds_;
};

std::string_view StandingName(Standing standing);

}  // namespace trustmoe::edge
