#include "edge/edge_node.h"

#include <algorithm>
#include <chrono>
#include <future>
#include <thread>

#include "common/files.h"
#include "common/log.h"
#include "crypto/cid.h"
#include "edge/numeric.h"

namespace trustmoe::edge {
namespace {

// The compute dtype as the result commitment records it (it picks the validators' tolerance).
ledger::ComputeDType LedgerDType(DType dtype) {
  switch (dtype) {
    case DType::kBF16:
      return ledger::ComputeDType::kBF16;
    case DType::kF16:
      return ledger::ComputeDType::kF16;
    case DType::kF32:
      break;
  }
  return ledger::ComputeDType::kF32;
}


using Clock = std::chrono::steady_clock;

// The chain refused the transaction for good: retrying cannot help.
bool IsFinalRefusal(const Status& s) {
  return s.code() == StatusCode::kInvalidArgument || s.code() == StatusCode::kPermissionDenied ||
         s.code() == StatusCode::kUnauthenticated;
}

// Threads to hash a tensor of `bytes` for its CID: one per 2 MiB, at most 8.
unsigned HashThreads(uint64_t bytes) {
  return static_cast<unsigned>(std::clamp<uint64_t>(bytes >> 21, 1, 8));
}

}  // namespace

std::string_view StandingName(Standing standing) {
  switch (standing) {
    case Standing::kUnknown:
      return "unknown";
    case Standing::kRegistered:
      return "registered";
    case Standing::kNotRegistered:
      return "not registered";
    case Standing::kWrongRole:
      return "wrong role";
    case Standing::kBlacklisted:
      return "blacklisted";
  }
  return "unknown";
}

Result<EdgeNode::Parts> EdgeNode::Build(const EdgeConfig& config,
                                        std::unique_ptr<ExpertRuntime> runtime) {
  Parts parts;
  parts.config = config;
  auto key = crypto::PrivateKey::LoadPem(config.identity_key);
  if (!key.ok()) return key.status().WithContext("identity_key " + config.identity_key);
  parts.key = *key;
  auto genesis_text = ReadFile(config.genesis, 1 << 20);
  if (!genesis_text.ok()) return genesis_text.status().WithContext("genesis");
  auto genesis = ledger::Genesis::FromJson(*genesis_text);
  if (!genesis.ok()) return genesis.status().WithContext("genesis " + config.genesis);
  parts.genesis = *genesis;
  parts.runtime = std::move(runtime);

  storage::StoreClientOptions store_options;
  store_options.endpoints = config.store_endpoints;
  store_options.transport = config.transport;
  store_options.writer = std::make_shared<const crypto::PrivateKey>(*key);
  TRUSTMOE_ASSIGN_OR_RETURN(parts.store, storage::StoreClient::Create(store_options));
  TRUSTMOE_RETURN_IF_ERROR(MakeDirs(config.cache_dir, 0700));
  storage::BlobCacheOptions cache_options;
  cache_options.dir = config.cache_dir;
  cache_options.bytes_max = config.cache_bytes_max;
  auto cache = storage::BlobCache::Open(cache_options, parts.store.get());
  if (!cache.ok()) return cache.status().WithContext("cache " + config.cache_dir);
  parts.cache = std::move(*cache);

  chain::ChainClientOptions chain_options;
  chain_options.endpoints = config.chain_validators;
  if (chain_options.endpoints.empty()) {
    for (const auto& v : parts.genesis.validators) chain_options.endpoints.push_back(v.endpoint);
  }
  chain_options.transport = config.transport;
  chain_options.commit_timeout_ms = static_cast<uint32_t>(config.submit_timeout_ms);
  chain_options.rpc_timeout_ms = 10'000;
  TRUSTMOE_ASSIGN_OR_RETURN(parts.chain,
                            chain::ChainClient::Create(chain_options, parts.genesis));

  TRUSTMOE_RETURN_IF_ERROR(MakeDirs(config.data_dir, 0700));
  TRUSTMOE_ASSIGN_OR_RETURN(parts.outbox,
                            Outbox::Open(config.data_dir + "/outbox", config.outbox_entries_max));
  return parts;
}

EdgeNode::EdgeNode(Parts parts, MetricsRegistry* metrics)
    : config_(std::move(parts.config)),
      key_(parts.key),
      genesis_(std::move(parts.genesis)),
      runtime_(std::move(parts.runtime)),
      store_(std::move(parts.store)),
      cache_(std::move(parts.cache)),
      chain_(std::move(parts.chain)),
      outbox_(std::move(parts.outbox)) {
  status_.detail = "registration not checked yet";
  if (config_.attack.enabled()) {
    attacker_ = std::make_unique<Attacker>(config_.attack);
    TM_WARN("[attack] is configured (mode {}): this edge ALTERS its results before signing them; "
            "it exists for experiments only",
            config_.attack.mode);
  }
  requests_total_ = metrics->GetCounter("trustmoe_edge_requests_total", "Expert calls answered");
  rows_total_ = metrics->GetCounter("trustmoe_edge_rows_total", "Activation rows computed");
  refused_total_ = metrics->GetCounter("trustmoe_edge_refused_total", "Expert calls refused");
  cache_hits_ = metrics->GetCounter("trustmoe_edge_expert_hits_total",
                                    "Calls whose expert was already on the device");
  cache_misses_ = metrics->GetCounter("trustmoe_edge_expert_loads_total",
                                      "Experts loaded onto the device (from cache or store)");
  delivered_total_ = metrics->GetCounter("trustmoe_edge_results_delivered_total",
                                         "Results uploaded and committed to the chain");
  delivery_failures_ = metrics->GetCounter("trustmoe_edge_delivery_failures_total",
                                           "Failed delivery attempts (retried)");
  dead_total_ = metrics->GetCounter("trustmoe_edge_results_refused_total",
                                    "Results the chain refused for good (dead letters)");
  outbox_depth_ = metrics->GetGauge("trustmoe_edge_outbox_depth", "Results not yet committed");
  in_flight_gauge_ = metrics->GetGauge("trustmoe_edge_in_flight", "Calls in progress");
  device_allocated_ = metrics->GetGauge("trustmoe_edge_gpu_allocated_bytes",
                                        "Bytes held by tensors on the GPU");
  device_peak_ = metrics->GetGauge("trustmoe_edge_gpu_peak_bytes", "Peak GPU bytes");
  cache_bytes_ = metrics->GetGauge("trustmoe_edge_cache_bytes",
                                   "Bytes of verified expert files in the disk cache");
  cache_files_ = metrics->GetGauge("trustmoe_edge_cache_files", "Expert files in the disk cache");
  cache_disk_hits_ = metrics->GetGauge("trustmoe_edge_cache_hits",
                                       "Expert loads served from the disk cache (since start)");
  cache_disk_misses_ = metrics->GetGauge("trustmoe_edge_cache_misses",
                                         "Expert loads downloaded from the store (since start)");
  device_resident_ = metrics->GetGauge("trustmoe_edge_expert_resident_bytes",
                                       "Bytes of expert weights on the device");
  registered_ = metrics->GetGauge("trustmoe_edge_serving",
                                  "1 when registered and not blacklisted, else 0");
  call_seconds_ = metrics->GetHistogram("trustmoe_edge_call_seconds", "Expert call latency",
                                        {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30});
  outbox_depth_->Set(static_cast<double>(outbox_->depth()));
}

EdgeNode::~EdgeNode() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (registration_thread_.joinable()) registration_thread_.join();
  if (delivery_thread_.joinable()) delivery_thread_.join();
}

void EdgeNode::Start() {
  registration_thread_ = std::thread([this] { RegistrationLoop(); });
  delivery_thread_ = std::thread([this] { DeliveryLoop(); });
}

void EdgeNode::StopServing() { serving_calls_ = false; }

EdgeStatus EdgeNode::status() const {
  std::lock_guard lock(mu_);
  return status_;
}

EdgeStatus EdgeNode::CheckRegistration() {
  auto entry = chain_->GetNode(key_.public_key());
  EdgeStatus next;
  if (!entry.ok()) {
    // Keep the last known standing; say why it could not be refreshed.
    std::lock_guard lock(mu_);
    if (status_.standing == Standing::kUnknown) {
      status_.detail = "cannot read registration from the chain: " + entry.status().ToString();
    }
    TM_WARN("registration check failed: {}", entry.status().ToString());
    return status_;
  }
  if (!entry->has_value()) {
    next = {Standing::kNotRegistered,
            "key " + key_.public_key().Hex() +
                " is not registered on the chain: ask the admin to run `trustmoe node register "
                "--role edge`"};
  } else if ((*entry)->record.role != ledger::NodeRole::kEdge) {
    next = {Standing::kWrongRole, "key is registered as " +
                                      std::string(ledger::NodeRoleName((*entry)->record.role)) +
                                      ", not as an edge"};
  } else if ((*entry)->reputation.blacklisted) {
    next = {Standing::kBlacklisted,
            "blacklisted on the chain at height " +
                std::to_string((*entry)->reputation.blacklisted_height) + " after " +
                std::to_string((*entry)->reputation.strikes) + " strike(s)"};
  } else {
    next = {Standing::kRegistered, "registered as edge '" + (*entry)->record.name + "'"};
  }
  std::lock_guard lock(mu_);
  if (next.standing != status_.standing) {
    if (next.serving()) {
      TM_INFO("serving: {}", next.detail);
    } else {
      TM_ERROR("refusing to serve: {}", next.detail);
    }
  }
  status_ = next;
  registered_->Set(next.serving() ? 1 : 0);
  return status_;
}

void EdgeNode::RegistrationLoop() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    lock.unlock();
    CheckRegistration();
    const DeviceMemory memory = runtime_->Memory();
    device_allocated_->Set(static_cast<double>(memory.allocated));
    device_peak_->Set(static_cast<double>(memory.peak));
    device_resident_->Set(static_cast<double>(runtime_->Stats().resident_bytes));
    const storage::CacheStats cache = cache_->stats();
    cache_bytes_->Set(static_cast<double>(cache.bytes));
    cache_files_->Set(static_cast<double>(cache.files));
    cache_disk_hits_->Set(static_cast<double>(cache.hits));
    cache_disk_misses_->Set(static_cast<double>(cache.misses));
    lock.lock();
    // Check sooner while the standing is unknown (the chain may still be starting).
    const int64_t wait_ms = status_.standing == Standing::kUnknown
                                ? std::min<int64_t>(config_.registration_check_ms, 500)
                                : config_.registration_check_ms;
    cv_.wait_for(lock, std::chrono::milliseconds(wait_ms), [this] { return stop_; });
  }
}

Status EdgeNode::Admit() {
  if (!serving_calls_) return Status::Unavailable("this edge is shutting down");
  EdgeStatus s = status();
  // A malicious edge (fault injection) ignores its blacklisting, as an attacker would.
  if (!s.serving() && !(attacker_ != nullptr && s.standing == Standing::kBlacklisted)) {
    return Status::FailedPrecondition("this edge does not serve: " + s.detail);
  }
  return Status::Ok();
}

Status EdgeNode::CheckPublished(const std::string& cid_text) {
  {
    std::lock_guard lock(published_mu_);
    if (published_.count(cid_text) > 0) return Status::Ok();
  }
  TRUSTMOE_RETURN_IF_ERROR(ledger::CheckCidSyntax(cid_text).WithContext("expert_cid"));
  // f + 1 validators must agree: no f byzantine ones can make this edge run an unpublished
  // expert (a fault against it).
  // Validators a block or two behind answer "absent" for an expert published a moment ago
  // (the gate calls a new version as soon as it is committed): absence is asked again for a
  // short while before it is believed.
  constexpr int kAbsentRetries = 20;  // x 100 ms
  Result<bool> published = false;
  for (int attempt = 0;; ++attempt) {
    published = chain_->KeyPresentOnQuorum(ledger::ExpertKey(cid_text), genesis_.f + 1);
    if (!published.ok() || *published || attempt == kAbsentRetries) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!published.ok()) {
    return Status::Unavailable("cannot ask the chain whether expert " + cid_text +
                               " is published: " + published.status().ToString());
  }
  if (!*published) {
    // The chain rejects (and counts as a fault) a result for an unpublished expert.
    return Status::FailedPrecondition("expert " + cid_text +
                                      " is not published on the ledger; a researcher publishes "
                                      "it with `trustmoe expert publish`");
  }
  // A published CID stays published: remembered for good.
  std::lock_guard lock(published_mu_);
  published_.insert(cid_text);
  return Status::Ok();
}

Result<Bytes> EdgeNode::ReadExpertFile(const std::string& cid_text) {
  auto cid = crypto::Cid::Parse(cid_text);
  if (!cid.ok()) return cid.status().WithContext("expert_cid");
  auto path = cache_->Fetch(*cid);
  if (!path.ok()) {
    if (path.status().code() == StatusCode::kNotFound) {
      return Status::NotFound("expert " + cid_text + " is not in the store");
    }
    return path.status().WithContext("fetching expert " + cid_text);
  }
  auto bytes = ReadFile(*path, 64ull << 30);
  if (!bytes.ok()) return bytes.status().WithContext("cached expert");
  Bytes out(bytes->begin(), bytes->end());
  if (crypto::ComputeCid(out) != *cid) {
    return Status::DataLoss("cached file of expert " + cid_text + " changed on disk");
  }
  return out;
}

Result<ExpertSpec> EdgeNode::EnsureLoaded(const std::string& cid_text) {
  if (runtime_->Holds(cid_text)) {
    auto spec = runtime_->Spec(cid_text);
    if (spec.ok()) {
      cache_hits_->Inc();
      return spec;
    }
  }
  std::lock_guard lock(load_mu_);
  if (runtime_->Holds(cid_text)) return runtime_->Spec(cid_text);
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes bytes, ReadExpertFile(cid_text));
  Status loaded = runtime_->Load(cid_text, bytes);
  if (!loaded.ok()) {
    if (loaded.code() == StatusCode::kInvalidArgument) {
      return Status::InvalidArgument("blob " + cid_text + " is not a valid expert file: " +
                                     loaded.message());
    }
    return loaded.WithContext("loading expert " + cid_text);
  }
  cache_misses_->Inc();
  TM_INFO("loaded expert {} onto {}", cid_text, runtime_->DeviceDescription());
  return runtime_->Spec(cid_text);
}

EdgeNode::InFlight::InFlight(EdgeNode* node)
    : node_(node), count_(node->in_flight_.fetch_add(1) + 1) {
  node_->in_flight_gauge_->Set(static_cast<double>(count_));
}

EdgeNode::InFlight::~InFlight() {
  node_->in_flight_gauge_->Set(static_cast<double>(--node_->in_flight_));
}

Status EdgeNode::AdmitCall(uint32_t in_flight) {
  TRUSTMOE_RETURN_IF_ERROR(Admit());
  if (in_flight > config_.concurrent_requests_max) {
    refused_total_->Inc();
    return Status::ResourceExhausted("this edge is at concurrent_requests_max (" +
                                     std::to_string(config_.concurrent_requests_max) +
                                     "): retry later or call another holder");
  }
  return Status::Ok();
}

Status EdgeNode::Enqueue(OutboxEntry entry) {
  TRUSTMOE_RETURN_IF_ERROR(outbox_->Append(std::move(entry)).status());
  outbox_depth_->Set(static_cast<double>(outbox_->depth()));
  cv_.notify_all();  // wake the delivery thread
  return Status::Ok();
}

Result<CallResult> EdgeNode::Call(const CallRequest& req) {
  InFlight slot(this);
  TRUSTMOE_RETURN_IF_ERROR(AdmitCall(slot.count()));
  const auto start = Clock::now();

  auto refuse = [&](Status s) {
    refused_total_->Inc();
    return s;
  };
  if (req.job.empty() || req.job.size() > ledger::kJobBytesMax) {
    return refuse(Status::InvalidArgument("job must be 1 to " +
                                          std::to_string(ledger::kJobBytesMax) + " bytes"));
  }
  if (req.input.size() > config_.tensor_bytes_max ||
      req.grad_output.size() > config_.tensor_bytes_max) {
    return refuse(Status::ResourceExhausted("a tensor is larger than tensor_bytes_max (" +
                                            std::to_string(config_.tensor_bytes_max) + ")"));
  }
  if (Status published = CheckPublished(req.expert_cid); !published.ok()) {
    return refuse(published);
  }
  auto spec = EnsureLoaded(req.expert_cid);
  if (!spec.ok()) return refuse(spec.status());
  auto x = ReadActivations(req.input, spec->d_model, config_.rows_per_request_max);
  if (!x.ok()) return refuse(x.status().WithContext("input"));
  // The input's CID is hashed while the expert runs (chunks on several threads when large).
  std::future<crypto::Cid> input_cid = std::async(std::launch::async, [&req] {
    return crypto::ComputeCidParallel(req.input, HashThreads(req.input.size()));
  });

  HostTensor y;
  std::string grad_output_cid;
  if (req.kind == ledger::CallKind::kForward) {
    if (!req.grad_output.empty()) {
      return refuse(Status::InvalidArgument("a forward call carries no grad_output"));
    }
    auto out = runtime_->Forward(req.expert_cid, *x);
    if (out.status().code() == StatusCode::kNotFound) {  // evicted meanwhile: load again
      TRUSTMOE_RETURN_IF_ERROR(EnsureLoaded(req.expert_cid).status());
      out = runtime_->Forward(req.expert_cid, *x);
    }
    if (!out.ok()) return refuse(out.status());
    y = std::move(*out);
  } else {
    auto g = ReadActivations(req.grad_output, spec->d_model, config_.rows_per_request_max);
    if (!g.ok()) return refuse(g.status().WithContext("grad_output"));
    if (g->rows != x->rows) {
      return refuse(Status::InvalidArgument("grad_output has " + std::to_string(g->rows) +
                                            " rows, the input " + std::to_string(x->rows)));
    }
    auto out = runtime_->Backward(req.expert_cid, *x, *g, false, false);
    if (out.status().code() == StatusCode::kNotFound) {
      TRUSTMOE_RETURN_IF_ERROR(EnsureLoaded(req.expert_cid).status());
      out = runtime_->Backward(req.expert_cid, *x, *g, false, false);
    }
    if (!out.ok()) return refuse(out.status());
    y = std::move(out->grad_input);
    grad_output_cid =
        crypto::ComputeCidParallel(req.grad_output, HashThreads(req.grad_output.size()))
            .ToString();
  }

  if (int64_t bad = FirstNonFinite(y.dtype, y.data); bad >= 0) {
    // Committing it would be a fault (validators reject non-finite outputs): the input was
    // out of range for the expert or the dtype.
    return refuse(Status::InvalidArgument(
        "the expert's output holds NaN or infinity at row " + std::to_string(bad / y.cols) +
        " (inputs too large for the expert or for " + std::string(DTypeName(y.dtype)) +
        "?); nothing was committed"));
  }
  if (attacker_ != nullptr) {
    std::string kind = attacker_->Apply(&y);
    if (!kind.empty()) TM_DEBUG("attack: altered a {} result ({})", req.kind == ledger::CallKind::kForward ? "forward" : "backward", kind);
  }
  CallResult result;
  TRUSTMOE_ASSIGN_OR_RETURN(result.output, WriteActivations(y));
  result.rows = y.rows;
  result.input_cid = input_cid.get().ToString();
  result.output_cid =
      crypto::ComputeCidParallel(result.output, HashThreads(result.output.size())).ToString();
  ledger::ExpertResultBody body{req.kind,         req.job,           req.step,
                                req.expert_cid,   result.input_cid,  grad_output_cid,
                                result.output_cid, static_cast<uint64_t>(y.rows),
                                LedgerDType(runtime_->options().compute_dtype), config_.device};
  ledger::Tx tx = ledger::MakeTx(genesis_.chain_id, ledger::TxType::kExpertResult, key_,
                                 ledger::FreshNonce(), body.Encode());
  result.result_tx = tx.Encode();
  result.result_id = pbft::ComputeTxId(result.result_tx);

  OutboxEntry entry;
  entry.tx = result.result_tx;
  entry.blobs.push_back(req.input);
  if (!req.grad_output.empty()) entry.blobs.push_back(req.grad_output);
  entry.blobs.push_back(result.output);
  if (Status queued = Enqueue(std::move(entry)); !queued.ok()) {
    return refuse(queued.WithContext("committing the result"));
  }

  ++requests_;
  rows_ += static_cast<uint64_t>(y.rows);
  requests_total_->Inc();
  rows_total_->Inc(static_cast<double>(y.rows));
  call_seconds_->Observe(std::chrono::duration<double>(Clock::now() - start).count());
  return result;
}

Result<UpdateResult> EdgeNode::Update(const UpdateRequest& req) {
  InFlight slot(this);
  TRUSTMOE_RETURN_IF_ERROR(AdmitCall(slot.count()));
  // The request as the chain will see it: the same checks as the transaction's decoding.
  ledger::ExpertUpdatedBody body;
  body.job = req.job;
  body.step = req.step;
  body.parent_cid = req.parent_cid;
  body.optimizer = req.optimizer;
  body.dtype = ledger::ComputeDType::kF32;  // training copies are f32 (runtime.h)
  body.device = config_.device;
  body.sources = req.sources;
  // Placeholders that pass the body's syntax checks; the real values are filled in below.
  body.child_cid = "sha256-tree:" + std::string(64, '0');
  body.child_state_cid = req.optimizer.stateful() ? body.child_cid : "";
  if (auto checked = ledger::ExpertUpdatedBody::Decode(body.Encode()); !checked.ok()) {
    return checked.status();
  }
  TRUSTMOE_RETURN_IF_ERROR(CheckPublished(req.parent_cid));

  // The parent's optimizer state: the child state of the update that made it, if any.
  auto lineage = chain_->KeyPresentOnQuorum(ledger::LineageKey(req.parent_cid), genesis_.f + 1);
  if (!lineage.ok()) return lineage.status().WithContext("reading the parent's lineage");
  Bytes parent_state;
  if (*lineage) {
    auto page = chain_->ScanState(ledger::LineageKey(req.parent_cid), "", 1);
    if (!page.ok() || page->entries.empty()) {
      return Status::Unavailable("reading the parent's lineage: " + page.status().ToString());
    }
    const std::string update_key(page->entries[0].second.begin(), page->entries[0].second.end());
    auto parent_update = chain_->ScanState(update_key, "", 1);
    if (!parent_update.ok() || parent_update->entries.empty()) {
      return Status::Unavailable("reading the parent's update " + update_key);
    }
    auto record = ledger::UpdateRecord::Decode(parent_update->entries[0].second);
    if (!record.ok()) return record.status().WithContext("the parent's update record");
    body.parent_state_cid = record->body.child_state_cid;
    if (!body.parent_state_cid.empty()) {
      TRUSTMOE_ASSIGN_OR_RETURN(crypto::Cid state_cid, crypto::Cid::Parse(body.parent_state_cid));
      auto state = store_->Get(state_cid, 16ull << 30);
      if (!state.ok()) return state.status().WithContext("fetching the parent's optimizer state");
      parent_state = std::move(state).value();
    }
  }

  // The sources: committed backward results of this edge on the parent.
  std::vector<ledger::ResultRecord> sources;
  const auto deadline = Clock::now() + std::chrono::milliseconds(config_.submit_timeout_ms);
  for (uint64_t nonce : req.sources) {
    const std::string key = ledger::ResultKey(key_.public_key(), nonce);
    for (;;) {
      auto page = chain_->ScanState(key, "", 1);
      if (page.ok() && !page->entries.empty() && page->entries[0].first == key) {
        auto record = ledger::ResultRecord::Decode(page->entries[0].second);
        if (!record.ok()) return record.status().WithContext(key);
        if (record->body.kind != ledger::CallKind::kBackward ||
            record->body.expert_cid != req.parent_cid) {
          return Status::InvalidArgument("source " + key + " is not a backward result on the parent");
        }
        sources.push_back(std::move(record).value());
        break;
      }
      if (status().standing == Standing::kBlacklisted) {
        return Status::FailedPrecondition(
            "this edge is blacklisted on the chain: its results are refused, so source " + key +
            " will not commit");
      }
      if (Clock::now() > deadline) {
        return Status::Unavailable("source " + key + " is not on the chain after " +
                                   std::to_string(config_.submit_timeout_ms) +
                                   " ms: call Update again once it is committed");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
  }

  // The step, on a training copy of the parent.
  // From the parent's file, in f32: a copy of the device's bf16 weights would start the step
  // from rounded weights, and the child would not be the step the parent gives.
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes parent_file, ReadExpertFile(req.parent_cid));
  const std::string train_key = "update/" + req.job + "/" + std::to_string(ledger::FreshNonce());
  TRUSTMOE_RETURN_IF_ERROR(runtime_->LoadTraining(train_key, parent_file));
  struct Unload {
    ExpertRuntime* rt;
    std::string key;
    ~Unload() { (void)rt->Unload(key); }
  } unload{runtime_.get(), train_key};
  if (!parent_state.empty()) {
    TRUSTMOE_RETURN_IF_ERROR(runtime_->ImportOptimizerState(train_key, parent_state));
  }
  for (const ledger::ResultRecord& source : sources) {
    Bytes files[2];
    const std::string* cids[2] = {&source.body.input_cid, &source.body.grad_output_cid};
    for (int i = 0; i < 2; ++i) {
      TRUSTMOE_ASSIGN_OR_RETURN(crypto::Cid cid, crypto::Cid::Parse(*cids[i]));
      auto blob = store_->Get(cid, config_.tensor_bytes_max);
      if (!blob.ok()) return blob.status().WithContext("fetching a source tensor");
      files[i] = std::move(blob).value();
    }
    TRUSTMOE_ASSIGN_OR_RETURN(HostTensor x, ReadActivations(files[0], 0, config_.rows_per_request_max));
    TRUSTMOE_ASSIGN_OR_RETURN(HostTensor g, ReadActivations(files[1], 0, config_.rows_per_request_max));
    TRUSTMOE_RETURN_IF_ERROR(runtime_->Backward(train_key, x, g, false, true).status());
  }
  OptimizerSpec opt;
  opt.kind = req.optimizer.kind == ledger::OptimizerKind::kAdam ? OptimizerKind::kAdam
                                                                 : OptimizerKind::kSgd;
  opt.lr = req.optimizer.lr;
  opt.momentum = req.optimizer.momentum;
  opt.beta1 = req.optimizer.beta1;
  opt.beta2 = req.optimizer.beta2;
  opt.eps = req.optimizer.eps;
  opt.weight_decay = req.optimizer.weight_decay;
  TRUSTMOE_RETURN_IF_ERROR(runtime_->Step(train_key, opt));
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes child, runtime_->Export(train_key, DType::kF32));
  Bytes state;
  if (req.optimizer.stateful()) {
    TRUSTMOE_ASSIGN_OR_RETURN(state, runtime_->ExportOptimizerState(train_key));
  }

  UpdateResult result;
  result.child_cid = crypto::ComputeCidParallel(child, HashThreads(child.size())).ToString();
  result.child_state_cid = state.empty() ? "" : crypto::ComputeCid(state).ToString();
  body.child_cid = result.child_cid;
  body.child_state_cid = result.child_state_cid;
  body.child_size = child.size();
  ledger::Tx tx = ledger::MakeTx(genesis_.chain_id, ledger::TxType::kExpertUpdated, key_,
                                 ledger::FreshNonce(), body.Encode());
  result.update_tx = tx.Encode();
  result.update_id = pbft::ComputeTxId(result.update_tx);
  OutboxEntry entry;
  entry.tx = result.update_tx;
  entry.blobs.push_back(std::move(child));
  if (!state.empty()) entry.blobs.push_back(std::move(state));
  TRUSTMOE_RETURN_IF_ERROR(Enqueue(std::move(entry)).WithContext("committing the update"));
  TM_INFO("update of {} (job '{}' step {}): child {} from {} source(s)", req.parent_cid, req.job,
          req.step, result.child_cid, req.sources.size());
  return result;
}

Status EdgeNode::Deliver(const OutboxEntry& entry) {
  for (const Bytes& blob : entry.blobs) {
    // Pinned: validators fetch these to verify the result; the store's retention must not
    // collect them first.
    auto put = store_->Put(blob, /*pin=*/true);
    if (!put.ok()) {
      // Never final for the result: a store that refuses this edge's key (not among its
      // writers) or is full is put right by its operator, and the result then goes through.
      return Status::Unavailable("uploading a result tensor: " + put.status().ToString());
    }
  }
  auto submitted = chain_->Submit(entry.tx, /*wait=*/true);
  if (submitted.ok()) return Status::Ok();
  if (submitted.status().code() == StatusCode::kAlreadyExists) {
    // The nonce is used: only this edge signs with its key, so an earlier attempt of this very
    // transaction committed (its answer was lost).
    return Status::Ok();
  }
  return submitted.status();
}

void EdgeNode::DeliveryLoop() {
  // Up to this many results are delivered at once: each waits for its commit (one consensus
  // round), so one at a time would cap an edge at one result per round.
  constexpr size_t kParallel = 32;
  auto next_attempt = Clock::now();
  int64_t backoff_ms = config_.outbox_retry_min_ms;
  std::unique_lock lock(mu_);
  while (!stop_) {
    lock.unlock();
    auto batch = outbox_->Read(0, kParallel);
    if (!batch.ok()) TM_ERROR("outbox: {}", batch.status().ToString());
    bool failed = false;
    if (batch.ok() && !batch->empty()) {
      std::vector<std::future<Status>> results;
      results.reserve(batch->size());
      for (const OutboxEntry& entry : *batch) {
        results.push_back(std::async(std::launch::async, [this, &entry] { return Deliver(entry); }));
      }
      for (size_t i = 0; i < batch->size(); ++i) {
        OutboxEntry& entry = (*batch)[i];
        const Status delivered = results[i].get();
        if (delivered.ok()) {
          if (Status s = outbox_->Remove(entry.seq); !s.ok()) TM_ERROR("outbox: {}", s.ToString());
          delivered_total_->Inc();
          continue;
        }
        ++entry.attempts;
        if (IsFinalRefusal(delivered)) {
          TM_ERROR("result {} refused by the chain for good after {} attempt(s): {}",
                   ToHex(pbft::ComputeTxId(entry.tx)), entry.attempts, delivered.ToString());
          if (Status s = outbox_->Bury(entry, delivered.ToString()); !s.ok()) {
            TM_ERROR("outbox: {}", s.ToString());
          }
          dead_total_->Inc();
          continue;
        }
        delivery_failures_->Inc();
        if (entry.attempts == 1 || entry.attempts % 10 == 0) {
          TM_WARN("result {} not delivered yet (attempt {}, next in {} ms): {}",
                  ToHex(pbft::ComputeTxId(entry.tx)), entry.attempts, backoff_ms,
                  delivered.ToString());
        }
        (void)outbox_->RecordAttempt(entry);
        failed = true;
      }
      if (failed) {
        next_attempt = Clock::now() + std::chrono::milliseconds(backoff_ms);
        backoff_ms = std::min(backoff_ms * 2, config_.outbox_retry_max_ms);
      } else {
        backoff_ms = config_.outbox_retry_min_ms;
      }
    }
    outbox_depth_->Set(static_cast<double>(outbox_->depth()));
    lock.lock();
    if (stop_) break;
    if (failed) {
      cv_.wait_until(lock, next_attempt, [this] { return stop_; });
    } else if (batch.ok() && batch->empty()) {
      cv_.wait_for(lock, std::chrono::milliseconds(200));
    }
  }
}

bool EdgeNode::WaitCallsDone(int64_t timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (in_flight_.load() > 0) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

bool EdgeNode::WaitOutboxEmpty(int64_t timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (outbox_->depth() > 0) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

EdgeInfo EdgeNode::Info() const {
  EdgeInfo info;
  info.edge_key_hex = key_.public_key().Hex();
  info.device = runtime_->DeviceDescription();
  info.compute_dtype = std::string(DTypeName(runtime_->options().compute_dtype));
  info.experts_held = runtime_->Held();
  info.in_flight = in_flight_.load();
  info.requests = requests_.load();
  info.rows = rows_.load();
  info.outbox_depth = outbox_->depth();
  info.device_bytes_used = runtime_->Stats().resident_bytes;
  info.device_bytes_max = runtime_->options().device_bytes_max;
  info.rows_per_request_max = config_.rows_per_request_max;
  info.status = status();
  return info;
}

}  // namespace trustmoe::edge
