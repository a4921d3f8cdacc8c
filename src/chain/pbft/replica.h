// A PBFT replica (Castro & Liskov, OSDI '99) as a pure state machine: events in, actions out.
//
// The replica owns no thread, clock, socket or file. Its caller feeds it messages from peers,
// client transactions and timer ticks, each with the current time in milliseconds, and carries
// out the returned actions in order (send, persist, commit, set timer; see actions.h). Blocks
// are built, validated and executed through the Application (application.h).
//
// Protocol summary (docs/consensus.md has the whole of it):
//  - normal case: the primary of view v proposes block seq = last executed + 1 in a signed
//    pre-prepare; backups validate it and send prepares; a replica that holds the pre-prepare and
//    quorum - 1 matching prepares is prepared and sends a commit; quorum matching commits form
//    the commit certificate and the block is executed in sequence order. One block is in flight
//    at a time, because a block names the state root of the block before it.
//  - checkpoints every K blocks; quorum matching checkpoints make it stable: the low watermark
//    moves, the log below it is dropped.
//  - view change when a backup waits too long for progress (timer with exponential back-off),
//    carrying prepared certificates; the new primary's new-view re-proposes them (null blocks
//    in gaps).
//  - state transfer: a replica behind its peers fetches committed blocks with their commit
//    certificates and verifies them before executing them.
//
// Thread-compatible: one thread at a time. Never crashes on bytes from the network; it stops
// (TRUSTMOE_CHECK) only when its own state or its application is inconsistent.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "chain/pbft/actions.h"
#include "chain/pbft/application.h"
#include "chain/pbft/config.h"
#include "chain/pbft/messages.h"
#include "chain/pbft/stats.h"
#include "common/bytes.h"
#include "common/status.h"
#include "crypto/ed25519.h"

namespace trustmoe::pbft {

// The replica's durable state as handed back after a restart: every key the PersistActions
// set and did not erase, with its last value.
using DurableState = std::map<std::string, Bytes>;

struct DigestHash {
  size_t operator()(const Digest& d) const {
    size_t h = 0;
    for (int i = 0; i < 8; ++i) h = h << 8 | d[i];
    return h;
  }
};

class Replica {
 public:
  // Creates replica `id` of `config`, signing with `key` (whose public key must be
  // config.validators[id]) and using `app` (not owned; must outlive the replica). `durable` is
  // the state persisted by an earlier incarnation (empty on first start); the replica resumes
  // in the view it had and never signs a different message for a (view, seq) it signed before.
  // InvalidArgument for a bad config, id or key; DataLoss when `durable` does not decode.
  static Result<std::unique_ptr<Replica>> Create(const Config& config, uint32_t id,
                                                 crypto::PrivateKey key, Application* app,
                                                 const DurableState& durable);

  // Call once after Create: announces the replica's status (so that peers answer a restarted
  // replica with what it missed) and returns the first timer.
  Actions Start(int64_t now_ms);

  // Handles one message from the network. Any bytes are acceptable: a message that does not
  // decode, verify or fit the protocol is dropped and counted in stats().rejected.
  Actions OnMessage(ByteSpan wire, int64_t now_ms);

  // Handles timers: status broadcast and retransmission, view change, state transfer retry.
  // Safe to call at any time; the replica asks for the next call with a TimerAction.
  Actions OnTick(int64_t now_ms);

  // Admits a client transaction to the pool (and relays it to the primary when this replica
  // is a backup). Returns OK when admitted; AlreadyExists when it is pending or committed;
  // InvalidArgument when over tx_bytes_max; ResourceExhausted when the pool is full; or the
  // application's CheckTx status. Actions of the step are appended to `out`.
  Status SubmitTx(Bytes tx, int64_t now_ms, Actions* out);

  // True while the transaction with this id waits in this replica's pool: admitted (from a
  // client or relayed by a peer), not yet executed, not dropped as expired or invalid. A
  // transaction proposed but not yet executed is still pending. Pure; no step is taken.
  bool IsPending(const TxId& id) const;

  uint32_t id() const { return id_; }
  uint64_t view() const { return view_; }
  // False while this replica has asked for a view change and waits for the new-view.
  bool view_active() const { return view_active_; }
  bool IsPrimary() const { return view_active_ && config_.Primary(view_) == id_; }
  uint64_t last_executed() const { return last_executed_; }
  uint64_t stable_seq() const { return stable_.seq; }
  size_t pool_size() const { return pool_.size(); }
  size_t log_size() const { return log_.size(); }
  const Stats& stats() const { return stats_; }
  const Config& config() const { return config_; }

 private:
  struct Vote {
    Digest digest{};
    Envelope envelope;  // stripped
  };

  // Everything the replica knows about one sequence number above the stable checkpoint.
  struct Slot {
    // Pre-prepare accepted in the current view.
    std::optional<Envelope> pre_prepare;  // stripped
    Digest digest{};
    Bytes block;
    bool validated = false;  // by the application, or certified through a new-view
    int64_t accepted_ms = 0;
    std::map<uint32_t, Vote> prepares;  // current view
    std::map<uint32_t, Vote> commits;   // current view
    bool prepared = false;              // in the current view; own commit sent
    // Highest-view prepared certificate; survives view changes.
    std::optional<PreparedCert> cert;
    uint64_t cert_view = 0;
    Digest cert_digest{};
    Bytes cert_block;
    // Decided: quorum commits in one view.
    std::optional<CommitCertificate> commit_cert;
    Bytes decided_block;
  };

  struct PoolEntry {
    Bytes tx;
    int64_t arrival_ms = 0;
    uint64_t order = 0;
  };

  struct ViewChangeEntry {
    ViewChange vc;
    Envelope envelope;  // with payload
    std::map<uint64_t, Bytes> blocks;
  };

  // What a new-view must contain, computed from a quorum of view-changes.
  struct NewViewPlan {
    Checkpoint stable;
    std::vector<Envelope> proof;
    uint64_t max_seq = 0;
    std::map<uint64_t, Digest> entries;  // (min-s, max-s]: prepared digest or null digest
  };

  Replica(const Config& config, uint32_t id, crypto::PrivateKey key, Application* app);

  // ---- replica.cc: step plumbing, timers, pool, proposal, execution.
  void Begin(int64_t now_ms);
  Actions Finish();
  Envelope Sign(MsgType type, Bytes body, Bytes payload = {});
  void Send(uint32_t to, const Envelope& envelope);
  void Broadcast(const Envelope& envelope) { Send(kBroadcast, envelope); }
  void Persist(std::string key, std::optional<Bytes> value);
  void FlushPersist();
  // Signature check with the verified-signature cache.
  bool VerifySig(uint32_t sender, MsgType type, const Bytes& body, const Signature& sig);
  bool Verify(const Envelope& e) { return VerifySig(e.sender, e.type, e.body, e.signature); }
  void Count(Reject reason) { ++stats_.rejected[static_cast<size_t>(reason)]; }
  bool InWindow(uint64_t seq) const;
  int64_t Timeout() const;
  int64_t NextDeadline() const;
  int64_t PendingSince() const;
  int64_t AccuseAt() const;
  void CheckViewTimers();
  Status AddToPool(Bytes tx, bool relay);
  void RemoveFromPool(const TxId& id);
  void PurgePool();
  void Relay(Bytes tx);
  void FlushRelay();
  void RelayPool();
  void MaybePropose();
  Status ValidateProposal(uint64_t seq, const Slot& slot);
  void TryValidate(uint64_t seq);
  void TryExecute();
  void ExecuteCommitted(CommittedBlock block, bool via_state_transfer);
  void AfterProgress();
  void ResetViewState();

  // ---- handlers, one file each.
  void Dispatch(const Envelope& e);
  void HandlePrePrepare(const Envelope& e);  // handle_pre_prepare.cc
  void HandlePrepare(const Envelope& e);     // handle_prepare.cc
  void CheckPrepared(uint64_t seq);
  void HandleCommit(const Envelope& e);  // handle_commit.cc
  void CheckCommitted(uint64_t seq);
  void HandleCheckpoint(const Envelope& e);  // handle_checkpoint.cc
  void OwnCheckpoint(uint64_t seq, const Digest& block_digest, const Digest& state_digest);
  void CheckStable(uint64_t seq);
  bool CheckCheckpointProof(const Checkpoint& cp, const std::vector<Envelope>& proof);
  void AdoptStable(const Checkpoint& cp, std::vector<Envelope> proof);
  void HandleViewChange(const Envelope& e);  // handle_view_change.cc
  bool CheckPreparedCert(const PreparedCert& cert, uint64_t below_view, PrePrepare* out);
  bool CheckViewChange(const ViewChange& vc, ByteSpan payload, std::map<uint64_t, Bytes>* blocks);
  void StartViewChange(uint64_t new_view);
  void ApplyViewChangeRules();
  void HandleNewView(const Envelope& e);  // handle_new_view.cc
  NewViewPlan PlanNewView(const std::vector<const ViewChange*>& vcs) const;
  void TryBuildNewView();
  void EnterNewView(uint64_t view, const NewViewPlan& plan, const std::vector<Envelope>& pps,
                    const std::map<uint64_t, Bytes>& blocks, const Envelope& nv);
  void HandleStatus(const Envelope& e);  // handle_status.cc
  void HandleRequest(const Envelope& e);
  void SendStatus();
  void Retransmit();
  void HandleFetchBlocks(const Envelope& e);  // state_transfer.cc
  void HandleBlocks(const Envelope& e);
  void NotePeerExecuted(uint32_t peer, uint64_t seq);
  uint64_t FetchTarget() const;
  void MaybeFetch();
  bool VerifyCertificate(const CommitCertificate& cert);

  // ---- durable.cc
  static std::string SlotKey(uint64_t seq);
  Status Restore(const DurableState& durable);
  Status RestoreSlot(ByteSpan record);
  void PersistView();
  void PersistSlot(uint64_t seq);
  void PersistStable();

  const Config config_;
  const Limits limits_;
  const uint32_t id_;
  const crypto::PrivateKey key_;
  Application* const app_;

  // Current step.
  int64_t now_ms_ = 0;
  Actions out_;
  std::vector<DurableWrite> pending_writes_;
  std::vector<Bytes> relay_;
  uint64_t relay_bytes_ = 0;
  int64_t timer_requested_ms_ = -1;

  // View.
  uint64_t view_ = 0;
  bool view_active_ = true;
  int64_t view_entered_ms_ = 0;
  int64_t last_progress_ms_ = 0;  // when a block was last executed
  static constexpr int64_t kCensorshipTimeouts = 4;
  uint32_t view_change_streak_ = 0;                // view changes since the last progress
  int64_t new_view_deadline_ms_ = 0;               // 0: timer not running
  uint64_t max_assigned_ = 0;                      // highest seq with a pre-prepare in this view
  std::map<uint32_t, ViewChangeEntry> latest_vc_;  // highest view-change per sender
  std::optional<Envelope> own_vc_;
  std::optional<Envelope> new_view_;  // that started the current view, with payload
  std::map<uint32_t, int64_t> new_view_resent_ms_;

  // Execution and log.
  uint64_t last_executed_ = 0;
  Digest last_block_digest_{};
  Digest last_state_digest_{};
  std::map<uint64_t, Slot> log_;
  std::unordered_set<uint64_t> persisted_slots_;

  // Checkpoints.
  Checkpoint stable_;
  std::vector<Envelope> stable_proof_;
  std::map<uint64_t, std::map<uint32_t, std::pair<Checkpoint, Envelope>>> checkpoint_votes_;
  std::map<uint64_t, std::pair<Checkpoint, Envelope>> own_checkpoints_;

  // Pool.
  std::unordered_map<TxId, PoolEntry, DigestHash> pool_;
  std::map<uint64_t, TxId> pool_order_;
  uint64_t pool_next_order_ = 0;
  uint64_t pool_bytes_ = 0;

  // Status and state transfer.
  int64_t next_status_ms_ = 0;
  std::map<uint32_t, uint64_t> peer_executed_;
  bool fetch_active_ = false;
  uint32_t fetch_peer_ = 0;
  int64_t fetch_deadline_ms_ = 0;
  uint32_t fetch_rotation_ = 0;

  // Verified signatures: SHA-256 over (type, sender, body, signature).
  std::unordered_set<Digest, DigestHash> sig_cache_;
  std::deque<Digest> sig_cache_order_;

  Stats stats_;
};

}  // namespace trustmoe::pbft
