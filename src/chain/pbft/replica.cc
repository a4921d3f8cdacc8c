#include "chain/pbft/replica.h"

#include <algorithm>
#include <limits>
#include <set>
#include <string>
#include <utility>

#include "common/check.h"
#include "crypto/canonical.h"

namespace trustmoe::pbft {

namespace {
constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
}  // namespace

std::string_view RejectName(Reject reason) {
  switch (reason) {
    case Reject::kOversized:
      return "oversized";
    case Reject::kMalformed:
      return "malformed";
    case Reject::kUnknownSender:
      return "unknown_sender";
    case Reject::kFromSelf:
      return "from_self";
    case Reject::kBadSignature:
      return "bad_signature";
    case Reject::kWrongView:
      return "wrong_view";
    case Reject::kOutsideWindow:
      return "outside_window";
    case Reject::kStale:
      return "stale";
    case Reject::kDuplicate:
      return "duplicate";
    case Reject::kNotPrimary:
      return "not_primary";
    case Reject::kDigestMismatch:
      return "digest_mismatch";
    case Reject::kInvalidBlock:
      return "invalid_block";
    case Reject::kConflict:
      return "conflict";
    case Reject::kBadCertificate:
      return "bad_certificate";
    case Reject::kBadViewChange:
      return "bad_view_change";
    case Reject::kBadNewView:
      return "bad_new_view";
    case Reject::kBadTx:
      return "bad_tx";
    case Reject::kUnsolicited:
      return "unsolicited";
  }
  return "unknown";
}

uint64_t Stats::RejectedTotal() const {
  uint64_t total = 0;
  for (uint64_t v : rejected) total += v;
  return total;
}

Replica::Replica(const Config& config, uint32_t id, crypto::PrivateKey key, Application* app)
    : config_(config), limits_(Limits::Of(config)), id_(id), key_(std::move(key)), app_(app) {}

Result<std::unique_ptr<Replica>> Replica::Create(const Config& config, uint32_t id,
                                                 crypto::PrivateKey key, Application* app,
                                                 const DurableState& durable) {
  TRUSTMOE_RETURN_IF_ERROR(config.Validate());
  if (id >= config.n()) {
    return Status::InvalidArgument("replica id " + std::to_string(id) + " is not a validator");
  }
  if (!(key.public_key() == config.validators[id])) {
    return Status::InvalidArgument("the private key does not belong to validator " +
                                   std::to_string(id));
  }
  if (app == nullptr) return Status::InvalidArgument("no application");
  std::unique_ptr<Replica> replica(new Replica(config, id, std::move(key), app));
  TRUSTMOE_RETURN_IF_ERROR(replica->Restore(durable));
  return replica;
}

// ---- Steps.

void Replica::Begin(int64_t now_ms) {
  TRUSTMOE_CHECK(out_.empty());
  TRUSTMOE_CHECK(pending_writes_.empty());
  now_ms_ = std::max(now_ms_, now_ms);
}

Actions Replica::Finish() {
  FlushRelay();
  FlushPersist();
  int64_t deadline = NextDeadline();
  if (deadline != timer_requested_ms_) {
    timer_requested_ms_ = deadline;
    out_.push_back(TimerAction{deadline});
  }
  Actions out = std::move(out_);
  out_.clear();
  return out;
}

Actions Replica::Start(int64_t now_ms) {
  Begin(now_ms);
  view_entered_ms_ = now_ms_;
  next_status_ms_ = now_ms_ + config_.status_interval_ms;
  SendStatus();
  Retransmit();
  return Finish();
}

Actions Replica::OnMessage(ByteSpan wire, int64_t now_ms) {
  Begin(now_ms);
  ++stats_.messages_received;
  if (wire.size() > config_.message_bytes_max) {
    Count(Reject::kOversized);
    return Finish();
  }
  Result<Envelope> e = DecodeEnvelope(wire, limits_);
  if (!e.ok()) {
    Count(Reject::kMalformed);
  } else if (e->sender >= config_.n()) {
    Count(Reject::kUnknownSender);
  } else if (e->sender == id_) {
    Count(Reject::kFromSelf);
  } else {
    Dispatch(*e);
  }
  return Finish();
}

void Replica::Dispatch(const Envelope& e) {
  switch (e.type) {
    case MsgType::kPrePrepare:
      return HandlePrePrepare(e);
    case MsgType::kPrepare:
      return HandlePrepare(e);
    case MsgType::kCommit:
      return HandleCommit(e);
    case MsgType::kCheckpoint:
      return HandleCheckpoint(e);
    case MsgType::kViewChange:
      return HandleViewChange(e);
    case MsgType::kNewView:
      return HandleNewView(e);
    case MsgType::kStatus:
      return HandleStatus(e);
    case MsgType::kRequest:
      return HandleRequest(e);
    case MsgType::kFetchBlocks:
      return HandleFetchBlocks(e);
    case MsgType::kBlocks:
      return HandleBlocks(e);
  }
}

Actions Replica::OnTick(int64_t now_ms) {
  Begin(now_ms);
  if (now_ms_ >= next_status_ms_) {
    next_status_ms_ = now_ms_ + config_.status_interval_ms;
    PurgePool();
    SendStatus();
    Retransmit();
  }
  if (fetch_active_ && now_ms_ >= fetch_deadline_ms_) {
    fetch_active_ = false;
    ++fetch_rotation_;
  }
  MaybeFetch();
  CheckViewTimers();
  if (!view_active_ && config_.Primary(view_) == id_) TryBuildNewView();
  MaybePropose();
  return Finish();
}

Status Replica::SubmitTx(Bytes tx, int64_t now_ms, Actions* out) {
  Begin(now_ms);
  Status status = AddToPool(std::move(tx), /*relay=*/true);
  if (status.ok()) MaybePropose();
  Actions actions = Finish();
  out->insert(out->end(), std::make_move_iterator(actions.begin()),
              std::make_move_iterator(actions.end()));
  return status;
}

// ---- Output.

Envelope Replica::Sign(MsgType type, Bytes body, Bytes payload) {
  return SignEnvelope(type, id_, std::move(body), key_, std::move(payload));
}

void Replica::Send(uint32_t to, const Envelope& envelope) {
  FlushPersist();
  Bytes wire = envelope.Encode();
  // Our own messages fit by construction: Config::Validate bounds every part.
  TRUSTMOE_CHECK(wire.size() <= config_.message_bytes_max);
  out_.push_back(SendAction{to, std::move(wire)});
  ++stats_.messages_sent;
}

void Replica::Persist(std::string key, std::optional<Bytes> value) {
  pending_writes_.push_back(DurableWrite{std::move(key), std::move(value)});
}

void Replica::FlushPersist() {
  if (pending_writes_.empty()) return;
  out_.push_back(PersistAction{std::move(pending_writes_)});
  pending_writes_.clear();
}

bool Replica::VerifySig(uint32_t sender, MsgType type, const Bytes& body, const Signature& sig) {
  if (sender >= config_.n()) return false;
  crypto::CanonicalWriter w("trustmoe/pbft/sig-cache/v1");
  w.U8(static_cast<uint8_t>(type)).U32(sender).Blob(body).Blob(sig);
  Digest key = w.Hash();
  if (sig_cache_.count(key) != 0) {
    ++stats_.signature_cache_hits;
    return true;
  }
  ++stats_.signatures_verified;
  if (!config_.validators[sender].Verify(body, sig)) return false;
  sig_cache_.insert(key);
  sig_cache_order_.push_back(key);
  while (sig_cache_order_.size() > config_.signature_cache_entries) {
    sig_cache_.erase(sig_cache_order_.front());
    sig_cache_order_.pop_front();
  }
  return true;
}

bool Replica::InWindow(uint64_t seq) const {
  return seq > stable_.seq && seq <= stable_.seq + config_.watermark_window;
}

// ---- Timers.

int64_t Replica::Timeout() const {
  int64_t timeout = config_.view_change_timeout_ms;
  for (uint32_t i = 0; i < view_change_streak_ && timeout < config_.view_change_timeout_max_ms;
       ++i) {
    timeout *= 2;
  }
  return std::min(timeout, config_.view_change_timeout_max_ms);
}

int64_t Replica::PendingSince() const {
  int64_t since = kNever;
  if (!pool_order_.empty()) since = pool_.at(pool_order_.begin()->second).arrival_ms;
  for (auto it = log_.upper_bound(last_executed_); it != log_.end(); ++it) {
    if (it->second.pre_prepare) since = std::min(since, it->second.accepted_ms);
  }
  if (since == kNever) return kNever;
  return std::max(since, view_entered_ms_);
}

// A backup accuses the primary when something is pending and nothing has been executed for
// Timeout() (the primary is silent or slow), or when the oldest pending transaction has waited
// kCensorshipTimeouts x Timeout() although blocks commit (a primary that leaves it out). Under
// overload a transaction may wait several blocks for its turn; counting from the last progress
// keeps that from looking like a failed primary.
int64_t Replica::AccuseAt() const {
  const int64_t since = PendingSince();
  if (since == kNever) return kNever;
  return std::min(std::max(since, last_progress_ms_) + Timeout(),
                  since + kCensorshipTimeouts * Timeout());
}

int64_t Replica::NextDeadline() const {
  int64_t deadline = next_status_ms_;
  if (fetch_active_) deadline = std::min(deadline, fetch_deadline_ms_);
  if (!view_active_) {
    if (new_view_deadline_ms_ != 0) deadline = std::min(deadline, new_view_deadline_ms_);
  } else {
    int64_t at = AccuseAt();
    if (at != kNever) deadline = std::min(deadline, at);
  }
  return deadline;
}

void Replica::CheckViewTimers() {
  if (!view_active_) {
    if (new_view_deadline_ms_ != 0 && now_ms_ >= new_view_deadline_ms_) {
      StartViewChange(view_ + 1);
    }
    return;
  }
  int64_t at = AccuseAt();
  if (at == kNever || now_ms_ < at) return;
  // Before accusing the primary, drop transactions that are no longer valid: a primary leaves
  // those out of its blocks and backups would otherwise wait for them forever.
  std::vector<TxId> invalid;
  for (const auto& [id, entry] : pool_) {
    if (app_->IsTxCommitted(id) || !app_->CheckTx(entry.tx).ok()) invalid.push_back(id);
  }
  for (const TxId& id : invalid) RemoveFromPool(id);
  at = AccuseAt();
  if (at != kNever && now_ms_ >= at) StartViewChange(view_ + 1);
}

// ---- Pool.

Status Replica::AddToPool(Bytes tx, bool relay) {
  if (tx.size() > config_.tx_bytes_max) {
    return Status::InvalidArgument("transaction of " + std::to_string(tx.size()) +
                                   " bytes exceeds tx_bytes_max " +
                                   std::to_string(config_.tx_bytes_max));
  }
  TxId id = ComputeTxId(tx);
  if (pool_.count(id) != 0) {
    // A client that submits again may have lost its first try on the way to the primary.
    if (relay) Relay(std::move(tx));
    return Status::AlreadyExists("transaction is pending");
  }
  if (app_->IsTxCommitted(id)) return Status::AlreadyExists("transaction is committed");
  if (pool_.size() >= config_.pool_txs_max || pool_bytes_ + tx.size() > config_.pool_bytes_max) {
    return Status::ResourceExhausted("transaction pool is full");
  }
  TRUSTMOE_RETURN_IF_ERROR(app_->CheckTx(tx));
  if (relay && !(view_active_ && config_.Primary(view_) == id_)) Relay(tx);
  pool_bytes_ += tx.size();
  uint64_t order = pool_next_order_++;
  pool_order_[order] = id;
  pool_.emplace(id, PoolEntry{std::move(tx), now_ms_, order});
  return Status::Ok();
}

bool Replica::IsPending(const TxId& id) const { return pool_.count(id) != 0; }

void Replica::RemoveFromPool(const TxId& id) {
  auto it = pool_.find(id);
  if (it == pool_.end()) return;
  pool_bytes_ -= it->second.tx.size();
  pool_order_.erase(it->second.order);
  pool_.erase(it);
}

void Replica::PurgePool() {
  std::vector<TxId> expired;
  for (const auto& [order, id] : pool_order_) {
    if (now_ms_ - pool_.at(id).arrival_ms < config_.tx_pending_max_ms) break;
    expired.push_back(id);
  }
  for (const TxId& id : expired) RemoveFromPool(id);
}

// Queues a transaction for the request sent to the primary at the end of the step; a request
// holds at most request_txs_max transactions and half of message_bytes_max.
void Replica::Relay(Bytes tx) {
  if (relay_.size() >= config_.request_txs_max ||
      relay_bytes_ + tx.size() + 8 > config_.message_bytes_max / 2) {
    return;
  }
  relay_bytes_ += tx.size() + 8;
  relay_.push_back(std::move(tx));
}

void Replica::FlushRelay() {
  if (relay_.empty()) return;
  Request request{std::move(relay_)};
  relay_.clear();
  relay_bytes_ = 0;
  if (!view_active_) {
    // Changing view alone (say a primary that timed out on its own proposal while its peers
    // went on): the others must see these transactions pending, or nobody's timer ever joins
    // this view change and the transactions wait forever.
    Broadcast(Sign(MsgType::kRequest, request.Body(id_)));
    return;
  }
  if (config_.Primary(view_) == id_) return;
  Send(config_.Primary(view_), Sign(MsgType::kRequest, request.Body(id_)));
}

// A new primary may not have seen the transactions clients gave to this backup; and while
// this replica changes view, every peer must see them pending (FlushRelay broadcasts then).
void Replica::RelayPool() {
  if (view_active_ && config_.Primary(view_) == id_) return;
  for (const auto& [order, id] : pool_order_) {
    if (relay_.size() >= config_.request_txs_max) break;
    Relay(pool_.at(id).tx);
  }
}

// ---- Proposal and validation.

void Replica::MaybePropose() {
  if (!view_active_ || config_.Primary(view_) != id_ || pool_.empty()) return;
  const uint64_t seq = last_executed_ + 1;
  if (seq <= max_assigned_ || !InWindow(seq)) return;
  std::vector<Bytes> candidates;
  std::vector<TxId> candidate_ids;
  std::vector<TxId> committed;
  uint64_t bytes = 0;
  for (const auto& [order, id] : pool_order_) {
    if (candidates.size() >= config_.block_txs_max) break;
    const Bytes& tx = pool_.at(id).tx;
    if (app_->IsTxCommitted(id)) {
      committed.push_back(id);
      continue;
    }
    if (bytes + tx.size() > config_.block_bytes_max) break;
    bytes += tx.size();
    candidates.push_back(tx);
    candidate_ids.push_back(id);
  }
  for (const TxId& id : committed) RemoveFromPool(id);
  if (candidates.empty()) return;
  BlockContext ctx{seq, view_, id_, now_ms_};
  Bytes block = app_->ProposeBlock(ctx, candidates);
  TRUSTMOE_CHECK(block.size() <= config_.BlockBytesMax());
  Result<std::vector<Bytes>> included = app_->TxsOf(block);
  TRUSTMOE_CHECK(included.ok());
  Result<Digest> digest = app_->BlockDigest(block);
  TRUSTMOE_CHECK(digest.ok());
  std::unordered_set<TxId, DigestHash> included_ids;
  for (const Bytes& tx : *included) included_ids.insert(ComputeTxId(tx));
  for (const TxId& id : candidate_ids) {
    if (included_ids.count(id) == 0) RemoveFromPool(id);
  }
  if (included->empty()) return;

  Envelope pp = Sign(MsgType::kPrePrepare, PrePrepare{view_, seq, *digest}.Body(id_), block);
  Slot& slot = log_[seq];
  slot.pre_prepare = pp.Stripped();
  slot.digest = *digest;
  slot.block = std::move(block);
  slot.validated = true;
  slot.accepted_ms = now_ms_;
  max_assigned_ = seq;
  PersistSlot(seq);
  Broadcast(pp);
  CheckPrepared(seq);
}

Status Replica::ValidateProposal(uint64_t seq, const Slot& slot) {
  if (slot.block.size() > config_.BlockBytesMax()) {
    return Status::InvalidArgument("block exceeds the size limit");
  }
  TRUSTMOE_ASSIGN_OR_RETURN(std::vector<Bytes> txs, app_->TxsOf(slot.block));
  if (txs.empty()) return Status::InvalidArgument("block holds no transactions");
  if (txs.size() > config_.block_txs_max) {
    return Status::InvalidArgument("block holds too many transactions");
  }
  std::unordered_set<TxId, DigestHash> ids;
  uint64_t bytes = 0;
  for (const Bytes& tx : txs) {
    if (tx.size() > config_.tx_bytes_max) return Status::InvalidArgument("transaction too large");
    bytes += tx.size();
    TxId id = ComputeTxId(tx);
    if (!ids.insert(id).second) return Status::InvalidArgument("transaction appears twice");
    if (app_->IsTxCommitted(id)) return Status::InvalidArgument("transaction already committed");
  }
  if (bytes > config_.block_bytes_max) {
    return Status::InvalidArgument("block transactions exceed block_bytes_max");
  }
  BlockContext ctx{seq, view_, config_.Primary(view_), now_ms_};
  return app_->ValidateBlock(ctx, slot.block);
}

void Replica::TryValidate(uint64_t seq) {
  if (seq != last_executed_ + 1 || !view_active_) return;
  auto it = log_.find(seq);
  if (it == log_.end()) return;
  Slot& slot = it->second;
  if (!slot.pre_prepare || slot.validated) return;
  if (!ValidateProposal(seq, slot).ok()) {
    Count(Reject::kInvalidBlock);
    slot.pre_prepare.reset();
    slot.block.clear();
    return;
  }
  slot.validated = true;
  PersistSlot(seq);
  if (config_.Primary(view_) != id_) {
    Envelope prepare = Sign(MsgType::kPrepare, Prepare{view_, seq, slot.digest}.Body(id_));
    slot.prepares[id_] = Vote{slot.digest, prepare};
    Broadcast(prepare);
  }
  CheckPrepared(seq);
}

// ---- Execution.

void Replica::TryExecute() {
  while (true) {
    auto it = log_.find(last_executed_ + 1);
    if (it == log_.end() || !it->second.commit_cert) break;
    Slot& slot = it->second;
    CommittedBlock block{it->first, slot.commit_cert->digest, slot.decided_block,
                         *slot.commit_cert};
    ExecuteCommitted(std::move(block), /*via_state_transfer=*/false);
  }
}

void Replica::ExecuteCommitted(CommittedBlock block, bool via_state_transfer) {
  TRUSTMOE_CHECK(block.seq == last_executed_ + 1);
  std::vector<TxId> ids;
  if (!block.block.empty()) {
    Result<std::vector<Bytes>> txs = app_->TxsOf(block.block);
    // A committed block was validated by at least one honest replica.
    TRUSTMOE_CHECK(txs.ok());
    for (const Bytes& tx : *txs) ids.push_back(ComputeTxId(tx));
  }
  Digest state = app_->ExecuteBlock(block);
  last_executed_ = block.seq;
  last_progress_ms_ = now_ms_;
  last_block_digest_ = block.digest;
  last_state_digest_ = state;
  for (const TxId& id : ids) RemoveFromPool(id);
  ++stats_.blocks_executed;
  if (via_state_transfer) {
    ++stats_.blocks_via_state_transfer;
  } else if (view_active_) {
    view_change_streak_ = 0;
  }
  const uint64_t seq = block.seq;
  const Digest digest = block.digest;
  out_.push_back(CommitAction{seq, digest, std::move(block.block), std::move(block.cert),
                              std::move(ids), via_state_transfer});
  if (seq % config_.checkpoint_interval == 0) OwnCheckpoint(seq, digest, state);
}

// After the executed height moved: validate the next proposal, propose, fetch more.
void Replica::AfterProgress() {
  TryExecute();
  TryValidate(last_executed_ + 1);
  MaybePropose();
  MaybeFetch();
}

// Forgets every vote of the view being left; prepared and commit certificates stay.
void Replica::ResetViewState() {
  for (auto it = log_.begin(); it != log_.end();) {
    Slot& slot = it->second;
    slot.pre_prepare.reset();
    slot.block.clear();
    slot.validated = false;
    slot.prepares.clear();
    slot.commits.clear();
    slot.prepared = false;
    if (!slot.cert && !slot.commit_cert) {
      it = log_.erase(it);
    } else {
      ++it;
    }
  }
  max_assigned_ = 0;
  new_view_.reset();
}

}  // namespace trustmoe::pbft
