// The validator's verification loop (docs/verification.md): finds the results its node orders,
// checks each with a ResultVerifier and submits its signed vote to its own node.
//
// Work comes from two places: every committed block's expert-result transactions (a commit
// listener on the node), and at start the ledger's pending/ index (results ordered while this
// validator was down or before it voted). A check that ends without a verdict (store
// unreachable, expert missing) is retried with back-off; a vote not seen committed after
// resubmit_ms is submitted again (the same bytes, so it commits at most once).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "chain/ledger/verdict.h"
#include "chain/validator/node.h"
#include "chain/verify/verifier.h"
#include "common/metrics.h"
#include "crypto/ed25519.h"

namespace trustmoe::verify {

struct WorkerOptions {
  int threads = 2;                // results checked at once
  int64_t resubmit_ms = 10000;    // a vote not committed after this is submitted again
  int64_t retry_min_ms = 1000;    // first back-off of a check that ended without a verdict
  int64_t retry_max_ms = 30000;
  Clock* clock = nullptr;         // SystemClock when null
};

class VerificationWorker {
 public:
  // `node` (the validator's) and `verifier` must outlive the worker; `key` is the node's
  // validator key. Scans pending/ and starts the threads.
  static Result<std::unique_ptr<VerificationWorker>> Start(validator::Node* node,
                                                           crypto::PrivateKey key,
                                                           ResultVerifier* verifier,
                                                           WorkerOptions options,
                                                           MetricsRegistry* metrics);
  ~VerificationWorker();  // Stop()
  // Lets the checks in progress finish (their votes are still submitted), starts nothing new
  // (what is left stays in pending/ for the next start) and joins the threads. Idempotent.
  void Stop();

  // Results waiting, being checked, or voted but not yet seen committed.
  size_t backlog() const;

 private:
  struct Item {
    crypto::PublicKey edge;
    uint64_t nonce = 0;
    int attempts = 0;
  };
  struct SubmittedVote {
    Bytes tx;
    int64_t submitted_ms = 0;
  };

  VerificationWorker(validator::Node* node, crypto::PrivateKey key, ResultVerifier* verifier,
                     WorkerOptions options, MetricsRegistry* metrics);
  Status ScanPending();
  void OnCommit(uint64_t height);
  void Run();
  void EnqueueBlock(uint64_t height);
  void Check(Item item);
  void Submit(const std::string& vote_key, Bytes tx);
  void ResubmitDue();
  void Enqueue(Item item);  // mu_ held

  validator::Node* node_;
  crypto::PrivateKey key_;
  uint32_t id_;
  ResultVerifier* verifier_;
  WorkerOptions options_;
  Clock* clock_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::deque<uint64_t> heights_;
  std::deque<Item> queue_;
  std::set<std::string> known_;  // result keys queued, in progress or waiting for a retry
  std::multimap<int64_t, Item> retries_;  // by monotonic due time
  std::map<std::string, SubmittedVote> submitted_;  // by vote key
  int64_t next_sweep_ms_ = 0;
  std::vector<std::thread> threads_;

  Counter* accepted_;
  Counter* rejected_;
  Counter* retries_total_;
  Counter* resubmits_;
  Histogram* check_seconds_;
  Gauge* backlog_gauge_;
};

}  // namespace trustmoe::verify
