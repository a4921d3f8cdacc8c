// The real trustmoe-edge daemon on loopback, against four trustmoe-validator processes and a
// trustmoe-store: registration gates serving; Forward and Backward answer what a CPU reference
// computes, with a signed ExpertResult transaction that is committed PENDING and tensors that
// are in the store; hostile input gets a clear error and commits nothing; results answered
// while the chain is down, or while the store refuses the edge's key, survive an edge restart
// and are committed once things are put right; SIGTERM stops at once; /metrics.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <vector>

#include "chain/ledger/result.h"
#include "chain/ledger/tx.h"
#include "crypto/cid.h"
#include "edge/numeric.h"
#include "edge/runtime.h"
#include "tests/integration/edge_process.h"
#include "tests/integration/validator_cluster.h"

namespace trustmoe::edge::testing {
namespace {

using chain::testing::ValidatorCluster;
using storage::testing::HttpGet;
using storage::testing::StoreProcess;
using storage::testing::WaitFor;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

constexpr int64_t kDModel = 16;
constexpr int64_t kDff = 32;
constexpr uint32_t kRowsMax = 64;
constexpr uint64_t kTensorBytesMax = 256 << 10;
constexpr int64_t kCallTimeoutMs = 60000;
constexpr auto kCommitTimeout = 30s;

ExpertSpec Spec() { return {std::string(kArchSwiglu), kDModel, kDff, DType::kF32}; }

// A [rows, cols] f32 activations file of seeded values in [-1, 1]; `poison_at` >= 0 puts a NaN
// at that element.
Bytes Activations(int64_t rows, int64_t cols, uint64_t seed, int64_t poison_at = -1) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> values(static_cast<size_t>(rows * cols));
  for (float& v : values) v = uniform(rng);
  if (poison_at >= 0) values[static_cast<size_t>(poison_at)] = std::nanf("");
  auto file = WriteActivations({DType::kF32, rows, cols, FromFloats(DType::kF32, values)});
  EXPECT_TRUE(file.ok()) << file.status().ToString();
  return file.ok() ? *file : Bytes();
}

std::vector<float> Floats(const HostTensor& t) {
  auto values = ToFloats(t.dtype, t.data);
  EXPECT_TRUE(values.ok()) << values.status().ToString();
  return values.ok() ? *values : std::vector<float>();
}

// Equal within 1e-5 relative: per element against the magnitude of the reference tensor.
void ExpectClose(const std::string& output_file, const HostTensor& reference) {
  auto out = ReadActivations(AsBytes(output_file), kDModel, kRowsMax);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  ASSERT_EQ(out->rows, reference.rows);
  ASSERT_EQ(out->dtype, reference.dtype);
  std::vector<float> got = Floats(*out);
  std::vector<float> want = Floats(reference);
  ASSERT_EQ(got.size(), want.size());
  float scale = 0;
  for (float v : want) scale = std::max(scale, std::fabs(v));
  ASSERT_GT(scale, 0.0f);
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], 1e-5f * scale) << "element " << i;
  }
}

std::string ToString(const Bytes& b) { return std::string(b.begin(), b.end()); }

void SetDeadline(grpc::ClientContext* ctx) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(kCallTimeoutMs));
}

grpc::Status Forward(v1::EdgeService::Stub* stub, const std::string& job, uint64_t step,
                     const std::string& cid, const Bytes& input, v1::CallResponse* response) {
  v1::ForwardRequest request;
  request.set_job(job);
  request.set_step(step);
  request.set_expert_cid(cid);
  request.set_input(ToString(input));
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  return stub->Forward(&ctx, request, response);
}

grpc::Status Backward(v1::EdgeService::Stub* stub, const std::string& job, uint64_t step,
                      const std::string& cid, const Bytes& input, const Bytes& grad_output,
                      v1::CallResponse* response) {
  v1::BackwardRequest request;
  request.set_job(job);
  request.set_step(step);
  request.set_expert_cid(cid);
  request.set_input(ToString(input));
  request.set_grad_output(ToString(grad_output));
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  return stub->Backward(&ctx, request, response);
}

ledger::TxId IdOf(const v1::CallResponse& response) {
  ledger::TxId id{};
  EXPECT_EQ(response.result_id().size(), id.size());
  if (response.result_id().size() == id.size()) {
    std::memcpy(id.data(), response.result_id().data(), id.size());
  }
  return id;
}

// The chain, a store that takes the uploader's and the edges' keys, an expert in the store,
// and a CPU reference runtime holding the expert.
class World {
 public:
  static std::unique_ptr<World> Start(int edge_keys) {
    std::unique_ptr<World> w(new World());
    ledger::ChainParams params;
    params.view_change_timeout_ms = 1000;
    w->cluster = ValidatorCluster::Start(1, params);
    if (w->cluster == nullptr) return nullptr;
    w->chain = w->cluster->Client();
    if (w->chain == nullptr) return nullptr;
    storage::testing::StoreProcessOptions store_options;
    for (int i = 0; i < edge_keys; ++i) {
      w->edge_keys.push_back(crypto::PrivateKey::Generate().value());
      store_options.extra_writers.push_back(w->edge_keys.back().public_key());
    }
    w->store = StoreProcess::Start(store_options);
    if (w->store == nullptr) return nullptr;
    w->store_client = w->store->Client();
    auto expert = NewExpertFile(Spec(), 7);
    EXPECT_TRUE(expert.ok()) << expert.status().ToString();
    if (!expert.ok() || w->store_client == nullptr) return nullptr;
    w->expert_file = *expert;
    auto put = w->store_client->Put(w->expert_file, /*pin=*/true);
    EXPECT_TRUE(put.ok()) << put.status().ToString();
    if (!put.ok()) return nullptr;
    w->expert_cid = put->cid.ToString();
    EXPECT_EQ(w->expert_cid, crypto::ComputeCid(w->expert_file).ToString());
    // Edges run published experts only.
    Status published = w->Publish(w->expert_cid, w->expert_file.size());
    EXPECT_TRUE(published.ok()) << published.ToString();
    if (!published.ok()) return nullptr;
    auto runtime = ExpertRuntime::Create(RuntimeOptions{});
    EXPECT_TRUE(runtime.ok()) << runtime.status().ToString();
    if (!runtime.ok()) return nullptr;
    w->reference = std::move(*runtime);
    Status loaded = w->reference->Load(w->expert_cid, w->expert_file);
    EXPECT_TRUE(loaded.ok()) << loaded.ToString();
    if (!loaded.ok()) return nullptr;
    return w;
  }

  // The admin publishes `cid` as an expert (committed).
  Status Publish(const std::string& cid, uint64_t size) const {
    ledger::PublishExpert publish{cid, "it/" + cid.substr(12, 8), std::string(kArchSwiglu), size};
    return chain
        ->Submit(ledger::MakeTx(cluster->genesis().chain_id, ledger::TxType::kPublishExpert,
                                cluster->admin(), ledger::FreshNonce(), publish.Encode())
                     .Encode())
        .status();
  }

  // An edge process for edge key `i`.
  std::unique_ptr<EdgeProcess> StartEdge(int i) const {
    EdgeProcessOptions options;
    options.key = edge_keys[i];
    options.genesis_path = cluster->genesis_path();
    options.store_endpoints = {store->endpoint()};
    options.rows_per_request_max = kRowsMax;
    options.tensor_bytes_max = kTensorBytesMax;
    return EdgeProcess::Start(options);
  }

  // The admin registers edge key `i` with role edge (RegisterNode, committed).
  Status Register(int i, const std::string& name, const std::string& endpoint) const {
    ledger::RegisterNode body{edge_keys[i].public_key(), ledger::NodeRole::kEdge, name, endpoint};
    ledger::Tx tx = ledger::MakeTx(cluster->genesis().chain_id, ledger::TxType::kRegisterNode,
                                   cluster->admin(), ledger::FreshNonce(), body.Encode());
    return chain->Submit(tx.Encode()).status();
  }

  // The result records of edge key `i` on the chain, by state key.
  std::map<std::string, ledger::ResultRecord> Results(int i) const {
    std::map<std::string, ledger::ResultRecord> out;
    const std::string prefix = "result/" + edge_keys[i].public_key().Hex() + "/";
    std::string after;
    while (true) {
      auto page = chain->ScanState(prefix, after, 1000);
      EXPECT_TRUE(page.ok()) << page.status().ToString();
      if (!page.ok() || page->entries.empty()) break;
      for (const auto& [key, value] : page->entries) {
        auto record = ledger::ResultRecord::Decode(value);
        EXPECT_TRUE(record.ok()) << key << ": " << record.status().ToString();
        if (record.ok()) out.emplace(key, std::move(*record));
        after = key;
      }
    }
    return out;
  }

  bool Committed(const ledger::TxId& id) const { return chain->GetTx(id).ok(); }

  std::unique_ptr<ValidatorCluster> cluster;
  std::unique_ptr<chain::ChainClient> chain;
  std::unique_ptr<StoreProcess> store;
  std::unique_ptr<storage::StoreClient> store_client;
  std::vector<crypto::PrivateKey> edge_keys;
  Bytes expert_file;
  std::string expert_cid;
  std::unique_ptr<ExpertRuntime> reference;

 private:
  World() = default;
};

// Tests that leave the chain running share one world and one registered edge (edge key 0);
// edge keys 1 and 2 are for the tests that start an edge of their own.
class EdgeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const auto start = std::chrono::steady_clock::now();
    world_ = World::Start(3).release();
    if (world_ == nullptr) return;
    edge_ = world_->StartEdge(0).release();
    if (edge_ == nullptr) return;
    Status registered = world_->Register(0, "edge0", edge_->endpoint());
    EXPECT_TRUE(registered.ok()) << registered.ToString();
    EXPECT_TRUE(WaitFor([] { return edge_->Health().serving(); }, 10s))
        << edge_->Health().detail() << "\n"
        << edge_->Log();
    std::cout << "[ info ] 4 validators, store and edge up in "
              << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()
              << " s\n";
  }

  static void TearDownTestSuite() {
    if (edge_ != nullptr) {
      EXPECT_EQ(edge_->Stop(), 0) << edge_->Log();
    }
    delete edge_;
    edge_ = nullptr;
    delete world_;
    world_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(world_, nullptr);
    ASSERT_NE(edge_, nullptr);
    stub_ = edge_->Stub();
    ASSERT_NE(stub_, nullptr);
  }

  // A good Forward on the shared edge; returns its response (fails the test otherwise).
  v1::CallResponse GoodForward(const std::string& job, uint64_t step, uint64_t seed) {
    v1::CallResponse response;
    grpc::Status s = Forward(stub_.get(), job, step, world_->expert_cid,
                             Activations(4, kDModel, seed), &response);
    EXPECT_TRUE(s.ok()) << s.error_code() << " " << s.error_message() << "\n" << edge_->Log();
    return response;
  }

  static World* world_;
  static EdgeProcess* edge_;
  std::unique_ptr<v1::EdgeService::Stub> stub_;
};

World* EdgeTest::world_ = nullptr;
EdgeProcess* EdgeTest::edge_ = nullptr;

TEST_F(EdgeTest, UnregisteredEdgeRefusesUntilTheAdminRegistersIt) {
  auto edge = world_->StartEdge(1);
  ASSERT_NE(edge, nullptr);
  // The first check against the chain replaces "not checked yet".
  ASSERT_TRUE(WaitFor(
      [&] { return edge->Health().detail().find("not registered") != std::string::npos; }, 10s))
      << edge->Health().detail() << "\n"
      << edge->Log();
  v1::HealthResponse health = edge->Health();
  EXPECT_FALSE(health.serving());
  EXPECT_THAT(health.detail(), HasSubstr(edge->key().public_key().Hex()));

  auto stub = edge->Stub();
  ASSERT_NE(stub, nullptr);
  v1::CallResponse response;
  grpc::Status s =
      Forward(stub.get(), "job-r", 1, world_->expert_cid, Activations(2, kDModel, 1), &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("not registered"));
  auto healthz = HttpGet(edge->http_port(), "/healthz");
  EXPECT_FALSE(healthz.ok());
  EXPECT_THAT(healthz.status().message(), HasSubstr("503"));
  EXPECT_EQ(edge->Info().outbox_depth(), 0u);

  Status registered = world_->Register(1, "edge1", edge->endpoint());
  ASSERT_TRUE(registered.ok()) << registered.ToString();
  const auto registered_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(WaitFor([&] { return edge->Health().serving(); }, 5s))
      << edge->Health().detail() << "\n"
      << edge->Log();
  std::cout
      << "[ info ] serving "
      << std::chrono::duration<double>(std::chrono::steady_clock::now() - registered_at).count()
      << " s after the registration committed\n";
  EXPECT_THAT(edge->Health().detail(), HasSubstr("edge1"));
  EXPECT_TRUE(HttpGet(edge->http_port(), "/healthz").ok());
  s = Forward(stub.get(), "job-r", 2, world_->expert_cid, Activations(2, kDModel, 1), &response);
  EXPECT_TRUE(s.ok()) << s.error_message() << "\n" << edge->Log();
  EXPECT_TRUE(WaitFor([&] { return edge->Info().outbox_depth() == 0; }, kCommitTimeout))
      << edge->Log();

  // SIGTERM with a client still connected (as a gate stays): the edge stops at once (about
  // 0.2 s here) rather than when gRPC gives up on the idle connection (3 s and more) or at
  // drain_timeout_ms (10 s), which is for calls in progress only.
  const auto stop_at = std::chrono::steady_clock::now();
  EXPECT_EQ(edge->Stop(), 0) << edge->Log();
  const double stop_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - stop_at).count();
  std::cout << "[ info ] stopped " << stop_s << " s after SIGTERM\n";
  EXPECT_LT(stop_s, 2.5) << edge->Log();
}

TEST_F(EdgeTest, ForwardAndBackwardAnswerTheReferenceAndAreCommitted) {
  const Bytes input = Activations(5, kDModel, 11);
  auto x = ReadActivations(input, kDModel, kRowsMax);
  ASSERT_TRUE(x.ok());
  auto reference_y = world_->reference->Forward(world_->expert_cid, *x);
  ASSERT_TRUE(reference_y.ok()) << reference_y.status().ToString();

  v1::CallResponse forward;
  grpc::Status s = Forward(stub_.get(), "job-f", 3, world_->expert_cid, input, &forward);
  ASSERT_TRUE(s.ok()) << s.error_code() << " " << s.error_message() << "\n" << edge_->Log();
  ExpectClose(forward.output(), *reference_y);
  EXPECT_EQ(forward.rows(), 5u);

  const crypto::PublicKey& edge_key = world_->edge_keys[0].public_key();
  const std::string& chain_id = world_->cluster->genesis().chain_id;
  auto tx = ledger::Tx::Decode(AsBytes(forward.result_tx()),
                               world_->cluster->genesis().params.tx_bytes_max);
  ASSERT_TRUE(tx.ok()) << tx.status().ToString();
  EXPECT_TRUE(tx->VerifySignature(chain_id).ok());
  EXPECT_FALSE(tx->VerifySignature("another-chain").ok());
  EXPECT_EQ(tx->type, static_cast<uint8_t>(ledger::TxType::kExpertResult));
  EXPECT_EQ(tx->signer, edge_key);
  auto body = ledger::ExpertResultBody::Decode(tx->body);
  ASSERT_TRUE(body.ok()) << body.status().ToString();
  EXPECT_EQ(body->kind, ledger::CallKind::kForward);
  EXPECT_EQ(body->job, "job-f");
  EXPECT_EQ(body->step, 3u);
  EXPECT_EQ(body->expert_cid, world_->expert_cid);
  EXPECT_EQ(body->input_cid, crypto::ComputeCid(input).ToString());
  EXPECT_EQ(body->output_cid, crypto::ComputeCid(AsBytes(forward.output())).ToString());
  EXPECT_EQ(body->grad_output_cid, "");
  EXPECT_EQ(body->rows, 5u);
  EXPECT_EQ(forward.input_cid(), body->input_cid);
  EXPECT_EQ(forward.output_cid(), body->output_cid);
  const ledger::TxId forward_id = IdOf(forward);
  EXPECT_EQ(forward_id, pbft::ComputeTxId(AsBytes(forward.result_tx())));

  // Backward of the same rows.
  const Bytes grad_output = Activations(5, kDModel, 12);
  auto g = ReadActivations(grad_output, kDModel, kRowsMax);
  ASSERT_TRUE(g.ok());
  auto reference_grad = world_->reference->Backward(world_->expert_cid, *x, *g, false, false);
  ASSERT_TRUE(reference_grad.ok()) << reference_grad.status().ToString();
  v1::CallResponse backward;
  s = Backward(stub_.get(), "job-f", 3, world_->expert_cid, input, grad_output, &backward);
  ASSERT_TRUE(s.ok()) << s.error_code() << " " << s.error_message() << "\n" << edge_->Log();
  ExpectClose(backward.output(), reference_grad->grad_input);
  auto backward_tx = ledger::Tx::Decode(AsBytes(backward.result_tx()),
                                        world_->cluster->genesis().params.tx_bytes_max);
  ASSERT_TRUE(backward_tx.ok()) << backward_tx.status().ToString();
  EXPECT_TRUE(backward_tx->VerifySignature(chain_id).ok());
  auto backward_body = ledger::ExpertResultBody::Decode(backward_tx->body);
  ASSERT_TRUE(backward_body.ok()) << backward_body.status().ToString();
  EXPECT_EQ(backward_body->kind, ledger::CallKind::kBackward);
  EXPECT_EQ(backward_body->grad_output_cid, crypto::ComputeCid(grad_output).ToString());
  EXPECT_EQ(backward_body->output_cid, crypto::ComputeCid(AsBytes(backward.output())).ToString());
  const ledger::TxId backward_id = IdOf(backward);
  EXPECT_EQ(backward_id, pbft::ComputeTxId(AsBytes(backward.result_tx())));

  // Committed, recorded PENDING, tensors in the store.
  const auto answered_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(
      WaitFor([&] { return world_->Committed(forward_id) && world_->Committed(backward_id); },
              kCommitTimeout))
      << edge_->Log();
  std::cout << "[ info ] both results committed "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - answered_at).count()
            << " s after the answers\n";
  auto results = world_->Results(0);
  for (const auto& [t, b] : {std::pair{&*tx, &*body}, std::pair{&*backward_tx, &*backward_body}}) {
    auto it = results.find(ledger::ResultKey(edge_key, t->nonce));
    ASSERT_NE(it, results.end()) << "no result record for nonce " << t->nonce;
    EXPECT_EQ(it->second.status, ledger::ResultStatus::kPending);
    EXPECT_EQ(it->second.edge, edge_key);
    EXPECT_EQ(it->second.body, *b);
    EXPECT_GE(it->second.height, 1u);
  }
  for (const std::string& cid : {body->input_cid, body->output_cid, backward_body->grad_output_cid,
                                 backward_body->output_cid}) {
    auto parsed = crypto::Cid::Parse(cid);
    ASSERT_TRUE(parsed.ok());
    auto stat = world_->store_client->Stat(*parsed);
    EXPECT_TRUE(stat.ok()) << cid << ": " << stat.status().ToString();
    if (stat.ok()) {
      EXPECT_TRUE(stat->pinned) << cid;
    }
  }
  EXPECT_EQ(edge_->Info().outbox_depth(), 0u);
}

TEST_F(EdgeTest, BadInputGetsAClearErrorAndCommitsNothing) {
  // Start from a drained outbox so that any entry below comes from a bad call.
  GoodForward("job-b", 0, 20);
  ASSERT_TRUE(WaitFor([&] { return edge_->Info().outbox_depth() == 0; }, kCommitTimeout))
      << edge_->Log();
  const size_t results_before = world_->Results(0).size();
  const uint64_t requests_before = edge_->Info().requests();

  const Bytes good = Activations(3, kDModel, 21);
  Bytes truncated(good.begin(), good.begin() + static_cast<long>(good.size() / 2));
  Bytes header_past_end = good;
  const uint64_t too_long = good.size();  // the header cannot be the whole file and more
  std::memcpy(header_past_end.data(), &too_long, 8);
  auto not_an_expert = world_->store_client->Put(Activations(2, kDModel, 22));
  ASSERT_TRUE(not_an_expert.ok()) << not_an_expert.status().ToString();
  const std::string unknown_cid =
      crypto::ComputeCid(AsBytes(std::string("no such blob"))).ToString();
  const std::string unpublished_cid =
      crypto::ComputeCid(AsBytes(std::string("never published"))).ToString();
  const std::string& cid = world_->expert_cid;
  // Finite, but far beyond what the expert's products fit in f32: the output overflows, and
  // the edge must not commit it (validators reject non-finite outputs).
  const Bytes huge = [] {
    std::vector<float> v(static_cast<size_t>(2 * kDModel), 1e30f);
    auto file = WriteActivations({DType::kF32, 2, kDModel, FromFloats(DType::kF32, v)});
    return file.ok() ? *file : Bytes();
  }();
  // Published, so that the edge gets as far as the store and the file.
  ASSERT_TRUE(world_->Publish(unknown_cid, 12).ok());
  ASSERT_TRUE(world_->Publish(not_an_expert->cid.ToString(), not_an_expert->size).ok());

  struct Case {
    std::string name;
    std::string job;
    std::string expert_cid;
    Bytes input;
    grpc::StatusCode code;
    std::string fragment;
  };
  const std::vector<Case> cases = {
      {"truncated safetensors", "job-b", cid, truncated, grpc::StatusCode::INVALID_ARGUMENT,
       "input: safetensors"},
      {"header length past the file", "job-b", cid, header_past_end,
       grpc::StatusCode::INVALID_ARGUMENT, "runs past the end"},
      {"wrong width", "job-b", cid, Activations(3, kDModel + 1, 23),
       grpc::StatusCode::INVALID_ARGUMENT, "expected [rows, 16]"},
      {"NaN in the input", "job-b", cid, Activations(3, kDModel, 24, /*poison_at=*/20),
       grpc::StatusCode::INVALID_ARGUMENT, "NaN or infinity at row 1"},
      {"rows over rows_per_request_max", "job-b", cid, Activations(kRowsMax + 1, kDModel, 25),
       grpc::StatusCode::INVALID_ARGUMENT, "65 rows, expected 1..64"},
      {"published CID that is not in the store", "job-b", unknown_cid, good,
       grpc::StatusCode::NOT_FOUND, "is not in the store"},
      {"CID not published on the ledger", "job-b", unpublished_cid, good,
       grpc::StatusCode::FAILED_PRECONDITION, "is not published on the ledger"},
      {"malformed CID", "job-b", "sha256-tree:XYZ", good, grpc::StatusCode::INVALID_ARGUMENT,
       "expert_cid"},
      {"blob that is not an expert", "job-b", not_an_expert->cid.ToString(), good,
       grpc::StatusCode::INVALID_ARGUMENT, "is not a valid expert file"},
      {"empty job", "", cid, good, grpc::StatusCode::INVALID_ARGUMENT, "job must be 1 to 128"},
      {"job too long", std::string(129, 'j'), cid, good, grpc::StatusCode::INVALID_ARGUMENT,
       "job must be 1 to 128"},
      {"input above tensor_bytes_max", "job-b", cid, Activations(kRowsMax, 1100, 26),
       grpc::StatusCode::RESOURCE_EXHAUSTED, "tensor_bytes_max"},
      {"finite input whose output overflows f32", "job-b", cid, huge,
       grpc::StatusCode::INVALID_ARGUMENT, "output holds NaN or infinity"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::CallResponse response;
    grpc::Status s = Forward(stub_.get(), c.job, 1, c.expert_cid, c.input, &response);
    EXPECT_EQ(s.error_code(), c.code) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(c.fragment));
    EXPECT_TRUE(response.result_tx().empty());
    EXPECT_EQ(edge_->Info().outbox_depth(), 0u);
  }
  {
    SCOPED_TRACE("backward with fewer gradient rows than input rows");
    v1::CallResponse response;
    grpc::Status s =
        Backward(stub_.get(), "job-b", 1, cid, good, Activations(2, kDModel, 27), &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("grad_output has 2 rows"));
  }
  {
    SCOPED_TRACE("backward without grad_output");
    v1::CallResponse response;
    grpc::Status s = Backward(stub_.get(), "job-b", 1, cid, good, Bytes(), &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("grad_output"));
  }

  // Still serving; only the good call below is answered and committed.
  EXPECT_TRUE(edge_->Health().serving());
  EXPECT_EQ(edge_->Info().requests(), requests_before);
  v1::CallResponse last = GoodForward("job-b", 2, 28);
  ASSERT_TRUE(WaitFor([&] { return world_->Committed(IdOf(last)); }, kCommitTimeout))
      << edge_->Log();
  EXPECT_EQ(edge_->Info().requests(), requests_before + 1);
  // The edge removes the entry once its own submit returns, a moment after the commit this
  // test saw through its own client.
  EXPECT_TRUE(WaitFor([&] { return edge_->Info().outbox_depth() == 0; }, 10s))
      << "outbox depth " << edge_->Info().outbox_depth();
  EXPECT_EQ(world_->Results(0).size(), results_before + 1);
}

TEST_F(EdgeTest, MetricsShowRequestsAndOutboxDepth) {
  v1::CallResponse response = GoodForward("job-m", 1, 30);
  ASSERT_TRUE(WaitFor([&] { return world_->Committed(IdOf(response)); }, kCommitTimeout));
  auto metrics = HttpGet(edge_->http_port(), "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status().ToString();
  auto requests = storage::testing::MetricValue(*metrics, "trustmoe_edge_requests_total");
  ASSERT_TRUE(requests.has_value()) << *metrics;
  EXPECT_GE(*requests, 1.0);
  EXPECT_EQ(*requests, static_cast<double>(edge_->Info().requests()));
  ASSERT_TRUE(WaitFor(
      [&] {
        auto text = HttpGet(edge_->http_port(), "/metrics");
        return text.ok() &&
               storage::testing::MetricValue(*text, "trustmoe_edge_outbox_depth") == 0.0;
      },
      10s))
      << *metrics;
  EXPECT_THAT(*metrics, HasSubstr("# TYPE trustmoe_edge_outbox_depth gauge"));
  auto healthz = HttpGet(edge_->http_port(), "/healthz");
  EXPECT_TRUE(healthz.ok()) << healthz.status().ToString();
}

TEST_F(EdgeTest, ResultsWaitWhileTheStoreRefusesTheEdgeKey) {
  // A store whose writers do not include the edge's key: reads work, uploads are refused.
  auto refusing_store = StoreProcess::Start();
  ASSERT_NE(refusing_store, nullptr);
  auto refusing_client = refusing_store->Client();
  ASSERT_NE(refusing_client, nullptr);
  ASSERT_TRUE(refusing_client->Put(world_->expert_file, /*pin=*/true).ok());
  ASSERT_TRUE(world_->Register(2, "edge2", "").ok());
  EdgeProcessOptions options;
  options.key = world_->edge_keys[2];
  options.genesis_path = world_->cluster->genesis_path();
  options.store_endpoints = {refusing_store->endpoint()};
  auto edge = EdgeProcess::Start(options);
  ASSERT_NE(edge, nullptr);
  ASSERT_TRUE(WaitFor([&] { return edge->Health().serving(); }, 10s)) << edge->Log();
  auto stub = edge->Stub();
  ASSERT_NE(stub, nullptr);
  v1::CallResponse response;
  grpc::Status s =
      Forward(stub.get(), "job-s", 1, world_->expert_cid, Activations(2, kDModel, 50), &response);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << edge->Log();

  auto metric = [&](const std::string& name) {
    auto text = HttpGet(edge->http_port(), "/metrics");
    return text.ok() ? storage::testing::MetricValue(*text, name) : std::nullopt;
  };
  // Three failed attempts, or (wrongly) the result given up as refused for good.
  ASSERT_TRUE(WaitFor(
      [&] {
        return metric("trustmoe_edge_delivery_failures_total").value_or(0) >= 3 ||
               metric("trustmoe_edge_results_refused_total").value_or(0) > 0;
      },
      20s))
      << edge->Log();
  EXPECT_EQ(edge->Info().outbox_depth(), 1u) << edge->Log();
  EXPECT_EQ(metric("trustmoe_edge_results_refused_total"), 0.0);
  EXPECT_FALSE(world_->Committed(IdOf(response)));
  EXPECT_THAT(edge->Log(), HasSubstr("PERMISSION_DENIED"));

  // The operator points the edge at a store that takes its key: the result goes through.
  ASSERT_EQ(edge->Stop(), 0) << edge->Log();
  edge->options().store_endpoints = {world_->store->endpoint()};
  ASSERT_TRUE(edge->Restart().ok()) << edge->Log();
  ASSERT_TRUE(WaitFor([&] { return world_->Committed(IdOf(response)); }, kCommitTimeout))
      << edge->Log();
  EXPECT_TRUE(WaitFor([&] { return edge->Info().outbox_depth() == 0; }, 10s)) << edge->Log();
  EXPECT_EQ(world_->Results(2).size(), 1u);
  EXPECT_EQ(edge->Stop(), 0) << edge->Log();
}

TEST(EdgeOutboxTest, ResultsAnsweredWhileTheChainIsDownAreCommittedAfterRestarts) {
  auto world = World::Start(1);
  ASSERT_NE(world, nullptr);
  auto edge = world->StartEdge(0);
  ASSERT_NE(edge, nullptr);
  ASSERT_TRUE(world->Register(0, "edge0", edge->endpoint()).ok());
  ASSERT_TRUE(WaitFor([&] { return edge->Health().serving(); }, 10s)) << edge->Log();
  auto stub = edge->Stub();
  ASSERT_NE(stub, nullptr);
  // One call while the chain is up: the edge learns that the expert is published (it serves
  // only experts the chain confirmed, and remembers them).
  {
    v1::CallResponse response;
    ASSERT_TRUE(Forward(stub.get(), "job-o", 100, world->expert_cid,
                        Activations(3, kDModel, 39), &response)
                    .ok());
    ASSERT_TRUE(WaitFor([&] { return world->Committed(IdOf(response)); }, kCommitTimeout));
  }

  for (uint32_t i = 0; i < world->cluster->size(); ++i) {
    EXPECT_EQ(world->cluster->Stop(i), 0) << world->cluster->Log(i);
  }
  constexpr int kCalls = 4;
  std::vector<ledger::TxId> ids;
  for (int i = 0; i < kCalls; ++i) {
    v1::CallResponse response;
    grpc::Status s = Forward(stub.get(), "job-o", static_cast<uint64_t>(i), world->expert_cid,
                             Activations(3, kDModel, 40 + static_cast<uint64_t>(i)), &response);
    ASSERT_TRUE(s.ok()) << s.error_code() << " " << s.error_message() << "\n" << edge->Log();
    ids.push_back(IdOf(response));
  }
  v1::InfoResponse info = edge->Info();
  EXPECT_EQ(info.outbox_depth(), static_cast<uint64_t>(kCalls));
  EXPECT_EQ(info.requests(), static_cast<uint64_t>(kCalls) + 1);
  EXPECT_EQ(edge->Stop(), 0) << edge->Log();

  for (uint32_t i = 0; i < world->cluster->size(); ++i) {
    Status s = world->cluster->Launch(i);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  const auto restarted_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(edge->Restart().ok()) << edge->Log();
  ASSERT_TRUE(WaitFor([&] { return edge->Info().outbox_depth() == 0; }, 60s))
      << "outbox depth " << edge->Info().outbox_depth() << "\n"
      << edge->Log();
  std::cout
      << "[ info ] outbox drained "
      << std::chrono::duration<double>(std::chrono::steady_clock::now() - restarted_at).count()
      << " s after restarting the validators and the edge\n";
  for (const ledger::TxId& id : ids) {
    auto tx = world->chain->GetTx(id);
    EXPECT_TRUE(tx.ok()) << ToHex(id) << ": " << tx.status().ToString();
  }
  EXPECT_EQ(world->Results(0).size(), static_cast<size_t>(kCalls) + 1);
  EXPECT_EQ(edge->Stop(), 0) << edge->Log();
}

}  // namespace
}  // namespace trustmoe::edge::testing
