#include "chain/validator/chain_service.h"

#include <algorithm>
#include <deque>
#include <exception>

#include "chain/validator/verdict_feed.h"
#include "common/log.h"
#include "net/transport.h"

namespace trustmoe::validator {
namespace {

constexpr size_t kKeyTextBytesMax = 512;  // start_after and prefix fields

std::string ToString(const Bytes& b) { return std::string(b.begin(), b.end()); }
template <size_t N>
std::string ToString(const std::array<uint8_t, N>& a) {
  return std::string(a.begin(), a.end());
}

Status CheckKeyText(const std::string& value, const char* field) {
  if (value.size() > kKeyTextBytesMax) {
    return Status::InvalidArgument(std::string("field ") + field + " is " +
                                   std::to_string(value.size()) + " bytes; at most " +
                                   std::to_string(kKeyTextBytesMax));
  }
  return Status::Ok();
}

}  // namespace

void FillTxInfo(const ledger::TxWithProof& tx, v1::TxInfo* info) {
  info->set_tx(ToString(tx.tx));
  info->set_height(tx.proof.height);
  info->set_proof(ToString(tx.proof.Encode()));
  info->set_header(ToString(tx.header.Encode()));
  info->set_certificate(ToString(tx.cert.Encode()));
}

// ---- WatchBlocks ----

// One WatchBlocks stream: writes block next_ when it is committed and no write is in flight.
// Owned by gRPC until OnDone, and by callers holding a reference (ChainService::OnCommit and
// Shutdown); deleted when both let go.
class ChainService::WatchReactor final : public grpc::ServerWriteReactor<v1::BlockInfo>,
                                         public ChainService::Watch {
 public:
  WatchReactor(ChainService* service, uint64_t from_height)
      : service_(service), next_(std::max<uint64_t>(from_height, 1)) {}

  void Begin() {
    Status refusal;
    if (!service_->RegisterWatch(this, "WatchBlocks", &refusal)) {
      std::lock_guard lock(mu_);
      FinishLocked(net::ToGrpcStatus(refusal));
      return;
    }
    Pump();
  }

  // A block was committed, or shutdown asks the stream to end.
  void Pump() override {
    std::lock_guard lock(mu_);
    PumpLocked();
  }
  void End() override {
    std::lock_guard lock(mu_);
    end_requested_ = true;
    PumpLocked();
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    writing_ = false;
    if (!ok) {
      FinishLocked(grpc::Status::CANCELLED);
      return;
    }
    PumpLocked();
  }

  void OnCancel() override {
    std::lock_guard lock(mu_);
    end_requested_ = true;
    if (!writing_) FinishLocked(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    service_->UnregisterWatch(this);
    Unref();
  }

 private:
  void PumpLocked() {
    if (finished_ || writing_) return;
    if (end_requested_) {
      FinishLocked(grpc::Status::OK);
      return;
    }
    const ledger::LedgerStore& store = service_->node_->store();
    if (next_ > store.Head().height) return;  // woken by the next commit
    Result<ledger::StoredBlock> block = Status::Internal("unread");
    try {
      block = store.GetBlock(next_);
    } catch (const std::exception& e) {
      block = Status::Internal(std::string("reading the ledger: ") + e.what());
    }
    if (!block.ok()) {
      service_->Refused(block.status(), "WatchBlocks");
      FinishLocked(net::ToGrpcStatus(block.status()));
      return;
    }
    message_.Clear();
    message_.set_height(block->height);
    message_.set_digest(ToString(block->digest));
    if (block->block) message_.set_block(ToString(block->block->Encode()));
    message_.set_certificate(ToString(block->cert.Encode()));
    ++next_;
    writing_ = true;
    StartWrite(&message_);
  }

  void FinishLocked(grpc::Status status) {
    if (finished_) return;
    finished_ = true;
    Finish(std::move(status));
  }

  ChainService* service_;
  std::mutex mu_;
  uint64_t next_;
  bool writing_ = false;
  bool finished_ = false;
  bool end_requested_ = false;
  v1::BlockInfo message_;
};

// ---- WatchVerdicts ----

// One WatchVerdicts stream. It walks the blocks from the filter's from_height on; for each it
// lists the verdicts the block finalized (VerdictsOfBlock) and writes them one at a time.
// Ledger reads happen outside the lock, by one caller at a time (`reading_`): a commit that
// arrives meanwhile returns at once and the reader looks at the new head before it stops, so
// the consensus thread never waits for a long replay. Owned like WatchReactor.
class ChainService::VerdictReactor final : public grpc::ServerWriteReactor<v1::VerdictInfo>,
                                           public ChainService::Watch {
 public:
  VerdictReactor(ChainService* service, VerdictFilter filter)
      : service_(service), filter_(std::move(filter)), next_height_(filter_.from_height) {}

  void Begin() {
    Status refusal;
    if (!service_->RegisterWatch(this, "WatchVerdicts", &refusal)) {
      std::lock_guard lock(mu_);
      FinishLocked(net::ToGrpcStatus(refusal));
      return;
    }
    // The replay runs in the service's pump thread, not in this gRPC handler.
    service_->RequestPump();
  }

  void Pump() override {
    Ref();  // a reader outside the lock keeps the reactor alive
    {
      std::unique_lock lock(mu_);
      PumpLocked(lock);
    }
    Unref();
  }
  void End() override {
    {
      std::lock_guard lock(mu_);
      end_requested_ = true;
    }
    Pump();
  }

  void OnWriteDone(bool ok) override {
    {
      std::lock_guard lock(mu_);
      writing_ = false;
      if (!ok) {
        FinishLocked(grpc::Status::CANCELLED);
        return;
      }
    }
    Pump();
  }

  void OnCancel() override {
    std::lock_guard lock(mu_);
    end_requested_ = true;
    cancelled_ = true;
    if (!writing_ && !reading_) FinishLocked(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    service_->UnregisterWatch(this);
    Unref();
  }

 private:
  // Writes the next verdict, or reads until there is one, the head is reached or the stream
  // ends. Called with `lock` held; releases it around ledger reads.
  void PumpLocked(std::unique_lock<std::mutex>& lock) {
    // The reader in progress looks at the head and end_requested_ again before it stops.
    if (reading_) return;
    // A replay that finds nothing for many blocks yields after this many, and goes on in the
    // service's pump thread, so that one stream cannot hold a thread for a whole chain.
    constexpr int kBlocksPerPump = 64;
    int blocks = 0;
    while (!finished_ && !writing_) {
      if (end_requested_) {
        if (cancelled_) {
          FinishLocked(grpc::Status::CANCELLED);
        } else if (filter_.to_height != 0) {
          // A bounded stream cut short must not look complete: the client resumes elsewhere.
          FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                    "validator shutting down before block " +
                                        std::to_string(filter_.to_height) +
                                        ": resume from block " + std::to_string(next_height_)));
        } else {
          FinishLocked(grpc::Status::OK);
        }
        return;
      }
      Status read;
      if (!pending_.empty()) {
        ResultId id = pending_.front();
        read = ReadOutsideLock(lock, [&] {
          return ReadVerdictInfo(service_->node_->store(), id,
                                 service_->node_->genesis().validators.size(), &message_);
        });
        if (!read.ok()) return FailLocked(read);
        pending_.pop_front();
        writing_ = true;
        StartWrite(&message_);
        return;
      }
      if (filter_.to_height != 0 && next_height_ > filter_.to_height) {
        FinishLocked(grpc::Status::OK);
        return;
      }
      if (next_height_ > service_->node_->store().Head().height) return;  // woken by a commit
      if (++blocks > kBlocksPerPump) {
        service_->RequestPump();
        return;
      }
      std::vector<ResultId> found;
      const uint64_t height = next_height_;
      read = ReadOutsideLock(lock, [&]() -> Status {
        TRUSTMOE_ASSIGN_OR_RETURN(found,
                                  VerdictsOfBlock(service_->node_->store(), height, filter_));
        return Status::Ok();
      });
      if (!read.ok()) return FailLocked(read);
      pending_.assign(found.begin(), found.end());
      ++next_height_;
    }
  }

  // Runs `read` with the lock released and reading_ set; exceptions become Internal.
  template <typename Fn>
  Status ReadOutsideLock(std::unique_lock<std::mutex>& lock, Fn read) {
    reading_ = true;
    lock.unlock();
    Status status;
    try {
      status = read();
    } catch (const std::exception& e) {
      status = Status::Internal(std::string("reading the ledger: ") + e.what());
    }
    lock.lock();
    reading_ = false;
    return status;
  }

  void FailLocked(const Status& status) {
    service_->Refused(status, "WatchVerdicts");
    FinishLocked(net::ToGrpcStatus(status));
  }

  void FinishLocked(grpc::Status status) {
    if (finished_) return;
    finished_ = true;
    Finish(std::move(status));
  }

  ChainService* service_;
  const VerdictFilter filter_;
  std::mutex mu_;
  uint64_t next_height_;          // the next block to look into
  std::deque<ResultId> pending_;  // verdicts of the last block looked into, not yet written
  bool writing_ = false;
  bool reading_ = false;  // a caller reads the ledger with the lock released
  bool finished_ = false;
  bool end_requested_ = false;
  bool cancelled_ = false;
  v1::VerdictInfo message_;
};

// ---- Service ----

ChainService::ChainService(Node* node, ChainServiceOptions options, MetricsRegistry* metrics)
    : node_(node), options_(options), metrics_(metrics) {
  watch_gauge_ = metrics->GetGauge("trustmoe_validator_watch_streams",
                                   "Open WatchBlocks and WatchVerdicts streams");
  pump_thread_ = std::thread([this] { PumpLoop(); });
  node_->AddCommitListener([this](uint64_t height) { OnCommit(height); });
}

ChainService::~ChainService() { Shutdown(); }

void ChainService::Refused(const Status& status, const char* rpc) {
  metrics_
      ->GetCounter("trustmoe_validator_rpc_refused_total",
                   "ChainService calls answered with an error, by RPC and status code",
                   {{"rpc", rpc}, {"code", std::string(StatusCodeName(status.code()))}})
      ->Inc();
  TM_DEBUG("{} refused: {}", rpc, status.ToString());
}

template <typename Fn>
grpc::ServerUnaryReactor* ChainService::Unary(grpc::CallbackServerContext* ctx, const char* rpc,
                                              Fn body) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  Status status;
  {
    std::lock_guard lock(mu_);
    if (shut_down_) status = Status::Unavailable("validator is shutting down");
  }
  if (status.ok()) {
    try {
      status = body();
    } catch (const std::exception& e) {
      status = Status::Internal(std::string(rpc) + ": " + e.what());
    }
  }
  if (!status.ok()) Refused(status, rpc);
  reactor->Finish(net::ToGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* ChainService::SubmitTx(grpc::CallbackServerContext* ctx,
                                                 const v1::SubmitTxRequest* request,
                                                 v1::SubmitTxResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  auto refuse = [&](const Status& status) {
    Refused(status, "SubmitTx");
    reactor->Finish(net::ToGrpcStatus(status));
    return reactor;
  };
  {
    std::lock_guard lock(mu_);
    if (shut_down_) return refuse(Status::Unavailable("validator is shutting down"));
  }
  const std::string& tx = request->tx();
  if (tx.empty()) return refuse(Status::InvalidArgument("field tx is empty"));
  uint32_t tx_bytes_max = node_->pbft_config().tx_bytes_max;
  if (tx.size() > tx_bytes_max) {
    return refuse(Status::InvalidArgument("transaction of " + std::to_string(tx.size()) +
                                          " bytes is over tx_bytes_max (" +
                                          std::to_string(tx_bytes_max) + ")"));
  }
  int64_t timeout_ms = request->timeout_ms() == 0 ? options_.submit_timeout_ms
                                                  : static_cast<int64_t>(request->timeout_ms());
  timeout_ms = std::min(timeout_ms, options_.submit_timeout_max_ms);
  try {
    node_->SubmitTx(Bytes(tx.begin(), tx.end()), !request->no_wait(), timeout_ms,
                    [this, reactor, response](SubmitOutcome outcome) {
                      if (!outcome.status.ok()) {
                        Refused(outcome.status, "SubmitTx");
                        reactor->Finish(net::ToGrpcStatus(outcome.status));
                        return;
                      }
                      response->set_tx_id(ToString(outcome.tx_id));
                      if (outcome.committed) {
                        response->set_height(outcome.committed->proof.height);
                        FillTxInfo(*outcome.committed, response->mutable_committed());
                      }
                      reactor->Finish(grpc::Status::OK);
                    });
  } catch (const std::exception& e) {
    return refuse(Status::Internal(std::string("SubmitTx: ") + e.what()));
  }
  return reactor;
}

grpc::ServerUnaryReactor* ChainService::GetHead(grpc::CallbackServerContext* ctx,
                                                const v1::GetHeadRequest*, v1::HeadInfo* response) {
  return Unary(ctx, "GetHead", [&] { return DoGetHead(response); });
}

grpc::ServerUnaryReactor* ChainService::GetBlock(grpc::CallbackServerContext* ctx,
                                                 const v1::GetBlockRequest* request,
                                                 v1::BlockInfo* response) {
  return Unary(ctx, "GetBlock", [&] { return DoGetBlock(*request, response); });
}

grpc::ServerUnaryReactor* ChainService::GetTx(grpc::CallbackServerContext* ctx,
                                              const v1::GetTxRequest* request,
                                              v1::TxInfo* response) {
  return Unary(ctx, "GetTx", [&] { return DoGetTx(*request, response); });
}

grpc::ServerUnaryReactor* ChainService::ListNodes(grpc::CallbackServerContext* ctx,
                                                  const v1::ListNodesRequest* request,
                                                  v1::ListNodesResponse* response) {
  return Unary(ctx, "ListNodes", [&] { return DoListNodes(*request, response); });
}

grpc::ServerUnaryReactor* ChainService::ListExperts(grpc::CallbackServerContext* ctx,
                                                    const v1::ListExpertsRequest* request,
                                                    v1::ListExpertsResponse* response) {
  return Unary(ctx, "ListExperts", [&] { return DoListExperts(*request, response); });
}

grpc::ServerUnaryReactor* ChainService::ListModels(grpc::CallbackServerContext* ctx,
                                                   const v1::ListModelsRequest* request,
                                                   v1::ListModelsResponse* response) {
  return Unary(ctx, "ListModels", [&] { return DoListModels(*request, response); });
}

grpc::ServerUnaryReactor* ChainService::ScanState(grpc::CallbackServerContext* ctx,
                                                  const v1::ScanStateRequest* request,
                                                  v1::ScanStateResponse* response) {
  return Unary(ctx, "ScanState", [&] { return DoScanState(*request, response); });
}

grpc::ServerUnaryReactor* ChainService::GetGenesis(grpc::CallbackServerContext* ctx,
                                                   const v1::GetGenesisRequest*,
                                                   v1::GenesisInfo* response) {
  return Unary(ctx, "GetGenesis", [&] {
    response->set_json(node_->genesis().ToJson());
    response->set_digest(ToString(node_->genesis_digest()));
    return Status::Ok();
  });
}

grpc::ServerWriteReactor<v1::BlockInfo>* ChainService::WatchBlocks(
    grpc::CallbackServerContext*, const v1::WatchBlocksRequest* request) {
  auto* reactor = new WatchReactor(this, request->from_height());
  reactor->Begin();
  return reactor;
}

grpc::ServerWriteReactor<v1::VerdictInfo>* ChainService::WatchVerdicts(
    grpc::CallbackServerContext*, const v1::WatchVerdictsRequest* request) {
  Result<VerdictFilter> filter = ParseVerdictFilter(*request);
  if (!filter.ok()) {
    // A reactor that only refuses: never registered, finished before it is returned.
    class Refusal final : public grpc::ServerWriteReactor<v1::VerdictInfo> {
     public:
      explicit Refusal(const Status& status) { Finish(net::ToGrpcStatus(status)); }
      void OnDone() override { delete this; }
    };
    Refused(filter.status(), "WatchVerdicts");
    return new Refusal(filter.status());
  }
  auto* reactor = new VerdictReactor(this, std::move(filter).value());
  reactor->Begin();
  return reactor;
}

// ---- Queries ----

Status ChainService::DoGetHead(v1::HeadInfo* response) {
  ledger::LedgerHead head = node_->store().Head();
  response->set_height(head.height);
  response->set_digest(ToString(head.digest));
  response->set_state_root(ToString(head.state_root));
  response->set_view(node_->view());
  response->set_validator_id(node_->id());
  response->set_chain_id(node_->genesis().chain_id);
  response->set_genesis_digest(ToString(node_->genesis_digest()));
  return Status::Ok();
}

Status ChainService::DoGetBlock(const v1::GetBlockRequest& request, v1::BlockInfo* response) {
  if (request.height() == 0) {
    return Status::InvalidArgument("height must be at least 1 (block 1 follows the genesis)");
  }
  uint64_t head = node_->store().Head().height;
  if (request.height() > head) {
    return Status::NotFound("block " + std::to_string(request.height()) +
                            " is not committed yet (head is " + std::to_string(head) + ")");
  }
  TRUSTMOE_ASSIGN_OR_RETURN(ledger::StoredBlock block, node_->store().GetBlock(request.height()));
  response->set_height(block.height);
  response->set_digest(ToString(block.digest));
  if (block.block) response->set_block(ToString(block.block->Encode()));
  response->set_certificate(ToString(block.cert.Encode()));
  return Status::Ok();
}

Status ChainService::DoGetTx(const v1::GetTxRequest& request, v1::TxInfo* response) {
  if (request.tx_id().size() != 32) {
    return Status::InvalidArgument("tx_id must be 32 bytes, got " +
                                   std::to_string(request.tx_id().size()));
  }
  pbft::TxId id{};
  std::copy(request.tx_id().begin(), request.tx_id().end(), id.begin());
  TRUSTMOE_ASSIGN_OR_RETURN(ledger::TxWithProof tx, node_->store().GetTx(id));
  FillTxInfo(tx, response);
  return Status::Ok();
}

uint32_t ChainService::ListLimit(uint32_t requested) const {
  if (requested == 0) return options_.list_limit_max;
  return std::min(requested, options_.list_limit_max);
}

Status ChainService::DoListNodes(const v1::ListNodesRequest& request,
                                 v1::ListNodesResponse* response) {
  TRUSTMOE_RETURN_IF_ERROR(CheckKeyText(request.start_after(), "start_after"));
  std::string after = request.start_after().empty() ? "" : "node/" + request.start_after();
  const ledger::LedgerStore& store = node_->store();
  TRUSTMOE_ASSIGN_OR_RETURN(auto entries, store.Scan("node/", after, ListLimit(request.limit())));
  for (const auto& [key, value] : entries) {
    auto record = ledger::NodeRecord::Decode(value);
    if (!record.ok())
      return Status::DataLoss("state entry " + key + ": " + record.status().message());
    ledger::Reputation rep;
    TRUSTMOE_ASSIGN_OR_RETURN(auto rep_bytes, store.Get(ledger::ReputationKey(record->key)));
    if (rep_bytes) {
      auto decoded = ledger::Reputation::Decode(*rep_bytes);
      if (!decoded.ok()) {
        return Status::DataLoss("reputation of " + record->key.Hex() + ": " +
                                decoded.status().message());
      }
      rep = *decoded;
    }
    v1::NodeInfo* info = response->add_nodes();
    info->set_public_key(ToString(record->key.bytes()));
    info->set_role(std::string(ledger::NodeRoleName(record->role)));
    info->set_name(record->name);
    info->set_endpoint(record->endpoint);
    info->set_registered_height(record->registered_height);
    info->set_accepted(rep.accepted);
    info->set_rejected(rep.rejected);
    info->set_strikes(rep.strikes);
    info->set_blacklisted(rep.blacklisted);
    info->set_blacklisted_height(rep.blacklisted_height);
    info->set_faults(rep.faults);
    info->set_contradictions(rep.contradictions);
    info->set_blacklist_reason(rep.blacklist_reason);
  }
  return Status::Ok();
}

Status ChainService::DoListExperts(const v1::ListExpertsRequest& request,
                                   v1::ListExpertsResponse* response) {
  TRUSTMOE_RETURN_IF_ERROR(CheckKeyText(request.start_after(), "start_after"));
  std::string after = request.start_after().empty() ? "" : ledger::ExpertKey(request.start_after());
  TRUSTMOE_ASSIGN_OR_RETURN(auto entries,
                            node_->store().Scan("expert/", after, ListLimit(request.limit())));
  for (const auto& [key, value] : entries) {
    auto record = ledger::ExpertRecord::Decode(value);
    if (!record.ok())
      return Status::DataLoss("state entry " + key + ": " + record.status().message());
    v1::ExpertInfo* info = response->add_experts();
    info->set_cid(record->cid);
    info->set_name(record->name);
    info->set_arch(record->arch);
    info->set_size(record->size);
    info->set_publisher(ToString(record->publisher.bytes()));
    info->set_height(record->height);
  }
  return Status::Ok();
}

Status ChainService::DoListModels(const v1::ListModelsRequest& request,
                                  v1::ListModelsResponse* response) {
  TRUSTMOE_RETURN_IF_ERROR(CheckKeyText(request.start_after(), "start_after"));
  std::string after = request.start_after().empty() ? "" : ledger::ModelKey(request.start_after());
  TRUSTMOE_ASSIGN_OR_RETURN(auto entries,
                            node_->store().Scan("model/", after, ListLimit(request.limit())));
  for (const auto& [key, value] : entries) {
    auto record = ledger::ModelRecord::Decode(value);
    if (!record.ok())
      return Status::DataLoss("state entry " + key + ": " + record.status().message());
    v1::ModelInfo* info = response->add_models();
    info->set_manifest_cid(record->manifest_cid);
    info->set_name(record->name);
    info->set_publisher(ToString(record->publisher.bytes()));
    info->set_height(record->height);
  }
  return Status::Ok();
}

Status ChainService::DoScanState(const v1::ScanStateRequest& request,
                                 v1::ScanStateResponse* response) {
  TRUSTMOE_RETURN_IF_ERROR(CheckKeyText(request.prefix(), "prefix"));
  TRUSTMOE_RETURN_IF_ERROR(CheckKeyText(request.start_after(), "start_after"));
  uint32_t limit =
      request.limit() == 0 ? std::min<uint32_t>(1000, options_.scan_limit_max) : request.limit();
  if (limit > options_.scan_limit_max) {
    return Status::InvalidArgument("limit " + std::to_string(limit) + " is over the maximum of " +
                                   std::to_string(options_.scan_limit_max));
  }
  response->set_height(node_->store().Head().height);
  TRUSTMOE_ASSIGN_OR_RETURN(auto entries,
                            node_->store().Scan(request.prefix(), request.start_after(), limit));
  for (auto& [key, value] : entries) {
    v1::StateEntry* entry = response->add_entries();
    entry->set_key(key);
    entry->set_value(ToString(value));
  }
  return Status::Ok();
}

// ---- Watches ----

bool ChainService::RegisterWatch(Watch* watch, const char* rpc, Status* refusal) {
  {
    std::lock_guard lock(mu_);
    if (shut_down_) {
      *refusal = Status::Unavailable("validator is shutting down");
    } else if (watches_.size() >= options_.watch_streams_max) {
      *refusal = Status::ResourceExhausted("validator serves its maximum of " +
                                           std::to_string(options_.watch_streams_max) +
                                           " watch streams; retry later");
    } else {
      watches_.insert(watch);
      watch_gauge_->Set(static_cast<double>(watches_.size()));
      return true;
    }
  }
  Refused(*refusal, rpc);
  return false;
}

void ChainService::UnregisterWatch(Watch* watch) {
  std::lock_guard lock(mu_);
  watches_.erase(watch);
  watch_gauge_->Set(static_cast<double>(watches_.size()));
}

std::vector<ChainService::Watch*> ChainService::RefWatches() {
  std::lock_guard lock(mu_);
  std::vector<Watch*> watches;
  for (Watch* w : watches_) {
    w->Ref();
    watches.push_back(w);
  }
  return watches;
}

void ChainService::OnCommit(uint64_t) { RequestPump(); }

void ChainService::RequestPump() {
  {
    std::lock_guard lock(pump_mu_);
    pump_due_ = true;
  }
  pump_cv_.notify_one();
}

void ChainService::PumpLoop() {
  std::unique_lock lock(pump_mu_);
  while (true) {
    pump_cv_.wait(lock, [this] { return pump_due_ || pump_stop_; });
    if (pump_stop_) return;
    pump_due_ = false;
    lock.unlock();
    for (Watch* w : RefWatches()) {
      w->Pump();
      w->Unref();
    }
    lock.lock();
  }
}

void ChainService::Shutdown() {
  {
    std::lock_guard lock(mu_);
    shut_down_ = true;
  }
  {
    std::lock_guard lock(pump_mu_);
    pump_stop_ = true;
  }
  pump_cv_.notify_all();
  if (pump_thread_.joinable()) pump_thread_.join();
  for (Watch* w : RefWatches()) {
    w->End();
    w->Unref();
  }
}

}  // namespace trustmoe::validator
