// The gate daemon end to end, with real processes as deploy/demo.sh runs them: a trustmoe-store,
// four trustmoe-validator processes that re-compute expert results against the store,
// trustmoe-edge daemons and trustmoe-gate, on loopback. Jobs are small (4 experts, top-2,
// d_model 16, 320 training images in 10 steps of 32, 128 test images) so that one takes seconds
// on 2 cores.
//
// The tests of one process share one world (store, cluster, 3 edges, gate) and run in the order
// below; a test that changes the world (kills an edge, restarts the gate) leaves it usable. The
// inference test uses the model of the training test when both run in one process, and trains
// it first otherwise.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "chain/ledger/job.h"
#include "chain/ledger/result.h"
#include "chain/ledger/tx.h"
#include "crypto/cid.h"
#include "tests/integration/edge_process.h"
#include "tests/integration/gate_process.h"
#include "tests/integration/validator_cluster.h"

namespace trustmoe::gate::testing {
namespace {

using chain::testing::ValidatorCluster;
using chain::testing::VerifyConfig;
using edge::testing::EdgeProcess;
using edge::testing::EdgeProcessOptions;
using storage::testing::StoreProcess;
using storage::testing::WaitFor;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

constexpr char kDatasetDir[] = "/usr/share/datasets/fashion-mnist";
constexpr size_t kEdges = 3;       // started with the world
constexpr size_t kSpareEdges = 1;  // keys allowed to write to the store, for edges a test adds
constexpr auto kJobTimeout = 180s;
constexpr auto kPollInterval = 50ms;  // between RPCs that poll the gate or the chain

constexpr uint32_t kExperts = 4;
constexpr uint32_t kTrainLimit = 320;
constexpr uint32_t kBatch = 32;
constexpr uint32_t kTestLimit = 128;
constexpr uint32_t kCheckpointEvery = 4;
constexpr uint64_t kStepsTotal = kTrainLimit / kBatch;

// A job spec; the defaults are the small job of every test.
struct JobOptions {
  std::string name;
  std::string kind = "training";
  std::string dataset = "fashion-mnist";
  uint32_t experts = kExperts;
  uint32_t top_k = 2;
  uint32_t replication = 2;
  std::string base_model;
  std::string extra;  // appended as it is (to [verify])
};

std::string Spec(const std::string& name, const std::function<void(JobOptions*)>& change = {}) {
  JobOptions o;
  o.name = name;
  if (change) change(&o);
  std::string s = "[job]\nname = \"" + o.name + "\"\nkind = \"" + o.kind + "\"\ndataset = \"" +
                  o.dataset + "\"\nseed = 1\n\n";
  s += "[model]\nexperts = " + std::to_string(o.experts) + "\ntop_k = " + std::to_string(o.top_k) +
       "\nd_model = 16\nd_ff = 32\n";
  if (!o.base_model.empty()) s += "base_model = \"" + o.base_model + "\"\n";
  s += "\n[training]\nepochs = 1\nbatch_size = " + std::to_string(kBatch) +
       "\ntrain_limit = " + std::to_string(kTrainLimit) +
       "\ntest_limit = " + std::to_string(kTestLimit) +
       "\ncheckpoint_every = " + std::to_string(kCheckpointEvery) + "\n\n";
  s += "[verify]\nmode = \"sync\"\nreplication = " + std::to_string(o.replication) + "\n";
  return s + o.extra;
}

std::string KeyBytes(const crypto::PublicKey& key) {
  return std::string(key.bytes().begin(), key.bytes().end());
}

ByteSpan AsSpan(std::string_view s) {
  return ByteSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

// Polls `condition` every kPollInterval until it holds or `timeout` passes (for conditions
// that cost an RPC, which WaitFor's 5 ms poll would flood).
bool PollUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(kPollInterval);
  }
}

// The chain's state through ScanState, for ledger::ReadJobState.
class ChainState final : public ledger::StateReader {
 public:
  explicit ChainState(chain::ChainClient* chain) : chain_(chain) {}
  Result<std::optional<Bytes>> Get(const std::string& key) const override {
    TRUSTMOE_ASSIGN_OR_RETURN(chain::ScanPage page, chain_->ScanState(key, "", 1));
    if (page.entries.empty() || page.entries[0].first != key) return std::optional<Bytes>();
    return std::optional<Bytes>(std::move(page.entries[0].second));
  }
  Result<std::vector<std::pair<std::string, Bytes>>> Scan(const std::string& prefix,
                                                          const std::string& start_after,
                                                          size_t limit) const override {
    const auto n = static_cast<uint32_t>(std::clamp<size_t>(limit, 1, 1000));
    TRUSTMOE_ASSIGN_OR_RETURN(chain::ScanPage page, chain_->ScanState(prefix, start_after, n));
    return std::move(page.entries);
  }

 private:
  chain::ChainClient* chain_;
};

// Store, four verifying validators, kEdges registered edges, a registered researcher and the
// gate.
class World {
 public:
  static std::unique_ptr<World> Start() {
    std::unique_ptr<World> w(new World());
    w->gate_key = crypto::PrivateKey::Generate().value();
    w->researcher =
        std::make_shared<const crypto::PrivateKey>(crypto::PrivateKey::Generate().value());
    storage::testing::StoreProcessOptions store_options;
    store_options.concurrent_streams_max = 256;
    store_options.extra_writers.push_back(w->gate_key.public_key());
    for (size_t i = 0; i < kEdges + kSpareEdges; ++i) {
      w->edge_keys.push_back(crypto::PrivateKey::Generate().value());
      store_options.extra_writers.push_back(w->edge_keys.back().public_key());
    }
    w->store = StoreProcess::Start(store_options);
    if (w->store == nullptr) return nullptr;
    w->store_client = w->store->Client();
    VerifyConfig verify;
    verify.store = {w->store->endpoint()};
    w->cluster = ValidatorCluster::Start(1, {}, verify);
    if (w->cluster == nullptr) return nullptr;
    w->chain = w->cluster->Client();
    if (w->chain == nullptr || w->store_client == nullptr) return nullptr;
    for (uint32_t i = 0; i < w->cluster->size(); ++i) {
      w->members.push_back(w->cluster->Client({i}));
      if (w->members.back() == nullptr) return nullptr;
    }
    if (!w->Register(w->researcher->public_key(), ledger::NodeRole::kResearcher, "researcher")) {
      return nullptr;
    }
    if (!w->Register(w->gate_key.public_key(), ledger::NodeRole::kGate, "gate")) return nullptr;
    for (size_t i = 0; i < kEdges; ++i) {
      if (w->AddEdge() == nullptr) return nullptr;
    }
    GateProcessOptions gate_options;
    gate_options.key = w->gate_key;
    gate_options.genesis_path = w->cluster->genesis_path();
    gate_options.store_endpoints = {w->store->endpoint()};
    // A call whose edge died after answering is sent to another holder after this long.
    gate_options.verdict_timeout_ms = 10000;
    w->gate = GateProcess::Start(gate_options);
    if (w->gate == nullptr) return nullptr;
    w->client = w->Client(w->researcher);
    return w->client != nullptr ? std::move(w) : nullptr;
  }

  const std::string& chain_id() const { return cluster->genesis().chain_id; }

  bool Register(const crypto::PublicKey& key, ledger::NodeRole role, const std::string& name,
                const std::string& endpoint = "") const {
    auto done = chain->Submit(cluster->RegisterNode(key, role, name, endpoint).Encode());
    EXPECT_TRUE(done.ok()) << "registering " << name << ": " << done.status().ToString();
    return done.ok();
  }

  // Starts an edge with the next unused edge key, registers it with its endpoint and waits
  // until it serves. nullptr (the test failed) when it does not.
  EdgeProcess* AddEdge() {
    if (edges.size() >= edge_keys.size()) {
      ADD_FAILURE() << "no spare edge key left";
      return nullptr;
    }
    EdgeProcessOptions options;
    options.key = edge_keys[edges.size()];
    options.genesis_path = cluster->genesis_path();
    options.store_endpoints = {store->endpoint()};
    options.rows_per_request_max = 256;  // an evaluation batch of 128 images, top-2
    auto edge = EdgeProcess::Start(options);
    if (edge == nullptr) return nullptr;
    const std::string name = "edge" + std::to_string(edges.size());
    if (!Register(edge->key().public_key(), ledger::NodeRole::kEdge, name, edge->endpoint())) {
      return nullptr;
    }
    if (!WaitFor([&] { return edge->Health().serving(); }, 30s)) {
      ADD_FAILURE() << name << " does not serve once registered. Log:\n" << edge->Log();
      return nullptr;
    }
    edges.push_back(std::move(edge));
    return edges.back().get();
  }

  std::unique_ptr<JobClient> Client(std::shared_ptr<const crypto::PrivateKey> key) const {
    return gate->Client(std::move(key), chain_id());
  }

  // A RequestAuth signed by `key` as JobClient signs it, with the given nonce.
  v1::RequestAuth Auth(const crypto::PrivateKey& key, std::string_view method, uint64_t nonce,
                       std::string_view payload) const {
    const crypto::Signature sig =
        key.Sign(ledger::GateRequestMessage(chain_id(), method, nonce, AsSpan(payload)));
    v1::RequestAuth auth;
    auth.set_researcher(KeyBytes(key.public_key()));
    auth.set_nonce(nonce);
    auth.set_signature(sig.data(), sig.size());
    return auth;
  }

  // The job's record and placement as the validator furthest ahead reports them: one a block
  // behind may not have applied what the gate committed a moment ago.
  std::optional<ledger::JobState> JobOnChain(const std::string& job) const {
    std::optional<ledger::JobState> freshest;
    size_t answered = 0;
    for (const auto& member : members) {
      ChainState state(member.get());
      auto read = ledger::ReadJobState(state, job);
      if (!read.ok()) continue;
      ++answered;
      if (read->has_value() &&
          (!freshest || (*read)->record.updated_height > freshest->record.updated_height)) {
        freshest = std::move(*read);
      }
    }
    EXPECT_GT(answered, 0u) << "no validator reports job " << job;
    return freshest;
  }

  // The highest head any validator reports.
  uint64_t HeadHeight() const {
    uint64_t height = 0;
    for (const auto& member : members) {
      auto head = member->GetHead();
      if (head.ok()) height = std::max(height, head->height);
    }
    EXPECT_GT(height, 0u) << "no validator reports its head";
    return height;
  }

  // Every job record on the chain.
  std::vector<ledger::JobRecord> JobsOnChain() const {
    std::vector<ledger::JobRecord> out;
    std::string after;
    for (;;) {
      auto page = chain->ScanState("job/", after, 1000);
      EXPECT_TRUE(page.ok()) << page.status().ToString();
      if (!page.ok() || page->entries.empty()) return out;
      for (const auto& [key, value] : page->entries) {
        auto record = ledger::JobRecord::Decode(value);
        EXPECT_TRUE(record.ok()) << key << ": " << record.status().ToString();
        if (record.ok()) out.push_back(*record);
      }
      after = page->entries.back().first;
    }
  }

  // The events of every job-record transaction for `job` in the blocks committed so far.
  std::vector<ledger::JobEvent> JobEventsOnChain(const std::string& job) const {
    std::vector<ledger::JobEvent> events;
    const uint64_t head = HeadHeight();
    Status s = chain->WatchBlocks(1, [&](const ledger::StoredBlock& block) {
      for (const Bytes& raw : block.block ? block.block->txs : std::vector<Bytes>{}) {
        auto tx = ledger::Tx::Decode(raw, cluster->genesis().params.tx_bytes_max);
        if (!tx.ok() || tx->type != static_cast<uint8_t>(ledger::TxType::kJobRecord)) continue;
        auto body = ledger::JobRecordBody::Decode(tx->body);
        EXPECT_TRUE(body.ok()) << body.status().ToString();
        if (body.ok() && body->job == job) events.push_back(body->event);
      }
      return block.height < head;
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return events;
  }

  // A JSON document from the store.
  nlohmann::json StoredJson(const std::string& cid_text) const {
    auto cid = crypto::Cid::Parse(cid_text);
    EXPECT_TRUE(cid.ok()) << cid_text << ": " << cid.status().ToString();
    if (!cid.ok()) return nullptr;
    auto bytes = store_client->Get(*cid, 16 << 20);
    EXPECT_TRUE(bytes.ok()) << cid_text << ": " << bytes.status().ToString();
    if (!bytes.ok()) return nullptr;
    return nlohmann::json::parse(bytes->begin(), bytes->end(), nullptr, false);
  }

  // Watches `job` until it ends, or `until` (if set) returns false for a message, or `timeout`
  // passes; then the gate is restarted to end the stream and the test fails. Every message,
  // in order.
  std::vector<v1::JobProgress> Watch(const std::string& job,
                                     const std::function<bool(const v1::JobProgress&)>& until = {},
                                     std::chrono::seconds timeout = kJobTimeout) {
    std::mutex mu;
    std::vector<v1::JobProgress> seen;
    JobClient* watcher = client.get();
    auto watch = std::async(std::launch::async, [&] {
      return watcher->Watch(job, [&](const v1::JobProgress& p) {
        std::lock_guard lock(mu);
        seen.push_back(p);
        return !until || until(p);
      });
    });
    if (watch.wait_for(timeout) != std::future_status::ready) {
      {
        std::lock_guard lock(mu);
        ADD_FAILURE() << "job " << job << " still " << (seen.empty() ? "?" : seen.back().state())
                      << " after " << timeout.count() << " s";
      }
      Status restarted = gate->Restart();  // ends the stream
      EXPECT_TRUE(restarted.ok()) << restarted.ToString();
      watch.wait();
      client = Client(researcher);
      return seen;
    }
    Status s = watch.get();
    EXPECT_TRUE(s.ok()) << s.ToString();
    return seen;
  }

  // Submits `spec` as the researcher and waits for the job to end: the job as GetJob tells it.
  v1::JobInfo RunJob(const std::string& spec) {
    auto info = client->Submit(spec);
    EXPECT_TRUE(info.ok()) << info.status().ToString();
    if (!info.ok()) return {};
    Watch(info->job_id());
    auto done = client->Get(info->job_id());
    EXPECT_TRUE(done.ok()) << done.status().ToString();
    return done.ok() ? *done : v1::JobInfo();
  }

  std::unique_ptr<StoreProcess> store;
  std::unique_ptr<storage::StoreClient> store_client;
  std::unique_ptr<ValidatorCluster> cluster;
  std::unique_ptr<chain::ChainClient> chain;
  std::vector<std::unique_ptr<chain::ChainClient>> members;  // a client of each validator
  crypto::PrivateKey gate_key;
  std::vector<crypto::PrivateKey> edge_keys;  // store writers: kEdges started, then spares
  std::vector<std::unique_ptr<EdgeProcess>> edges;
  std::shared_ptr<const crypto::PrivateKey> researcher;
  std::unique_ptr<GateProcess> gate;
  std::unique_ptr<JobClient> client;  // the researcher's, to the gate's current port

 private:
  World() = default;
};

class GateTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (std::filesystem::exists(kDatasetDir)) world_ = World::Start().release();
  }
  static void TearDownTestSuite() {
    delete world_;
    world_ = nullptr;
  }

  void SetUp() override {
    if (!std::filesystem::exists(kDatasetDir)) {
      GTEST_SKIP() << kDatasetDir << " is missing: install Debian's dataset-fashion-mnist";
    }
    ASSERT_NE(world_, nullptr) << "the world did not start";
    w_ = world_;
  }

  void TearDown() override {
    if (HasFailure() && w_ != nullptr && w_->gate != nullptr) {
      std::cerr << "---- the gate's log ----\n" << w_->gate->Log() << "---- end ----\n";
    }
  }

  // The completed training job of TrainsOverEdgesWithSyncVerification, or one trained now.
  const v1::JobInfo& Trained() {
    if (!trained_.has_value()) {
      v1::JobInfo info = w_->RunJob(Spec("it-train"));
      EXPECT_EQ(info.progress().state(), "completed") << info.progress().detail();
      trained_ = info;
    }
    return *trained_;
  }

  static World* world_;
  static std::optional<v1::JobInfo> trained_;
  World* w_ = nullptr;
};

World* GateTest::world_ = nullptr;
std::optional<v1::JobInfo> GateTest::trained_;

TEST_F(GateTest, TrainsOverEdgesWithSyncVerification) {
  const std::string spec = Spec("it-train");
  auto submitted = w_->client->Submit(spec);
  ASSERT_TRUE(submitted.ok()) << submitted.status().ToString();
  const std::string job = submitted->job_id();
  EXPECT_EQ(submitted->researcher(), KeyBytes(w_->researcher->public_key()));
  EXPECT_EQ(submitted->gate(), KeyBytes(w_->gate_key.public_key()));
  std::vector<v1::JobProgress> watched = w_->Watch(job);

  // The stream: steps that never go back, more than one of them, and the final state last.
  ASSERT_FALSE(watched.empty());
  std::set<uint64_t> steps;
  for (size_t i = 1; i < watched.size(); ++i) {
    EXPECT_GE(watched[i].step(), watched[i - 1].step()) << "message " << i;
  }
  for (const auto& p : watched) steps.insert(p.step());
  EXPECT_GT(steps.size(), 2u);
  EXPECT_EQ(watched.back().state(), "completed") << watched.back().detail();
  EXPECT_EQ(watched.back().step(), kStepsTotal);

  auto info = w_->client->Get(job);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  const v1::JobProgress& p = info->progress();
  ASSERT_EQ(p.state(), "completed") << p.detail();
  EXPECT_EQ(p.step(), kStepsTotal);
  EXPECT_EQ(p.steps_total(), kStepsTotal);
  EXPECT_GT(p.test_accuracy(), 0.1);
  EXPECT_LE(p.test_accuracy(), 1.0);
  EXPECT_GT(p.verified(), 0u);
  EXPECT_EQ(p.rejected(), 0u);
  EXPECT_GT(info->finished_unix_ms(), 0);
  trained_ = *info;

  // The manifest is in the store and describes this model.
  ASSERT_FALSE(info->manifest_cid().empty());
  nlohmann::json manifest = w_->StoredJson(info->manifest_cid());
  ASSERT_TRUE(manifest.is_object()) << "the manifest is not JSON";
  EXPECT_EQ(manifest.value("format", ""), "trustmoe-model-manifest/v1");
  EXPECT_EQ(manifest.value("job", ""), job);
  EXPECT_EQ(manifest["experts"].size(), kExperts);
  EXPECT_NEAR(manifest.value("test_accuracy", -1.0), p.test_accuracy(), 1e-12);

  // On the chain: the record, owned by this gate; every expert placed on R = 2 edges.
  std::optional<ledger::JobState> state = w_->JobOnChain(job);
  ASSERT_TRUE(state.has_value()) << "no job/" << job << " on the chain";
  EXPECT_EQ(state->record.status, ledger::JobStatus::kCompleted);
  EXPECT_EQ(state->record.gate, w_->gate_key.public_key());
  EXPECT_EQ(state->record.researcher, w_->researcher->public_key());
  EXPECT_EQ(state->record.output_cid, info->manifest_cid());
  ASSERT_EQ(state->placement.size(), kExperts);
  // The job's placement as the gate tells it: the same holders, and the final versions.
  ASSERT_EQ(info->placement_size(), static_cast<int>(kExperts));
  for (uint32_t i = 0; i < kExperts; ++i) {
    const ledger::PlacementEntry& entry = state->placement[i].entry;
    EXPECT_EQ(entry.index, i);
    EXPECT_EQ(entry.edges.size(), 2u) << "expert " << i;
    std::set<std::string> on_chain, told;
    for (const auto& e : entry.edges) on_chain.insert(KeyBytes(e));
    for (const auto& e : info->placement(i).edges()) told.insert(e);
    EXPECT_EQ(told, on_chain) << "expert " << i;
    EXPECT_EQ(info->placement(i).cid(), manifest["experts"][i].get<std::string>());
  }

  // Every expert result of the job was re-computed and ACCEPTED.
  std::vector<chain::ResultEntry> results;
  PollUntil(
      [&] {
        auto r = w_->chain->Results(job);
        EXPECT_TRUE(r.ok()) << r.status().ToString();
        if (!r.ok()) return true;
        results = *r;
        return std::none_of(results.begin(), results.end(), [](const chain::ResultEntry& e) {
          return e.record.status == ledger::ResultStatus::kPending;
        });
      },
      60s);
  EXPECT_GE(results.size(), p.verified());
  for (const chain::ResultEntry& e : results) {
    EXPECT_EQ(e.record.status, ledger::ResultStatus::kAccepted)
        << "result " << e.record.nonce << " of edge " << e.record.edge.Hex().substr(0, 8) << ": "
        << e.record.reason;
  }
}

TEST_F(GateTest, RefusesBadRequestsAndRecordsNothing) {
  auto alice = std::make_shared<const crypto::PrivateKey>(crypto::PrivateKey::Generate().value());
  ASSERT_TRUE(w_->Register(alice->public_key(), ledger::NodeRole::kResearcher, "alice"));
  const crypto::PrivateKey stranger = crypto::PrivateKey::Generate().value();
  const crypto::PrivateKey& edge_key = w_->edges[0]->key();
  auto stub = w_->gate->Stub();
  ASSERT_NE(stub, nullptr);

  // Each attempt's job id, had it been accepted.
  std::vector<std::string> ids;
  auto submit = [&](const crypto::PrivateKey& key, const std::string& spec, uint64_t nonce,
                    bool break_signature = false) {
    v1::SubmitJobRequest request;
    request.set_spec_toml(spec);
    *request.mutable_auth() = w_->Auth(key, "SubmitJob", nonce, spec);
    if (break_signature) (*request.mutable_auth()->mutable_signature())[5] ^= 1;
    ids.push_back(ledger::JobIdFor(key.public_key(), nonce, spec));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 30s);
    v1::JobInfo info;
    return stub->SubmitJob(&ctx, request, &info);
  };
  const std::string good = Spec("it-bad");
  struct Case {
    std::string name;
    std::string spec;
    std::string message;
  };
  const std::vector<Case> bad_specs = {
      {"unknown key", Spec("it-bad", [](JobOptions* o) { o->extra = "colour = \"red\"\n"; }),
       "colour"},
      {"unknown table",
       Spec("it-bad", [](JobOptions* o) { o->extra = "[runtime]\nthreads = 2\n"; }), "runtime"},
      {"experts = 0",
       Spec("it-bad",
            [](JobOptions* o) {
              o->experts = 0;
              o->top_k = 1;
            }),
       "experts"},
      {"top_k above experts",
       Spec("it-bad",
            [](JobOptions* o) {
              o->experts = 2;
              o->top_k = 3;
            }),
       "top_k"},
      {"another dataset", Spec("it-bad", [](JobOptions* o) { o->dataset = "mnist"; }), "dataset"},
      {"over 16 KiB", good + "# " + std::string(16 * 1024, 'x') + "\n", "16384"},
  };
  for (const Case& c : bad_specs) {
    grpc::Status s = submit(*alice, c.spec, ledger::FreshNonce());
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << c.name << ": " << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(c.message)) << c.name;
  }
  // Who signs, and how.
  const uint64_t replayed = ledger::FreshNonce();
  EXPECT_EQ(submit(*alice, bad_specs[2].spec, replayed).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  grpc::Status s = submit(*alice, bad_specs[2].spec, replayed);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("replay"));
  s = submit(stranger, good, ledger::FreshNonce());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  s = submit(edge_key, good, ledger::FreshNonce());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("edge"));
  s = submit(*alice, good, ledger::FreshNonce(), /*break_signature=*/true);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
  const uint64_t ten_minutes_ns = 600ull * 1'000'000'000;
  s = submit(*alice, good, ledger::FreshNonce() - ten_minutes_ns);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("5 minutes"));

  // A replayed ListJobs.
  v1::ListJobsRequest list;
  *list.mutable_auth() = w_->Auth(*alice, "ListJobs", ledger::FreshNonce(), "");
  for (grpc::StatusCode want : {grpc::StatusCode::OK, grpc::StatusCode::UNAUTHENTICATED}) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 30s);
    v1::ListJobsResponse response;
    grpc::Status listed = stub->ListJobs(&ctx, list, &response);
    EXPECT_EQ(listed.error_code(), want) << listed.error_message();
    EXPECT_EQ(response.jobs_size(), 0);
  }

  // Jobs that are not Alice's: unknown, or the researcher's.
  auto alice_client = w_->Client(alice);
  ASSERT_NE(alice_client, nullptr);
  const std::string unknown(32, 'a');
  EXPECT_EQ(alice_client->Get(unknown).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(alice_client->Cancel(unknown).status().code(), StatusCode::kNotFound);
  auto theirs = w_->client->Submit(Spec("it-theirs"));
  ASSERT_TRUE(theirs.ok()) << theirs.status().ToString();
  auto got = alice_client->Get(theirs->job_id());
  EXPECT_EQ(got.status().code(), StatusCode::kNotFound) << got.status().ToString();
  auto cancelled = alice_client->Cancel(theirs->job_id());
  EXPECT_EQ(cancelled.status().code(), StatusCode::kNotFound) << cancelled.status().ToString();
  auto still = w_->client->Get(theirs->job_id());
  ASSERT_TRUE(still.ok()) << still.status().ToString();
  EXPECT_NE(still->progress().state(), "cancelled");
  auto ended = w_->client->Cancel(theirs->job_id());
  ASSERT_TRUE(ended.ok()) << ended.status().ToString();
  EXPECT_EQ(ended->progress().state(), "cancelled");

  // Nothing of Alice's, the stranger's or the edge's anywhere.
  auto listed = alice_client->List();
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  EXPECT_TRUE(listed->empty());
  for (const std::string& id : ids) EXPECT_FALSE(w_->JobOnChain(id).has_value()) << id;
  for (const ledger::JobRecord& r : w_->JobsOnChain()) {
    EXPECT_NE(r.researcher, alice->public_key());
    EXPECT_NE(r.researcher, stranger.public_key());
    EXPECT_NE(r.researcher, edge_key.public_key());
  }
}

TEST_F(GateTest, CancelsARunningJob) {
  auto submitted = w_->client->Submit(Spec("it-cancel"));
  ASSERT_TRUE(submitted.ok()) << submitted.status().ToString();
  const std::string job = submitted->job_id();
  auto watched = w_->Watch(job, [](const v1::JobProgress& p) { return p.step() < 1; });
  ASSERT_FALSE(watched.empty());
  ASSERT_EQ(watched.back().state(), "running") << watched.back().detail();

  auto cancelled = w_->client->Cancel(job);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status().ToString();
  EXPECT_EQ(cancelled->progress().state(), "cancelled");
  EXPECT_LT(cancelled->progress().step(), kStepsTotal);
  auto info = w_->client->Get(job);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->progress().state(), "cancelled");

  std::optional<ledger::JobState> state = w_->JobOnChain(job);
  ASSERT_TRUE(state.has_value());
  EXPECT_EQ(state->record.status, ledger::JobStatus::kCancelled);
  EXPECT_THAT(state->record.detail, HasSubstr("cancelled"));

  auto again = w_->client->Cancel(job);
  EXPECT_EQ(again.status().code(), StatusCode::kFailedPrecondition) << again.status().ToString();
  EXPECT_GT(info->finished_unix_ms(), 0);
  // Watching an ended job gives its final state at once.
  std::vector<v1::JobProgress> after = w_->Watch(job, {}, 30s);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].state(), "cancelled");
}

TEST_F(GateTest, ResumesAfterARestartFromItsCheckpoint) {
  auto submitted = w_->client->Submit(Spec("it-restart"));
  ASSERT_TRUE(submitted.ok()) << submitted.status().ToString();
  const std::string job = submitted->job_id();
  // Stopped a step past the first checkpoint: that step is done again after the restart.
  std::vector<v1::JobProgress> before =
      w_->Watch(job, [](const v1::JobProgress& p) { return p.step() <= kCheckpointEvery; });
  ASSERT_FALSE(before.empty());
  ASSERT_EQ(w_->gate->Stop(), 0) << "the gate did not exit cleanly on SIGTERM";

  // The checkpoint the job resumes from, as the chain recorded it.
  std::optional<ledger::JobState> state = w_->JobOnChain(job);
  ASSERT_TRUE(state.has_value());
  ASSERT_EQ(state->record.status, ledger::JobStatus::kRunning);
  const uint64_t checkpoint = state->record.metrics.step;
  EXPECT_GE(checkpoint, kCheckpointEvery);
  EXPECT_FALSE(state->record.checkpoint_cid.empty());
  const uint64_t stopped_at = w_->HeadHeight();

  ASSERT_TRUE(w_->gate->Restart().ok());
  w_->client = w_->Client(w_->researcher);
  ASSERT_NE(w_->client, nullptr);
  auto resumed = w_->client->Get(job);
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
  EXPECT_GE(resumed->progress().step(), checkpoint);
  std::vector<v1::JobProgress> watched = w_->Watch(job);
  ASSERT_FALSE(watched.empty());
  for (const v1::JobProgress& p : watched) {
    EXPECT_GE(p.step(), checkpoint) << "state " << p.state() << ": " << p.detail();
  }
  EXPECT_EQ(watched.back().state(), "completed") << watched.back().detail();
  auto info = w_->client->Get(job);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->progress().state(), "completed") << info->progress().detail();
  EXPECT_EQ(info->progress().step(), kStepsTotal);
  EXPECT_GT(info->progress().test_accuracy(), 0.1);
  // The counters cover the whole job, both runs.
  EXPECT_GE(info->progress().verified(), before.back().verified());

  state = w_->JobOnChain(job);
  ASSERT_TRUE(state.has_value());
  EXPECT_EQ(state->record.status, ledger::JobStatus::kCompleted);
  std::map<ledger::JobEvent, int> events;
  for (ledger::JobEvent e : w_->JobEventsOnChain(job)) ++events[e];
  EXPECT_EQ(events[ledger::JobEvent::kSubmitted], 1);
  EXPECT_EQ(events[ledger::JobEvent::kCompleted], 1);
  EXPECT_GE(events[ledger::JobEvent::kCheckpoint], 2);

  // The resumed run calls the experts' versions of the checkpoint: the step it does again (the
  // 0-based step `checkpoint`) names the versions that step named before the stop.
  auto results = w_->chain->Results(job);
  ASSERT_TRUE(results.ok()) << results.status().ToString();
  std::set<std::string> before_stop, after_restart;
  for (const chain::ResultEntry& e : *results) {
    if (e.record.body.step != checkpoint) continue;
    (e.record.height <= stopped_at ? before_stop : after_restart).insert(e.record.body.expert_cid);
  }
  EXPECT_FALSE(after_restart.empty());
  if (!before_stop.empty()) {
    EXPECT_EQ(after_restart, before_stop);
  }
}

TEST_F(GateTest, FinishesAJobWhenAnEdgeDies) {
  // A fourth edge, so that three stay alive for the tests after this one.
  ASSERT_NE(w_->AddEdge(), nullptr);
  auto submitted = w_->client->Submit(Spec("it-edge-dies"));
  ASSERT_TRUE(submitted.ok()) << submitted.status().ToString();
  const std::string job = submitted->job_id();
  w_->Watch(job, [](const v1::JobProgress& p) { return p.step() < 2; });

  std::optional<ledger::JobState> before = w_->JobOnChain(job);
  ASSERT_TRUE(before.has_value());
  ASSERT_FALSE(before->placement.empty());
  const crypto::PublicKey victim = before->placement[0].entry.edges[0];
  std::set<uint32_t> held;
  for (const ledger::PlacementRecord& p : before->placement) {
    for (const auto& e : p.entry.edges) {
      if (e == victim) held.insert(p.entry.index);
    }
  }
  bool killed = false;
  for (auto& edge : w_->edges) {
    if (edge->running() && edge->key().public_key() == victim) {
      edge->Kill9();
      killed = true;
    }
  }
  ASSERT_TRUE(killed) << "no running edge holds key " << victim.Hex();

  std::vector<v1::JobProgress> watched = w_->Watch(job);
  ASSERT_FALSE(watched.empty());
  auto info = w_->client->Get(job);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  const v1::JobProgress& p = info->progress();
  ASSERT_EQ(p.state(), "completed") << p.detail();
  EXPECT_GT(p.test_accuracy(), 0.1);
  EXPECT_TRUE(p.rerouted() > 0 || p.blacklisted_edges() > 0)
      << "rerouted " << p.rerouted() << ", blacklisted " << p.blacklisted_edges();

  std::optional<ledger::JobState> after = w_->JobOnChain(job);
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->record.status, ledger::JobStatus::kCompleted);
  size_t moved = 0;
  for (const ledger::PlacementRecord& r : after->placement) {
    const auto& edges = r.entry.edges;
    if (held.count(r.entry.index) && std::find(edges.begin(), edges.end(), victim) == edges.end()) {
      ++moved;
    }
    EXPECT_GE(edges.size(), 2u) << "expert " << r.entry.index;
  }
  EXPECT_GT(moved, 0u) << "the placement still lists the dead edge for every expert it held";
}

TEST_F(GateTest, InfersWithATrainedModel) {
  const v1::JobInfo& trained = Trained();
  ASSERT_EQ(trained.progress().state(), "completed");
  ASSERT_FALSE(trained.manifest_cid().empty());

  v1::JobInfo info = w_->RunJob(Spec("it-infer", [&](JobOptions* o) {
    o->kind = "inference";
    o->base_model = trained.manifest_cid();
  }));
  const v1::JobProgress& p = info.progress();
  ASSERT_EQ(p.state(), "completed") << p.detail();
  EXPECT_EQ(info.kind(), "inference");
  EXPECT_TRUE(info.manifest_cid().empty());
  ASSERT_FALSE(info.predictions_cid().empty());
  EXPECT_NEAR(p.test_accuracy(), trained.progress().test_accuracy(), 1e-9);

  nlohmann::json predictions = w_->StoredJson(info.predictions_cid());
  ASSERT_TRUE(predictions.is_object()) << "the predictions are not JSON";
  EXPECT_EQ(predictions.value("format", ""), "trustmoe-predictions/v1");
  EXPECT_EQ(predictions.value("model", ""), trained.manifest_cid());
  EXPECT_EQ(predictions["predictions"].size(), kTestLimit);
  EXPECT_NEAR(predictions.value("accuracy", -1.0), p.test_accuracy(), 1e-12);

  std::optional<ledger::JobState> state = w_->JobOnChain(info.job_id());
  ASSERT_TRUE(state.has_value());
  EXPECT_EQ(state->record.status, ledger::JobStatus::kCompleted);
  EXPECT_EQ(state->record.output_cid, info.predictions_cid());
}

}  // namespace
}  // namespace trustmoe::gate::testing
