#include "gate/gate_node.h"

#include <rocksdb/db.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "chain/ledger/job.h"
#include "chain/ledger/tx.h"
#include "common/files.h"
#include "common/log.h"
#include "crypto/cid.h"
#include "gate/edge_experts.h"
#include "gate/experts.h"
#include "gate/fashion_mnist.h"
#include "gate/job_spec.h"
#include "gate/moe_model.h"
#include "gate/trainer.h"

namespace trustmoe::gate {
namespace {

constexpr int64_t kNonceWindowMs = 5 * 60 * 1000;
constexpr int64_t kResearcherCacheMs = 5000;
constexpr uint64_t kManifestBytesMax = 1 << 20;
constexpr uint64_t kWeightsBytesMax = 1ull << 30;
constexpr std::string_view kManifestFormat = "trustmoe-model-manifest/v1";
constexpr std::string_view kPredictionsFormat = "trustmoe-predictions/v1";

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::Ok();
  if (s.IsNotFound()) return Status::NotFound(std::string(what));
  return Status::Internal(std::string(what) + ": " + s.ToString());
}

std::string TableKey(const std::string& id) { return "job/" + id; }

bool Final(const std::string& state) {
  return state == "completed" || state == "cancelled" || state == "failed";
}

ByteSpan AsSpan(const std::string& s) {
  return ByteSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

// The model a manifest describes.
struct Manifest {
  std::string gate_weights;
  std::vector<std::string> experts;
  std::string arch;
  uint32_t d_model = 0, d_ff = 0, experts_per_layer = 0, top_k = 0, moe_layers = 0;
};

Result<Manifest> ParseManifest(ByteSpan bytes) {
  nlohmann::json j = nlohmann::json::parse(bytes.begin(), bytes.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status::InvalidArgument("the manifest is not JSON");
  try {
    if (j.at("format").get<std::string>() != kManifestFormat) {
      return Status::InvalidArgument("the manifest's format is not " + std::string(kManifestFormat));
    }
    Manifest m;
    m.gate_weights = j.at("gate_weights").get<std::string>();
    m.experts = j.at("experts").get<std::vector<std::string>>();
    m.arch = j.at("arch").get<std::string>();
    m.d_model = j.at("d_model").get<uint32_t>();
    m.d_ff = j.at("d_ff").get<uint32_t>();
    m.experts_per_layer = j.at("experts_per_layer").get<uint32_t>();
    m.top_k = j.at("top_k").get<uint32_t>();
    m.moe_layers = j.at("moe_layers").get<uint32_t>();
    TRUSTMOE_RETURN_IF_ERROR(crypto::Cid::Parse(m.gate_weights).status());
    for (const auto& c : m.experts) TRUSTMOE_RETURN_IF_ERROR(crypto::Cid::Parse(c).status());
    if (m.experts.size() != static_cast<size_t>(m.experts_per_layer) * m.moe_layers) {
      return Status::InvalidArgument("the manifest lists " + std::to_string(m.experts.size()) +
                                     " experts for " + std::to_string(m.moe_layers) + " x " +
                                     std::to_string(m.experts_per_layer));
    }
    return m;
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("the manifest is malformed: ") + e.what());
  }
}

Status CheckDataset(const std::string& dir, JobKind kind) {
  std::vector<Split> splits{Split::kTest};
  if (kind == JobKind::kTraining) splits.push_back(Split::kTrain);
  for (Split s : splits) {
    for (const std::string& f : {FashionMnistImagesFile(s), FashionMnistLabelsFile(s)}) {
      const std::string path = dir + "/" + f;
      if (!std::filesystem::exists(path)) {
        return Status::FailedPrecondition("the gate has no Fashion-MNIST: " + path +
                                          " is missing; " + std::string(kFashionMnistInstallHint) +
                                          " on the gate's machine");
      }
    }
  }
  return Status::Ok();
}

}  // namespace

struct GateNode::Running {
  std::atomic<bool> cancel{false};
};

GateNode::GateNode(GateConfig config, MetricsRegistry* metrics)
    : config_(std::move(config)), metrics_(metrics) {
  jobs_submitted_ = metrics_->GetCounter("trustmoe_gate_jobs_submitted_total", "Jobs accepted");
  requests_refused_ =
      metrics_->GetCounter("trustmoe_gate_requests_refused_total", "Requests refused");
}

GateNode::~GateNode() { Stop(); }

Result<std::unique_ptr<GateNode>> GateNode::Open(const GateConfig& config, MetricsRegistry* metrics) {
  std::unique_ptr<GateNode> node(new GateNode(config, metrics));
  auto key = crypto::PrivateKey::LoadPem(config.identity_key);
  if (!key.ok()) return key.status().WithContext("identity_key " + config.identity_key);
  node->key_ = std::make_shared<const crypto::PrivateKey>(std::move(key).value());
  auto genesis = ledger::Genesis::Load(config.genesis);
  if (!genesis.ok()) return genesis.status().WithContext("genesis " + config.genesis);
  chain::ChainClientOptions chain_options;
  chain_options.endpoints = config.chain_validators;
  if (chain_options.endpoints.empty()) {
    for (const auto& v : genesis->validators) chain_options.endpoints.push_back(v.endpoint);
  }
  chain_options.transport = config.transport;
  chain_options.commit_timeout_ms = static_cast<uint32_t>(config.submit_timeout_ms);
  TRUSTMOE_ASSIGN_OR_RETURN(node->chain_, chain::ChainClient::Create(chain_options, *genesis));
  storage::StoreClientOptions store_options;
  store_options.endpoints = config.store_endpoints;
  store_options.transport = config.transport;
  store_options.writer = node->key_;
  TRUSTMOE_ASSIGN_OR_RETURN(node->store_, storage::StoreClient::Create(store_options));
  const std::string db_dir = config.data_dir + "/jobs";
  std::error_code ec;
  std::filesystem::create_directories(db_dir, ec);
  if (ec) return Status::Internal("creating " + db_dir + ": " + ec.message());
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* db = nullptr;
  TRUSTMOE_RETURN_IF_ERROR(FromRocks(rocksdb::DB::Open(options, db_dir, &db), "opening " + db_dir));
  node->db_.reset(db);
  TRUSTMOE_RETURN_IF_ERROR(node->Load());
  return node;
}

Status GateNode::Load() {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek("job/"); it->Valid() && it->key().starts_with("job/"); it->Next()) {
    v1::StoredJob job;
    if (!job.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return Status::DataLoss("the job table holds a corrupt record under " + it->key().ToString());
    }
    const std::string& id = job.info().job_id();
    progress_[id] = job.info().progress();
    if (!Final(job.info().progress().state())) {
      TM_INFO("job {} ({}) was {} when the gate stopped: resuming it from step {}", id,
              job.info().name(), job.info().progress().state(), job.checkpoint_step());
      queue_.push_back(id);
    }
  }
  return FromRocks(it->status(), "reading the job table");
}

void GateNode::Start() {
  for (uint32_t i = 0; i < config_.jobs_concurrent_max; ++i) {
    workers_.emplace_back([this] { Worker(); });
  }
}

void GateNode::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_.exchange(true)) {
      // already stopping
    }
    for (auto& [id, r] : running_) r->cancel = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) {
    if (t.joinable()) t.join();
  }
  workers_.clear();
}

Status GateNode::Persist(const v1::StoredJob& job) {
  std::string value;
  job.SerializeToString(&value);
  rocksdb::WriteOptions options;
  options.sync = true;
  return FromRocks(db_->Put(options, TableKey(job.info().job_id()), value), "writing the job table");
}

Result<v1::StoredJob> GateNode::Read(const std::string& job_id) {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), TableKey(job_id), &value);
  if (s.IsNotFound()) return Status::NotFound("no job " + job_id + " on this gate");
  TRUSTMOE_RETURN_IF_ERROR(FromRocks(s, "reading the job table"));
  v1::StoredJob job;
  if (!job.ParseFromString(value)) return Status::DataLoss("job " + job_id + "'s record is corrupt");
  return job;
}

Result<Caller> GateNode::Authenticate(const v1::RequestAuth& auth, std::string_view method,
                                      ByteSpan payload) {
  auto refuse = [this](Status s) {
    requests_refused_->Inc();
    return s;
  };
  auto key = crypto::PublicKey::FromBytes(AsSpan(auth.researcher()));
  if (!key.ok()) return refuse(Status::Unauthenticated("auth.researcher is not a 32-byte public key"));
  const int64_t nonce_ms = static_cast<int64_t>(auth.nonce() / 1'000'000);
  const int64_t now = NowMs();
  if (nonce_ms < now - kNonceWindowMs || nonce_ms > now + kNonceWindowMs) {
    return refuse(Status::Unauthenticated(
        "the request's nonce (its signing time) is more than 5 minutes from the gate's clock: "
        "check both clocks"));
  }
  if (auth.signature().size() != 64) {
    return refuse(Status::Unauthenticated("auth.signature is not 64 bytes"));
  }
  crypto::Signature sig{};
  std::copy(auth.signature().begin(), auth.signature().end(), sig.begin());
  const Bytes message =
      ledger::GateRequestMessage(chain_->genesis().chain_id, method, auth.nonce(), payload);
  if (!key->Verify(message, sig)) {
    return refuse(Status::Unauthenticated(
        "the request's signature does not verify (signed for another chain, method or payload?)"));
  }
  {
    std::lock_guard lock(nonce_mu_);
    std::erase_if(nonces_, [&](const auto& e) { return e.second < now - 2 * kNonceWindowMs; });
    if (!nonces_.emplace(std::make_pair(*key, auth.nonce()), now).second) {
      return refuse(Status::Unauthenticated("the request's nonce was used before (a replay)"));
    }
    auto cached = researcher_cache_.find(*key);
    if (cached != researcher_cache_.end() && cached->second.first > now - kResearcherCacheMs) {
      if (!cached->second.second.ok()) return refuse(cached->second.second);
      return Caller{*key};
    }
  }
  auto node = chain_->GetNode(*key);
  if (!node.ok()) return node.status().WithContext("asking the chain who signed the request");
  Status verdict = Status::Ok();
  if (!node->has_value()) {
    verdict = Status::PermissionDenied("key " + key->Hex().substr(0, 16) +
                                       "... is not registered on the chain: ask the admin to "
                                       "register it with role researcher");
  } else if ((*node)->record.role != ledger::NodeRole::kResearcher) {
    verdict = Status::PermissionDenied("key " + key->Hex().substr(0, 16) + "... is registered as " +
                                       std::string(ledger::NodeRoleName((*node)->record.role)) +
                                       ", not as a researcher");
  } else if ((*node)->reputation.blacklisted) {
    verdict = Status::PermissionDenied("key " + key->Hex().substr(0, 16) + "... is blacklisted");
  }
  {
    std::lock_guard lock(nonce_mu_);
    researcher_cache_[*key] = {now, verdict};
  }
  if (!verdict.ok()) return refuse(verdict);
  return Caller{*key};
}

Status GateNode::RecordEvent(const std::string& job_id, ledger::JobRecordBody body) {
  body.job = job_id;
  ledger::Tx tx = ledger::MakeTx(chain_->genesis().chain_id, ledger::TxType::kJobRecord, *key_,
                                 ledger::FreshNonce(), body.Encode());
  auto submitted = chain_->Submit(tx.Encode(), /*wait=*/true);
  if (!submitted.ok()) {
    return submitted.status().WithContext(
        "recording job " + job_id + " " + std::string(ledger::JobEventName(body.event)) +
        " on the chain");
  }
  return Status::Ok();
}

Result<v1::JobInfo> GateNode::Submit(const Caller& caller, const v1::SubmitJobRequest& request) {
  if (stopping_) return Status::Unavailable("the gate is shutting down");
  if (request.spec_toml().size() > ledger::kJobSpecBytesMax) {
    return Status::InvalidArgument("the job spec is " + std::to_string(request.spec_toml().size()) +
                                   " bytes; at most " + std::to_string(ledger::kJobSpecBytesMax));
  }
  TRUSTMOE_ASSIGN_OR_RETURN(JobSpec spec, ParseJobSpec(request.spec_toml(), "spec.toml"));
  TRUSTMOE_RETURN_IF_ERROR(CheckDataset(config_.dataset_dir, spec.kind));
  if (spec.kind == JobKind::kInference) {
    TRUSTMOE_ASSIGN_OR_RETURN(crypto::Cid cid, crypto::Cid::Parse(spec.base_model));
    auto bytes = store_->Get(cid, kManifestBytesMax);
    if (!bytes.ok()) return bytes.status().WithContext("fetching model.base_model " + spec.base_model);
    TRUSTMOE_RETURN_IF_ERROR(ParseManifest(*bytes).status().WithContext("model.base_model"));
  }
  const std::string id = ledger::JobIdFor(caller.researcher, request.auth().nonce(), request.spec_toml());
  {
    std::lock_guard lock(mu_);
    if (progress_.count(id)) return Status::AlreadyExists("job " + id + " was submitted already");
  }
  ledger::JobRecordBody body;
  body.event = ledger::JobEvent::kSubmitted;
  body.researcher = caller.researcher;
  body.request_nonce = request.auth().nonce();
  body.spec_toml = request.spec_toml();
  body.signature.assign(request.auth().signature().begin(), request.auth().signature().end());
  body.job = id;
  ledger::Tx tx = ledger::MakeTx(chain_->genesis().chain_id, ledger::TxType::kJobRecord, *key_,
                                 ledger::FreshNonce(), body.Encode());
  auto submitted = chain_->Submit(tx.Encode(), /*wait=*/true);
  if (!submitted.ok()) return submitted.status().WithContext("recording the job on the chain");

  v1::StoredJob job;
  v1::JobInfo* info = job.mutable_info();
  info->set_job_id(id);
  info->set_name(spec.name);
  info->set_kind(std::string(JobKindName(spec.kind)));
  info->set_researcher(caller.researcher.bytes().data(), caller.researcher.bytes().size());
  info->set_gate(gate_key().bytes().data(), gate_key().bytes().size());
  info->set_spec_toml(request.spec_toml());
  info->set_submitted_unix_ms(NowMs());
  v1::JobProgress* p = info->mutable_progress();
  p->set_job_id(id);
  p->set_state("queued");
  p->set_test_accuracy(-1);
  p->set_eta_seconds(-1);
  job.set_verdicts_from_height(submitted->height);
  TRUSTMOE_RETURN_IF_ERROR(Persist(job));
  jobs_submitted_->Inc();
  {
    std::lock_guard lock(mu_);
    progress_[id] = *p;
    ++progress_version_;
    queue_.push_back(id);
  }
  cv_.notify_all();
  TM_INFO("job {} ('{}', {}) submitted by researcher {}..., recorded at block {}", id, spec.name,
          JobKindName(spec.kind), caller.researcher.Hex().substr(0, 16), submitted->height);
  return *info;
}

Result<v1::StoredJob> GateNode::OwnedJob(const Caller& caller, const std::string& job_id) {
  if (job_id.empty() || job_id.size() > 128) return Status::InvalidArgument("job_id must be 1 to 128 bytes");
  auto job = Read(job_id);
  if (!job.ok()) return job.status();
  if (job->info().researcher() != std::string(caller.researcher.bytes().begin(),
                                              caller.researcher.bytes().end())) {
    return Status::NotFound("no job " + job_id + " of yours on this gate");
  }
  std::lock_guard lock(mu_);
  auto it = progress_.find(job_id);
  if (it != progress_.end()) *job->mutable_info()->mutable_progress() = it->second;
  return job;
}

Result<v1::JobInfo> GateNode::Get(const Caller& caller, const std::string& job_id) {
  TRUSTMOE_ASSIGN_OR_RETURN(v1::StoredJob job, OwnedJob(caller, job_id));
  return job.info();
}

Result<std::vector<v1::JobInfo>> GateNode::List(const Caller& caller) {
  std::vector<v1::JobInfo> out;
  const std::string me(caller.researcher.bytes().begin(), caller.researcher.bytes().end());
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek("job/"); it->Valid() && it->key().starts_with("job/"); it->Next()) {
    v1::StoredJob job;
    if (!job.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) continue;
    if (job.info().researcher() != me) continue;
    {
      std::lock_guard lock(mu_);
      auto p = progress_.find(job.info().job_id());
      if (p != progress_.end()) *job.mutable_info()->mutable_progress() = p->second;
    }
    out.push_back(job.info());
  }
  TRUSTMOE_RETURN_IF_ERROR(FromRocks(it->status(), "reading the job table"));
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.submitted_unix_ms() > b.submitted_unix_ms();
  });
  return out;
}

Result<v1::JobInfo> GateNode::Cancel(const Caller& caller, const std::string& job_id) {
  TRUSTMOE_ASSIGN_OR_RETURN(v1::StoredJob job, OwnedJob(caller, job_id));
  if (Final(job.info().progress().state())) {
    return Status::FailedPrecondition("job " + job_id + " already ended (" +
                                      job.info().progress().state() + ")");
  }
  bool queued = false;
  {
    std::lock_guard lock(mu_);
    auto q = std::find(queue_.begin(), queue_.end(), job_id);
    if (q != queue_.end()) {
      queue_.erase(q);
      queued = true;
    } else if (auto r = running_.find(job_id); r != running_.end()) {
      r->second->cancel = true;
    }
  }
  if (queued) {
    ledger::JobRecordBody body;
    body.event = ledger::JobEvent::kCancelled;
    body.detail = "cancelled by the researcher before it started";
    TRUSTMOE_RETURN_IF_ERROR(RecordEvent(job_id, body));
    Finish(job_id, "cancelled", body.detail);
  } else {
    // The job stops at its next step and records the cancellation.
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(60), [&] { return Final(progress_[job_id].state()); });
  }
  return Get(caller, job_id);
}

Status GateNode::Watch(const Caller& caller, const std::string& job_id,
                       const std::function<bool(const v1::JobProgress&)>& send,
                       const std::function<bool()>& alive) {
  TRUSTMOE_RETURN_IF_ERROR(OwnedJob(caller, job_id).status());
  {
    std::lock_guard lock(mu_);
    if (watchers_ >= config_.watchers_max) {
      return Status::ResourceExhausted("the gate serves " + std::to_string(watchers_) +
                                       " watches already (watchers_max); try again later");
    }
    ++watchers_;
  }
  struct Release {
    GateNode* n;
    ~Release() {
      std::lock_guard lock(n->mu_);
      --n->watchers_;
    }
  } release{this};
  uint64_t seen = UINT64_MAX;
  for (;;) {
    v1::JobProgress p;
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::seconds(1),
                   [&] { return progress_version_ != seen || stopping_; });
      if (progress_version_ == seen) {
        if (stopping_) return Status::Unavailable("the gate is shutting down");
        if (!alive()) return Status::Cancelled("the client went away");
        continue;
      }
      seen = progress_version_;
      p = progress_[job_id];
    }
    if (!send(p)) return Status::Ok();
    if (Final(p.state())) return Status::Ok();
  }
}

void GateNode::Publish(const std::string& job_id, const v1::JobProgress& progress) {
  {
    std::lock_guard lock(mu_);
    progress_[job_id] = progress;
    ++progress_version_;
  }
  cv_.notify_all();
}

void GateNode::Finish(const std::string& job_id, const std::string& state,
                      const std::string& detail) {
  auto job = Read(job_id);
  v1::JobProgress p;
  {
    std::lock_guard lock(mu_);
    p = progress_[job_id];
  }
  p.set_state(state);
  p.set_detail(detail);
  p.set_eta_seconds(0);
  if (job.ok()) {
    *job->mutable_info()->mutable_progress() = p;
    job->mutable_info()->set_finished_unix_ms(NowMs());
    if (Status s = Persist(*job); !s.ok()) TM_ERROR("job {}: {}", job_id, s.ToString());
  }
  Publish(job_id, p);
}

void GateNode::Worker() {
  for (;;) {
    std::string id;
    auto running = std::make_shared<Running>();
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      id = queue_.front();
      queue_.pop_front();
      running_[id] = running;
    }
    RunJob(id);
    {
      std::lock_guard lock(mu_);
      running_.erase(id);
    }
    cv_.notify_all();
  }
}

void GateNode::RunJob(const std::string& job_id) {
  std::shared_ptr<Running> running;
  {
    std::lock_guard lock(mu_);
    running = running_[job_id];
  }
  Status s = RunJobInner(job_id, running.get());
  if (s.ok()) return;
  if (s.code() == StatusCode::kCancelled && !running->cancel) return;
  if (s.code() == StatusCode::kCancelled && stopping_) {
    TM_INFO("job {}: stopped with the gate; it resumes from its last checkpoint", job_id);
    return;
  }
  ledger::JobRecordBody body;
  const bool cancelled = s.code() == StatusCode::kCancelled;
  body.event = cancelled ? ledger::JobEvent::kCancelled : ledger::JobEvent::kFailed;
  body.detail = cancelled ? "cancelled by the researcher" : s.ToString();
  if (body.detail.size() > ledger::kJobDetailBytesMax) body.detail.resize(ledger::kJobDetailBytesMax);
  if (Status r = RecordEvent(job_id, body); !r.ok()) TM_ERROR("job {}: {}", job_id, r.ToString());
  if (!cancelled) TM_ERROR("job {} failed: {}", job_id, s.ToString());
  Finish(job_id, cancelled ? "cancelled" : "failed", body.detail);
}

Status GateNode::RunJobInner(const std::string& job_id, Running* running) {
  TRUSTMOE_ASSIGN_OR_RETURN(v1::StoredJob stored, Read(job_id));
  TRUSTMOE_ASSIGN_OR_RETURN(JobSpec spec, ParseJobSpec(stored.info().spec_toml(), "spec.toml"));
  v1::JobProgress progress = stored.info().progress();
  progress.set_state("running");
  progress.set_detail("loading Fashion-MNIST");
  Publish(job_id, progress);
  stored.mutable_info()->mutable_progress()->set_state("running");
  TRUSTMOE_RETURN_IF_ERROR(Persist(stored));

  Dataset train;
  if (spec.kind == JobKind::kTraining) {
    TRUSTMOE_ASSIGN_OR_RETURN(train, LoadFashionMnist(config_.dataset_dir, Split::kTrain, spec.train_limit));
  }
  TRUSTMOE_ASSIGN_OR_RETURN(Dataset test, LoadFashionMnist(config_.dataset_dir, Split::kTest, spec.test_limit));

  std::vector<std::string> cids;
  uint64_t start_step = 0;
  std::string weights_cid;
  if (spec.kind == JobKind::kInference) {
    TRUSTMOE_ASSIGN_OR_RETURN(crypto::Cid cid, crypto::Cid::Parse(spec.base_model));
    TRUSTMOE_ASSIGN_OR_RETURN(Bytes bytes, store_->Get(cid, kManifestBytesMax));
    TRUSTMOE_ASSIGN_OR_RETURN(Manifest m, ParseManifest(bytes));
    spec.arch = m.arch;
    spec.d_model = m.d_model;
    spec.d_ff = m.d_ff;
    spec.experts = m.experts_per_layer;
    spec.top_k = std::min(m.top_k, m.experts_per_layer);
    spec.k_min = std::min(spec.k_min, spec.top_k);
    spec.moe_layers = m.moe_layers;
    cids = m.experts;
    weights_cid = m.gate_weights;
  } else if (stored.checkpoint_step() > 0) {
    start_step = stored.checkpoint_step();
    weights_cid = stored.checkpoint_weights_cid();
    cids.assign(stored.expert_cids().begin(), stored.expert_cids().end());
  }
  TRUSTMOE_ASSIGN_OR_RETURN(std::unique_ptr<MoeModel> model,
                            MoeModel::Create(spec, config_.torch_threads));
  if (!weights_cid.empty()) {
    TRUSTMOE_ASSIGN_OR_RETURN(crypto::Cid cid, crypto::Cid::Parse(weights_cid));
    TRUSTMOE_ASSIGN_OR_RETURN(Bytes weights, store_->Get(cid, kWeightsBytesMax));
    TRUSTMOE_RETURN_IF_ERROR(model->ImportWeights(weights).WithContext("the gate's weights"));
  }
  if (cids.empty()) {
    // A fresh job: its initial experts go to the store and onto the chain.
    progress.set_detail("publishing the initial experts");
    Publish(job_id, progress);
    for (uint32_t i = 0; i < spec.experts * spec.moe_layers; ++i) {
      TRUSTMOE_ASSIGN_OR_RETURN(Bytes file, InitialExpertFile(spec, i));
      TRUSTMOE_ASSIGN_OR_RETURN(storage::StoredBlob blob, store_->Put(file, /*pin=*/true));
      ledger::PublishExpert pub;
      pub.cid = blob.cid.ToString();
      pub.name = spec.name.substr(0, 100) + "/expert-" + std::to_string(i);
      pub.arch = spec.arch;
      pub.size = file.size();
      ledger::Tx tx = ledger::MakeTx(chain_->genesis().chain_id, ledger::TxType::kPublishExpert,
                                     *key_, ledger::FreshNonce(), pub.Encode());
      auto s = chain_->Submit(tx.Encode(), /*wait=*/true);
      // The same spec and seed make the same experts: published by an earlier job already.
      if (!s.ok() && s.status().code() != StatusCode::kAlreadyExists) {
        return s.status().WithContext("publishing expert " + std::to_string(i));
      }
      cids.push_back(pub.cid);
    }
  }

  std::vector<ledger::PlacementEntry> placement;
  for (const v1::ExpertPlacement& p : stored.info().placement()) {
    ledger::PlacementEntry e;
    e.index = p.index();
    e.expert_cid = p.cid();
    for (const std::string& k : p.edges()) {
      auto key = crypto::PublicKey::FromBytes(AsSpan(k));
      if (key.ok()) e.edges.push_back(*key);
    }
    placement.push_back(std::move(e));
  }
  // Placement changes go to the job table with the next persist.
  std::mutex placement_mu;
  std::vector<ledger::PlacementEntry> latest_placement;
  EdgeExpertsOptions options;
  options.job = job_id;
  options.spec = spec;
  options.call_timeout_ms = config_.call_timeout_ms;
  options.verdict_timeout_ms = config_.verdict_timeout_ms;
  options.commit_timeout_ms = config_.submit_timeout_ms;
  options.tensor_bytes_max = config_.edge_tensor_bytes_max;
  options.transport = config_.transport;
  options.transport.message_bytes_max =
      static_cast<int>(std::min<uint64_t>(2 * config_.edge_tensor_bytes_max + (1 << 20), INT_MAX));
  options.verdicts_from_height = stored.verdicts_from_height();
  options.on_placement = [&](const std::vector<ledger::PlacementEntry>& all) {
    std::lock_guard lock(placement_mu);
    latest_placement = all;
  };
  progress.set_detail("placing experts on edges");
  Publish(job_id, progress);
  TRUSTMOE_ASSIGN_OR_RETURN(std::unique_ptr<EdgeExperts> experts,
                            EdgeExperts::Create(options, chain_.get(), key_.get(), cids, placement));
  auto save_placement = [&](v1::StoredJob* job) {
    std::lock_guard lock(placement_mu);
    if (latest_placement.empty()) return;
    // A placement names the version it was made for; the job table keeps the version called
    // now, which a resumed job starts from.
    const std::vector<std::string> current = experts->ExpertCids();
    job->mutable_info()->clear_placement();
    for (const auto& e : latest_placement) {
      v1::ExpertPlacement* p = job->mutable_info()->add_placement();
      p->set_index(e.index);
      p->set_cid(current[e.index]);
      for (const auto& k : e.edges) p->add_edges(k.bytes().data(), k.bytes().size());
    }
  };
  auto fill_counts = [&](v1::JobProgress* p) {
    ExpertCallStats s = experts->Stats();
    p->set_verified(s.verified);
    p->set_rejected(s.rejected);
    p->set_rerouted(s.rerouted);
    p->set_blacklisted_edges(s.dropped_edges);
  };

  TrainHooks hooks;
  hooks.cancelled = [&] { return running->cancel.load(); };
  uint64_t steps_total = 0;
  if (spec.kind == JobKind::kTraining) {
    steps_total = StepsPerEpoch(spec, train.count) * spec.epochs;
    progress.set_detail("training");
    hooks.progress = [&](const TrainProgress& t) {
      progress.set_step(t.step);
      progress.set_steps_total(t.steps_total);
      progress.set_epoch(t.epoch);
      progress.set_loss(t.loss);
      progress.set_train_accuracy(t.train_accuracy);
      progress.set_samples_per_second(t.samples_per_second);
      progress.set_eta_seconds(t.eta_seconds);
      progress.set_fallbacks(static_cast<uint64_t>(t.fallback_rows));
      progress.clear_expert_load();
      for (double l : t.expert_load) progress.add_expert_load(l);
      fill_counts(&progress);
      Publish(job_id, progress);
    };
    hooks.checkpoint = [&](const TrainProgress& t) -> Status {
      TRUSTMOE_ASSIGN_OR_RETURN(Bytes weights, model->ExportWeights());
      TRUSTMOE_ASSIGN_OR_RETURN(storage::StoredBlob blob, store_->Put(weights, /*pin=*/true));
      ledger::JobRecordBody body;
      body.event = ledger::JobEvent::kCheckpoint;
      body.metrics.step = t.step;
      body.metrics.loss = t.loss;
      body.metrics.accuracy = std::clamp(t.train_accuracy, 0.0, 1.0);
      ExpertCallStats s = experts->Stats();
      body.metrics.verified = s.verified;
      body.metrics.rejected = s.rejected;
      body.cid = blob.cid.ToString();
      TRUSTMOE_RETURN_IF_ERROR(RecordEvent(job_id, body));
      TRUSTMOE_ASSIGN_OR_RETURN(v1::StoredJob job, Read(job_id));
      job.set_checkpoint_step(t.step);
      job.set_checkpoint_weights_cid(body.cid);
      job.clear_expert_cids();
      for (const auto& c : experts->ExpertCids()) job.add_expert_cids(c);
      job.set_verified(s.verified);
      job.set_rejected(s.rejected);
      save_placement(&job);
      *job.mutable_info()->mutable_progress() = progress;
      TM_INFO("job {}: checkpoint at step {}/{} (loss {:.4f}, accuracy {:.1f}%)", job_id, t.step,
              t.steps_total, t.loss, 100 * t.train_accuracy);
      return Persist(job);
    };
    TRUSTMOE_RETURN_IF_ERROR(Train(spec, train, model.get(), experts.get(), start_step, hooks));
  }

  progress.set_state("evaluating");
  progress.set_detail("evaluating on " + std::to_string(test.count) + " test images");
  Publish(job_id, progress);
  TRUSTMOE_ASSIGN_OR_RETURN(EvalResult eval, Evaluate(spec, test, model.get(), experts.get(),
                                                      steps_total + 1, hooks));

  // The job's output: a model manifest (training) or predictions (inference).
  nlohmann::json out;
  std::string output_cid;
  if (spec.kind == JobKind::kTraining) {
    TRUSTMOE_ASSIGN_OR_RETURN(Bytes weights, model->ExportWeights());
    TRUSTMOE_ASSIGN_OR_RETURN(storage::StoredBlob wblob, store_->Put(weights, /*pin=*/true));
    out["format"] = kManifestFormat;
    out["job"] = job_id;
    out["name"] = spec.name;
    out["arch"] = spec.arch;
    out["d_model"] = spec.d_model;
    out["d_ff"] = spec.d_ff;
    out["experts_per_layer"] = spec.experts;
    out["top_k"] = spec.top_k;
    out["moe_layers"] = spec.moe_layers;
    out["gate_weights"] = wblob.cid.ToString();
    out["experts"] = experts->ExpertCids();
    out["steps"] = steps_total;
    out["test_accuracy"] = eval.accuracy;
  } else {
    out["format"] = kPredictionsFormat;
    out["job"] = job_id;
    out["model"] = spec.base_model;
    out["accuracy"] = eval.accuracy;
    out["predictions"] = eval.predictions;
  }
  const std::string text = out.dump(1);
  TRUSTMOE_ASSIGN_OR_RETURN(storage::StoredBlob oblob,
                            store_->Put(Bytes(text.begin(), text.end()), /*pin=*/true));
  output_cid = oblob.cid.ToString();
  if (spec.kind == JobKind::kTraining) {
    ledger::PublishModel pub;
    pub.manifest_cid = output_cid;
    pub.name = spec.name;
    ledger::Tx tx = ledger::MakeTx(chain_->genesis().chain_id, ledger::TxType::kPublishModel,
                                   *key_, ledger::FreshNonce(), pub.Encode());
    auto s = chain_->Submit(tx.Encode(), /*wait=*/true);
    if (!s.ok() && s.status().code() != StatusCode::kAlreadyExists) {
      return s.status().WithContext("publishing the model");
    }
  }
  ledger::JobRecordBody body;
  body.event = ledger::JobEvent::kCompleted;
  body.metrics.step = steps_total;
  body.metrics.loss = eval.loss;
  body.metrics.accuracy = eval.accuracy;
  ExpertCallStats s = experts->Stats();
  body.metrics.verified = s.verified;
  body.metrics.rejected = s.rejected;
  body.cid = output_cid;
  TRUSTMOE_RETURN_IF_ERROR(RecordEvent(job_id, body));

  TRUSTMOE_ASSIGN_OR_RETURN(v1::StoredJob job, Read(job_id));
  if (spec.kind == JobKind::kTraining) {
    job.mutable_info()->set_manifest_cid(output_cid);
  } else {
    job.mutable_info()->set_predictions_cid(output_cid);
  }
  save_placement(&job);
  fill_counts(&progress);
  progress.set_test_accuracy(eval.accuracy);
  progress.set_fallbacks(progress.fallbacks() + static_cast<uint64_t>(eval.fallback_rows));
  progress.clear_expert_load();
  for (double l : eval.expert_load) progress.add_expert_load(l);
  progress.set_state("completed");
  progress.set_eta_seconds(0);
  progress.set_detail("test accuracy " + std::to_string(eval.accuracy) + " on " +
                      std::to_string(eval.rows) + " images; output " + output_cid);
  *job.mutable_info()->mutable_progress() = progress;
  job.mutable_info()->set_finished_unix_ms(NowMs());
  TRUSTMOE_RETURN_IF_ERROR(Persist(job));
  Publish(job_id, progress);
  TM_INFO("job {} completed: test accuracy {:.2f}% ({} verified, {} rejected results), output {}",
          job_id, 100 * eval.accuracy, s.verified, s.rejected, output_cid);
  return Status::Ok();
}

}  // namespace trustmoe::gate
