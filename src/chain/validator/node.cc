#include "chain/validator/node.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <variant>

#include "common/check.h"
#include "common/files.h"
#include "common/log.h"

namespace trustmoe::validator {
namespace {

// The consensus thread wakes at least this often (heartbeat for /healthz and the watchdog).
constexpr int64_t kWakeMaxMs = 250;

// Labels of pbft::Reject reasons for /metrics: RejectName's text with '_' for '-' and ' '.
std::string RejectLabel(pbft::Reject reason) {
  std::string label(pbft::RejectName(reason));
  for (char& c : label) {
    if (c == '-' || c == ' ') c = '_';
  }
  return label;
}

}  // namespace

Result<std::unique_ptr<Node>> Node::Create(NodeOptions options) {
  if (options.metrics == nullptr) return Status::InvalidArgument("node needs a metrics registry");
  if (options.data_dir.empty()) return Status::InvalidArgument("node needs a data_dir");
  TRUSTMOE_RETURN_IF_ERROR(options.genesis.Validate().WithContext("genesis"));
  int id = options.genesis.ValidatorId(options.key.public_key());
  if (id < 0) {
    return Status::FailedPrecondition("identity key " + options.key.public_key().Hex() +
                                      " is not a validator of chain '" + options.genesis.chain_id +
                                      "' (see its genesis file)");
  }
  std::unique_ptr<Node> node(new Node(std::move(options), static_cast<uint32_t>(id)));
  TRUSTMOE_RETURN_IF_ERROR(node->pbft_config_.Validate().WithContext("replica config"));

  TRUSTMOE_RETURN_IF_ERROR(MakeDirs(node->options_.data_dir, 0700));
  ledger::LedgerOptions ledger_options;
  ledger_options.path = node->options_.data_dir + "/ledger";
  ledger_options.validators = node->genesis_.Validators();
  ledger_options.limits = node->genesis_.Limits();
  ledger_options.genesis_digest = node->genesis_digest_;
  TRUSTMOE_ASSIGN_OR_RETURN(node->store_, ledger::LedgerStore::Open(ledger_options));
  TRUSTMOE_ASSIGN_OR_RETURN(
      node->app_,
      ledger::LedgerApp::Create(node->store_.get(), node->genesis_, ledger::TxRegistry::Default()));
  TRUSTMOE_ASSIGN_OR_RETURN(pbft::DurableState durable, node->store_->LoadDurable());
  TRUSTMOE_ASSIGN_OR_RETURN(node->replica_,
                            pbft::Replica::Create(node->pbft_config_, node->id_, node->options_.key,
                                                  node->app_.get(), durable));
  node->Publish();
  return node;
}

Node::Node(NodeOptions options, uint32_t id)
    : id_(id),
      options_(std::move(options)),
      genesis_(options_.genesis),
      genesis_digest_(genesis_.Hash()),
      pbft_config_(genesis_.PbftConfig()),
      clock_(options_.clock ? options_.clock : SystemClock::Get()) {
  pbft_config_.pool_txs_max = options_.pool_txs_max;
  pbft_config_.pool_bytes_max = options_.pool_bytes_max;
  pbft_config_.tx_pending_max_ms = options_.tx_pending_max_ms;
  InitMetrics();
}

void Node::InitMetrics() {
  MetricsRegistry* m = options_.metrics;
  height_gauge_ = m->GetGauge("trustmoe_validator_height", "Height of the last executed block");
  view_gauge_ = m->GetGauge("trustmoe_validator_view", "Current PBFT view");
  pool_gauge_ = m->GetGauge("trustmoe_validator_pool_txs", "Transactions in the pending pool");
  queue_gauge_ =
      m->GetGauge("trustmoe_validator_event_queue", "Events waiting for the consensus thread");
  waiters_gauge_ =
      m->GetGauge("trustmoe_validator_submit_waiters", "SubmitTx calls waiting for their commit");
  view_changes_ =
      m->GetCounter("trustmoe_validator_view_changes_total", "View changes this replica started");
  new_views_ = m->GetCounter("trustmoe_validator_new_views_total", "New views entered");
  committed_txs_ = m->GetCounter("trustmoe_validator_committed_txs_total",
                                 "Transactions in executed blocks (rate: tx/s)");
  blocks_ = m->GetCounter("trustmoe_validator_blocks_total", "Blocks executed by this node");
  events_dropped_ = m->GetCounter("trustmoe_validator_peer_messages_dropped_total",
                                  "Peer messages dropped because the event queue was full");
  commit_latency_ = m->GetHistogram("trustmoe_validator_commit_latency_seconds",
                                    "From SubmitTx on this node to the commit of the transaction",
                                    {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30});
  step_events_ = m->GetHistogram("trustmoe_validator_step_events",
                                 "Events handled in one step of the consensus thread",
                                 {1, 2, 4, 8, 16, 64, 256, 1024, 4096});
  for (size_t i = 0; i < pbft::kRejectCount; ++i) {
    rejected_.push_back(m->GetCounter("trustmoe_validator_rejected_messages_total",
                                      "Messages the replica refused, by reason",
                                      {{"reason", RejectLabel(static_cast<pbft::Reject>(i))}}));
  }
}

Node::~Node() { Stop(); }

void Node::AddCommitListener(std::function<void(uint64_t)> listener) {
  std::lock_guard lock(listeners_mu_);
  commit_listeners_.push_back(std::move(listener));
}

void Node::Start(PeerSink* peers) {
  std::lock_guard lock(mu_);
  TRUSTMOE_CHECK(!started_);
  started_ = true;
  peers_ = peers;
  if (stopping_) return;
  thread_ = std::thread([this] { Run(); });
}

void Node::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  FailEverything();
}

void Node::Preverify(ByteSpan wire) {
  if (app_ == nullptr) return;
  auto envelope = pbft::DecodeEnvelope(wire, pbft::Limits::Of(pbft_config_));
  if (!envelope.ok()) return;  // the consensus thread counts it
  if (envelope->type == pbft::MsgType::kRequest) {
    auto request = pbft::Request::Parse(*envelope, pbft::Limits::Of(pbft_config_));
    if (!request.ok()) return;
    for (const Bytes& tx : request->txs) app_->PreverifyTx(tx);
  } else if (envelope->type == pbft::MsgType::kPrePrepare && !envelope->payload.empty()) {
    app_->PreverifyBlock(envelope->payload);
  }
}

bool Node::DeliverPeerMessage(Bytes wire) {
  // Transaction signatures are checked here, on the receiving gRPC thread, so that the
  // consensus thread finds them in the signature cache (docs/validator.md, "Threads").
  Preverify(wire);
  {
    std::lock_guard lock(mu_);
    if (!stopping_ && events_.size() < options_.event_queue_max &&
        events_bytes_ + wire.size() <= options_.event_queue_bytes_max) {
      events_bytes_ += wire.size();
      Event event;
      event.kind = Event::Kind::kPeer;
      event.bytes = std::move(wire);
      events_.push_back(std::move(event));
      cv_.notify_one();
      return true;
    }
  }
  events_dropped_->Inc();
  return false;
}

void Node::SubmitTx(Bytes tx, bool wait, int64_t timeout_ms, SubmitCallback done) {
  if (app_ != nullptr) app_->PreverifyTx(tx);
  Status refused;
  {
    std::lock_guard lock(mu_);
    if (stopping_) {
      refused = Status::Unavailable("validator is shutting down; submit to another validator");
    } else if (events_.size() >= options_.event_queue_max ||
               events_bytes_ + tx.size() > options_.event_queue_bytes_max) {
      refused = Status::ResourceExhausted("validator's event queue is full (" +
                                          std::to_string(events_.size()) + " events); retry later");
    } else {
      Event event;
      event.kind = Event::Kind::kSubmit;
      events_bytes_ += tx.size();
      event.bytes = std::move(tx);
      event.wait = wait;
      event.submit_mono_ms = clock_->MonotonicMs();
      event.deadline_mono_ms = event.submit_mono_ms + std::max<int64_t>(timeout_ms, 0);
      event.done = std::move(done);
      events_.push_back(std::move(event));
      cv_.notify_one();
      return;
    }
  }
  SubmitOutcome outcome;
  outcome.status = refused;
  outcome.tx_id = pbft::ComputeTxId(tx);
  done(std::move(outcome));
}

NodeSnapshot Node::Snapshot() const {
  NodeSnapshot snapshot;
  {
    std::lock_guard lock(snapshot_mu_);
    snapshot = snapshot_;
  }
  std::lock_guard lock(mu_);
  snapshot.queued_events = events_.size();
  snapshot.running = started_ && !stopping_;
  return snapshot;
}

void Node::Run() {
  {
    pbft::Actions actions = replica_->Start(clock_->NowUnixMs());
    std::vector<Reply> replies;
    CarryOut(&actions, &replies);
    Publish();
  }
  std::vector<Event> batch;
  while (NextEvents(&batch)) Step(&batch);
}

int64_t Node::WaitMs() const {
  int64_t wait = kWakeMaxMs;
  if (timer_deadline_ms_ >= 0) {
    wait = std::min(wait, timer_deadline_ms_ - clock_->NowUnixMs());
  }
  if (!waiter_deadlines_.empty()) {
    wait = std::min(wait, waiter_deadlines_.begin()->first - clock_->MonotonicMs());
  }
  return std::max<int64_t>(wait, 0);
}

bool Node::NextEvents(std::vector<Event>* batch) {
  batch->clear();
  int64_t wait_ms = WaitMs();
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(wait_ms),
               [this] { return stopping_ || !events_.empty(); });
  if (stopping_) return false;
  while (!events_.empty() && batch->size() < options_.step_events_max) {
    events_bytes_ -= events_.front().bytes.size();
    batch->push_back(std::move(events_.front()));
    events_.pop_front();
  }
  return true;
}

void Node::Step(std::vector<Event>* batch) {
  pbft::Actions actions;
  std::vector<Reply> replies;
  auto append = [&actions](pbft::Actions more) {
    for (pbft::Action& a : more) actions.push_back(std::move(a));
  };
  for (Event& event : *batch) {
    int64_t now_ms = clock_->NowUnixMs();
    if (event.kind == Event::Kind::kPeer) {
      append(replica_->OnMessage(event.bytes, now_ms));
    } else {
      HandleSubmit(&event, now_ms, &actions, &replies);
    }
  }
  if (!batch->empty()) step_events_->Observe(static_cast<double>(batch->size()));
  int64_t now_ms = clock_->NowUnixMs();
  if (timer_deadline_ms_ >= 0 && now_ms >= timer_deadline_ms_) {
    timer_deadline_ms_ = -1;
    append(replica_->OnTick(now_ms));
  }
  CarryOut(&actions, &replies);
  ExpireWaiters(&replies);
  ForgetOldSubmissions();
  Publish();
  for (auto& [done, outcome] : replies) done(std::move(outcome));
}

void Node::HandleSubmit(Event* event, int64_t now_ms, pbft::Actions* actions,
                        std::vector<Reply>* replies) {
  SubmitOutcome outcome;
  outcome.tx_id = pbft::ComputeTxId(event->bytes);
  if (event->wait && waiter_count_ >= options_.submit_waiters_max) {
    outcome.status =
        Status::ResourceExhausted(std::to_string(waiter_count_) +
                                  " SubmitTx calls already wait for their commit on this "
                                  "validator; retry later or submit with no_wait");
    replies->emplace_back(std::move(event->done), std::move(outcome));
    return;
  }
  // Always through the replica, also for a transaction already pending: a client's retry is
  // what makes the replica relay it again (its first relay may have been lost).
  Status admitted = replica_->SubmitTx(std::move(event->bytes), now_ms, actions);
  // A waiting call for a transaction that is pending here (submitted before, with or without
  // wait, or relayed by a peer) waits for its commit like the first caller; one that waits
  // here already and committed earlier in this step is answered by this step's CommitAction.
  // A transaction committed before this step stays ALREADY_EXISTS: the client reads it (GetTx).
  const bool wait_for_pending =
      admitted.code() == StatusCode::kAlreadyExists && event->wait &&
      (replica_->IsPending(outcome.tx_id) || waiters_.count(outcome.tx_id) != 0);
  if (!admitted.ok() && !wait_for_pending) {
    outcome.status = admitted;
    replies->emplace_back(std::move(event->done), std::move(outcome));
    return;
  }
  if (!event->wait) {
    if (submitted_.size() < options_.pool_txs_max &&
        submitted_.emplace(outcome.tx_id, event->submit_mono_ms).second) {
      submitted_order_.emplace_back(event->submit_mono_ms, outcome.tx_id);
    }
    replies->emplace_back(std::move(event->done), std::move(outcome));
    return;
  }
  uint64_t serial = next_serial_++;
  waiters_[outcome.tx_id].push_back({serial, event->submit_mono_ms, std::move(event->done)});
  waiter_deadlines_.emplace(event->deadline_mono_ms, std::make_pair(outcome.tx_id, serial));
  ++waiter_count_;
}

void Node::CarryOut(pbft::Actions* actions, std::vector<Reply>* replies) {
  // All writes of the step first, as one synced batch: every send below may depend on them.
  std::vector<pbft::DurableWrite> writes;
  for (pbft::Action& action : *actions) {
    if (auto* persist = std::get_if<pbft::PersistAction>(&action)) {
      for (pbft::DurableWrite& w : persist->writes) writes.push_back(std::move(w));
    }
  }
  if (!writes.empty()) {
    Status s = store_->WriteDurable(writes);
    if (!s.ok()) {
      // A replica that cannot persist its votes must not send them.
      TM_ERROR("cannot persist consensus state: {}; stopping", s.ToString());
      TRUSTMOE_CHECK(s.ok());
    }
  }
  for (pbft::Action& action : *actions) {
    if (auto* send = std::get_if<pbft::SendAction>(&action)) {
      if (peers_ == nullptr) continue;
      auto bytes = std::make_shared<const Bytes>(std::move(send->bytes));
      if (send->to == pbft::kBroadcast) {
        for (uint32_t peer = 0; peer < pbft_config_.n(); ++peer) {
          if (peer != id_) peers_->Send(peer, bytes);
        }
      } else if (send->to != id_ && send->to < pbft_config_.n()) {
        peers_->Send(send->to, bytes);
      }
    } else if (auto* commit = std::get_if<pbft::CommitAction>(&action)) {
      OnCommit(*commit, replies);
    } else if (auto* timer = std::get_if<pbft::TimerAction>(&action)) {
      timer_deadline_ms_ = timer->deadline_ms;
    }
  }
}

void Node::OnCommit(const pbft::CommitAction& commit, std::vector<Reply>* replies) {
  blocks_->Inc();
  committed_txs_->Inc(static_cast<double>(commit.tx_ids.size()));
  int64_t now_mono = clock_->MonotonicMs();
  for (const pbft::TxId& id : commit.tx_ids) {
    if (auto it = submitted_.find(id); it != submitted_.end()) {
      commit_latency_->Observe(static_cast<double>(now_mono - it->second) / 1000.0);
      submitted_.erase(it);
    }
    auto it = waiters_.find(id);
    if (it == waiters_.end()) continue;
    auto proof = store_->GetTx(id);
    for (Waiter& waiter : it->second) {
      commit_latency_->Observe(static_cast<double>(now_mono - waiter.submit_mono_ms) / 1000.0);
      SubmitOutcome outcome;
      outcome.tx_id = id;
      if (proof.ok()) {
        outcome.committed = *proof;
      } else {
        outcome.status = proof.status().WithContext(
            "committed at height " + std::to_string(commit.seq) + " but its proof cannot be read");
      }
      replies->emplace_back(std::move(waiter.done), std::move(outcome));
      --waiter_count_;
    }
    waiters_.erase(it);  // their deadline entries are skipped when they come due
  }
  std::lock_guard lock(listeners_mu_);
  for (const auto& listener : commit_listeners_) listener(commit.seq);
}

void Node::ExpireWaiters(std::vector<Reply>* replies) {
  int64_t now_mono = clock_->MonotonicMs();
  while (!waiter_deadlines_.empty() && waiter_deadlines_.begin()->first <= now_mono) {
    auto [id, serial] = waiter_deadlines_.begin()->second;
    waiter_deadlines_.erase(waiter_deadlines_.begin());
    auto it = waiters_.find(id);
    if (it == waiters_.end()) continue;
    auto& list = it->second;
    auto w = std::find_if(list.begin(), list.end(),
                          [serial = serial](const Waiter& x) { return x.serial == serial; });
    if (w == list.end()) continue;
    SubmitOutcome outcome;
    outcome.tx_id = id;
    outcome.status = Status::DeadlineExceeded("transaction " + ToHex(id) +
                                              " not committed within the wait; it may still commit "
                                              "(GetTx tells)");
    replies->emplace_back(std::move(w->done), std::move(outcome));
    list.erase(w);
    --waiter_count_;
    if (list.empty()) waiters_.erase(it);
  }
}

void Node::ForgetOldSubmissions() {
  int64_t horizon = clock_->MonotonicMs() - options_.tx_pending_max_ms;
  while (!submitted_order_.empty() &&
         (submitted_order_.front().first < horizon || submitted_.empty())) {
    auto it = submitted_.find(submitted_order_.front().second);
    if (it != submitted_.end() && it->second == submitted_order_.front().first) {
      submitted_.erase(it);
    }
    submitted_order_.pop_front();
  }
  // Entries committed long ago stay in the order list until they age out; bound it too.
  while (submitted_order_.size() > 2 * static_cast<size_t>(options_.pool_txs_max)) {
    submitted_order_.pop_front();
  }
}

void Node::Publish() {
  const pbft::Stats& stats = replica_->stats();
  for (size_t i = 0; i < pbft::kRejectCount; ++i) {
    uint64_t delta = stats.rejected[i] - published_stats_.rejected[i];
    if (delta > 0) rejected_[i]->Inc(static_cast<double>(delta));
  }
  if (stats.view_changes_started > published_stats_.view_changes_started) {
    view_changes_->Inc(
        static_cast<double>(stats.view_changes_started - published_stats_.view_changes_started));
  }
  if (stats.new_views_entered > published_stats_.new_views_entered) {
    new_views_->Inc(
        static_cast<double>(stats.new_views_entered - published_stats_.new_views_entered));
  }
  LogRejections(stats);
  if (stats.view_changes_started > published_stats_.view_changes_started) {
    TM_WARN("view change: asking for view {} (no progress from primary {} in time)",
            replica_->view(), pbft_config_.Primary(replica_->view() - 1));
  }
  if (stats.new_views_entered > published_stats_.new_views_entered) {
    TM_INFO("entered view {}; the primary is validator {}", replica_->view(),
            pbft_config_.Primary(replica_->view()));
  }
  published_stats_ = stats;
  uint64_t height = store_->Head().height;
  height_gauge_->Set(static_cast<double>(height));
  view_gauge_->Set(static_cast<double>(replica_->view()));
  pool_gauge_->Set(static_cast<double>(replica_->pool_size()));
  waiters_gauge_->Set(static_cast<double>(waiter_count_));
  view_.store(replica_->view());
  size_t queued = 0;
  {
    std::lock_guard lock(mu_);
    queued = events_.size();
  }
  queue_gauge_->Set(static_cast<double>(queued));
  std::lock_guard lock(snapshot_mu_);
  snapshot_.height = height;
  snapshot_.view = replica_->view();
  snapshot_.view_active = replica_->view_active();
  snapshot_.primary = replica_->IsPrimary();
  snapshot_.pool_size = replica_->pool_size();
  snapshot_.waiters = waiter_count_;
  snapshot_.last_step_mono_ms = clock_->MonotonicMs();
  snapshot_.stats = stats;
}

// Refused peer messages are counted at once (metrics) and logged at most every 10 s, so that a
// misbehaving peer is visible in the log without flooding it. Duplicates, stale messages and messages of another view
// are the normal cost of retransmission and only logged at debug level.
void Node::LogRejections(const pbft::Stats& stats) {
  for (size_t i = 0; i < pbft::kRejectCount; ++i) {
    unlogged_rejections_[i] += stats.rejected[i] - published_stats_.rejected[i];
  }
  const int64_t now = clock_->MonotonicMs();
  for (bool noise : {false, true}) {
    int64_t& last = noise ? last_noise_log_ms_ : last_rejection_log_ms_;
    if (now - last < 10000) continue;
    std::string list;
    for (size_t i = 0; i < pbft::kRejectCount; ++i) {
      const auto reason = static_cast<pbft::Reject>(i);
      const bool benign = reason == pbft::Reject::kDuplicate ||
                          reason == pbft::Reject::kStale || reason == pbft::Reject::kWrongView;
      if (benign != noise || unlogged_rejections_[i] == 0) continue;
      list += (list.empty() ? "" : ", ") + std::string(pbft::RejectName(reason)) + " " +
              std::to_string(unlogged_rejections_[i]);
      unlogged_rejections_[i] = 0;
    }
    if (list.empty()) continue;
    last = now;
    if (noise) {
      TM_DEBUG("dropped peer messages (retransmissions, other views): {}", list);
    } else {
      TM_WARN("refused peer messages since the last report: {} "
              "(trustmoe_validator_rejected_messages_total has them by reason)", list);
    }
  }
}

void Node::FailEverything() {
  std::deque<Event> left;
  {
    std::lock_guard lock(mu_);
    left.swap(events_);
    events_bytes_ = 0;
  }
  const Status unavailable =
      Status::Unavailable("validator is shutting down; submit to another validator");
  for (Event& event : left) {
    if (event.kind != Event::Kind::kSubmit) continue;
    SubmitOutcome outcome;
    outcome.tx_id = pbft::ComputeTxId(event.bytes);
    outcome.status = unavailable;
    event.done(std::move(outcome));
  }
  for (auto& [id, list] : waiters_) {
    for (Waiter& waiter : list) {
      SubmitOutcome outcome;
      outcome.tx_id = id;
      outcome.status = unavailable;
      waiter.done(std::move(outcome));
    }
  }
  waiters_.clear();
  waiter_deadlines_.clear();
  waiter_count_ = 0;
}

}  // namespace trustmoe::validator
