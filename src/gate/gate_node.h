// The gate daemon's core (docs/gate.md): the job table (RocksDB), authentication of
// researchers' requests, and the threads that run jobs. The gRPC adapter is job_service.h.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "chain/client/chain_client.h"
#include "chain/ledger/job.h"
#include "common/metrics.h"
#include "common/status.h"
#include "crypto/ed25519.h"
#include "gate/gate_config.h"
#include "storage/store_client.h"
#include "trustmoe/v1/gate.pb.h"

namespace rocksdb {
class DB;
}

namespace trustmoe::gate {

// Who signed a request, once RequestAuth checked out.
struct Caller {
  crypto::PublicKey researcher;
};

class GateNode {
 public:
  // Opens the key, genesis, job table, store and chain clients. Errors name the file or setting.
  static Result<std::unique_ptr<GateNode>> Open(const GateConfig& config, MetricsRegistry* metrics);
  ~GateNode();  // Stop()

  // Starts the job threads; jobs left queued or running by a previous run are resumed.
  void Start();
  // Stops taking jobs; running jobs stop at their next step and stay resumable.
  void Stop();

  // Checks a request's RequestAuth for `method` and `payload`: Unauthenticated for a bad
  // signature, a stale or replayed nonce; PermissionDenied for a key that is not a registered,
  // not blacklisted researcher.
  Result<Caller> Authenticate(const v1::RequestAuth& auth, std::string_view method,
                              ByteSpan payload);

  Result<v1::JobInfo> Submit(const Caller& caller, const v1::SubmitJobRequest& request);
  Result<v1::JobInfo> Get(const Caller& caller, const std::string& job_id);
  Result<v1::JobInfo> Cancel(const Caller& caller, const std::string& job_id);
  Result<std::vector<v1::JobInfo>> List(const Caller& caller);
  // Calls `send` with the job's progress now and after each change until the job ends, `send`
  // returns false, or `alive` returns false. ResourceExhausted past watchers_max.
  Status Watch(const Caller& caller, const std::string& job_id,
               const std::function<bool(const v1::JobProgress&)>& send,
               const std::function<bool()>& alive);

  const crypto::PublicKey& gate_key() const { return key_->public_key(); }
  bool healthy() const { return !stopping_; }

 private:
  struct Running;
  GateNode(GateConfig config, MetricsRegistry* metrics);
  Status Load();
  Status Persist(const v1::StoredJob& job);
  Result<v1::StoredJob> Read(const std::string& job_id);
  void Worker();
  void RunJob(const std::string& job_id);
  Status RunJobInner(const std::string& job_id, Running* running);
  Status RecordEvent(const std::string& job_id, ledger::JobRecordBody body);
  void Publish(const std::string& job_id, const v1::JobProgress& progress);
  void Finish(const std::string& job_id, const std::string& state, const std::string& detail);
  Result<v1::StoredJob> OwnedJob(const Caller& caller, const std::string& job_id);

  const GateConfig config_;
  MetricsRegistry* metrics_;
  std::shared_ptr<const crypto::PrivateKey> key_;
  std::unique_ptr<chain::ChainClient> chain_;
  std::unique_ptr<storage::StoreClient> store_;
  std::unique_ptr<rocksdb::DB> db_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  std::map<std::string, std::shared_ptr<Running>> running_;
  std::map<std::string, v1::JobProgress> progress_;  // latest progress of every known job
  uint64_t progress_version_ = 0;
  uint32_t watchers_ = 0;
  std::atomic<bool> stopping_{false};
  std::vector<std::thread> workers_;
  // Request nonces seen in the freshness window, per researcher.
  std::mutex nonce_mu_;
  std::map<std::pair<crypto::PublicKey, uint64_t>, int64_t> nonces_;
  std::map<crypto::PublicKey, std::pair<int64_t, Status>> researcher_cache_;

  Counter* jobs_submitted_;
  Counter* requests_refused_;
};

}  // namespace trustmoe::gate
