#include "chain/verify/verify_worker.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <optional>

#include "chain/ledger/result.h"
#include "chain/ledger/update.h"
#include "common/log.h"

namespace trustmoe::verify {
namespace {

constexpr size_t kScanPage = 1000;

// "<prefix><edge hex>/<nonce hex>" -> (edge, nonce).
Result<std::pair<crypto::PublicKey, uint64_t>> ParsePendingKey(const std::string& key,
                                                               const std::string& prefix) {
  const std::string rest = key.substr(prefix.size());
  const size_t slash = rest.find('/');
  if (slash == std::string::npos) return Status::DataLoss("bad pending key " + key);
  TRUSTMOE_ASSIGN_OR_RETURN(crypto::PublicKey edge, crypto::PublicKey::FromHex(rest.substr(0, slash)));
  const std::string hex = rest.substr(slash + 1);
  if (hex.size() != 16) return Status::DataLoss("bad pending key " + key);
  return std::pair<crypto::PublicKey, uint64_t>{edge, std::strtoull(hex.c_str(), nullptr, 16)};
}

}  // namespace

Result<std::unique_ptr<VerificationWorker>> VerificationWorker::Start(
    validator::Node* node, crypto::PrivateKey key, ResultVerifier* verifier,
    WorkerOptions options, MetricsRegistry* metrics) {
  if (options.threads < 1 || options.threads > 256) {
    return Status::InvalidArgument("verify threads must be 1..256");
  }
  std::unique_ptr<VerificationWorker> w(
      new VerificationWorker(node, std::move(key), verifier, options, metrics));
  // Listening first: a block committed while the scan runs is queued too (duplicates are
  // dropped by result key).
  node->AddCommitListener([raw = w.get()](uint64_t height) { raw->OnCommit(height); });
  TRUSTMOE_RETURN_IF_ERROR(w->ScanPending());
  for (int i = 0; i < options.threads; ++i) w->threads_.emplace_back([raw = w.get()] { raw->Run(); });
  return w;
}

VerificationWorker::VerificationWorker(validator::Node* node, crypto::PrivateKey key,
                                       ResultVerifier* verifier, WorkerOptions options,
                                       MetricsRegistry* metrics)
    : node_(node),
      key_(std::move(key)),
      id_(node->id()),
      verifier_(verifier),
      options_(options),
      clock_(options.clock != nullptr ? options.clock : SystemClock::Get()) {
  accepted_ = metrics->GetCounter("trustmoe_validator_votes_total", "Votes submitted",
                                  {{"verdict", "accepted"}});
  rejected_ = metrics->GetCounter("trustmoe_validator_votes_total", "Votes submitted",
                                  {{"verdict", "rejected"}});
  retries_total_ = metrics->GetCounter("trustmoe_validator_verify_retries_total",
                                       "Checks that ended without a verdict and were retried");
  resubmits_ = metrics->GetCounter("trustmoe_validator_vote_resubmits_total",
                                   "Votes submitted again after resubmit_ms");
  check_seconds_ = metrics->GetHistogram("trustmoe_validator_verify_seconds",
                                         "Time to check one result (fetch and re-compute)",
                                         {0.001, 0.005, 0.02, 0.1, 0.5, 2, 10, 60});
  backlog_gauge_ = metrics->GetGauge("trustmoe_validator_verify_backlog",
                                     "Results waiting, being checked or with a vote in flight");
}

VerificationWorker::~VerificationWorker() { Stop(); }

void VerificationWorker::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stop_ && threads_.empty()) return;
    stop_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

size_t VerificationWorker::backlog() const {
  std::lock_guard lock(mu_);
  return known_.size() + submitted_.size();
}

Status VerificationWorker::ScanPending() {
  // Read without the lock: the commit listener (the consensus thread) must never wait for it.
  const ledger::LedgerStore& store = node_->store();
  std::vector<Item> found;
  for (const std::string prefix : {"pending/", "pending-update/"}) {
    std::string after;
    for (;;) {
      TRUSTMOE_ASSIGN_OR_RETURN(auto page, store.Scan(prefix, after, kScanPage));
      for (const auto& [key, value] : page) {
        TRUSTMOE_ASSIGN_OR_RETURN(auto parsed, ParsePendingKey(key, prefix));
        found.push_back(Item{parsed.first, parsed.second, 0});
      }
      if (page.size() < kScanPage) break;
      after = page.back().first;
    }
  }
  std::lock_guard lock(mu_);
  for (Item& item : found) Enqueue(std::move(item));
  if (!found.empty()) {
    TM_INFO("verification: {} pending result(s) and update(s) to check from the ledger",
            found.size());
  }
  return Status::Ok();
}

void VerificationWorker::OnCommit(uint64_t height) {
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
    heights_.push_back(height);
  }
  cv_.notify_one();
}

void VerificationWorker::Enqueue(Item item) {
  if (!known_.insert(ledger::ResultKey(item.edge, item.nonce)).second) return;
  queue_.push_back(std::move(item));
  backlog_gauge_->Set(static_cast<double>(known_.size() + submitted_.size()));
  cv_.notify_one();
}

void VerificationWorker::EnqueueBlock(uint64_t height) {
  auto block = node_->store().GetBlock(height);
  if (!block.ok()) {
    // Its results stay in pending/: the next start of this validator finds them.
    TM_ERROR("verification: cannot read block {}: {}; its results wait for a restart",
             height, block.status().ToString());
    return;
  }
  if (!block->block.has_value()) return;  // null block
  const uint32_t tx_max = node_->genesis().params.tx_bytes_max;
  std::lock_guard lock(mu_);
  for (const Bytes& bytes : block->block->txs) {
    auto tx = ledger::Tx::Decode(bytes, tx_max);
    if (!tx.ok() || (tx->type != static_cast<uint8_t>(ledger::TxType::kExpertResult) &&
                     tx->type != static_cast<uint8_t>(ledger::TxType::kExpertUpdated))) {
      continue;
    }
    Enqueue(Item{tx->signer, tx->nonce, 0});
  }
}

void VerificationWorker::Run() {
  std::unique_lock lock(mu_);
  while (true) {
    // Stopping: the check in progress (on another thread) finishes; nothing new starts.
    if (stop_) return;
    const int64_t now = clock_->MonotonicMs();
    // Due retries go back to the queue.
    while (!retries_.empty() && retries_.begin()->first <= now) {
      queue_.push_back(std::move(retries_.begin()->second));
      retries_.erase(retries_.begin());
    }
    if (!heights_.empty()) {
      uint64_t h = heights_.front();
      heights_.pop_front();
      lock.unlock();
      EnqueueBlock(h);
      lock.lock();
      continue;
    }
    if (now >= next_sweep_ms_) {
      next_sweep_ms_ = now + std::max<int64_t>(options_.resubmit_ms / 2, 100);
      lock.unlock();
      ResubmitDue();
      lock.lock();
      continue;
    }
    if (!queue_.empty()) {
      Item item = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      Check(std::move(item));
      lock.lock();
      continue;
    }
    int64_t wake = next_sweep_ms_;
    if (!retries_.empty()) wake = std::min(wake, retries_.begin()->first);
    cv_.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(wake - now, 1)));
  }
}

void VerificationWorker::Check(Item item) {
  const std::string result_key = ledger::ResultKey(item.edge, item.nonce);
  const std::string vote_key = ledger::VoteKey(item.edge, item.nonce, id_);
  const ledger::LedgerStore& store = node_->store();
  auto done = [&] {
    std::lock_guard lock(mu_);
    known_.erase(result_key);
    backlog_gauge_->Set(static_cast<double>(known_.size() + submitted_.size()));
  };
  auto retry = [&](const Status& why) {
    retries_total_->Inc();
    const int64_t delay = std::min<int64_t>(
        options_.retry_max_ms, options_.retry_min_ms << std::min(item.attempts, 16));
    if (item.attempts == 0 || item.attempts % 8 == 7) {
      TM_WARN("verification of {}: no verdict yet ({}); trying again in {} ms", result_key,
              why.ToString(), delay);
    }
    ++item.attempts;
    std::lock_guard lock(mu_);
    if (stop_) {
      known_.erase(result_key);
      return;
    }
    retries_.emplace(clock_->MonotonicMs() + delay, std::move(item));
  };

  auto record_bytes = store.Get(result_key);
  auto voted = store.Get(vote_key);
  if (!record_bytes.ok() || !voted.ok()) {
    retry(!record_bytes.ok() ? record_bytes.status() : voted.status());
    return;
  }
  if (voted->has_value()) return done();
  uint64_t ordered_at = 0;
  std::string job;
  uint64_t step = 0;
  std::optional<ledger::ResultRecord> result;
  std::optional<ledger::UpdateRecord> update;
  if (record_bytes->has_value()) {
    auto record = ledger::ResultRecord::Decode(**record_bytes);
    if (!record.ok()) {
      TM_ERROR("verification: {} does not decode: {}", result_key, record.status().ToString());
      return done();
    }
    if (record->status != ledger::ResultStatus::kPending) return done();
    ordered_at = record->height;
    job = record->body.job;
    step = record->body.step;
    result = std::move(record).value();
  } else {
    // Not a result: an expert update of that edge and nonce, or nothing (refused at ordering).
    const std::string update_key = ledger::UpdateKey(item.edge, item.nonce);
    auto update_bytes = store.Get(update_key);
    if (!update_bytes.ok()) {
      retry(update_bytes.status());
      return;
    }
    if (!update_bytes->has_value()) return done();
    auto record = ledger::UpdateRecord::Decode(**update_bytes);
    if (!record.ok()) {
      TM_ERROR("verification: {} does not decode: {}", update_key, record.status().ToString());
      return done();
    }
    if (record->status != ledger::ResultStatus::kPending) return done();
    ordered_at = record->height;
    job = record->body.job;
    step = record->body.step;
    update = std::move(record).value();
  }
  auto block = store.GetBlock(ordered_at);
  if (!block.ok()) {
    retry(block.status());
    return;
  }

  const int64_t ordered_time = block->block.has_value() ? block->block->header.time_unix_ms : 0;
  const auto start = std::chrono::steady_clock::now();
  Result<Outcome> outcome = Status::Internal("unset");
  if (result.has_value()) {
    outcome = verifier_->Verify(*result, block->digest, ordered_time);
  } else {
    std::vector<ledger::ResultRecord> sources;
    for (uint64_t nonce : update->body.sources) {
      auto bytes = store.Get(ledger::ResultKey(item.edge, nonce));
      if (!bytes.ok() || !bytes->has_value()) {
        retry(bytes.ok() ? Status::DataLoss("source result missing") : bytes.status());
        return;
      }
      auto source = ledger::ResultRecord::Decode(**bytes);
      if (!source.ok()) {
        retry(source.status());
        return;
      }
      sources.push_back(std::move(source).value());
    }
    outcome = verifier_->VerifyUpdate(*update, block->digest, sources, ordered_time);
  }
  check_seconds_->Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  if (!outcome.ok()) {
    retry(outcome.status());
    return;
  }
  if (outcome->verdict == ledger::Verdict::kAccepted) {
    accepted_->Inc();
    TM_DEBUG("verification of {}: accepted ({} rows, max error {:.3g})", result_key,
             outcome->rows_checked, outcome->max_error);
  } else {
    rejected_->Inc();
    TM_WARN("verification of {} {} (edge {}..., job '{}' step {}): REJECTED, {}",
            update.has_value() ? "update" : "result", result_key, item.edge.Hex().substr(0, 16),
            job, step, ledger::VerdictReasonText(outcome->reason, outcome->detail));
  }
  ledger::Tx tx = ledger::MakeTx(node_->genesis().chain_id, ledger::TxType::kVote, key_,
                                 ledger::FreshNonce(), outcome->Vote(item.edge, item.nonce).Encode());
  Submit(vote_key, tx.Encode());
  done();
}

void VerificationWorker::Submit(const std::string& vote_key, Bytes tx) {
  {
    std::lock_guard lock(mu_);
    submitted_[vote_key] = SubmittedVote{tx, clock_->MonotonicMs()};
  }
  node_->SubmitTx(std::move(tx), /*wait=*/false, 0, [vote_key](validator::SubmitOutcome out) {
    if (!out.status.ok() && out.status.code() != StatusCode::kAlreadyExists) {
      TM_WARN("vote {} not admitted ({}); it is submitted again later", vote_key,
              out.status.ToString());
    }
  });
}

void VerificationWorker::ResubmitDue() {
  std::vector<std::pair<std::string, Bytes>> due;
  std::vector<std::string> keys;
  {
    std::lock_guard lock(mu_);
    for (const auto& [key, vote] : submitted_) keys.push_back(key);
  }
  const int64_t now = clock_->MonotonicMs();
  for (const std::string& key : keys) {
    auto committed = node_->store().Get(key);
    std::lock_guard lock(mu_);
    auto it = submitted_.find(key);
    if (it == submitted_.end()) continue;
    if (committed.ok() && committed->has_value()) {
      submitted_.erase(it);
      continue;
    }
    if (now - it->second.submitted_ms >= options_.resubmit_ms) {
      it->second.submitted_ms = now;
      due.emplace_back(key, it->second.tx);
    }
  }
  for (auto& [key, tx] : due) {
    resubmits_->Inc();
    node_->SubmitTx(std::move(tx), false, 0, [](validator::SubmitOutcome) {});
  }
  std::lock_guard lock(mu_);
  backlog_gauge_->Set(static_cast<double>(known_.size() + submitted_.size()));
}

}  // namespace trustmoe::verify
