// The validator node: one PBFT replica on the RocksDB ledger, driven by one consensus thread
// (docs/validator.md, "Threads and queues").
//
// Everything that changes consensus state runs on the consensus thread: it owns the Replica,
// the LedgerApp and the table of SubmitTx calls waiting for their commit. Other threads only
// push events into its bounded queue (peer messages, client transactions) and read the ledger,
// which LedgerStore allows concurrently with its one writer.
//
// One step of the consensus thread drains up to step_events_max queued events, hands each to
// the replica, runs the timer if it is due, and then carries out the actions of the whole
// step: every PersistAction first, as one synced write (so that the writes are durable before
// any message of the step leaves), then in order the sends (to the per-peer queues), the
// commits (answering waiting clients and waking block watchers) and the last timer request.
// Draining before acting means the primary batches every transaction that arrived while the
// previous block was in flight into the next one, and a busy node pays one fsync per step
// rather than one per message.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "chain/ledger/app.h"
#include "chain/ledger/genesis.h"
#include "chain/ledger/ledger_store.h"
#include "chain/ledger/state.h"
#include "chain/pbft/replica.h"
#include "common/bytes.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "common/status.h"
#include "crypto/ed25519.h"

namespace trustmoe::validator {

// The answer to one SubmitTx.
struct SubmitOutcome {
  Status status;
  pbft::TxId tx_id{};
  // Set when the caller waited and the transaction committed.
  std::optional<ledger::TxWithProof> committed;
};
// Called exactly once per SubmitTx, on the consensus thread or (when refused before it was
// queued) on the calling thread. Must not block.
using SubmitCallback = std::function<void(SubmitOutcome)>;

// Where the node's messages to other validators go. Called on the consensus thread; must not
// block (the peer transport queues and drops the oldest when a peer is slow).
class PeerSink {
 public:
  virtual ~PeerSink() = default;
  virtual void Send(uint32_t to, std::shared_ptr<const Bytes> envelope) = 0;
};

struct NodeOptions {
  std::string data_dir;  // the ledger lives in <data_dir>/ledger
  ledger::Genesis genesis;
  crypto::PrivateKey key;  // must be one of genesis.validators
  // Local pool limits (override the defaults of the genesis-derived pbft::Config).
  uint32_t pool_txs_max = 100000;
  uint64_t pool_bytes_max = 256ull << 20;
  int64_t tx_pending_max_ms = 120000;
  // Event queue of the consensus thread.
  uint32_t event_queue_max = 65536;
  uint64_t event_queue_bytes_max = 256ull << 20;
  uint32_t step_events_max = 4096;
  // SubmitTx calls waiting for their commit.
  uint32_t submit_waiters_max = 10000;
  Clock* clock = nullptr;              // SystemClock when null
  MetricsRegistry* metrics = nullptr;  // required; must outlive the node
};

// What /metrics and /healthz show, copied after every step.
struct NodeSnapshot {
  uint64_t height = 0;
  uint64_t view = 0;
  bool view_active = true;
  bool primary = false;
  size_t pool_size = 0;
  size_t queued_events = 0;
  size_t waiters = 0;
  bool running = false;
  int64_t last_step_mono_ms = 0;  // monotonic time the consensus thread last woke
  pbft::Stats stats;
};

class Node {
 public:
  // Opens (creating) the ledger, writes the genesis state into a new one, and re-creates the
  // replica from its durable state. InvalidArgument for bad options; FailedPrecondition when
  // the key is not a validator of the genesis or the ledger belongs to another genesis;
  // Internal / DataLoss from the ledger.
  static Result<std::unique_ptr<Node>> Create(NodeOptions options);
  ~Node();  // Stop()
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Adds a function called on the consensus thread after each executed block with its height.
  // Any time (thread-safe); listeners must not block and must outlive the consensus thread.
  void AddCommitListener(std::function<void(uint64_t height)> listener);

  // Starts the consensus thread; `peers` (not owned) must outlive Stop().
  void Start(PeerSink* peers);

  // Finishes the step in progress, answers every waiting and queued SubmitTx with
  // UNAVAILABLE, drops queued peer messages and joins the consensus thread. Idempotent.
  void Stop();

  // Queues an envelope received from a peer. False (and counted) when the queue is full or
  // the node is stopped; PBFT retransmits what matters. Thread-safe.
  bool DeliverPeerMessage(Bytes wire);
  // Verifies the transaction signatures a peer message carries (relayed requests, the block of
  // a pre-prepare) into the ledger's signature cache. Any thread; never fails.
  void Preverify(ByteSpan wire);

  // Queues a client transaction. `done` gets: without wait, OK at admission to the pool;
  // with wait, OK with the inclusion proof once committed, DEADLINE_EXCEEDED after
  // timeout_ms; or the replica's refusal (InvalidArgument, Unauthenticated, PermissionDenied,
  // AlreadyExists, ResourceExhausted), ResourceExhausted when the queue or the waiter table
  // is full, Unavailable when the node stops. With wait, the same bytes pending in this
  // replica's pool already (an earlier call, with or without wait, or a peer's relay) are not
  // refused: the call waits for that commit like the first one (AlreadyExists then means
  // committed before, or a nonce used by other bytes). Thread-safe.
  void SubmitTx(Bytes tx, bool wait, int64_t timeout_ms, SubmitCallback done);

  NodeSnapshot Snapshot() const;
  uint64_t view() const { return view_.load(); }
  uint32_t id() const { return id_; }
  const ledger::Genesis& genesis() const { return genesis_; }
  const crypto::Digest& genesis_digest() const { return genesis_digest_; }
  const pbft::Config& pbft_config() const { return pbft_config_; }
  // Thread-safe reads of the committed ledger and state.
  const ledger::LedgerStore& store() const { return *store_; }

 private:
  struct Event {
    enum class Kind { kPeer, kSubmit } kind = Kind::kPeer;
    Bytes bytes;
    bool wait = false;
    int64_t submit_mono_ms = 0;
    int64_t deadline_mono_ms = 0;
    SubmitCallback done;
  };
  struct Waiter {
    uint64_t serial = 0;
    int64_t submit_mono_ms = 0;
    SubmitCallback done;
  };
  using Reply = std::pair<SubmitCallback, SubmitOutcome>;

  Node(NodeOptions options, uint32_t id);
  void InitMetrics();
  void Run();
  // Up to step_events_max events, waiting until one arrives, a deadline passes or Stop.
  // False when stopping.
  bool NextEvents(std::vector<Event>* batch);
  int64_t WaitMs() const;
  void Step(std::vector<Event>* batch);
  void HandleSubmit(Event* event, int64_t now_ms, pbft::Actions* actions,
                    std::vector<Reply>* replies);
  void CarryOut(pbft::Actions* actions, std::vector<Reply>* replies);
  void OnCommit(const pbft::CommitAction& commit, std::vector<Reply>* replies);
  void ExpireWaiters(std::vector<Reply>* replies);
  void ForgetOldSubmissions();
  void Publish();
  void LogRejections(const pbft::Stats& stats);
  void FailEverything();

  const uint32_t id_;
  NodeOptions options_;
  ledger::Genesis genesis_;
  crypto::Digest genesis_digest_{};
  pbft::Config pbft_config_;
  Clock* clock_;
  std::unique_ptr<ledger::LedgerStore> store_;
  std::unique_ptr<ledger::LedgerApp> app_;
  std::unique_ptr<pbft::Replica> replica_;
  std::mutex listeners_mu_;
  std::vector<std::function<void(uint64_t)>> commit_listeners_;
  PeerSink* peers_ = nullptr;

  // Event queue.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> events_;
  uint64_t events_bytes_ = 0;
  bool started_ = false;
  bool stopping_ = false;
  std::thread thread_;

  // Consensus thread only.
  int64_t timer_deadline_ms_ = -1;  // unix ms; -1: none
  std::unordered_map<pbft::TxId, std::vector<Waiter>, pbft::DigestHash> waiters_;
  std::multimap<int64_t, std::pair<pbft::TxId, uint64_t>> waiter_deadlines_;  // monotonic
  size_t waiter_count_ = 0;
  uint64_t next_serial_ = 1;
  // Local admissions without a waiter, for the commit latency histogram.
  std::unordered_map<pbft::TxId, int64_t, pbft::DigestHash> submitted_;
  std::deque<std::pair<int64_t, pbft::TxId>> submitted_order_;
  pbft::Stats published_stats_;

  // Published after every step.
  mutable std::mutex snapshot_mu_;
  NodeSnapshot snapshot_;
  std::atomic<uint64_t> view_{0};

  // Metrics.
  Gauge* height_gauge_;
  Gauge* view_gauge_;
  Gauge* pool_gauge_;
  Gauge* queue_gauge_;
  Gauge* waiters_gauge_;
  Counter* view_changes_;
  Counter* new_views_;
  Counter* committed_txs_;
  Counter* blocks_;
  Counter* events_dropped_;
  Histogram* commit_latency_;
  Histogram* step_events_;
  std::vector<Counter*> rejected_;  // by pbft::Reject
  std::array<uint64_t, pbft::kRejectCount> unlogged_rejections_{};
  int64_t last_rejection_log_ms_ = -1000000;
  int64_t last_noise_log_ms_ = -1000000;
};

}  // namespace trustmoe::validator
