// Verified results with real processes: four trustmoe-validator processes that re-compute
// results (validator 3 is byzantine in most tests: its verifier is off and the test signs
// votes with its key, always the opposite of the truth), a trustmoe-store, honest
// trustmoe-edge daemons, and manipulating edges, which are test code: they hold a registered
// edge key, compute the honest output with a reference runtime, change it, upload and sign it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "chain/ledger/report.h"
#include "chain/ledger/result.h"
#include "chain/ledger/tx.h"
#include "chain/ledger/update.h"
#include "chain/ledger/verdict.h"
#include "crypto/cid.h"
#include "edge/numeric.h"
#include "edge/runtime.h"
#include "tests/integration/edge_process.h"
#include "tests/integration/validator_cluster.h"

namespace trustmoe::verify::testing {
namespace {

using chain::testing::ValidatorCluster;
using chain::testing::VerifyConfig;
using edge::DType;
using edge::HostTensor;
using edge::testing::EdgeProcess;
using edge::testing::EdgeProcessOptions;
using ledger::ResultRecord;
using ledger::ResultStatus;
using storage::testing::StoreProcess;
using storage::testing::WaitFor;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

constexpr uint32_t kRowsMax = 64;
constexpr uint32_t kByzantine = 3;

std::string ToString(const Bytes& b) { return std::string(b.begin(), b.end()); }

HostTensor Random(int64_t rows, int64_t cols, uint64_t seed, DType dtype = DType::kF32) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(rows * cols));
  for (float& f : v) f = normal(rng);
  return {dtype, rows, cols, edge::FromFloats(dtype, v)};
}

Bytes File(const HostTensor& t) {
  auto file = edge::WriteActivations(t);
  EXPECT_TRUE(file.ok()) << file.status().ToString();
  return file.ok() ? *file : Bytes();
}

std::vector<float> Floats(const HostTensor& t) { return edge::ToFloats(t.dtype, t.data).value(); }

HostTensor WithFloats(const HostTensor& like, const std::vector<float>& v) {
  return {like.dtype, like.rows, like.cols, edge::FromFloats(like.dtype, v)};
}

struct Expert {
  edge::ExpertSpec spec;
  Bytes file;
  std::string cid;
};

// Store, four validators (verifying against the store, `byzantine` members not), experts A and B
// published, A2 (another version of A) stored but not published, a CPU reference runtime.
class World {
 public:
  static std::unique_ptr<World> Start(int edge_keys, std::set<uint32_t> byzantine,
                                      uint32_t update_fraction_ppm = 100000) {
    std::unique_ptr<World> w(new World());
    storage::testing::StoreProcessOptions store_options;
    // Two edges deliver up to 32 results each at once, and four validators read them.
    store_options.concurrent_streams_max = 512;
    for (int i = 0; i < edge_keys; ++i) {
      w->keys.push_back(crypto::PrivateKey::Generate().value());
      store_options.extra_writers.push_back(w->keys.back().public_key());
    }
    w->store = StoreProcess::Start(store_options);
    if (w->store == nullptr) return nullptr;
    w->store_client = w->store->Client();
    ledger::ChainParams params;
    params.view_change_timeout_ms = 1000;
    params.verify_deadline_ms = 1500;
    params.verify_update_fraction_ppm = update_fraction_ppm;
    w->cluster = ValidatorCluster::Start(1, params, VerifyConfig{{w->store->endpoint()}, byzantine});
    if (w->cluster == nullptr) return nullptr;
    w->chain = w->cluster->Client();
    auto runtime = edge::ExpertRuntime::Create(edge::RuntimeOptions{});
    EXPECT_TRUE(runtime.ok());
    if (!runtime.ok() || w->chain == nullptr || w->store_client == nullptr) return nullptr;
    w->reference = std::move(*runtime);
    w->a = w->AddExpert({std::string(edge::kArchSwiglu), 16, 32, DType::kF32}, 7, true);
    w->b = w->AddExpert({std::string(edge::kArchGeluMlp), 24, 48, DType::kF32}, 8, true);
    w->a2 = w->AddExpert({std::string(edge::kArchSwiglu), 16, 32, DType::kF32}, 9, false);
    for (int i = 0; i < edge_keys; ++i) {
      Status s = w->Register(i, "edge" + std::to_string(i), "");
      EXPECT_TRUE(s.ok()) << s.ToString();
    }
    return w;
  }

  Expert AddExpert(edge::ExpertSpec spec, uint64_t seed, bool publish) {
    Expert e{spec, edge::NewExpertFile(spec, seed).value(), ""};
    auto put = store_client->Put(e.file, true);
    EXPECT_TRUE(put.ok()) << put.status().ToString();
    e.cid = put->cid.ToString();
    EXPECT_TRUE(reference->Load(e.cid, e.file).ok());
    if (publish) {
      ledger::PublishExpert body{e.cid, "it/" + std::to_string(seed), spec.arch, e.file.size()};
      auto done = chain->Submit(Tx(ledger::TxType::kPublishExpert, cluster->admin(), body.Encode()));
      EXPECT_TRUE(done.ok()) << done.status().ToString();
    }
    return e;
  }

  Bytes Tx(ledger::TxType type, const crypto::PrivateKey& key, Bytes body) const {
    return ledger::MakeTx(cluster->genesis().chain_id, type, key, ledger::FreshNonce(),
                          std::move(body))
        .Encode();
  }

  Status Register(int i, const std::string& name, const std::string& endpoint) const {
    ledger::RegisterNode body{keys[i].public_key(), ledger::NodeRole::kEdge, name, endpoint};
    return chain->Submit(Tx(ledger::TxType::kRegisterNode, cluster->admin(), body.Encode())).status();
  }

  std::unique_ptr<EdgeProcess> StartEdge(int i) const {
    EdgeProcessOptions options;
    options.key = keys[i];
    options.genesis_path = cluster->genesis_path();
    options.store_endpoints = {store->endpoint()};
    options.rows_per_request_max = kRowsMax;
    return EdgeProcess::Start(options);
  }

  std::optional<ResultRecord> Result(const crypto::PublicKey& edge, uint64_t nonce) const {
    const std::string key = ledger::ResultKey(edge, nonce);
    auto page = chain->ScanState(key, "", 1);
    if (!page.ok() || page->entries.empty() || page->entries[0].first != key) return std::nullopt;
    auto record = ResultRecord::Decode(page->entries[0].second);
    return record.ok() ? std::optional(*record) : std::nullopt;
  }

  // Waits for the verdict on (edge, nonce); nullopt on timeout.
  std::optional<ResultRecord> Verdict(const crypto::PublicKey& edge, uint64_t nonce,
                                      std::chrono::seconds timeout = 60s) const {
    std::optional<ResultRecord> out;
    WaitFor(
        [&] {
          out = Result(edge, nonce);
          return out.has_value() && out->status != ResultStatus::kPending;
        },
        timeout);
    if (out.has_value() && out->status == ResultStatus::kPending) return std::nullopt;
    return out;
  }

  ledger::Reputation Reputation(const crypto::PublicKey& key) const {
    auto node = chain->GetNode(key);
    EXPECT_TRUE(node.ok() && node->has_value());
    return node.ok() && node->has_value() ? (*node)->reputation : ledger::Reputation{};
  }

  // Every (key, value) under `prefix`.
  std::vector<std::pair<std::string, Bytes>> Scan(const std::string& prefix) const {
    std::vector<std::pair<std::string, Bytes>> out;
    std::string after;
    while (true) {
      auto page = chain->ScanState(prefix, after, 1000);
      if (!page.ok() || page->entries.empty()) break;
      for (auto& e : page->entries) out.push_back(e);
      after = out.back().first;
    }
    return out;
  }

  std::unique_ptr<StoreProcess> store;
  std::unique_ptr<storage::StoreClient> store_client;
  std::unique_ptr<ValidatorCluster> cluster;
  std::unique_ptr<chain::ChainClient> chain;
  std::unique_ptr<edge::ExpertRuntime> reference;
  std::vector<crypto::PrivateKey> keys;
  Expert a, b, a2;

 private:
  World() = default;
};

// Validator 3 voting the opposite of the truth on every pending result, as fast as it can:
// `cheats` are the edges whose results are false.
class ByzantineVoter {
 public:
  ByzantineVoter(const World* w, std::set<crypto::PublicKey> cheats)
      : w_(w), key_(w->cluster->key(kByzantine)), cheats_(std::move(cheats)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~ByzantineVoter() {
    stop_ = true;
    thread_.join();
  }
  size_t votes() const { return votes_; }

 private:
  void Run() {
    std::set<std::string> voted;
    while (!stop_) {
      for (const auto& [key, value] : w_->Scan("pending/")) {
        if (!voted.insert(key).second) continue;
        const std::string rest = key.substr(8);
        auto edge = crypto::PublicKey::FromHex(rest.substr(0, 64)).value();
        ledger::VoteBody body;
        body.edge = edge;
        body.result_nonce = std::stoull(rest.substr(65), nullptr, 16);
        if (cheats_.count(edge) > 0) {
          body.verdict = ledger::Verdict::kAccepted;
        } else {
          body.verdict = ledger::Verdict::kRejected;
          body.reason = ledger::RejectReason::kMismatch;
          body.detail = "row 0: relative error 1 > tolerance 0.0001 (byzantine)";
        }
        auto sent = w_->chain->Submit(w_->Tx(ledger::TxType::kVote, key_, body.Encode()), false);
        if (sent.ok()) ++votes_;
      }
      std::this_thread::sleep_for(20ms);
    }
  }
  const World* w_;
  crypto::PrivateKey key_;
  std::set<crypto::PublicKey> cheats_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> votes_{0};
  std::thread thread_;
};

// ---- Manipulating edges (test code) ----

struct Cheat {
  ledger::CallKind kind = ledger::CallKind::kForward;
  const Expert* claimed = nullptr;  // the expert the commitment names
  Bytes input;
  Bytes grad_output;
  Bytes output;  // what the edge hands over as its output
  int64_t rows = 0;
  bool upload_output = true;
};

// Uploads the cheat's tensors, signs the commitment with `key` and submits it; its nonce.
uint64_t Submit(const World& w, const crypto::PrivateKey& key, const Cheat& c) {
  EXPECT_TRUE(w.store_client->Put(c.input, true).ok());
  if (!c.grad_output.empty()) EXPECT_TRUE(w.store_client->Put(c.grad_output, true).ok());
  if (c.upload_output) EXPECT_TRUE(w.store_client->Put(c.output, true).ok());
  ledger::ExpertResultBody body;
  body.kind = c.kind;
  body.job = "cheat-job";
  body.step = 1;
  body.expert_cid = c.claimed->cid;
  body.input_cid = crypto::ComputeCid(c.input).ToString();
  if (!c.grad_output.empty()) body.grad_output_cid = crypto::ComputeCid(c.grad_output).ToString();
  body.output_cid = crypto::ComputeCid(c.output).ToString();
  body.rows = static_cast<uint64_t>(c.rows);
  const uint64_t nonce = ledger::FreshNonce();
  Bytes tx = ledger::MakeTx(w.cluster->genesis().chain_id, ledger::TxType::kExpertResult, key,
                            nonce, body.Encode())
                 .Encode();
  auto done = w.chain->Submit(tx);
  EXPECT_TRUE(done.ok()) << done.status().ToString();
  return nonce;
}

HostTensor Honest(World& w, const Expert& e, const HostTensor& x) {
  auto y = w.reference->Forward(e.cid, x);
  EXPECT_TRUE(y.ok()) << y.status().ToString();
  return *y;
}

TEST(VerifyTest, ManipulationsAreRejectedAndTheirEdgesBlacklisted) {
  // Keys: 0..8 manipulators caught by re-computation, 9 an honest control, 10 and 11
  // manipulators caught by the gate's report of the commitment they handed over, 12 one that
  // uploads its outputs after the deadline.
  auto w = World::Start(13, {kByzantine});
  ASSERT_NE(w, nullptr);
  std::set<crypto::PublicKey> cheats;
  for (int i = 0; i < 13; ++i) {
    if (i != 9) cheats.insert(w->keys[i].public_key());
  }
  ByzantineVoter byzantine(w.get(), cheats);

  const int64_t rows = 16;  // <= verify_rows_min: every row is re-computed
  HostTensor x = Random(rows, 16, 1), x_other = Random(rows, 16, 2), xb = Random(rows, 24, 3);
  HostTensor y = Honest(*w, w->a, x);
  std::vector<float> yv = Floats(y);
  auto map = [&](auto f) {
    std::vector<float> v = yv;
    for (size_t i = 0; i < v.size(); ++i) v[i] = f(i, v[i]);
    return File(WithFloats(y, v));
  };
  std::mt19937_64 rng(5);
  std::normal_distribution<float> noise(0.0f, 1.0f);
  // Per-element noise of 1 % of the row's scale: far above the f32 tolerance of 1e-4.
  std::vector<float> noisy = yv;
  for (float& v : noisy) v += 0.01f * noise(rng);

  struct Case {
    std::string name;
    Cheat cheat;
    std::string reason;  // prefix of the result's reason
  };
  std::vector<Case> cases;
  auto forward = [&](Bytes output, const Expert* claimed = nullptr) {
    Cheat c;
    c.claimed = claimed != nullptr ? claimed : &w->a;
    c.input = File(x);
    c.output = std::move(output);
    c.rows = rows;
    return c;
  };
  cases.push_back({"output scaled", forward(map([](size_t, float v) { return 1.5f * v; })),
                   "mismatch"});
  cases.push_back({"noise above tolerance", forward(File(WithFloats(y, noisy))), "mismatch"});
  cases.push_back({"sign flipped", forward(map([](size_t, float v) { return -v; })), "mismatch"});
  cases.push_back({"one row changed",
                   forward(map([](size_t i, float v) { return i / 16 == 11 ? v + 0.5f : v; })),
                   "mismatch: row 11"});
  cases.push_back({"output of another input replayed", forward(File(Honest(*w, w->a, x_other))),
                   "mismatch"});
  {
    // Expert B's output for B's input, claimed as expert A's: wrong width for A.
    Cheat c = forward(File(Honest(*w, w->b, xb)));
    c.input = File(xb);
    cases.push_back({"output of another expert", c, "wrong-shape"});
  }
  cases.push_back({"another version of the expert, unpublished",
                   forward(File(Honest(*w, w->a2, x)), &w->a2), "expert-not-published"});
  cases.push_back({"another version of the expert, claimed as the published one",
                   forward(File(Honest(*w, w->a2, x))), "mismatch"});
  {
    // Its own input and honest output (bytes nobody else uploads), the output never uploaded.
    HostTensor x_withheld = Random(rows, 16, 4);
    Cheat c = forward(File(Honest(*w, w->a, x_withheld)));
    c.input = File(x_withheld);
    c.upload_output = false;
    cases.push_back({"output blob withheld", c, "output-missing"});
  }

  std::vector<uint64_t> nonces;
  for (size_t i = 0; i < cases.size(); ++i) {
    // The withholding edge does it three times: availability failures blacklist at the third.
    if (cases[i].reason == "output-missing") {
      Submit(*w, w->keys[i], cases[i].cheat);
      Submit(*w, w->keys[i], cases[i].cheat);
    }
    nonces.push_back(Submit(*w, w->keys[i], cases[i].cheat));
  }
  // An honest result in the middle of it all (test code too, with the honest output).
  const uint64_t honest_nonce = Submit(*w, w->keys[9], forward(File(y)));

  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].name);
    auto verdict = w->Verdict(w->keys[i].public_key(), nonces[i]);
    ASSERT_TRUE(verdict.has_value()) << "no verdict";
    EXPECT_EQ(verdict->status, ResultStatus::kRejected);
    EXPECT_THAT(verdict->reason, ::testing::StartsWith(cases[i].reason));
    std::cout << "[ info ] " << cases[i].name << ": REJECTED, " << verdict->reason << "\n";
    ledger::Reputation rep;
    ASSERT_TRUE(WaitFor([&] {
      rep = w->Reputation(w->keys[i].public_key());
      return rep.blacklisted;
    }, 30s)) << "not blacklisted; strikes " << rep.strikes << " faults " << rep.faults;
    EXPECT_EQ(rep.accepted, 0u);
    // A blacklisted edge's next commitment is refused outright.
    Cheat again = forward(File(y));
    Bytes tx = ledger::MakeTx(w->cluster->genesis().chain_id, ledger::TxType::kExpertResult,
                              w->keys[i], ledger::FreshNonce(),
                              ledger::ExpertResultBody{ledger::CallKind::kForward, "j", 1,
                                                       w->a.cid, crypto::ComputeCid(again.input).ToString(),
                                                       "", crypto::ComputeCid(again.output).ToString(),
                                                       static_cast<uint64_t>(rows)}
                                  .Encode())
                   .Encode();
    EXPECT_EQ(w->chain->Submit(tx).status().code(), StatusCode::kPermissionDenied);
  }
  auto honest = w->Verdict(w->keys[9].public_key(), honest_nonce);
  ASSERT_TRUE(honest.has_value());
  EXPECT_EQ(honest->status, ResultStatus::kAccepted) << honest->reason;
  EXPECT_FALSE(w->Reputation(w->keys[9].public_key()).blacklisted);

  // Commitments the chain never orders, reported by the gate that was handed them: one signed
  // by another key than the edge's, one reusing a nonce the edge signed another body with.
  crypto::PrivateKey gate = crypto::PrivateKey::Generate().value();
  ASSERT_TRUE(w->chain
                  ->Submit(w->Tx(ledger::TxType::kRegisterNode, w->cluster->admin(),
                                 ledger::RegisterNode{gate.public_key(), ledger::NodeRole::kGate,
                                                      "gate", ""}
                                     .Encode()))
                  .ok());
  Cheat call = forward(File(y));
  const std::string input_cid = crypto::ComputeCid(call.input).ToString();
  ledger::ExpertResultBody body{ledger::CallKind::kForward, "cheat-job", 1, w->a.cid, input_cid,
                                "", crypto::ComputeCid(call.output).ToString(),
                                static_cast<uint64_t>(rows)};
  auto report = [&](int edge, const Bytes& commitment) {
    ledger::ReportCommitment r{w->keys[edge].public_key(), commitment, w->a.cid, input_cid};
    return w->chain->Submit(w->Tx(ledger::TxType::kReportCommitment, gate, r.Encode())).status();
  };
  {
    SCOPED_TRACE("commitment signed by another key");
    crypto::PrivateKey other = crypto::PrivateKey::Generate().value();
    Bytes forged = ledger::MakeTx(w->cluster->genesis().chain_id, ledger::TxType::kExpertResult,
                                  other, ledger::FreshNonce(), body.Encode())
                       .Encode();
    EXPECT_EQ(w->chain->Submit(forged).status().code(), StatusCode::kPermissionDenied);
    Status reported = report(10, forged);
    EXPECT_TRUE(reported.ok()) << reported.ToString();
    ledger::Reputation rep = w->Reputation(w->keys[10].public_key());
    EXPECT_TRUE(rep.blacklisted);
    EXPECT_THAT(rep.blacklist_reason, HasSubstr("bad-signature"));
    std::cout << "[ info ] commitment signed by another key: " << rep.blacklist_reason << "\n";
  }
  {
    SCOPED_TRACE("nonce replayed over another body");
    const uint64_t nonce = Submit(*w, w->keys[11], call);  // committed honestly
    ledger::ExpertResultBody other_body = body;
    other_body.step = 2;
    Bytes replay = ledger::MakeTx(w->cluster->genesis().chain_id, ledger::TxType::kExpertResult,
                                  w->keys[11], nonce, other_body.Encode())
                       .Encode();
    EXPECT_EQ(w->chain->Submit(replay).status().code(), StatusCode::kAlreadyExists);
    Status reported = report(11, replay);
    EXPECT_TRUE(reported.ok()) << reported.ToString();
    ledger::Reputation rep = w->Reputation(w->keys[11].public_key());
    EXPECT_TRUE(rep.blacklisted);
    EXPECT_THAT(rep.blacklist_reason, HasSubstr("replayed-nonce"));
    std::cout << "[ info ] nonce replayed over another body: " << rep.blacklist_reason << "\n";
    // A valid commitment proves nothing: reporting one is refused.
    Bytes valid = ledger::MakeTx(w->cluster->genesis().chain_id, ledger::TxType::kExpertResult,
                                 w->keys[9], ledger::FreshNonce(), body.Encode())
                      .Encode();
    EXPECT_EQ(report(9, valid).code(), StatusCode::kInvalidArgument);
  }

  {
    SCOPED_TRACE("outputs uploaded after the deadline");
    // The deadline is the ordering block's time plus verify_deadline_ms (1.5 s here): an output
    // that reaches the store later counts as missing for every validator, whenever it checks.
    std::vector<std::pair<uint64_t, Bytes>> late;
    for (int k = 0; k < 3; ++k) {
      HostTensor xl = Random(rows, 16, 40 + static_cast<uint64_t>(k));
      Cheat c = forward(File(Honest(*w, w->a, xl)));
      c.input = File(xl);
      c.upload_output = false;
      late.emplace_back(Submit(*w, w->keys[12], c), c.output);
    }
    std::this_thread::sleep_for(2500ms);
    for (const auto& [nonce, output] : late) {
      EXPECT_TRUE(w->store_client->Put(output, true).ok());
    }
    for (const auto& [nonce, output] : late) {
      auto verdict = w->Verdict(w->keys[12].public_key(), nonce);
      ASSERT_TRUE(verdict.has_value());
      EXPECT_EQ(verdict->status, ResultStatus::kRejected);
      EXPECT_THAT(verdict->reason, ::testing::StartsWith("output-missing"));
    }
    EXPECT_TRUE(WaitFor([&] { return w->Reputation(w->keys[12].public_key()).blacklisted; }, 30s));
    std::cout << "[ info ] outputs uploaded after the deadline: REJECTED, "
              << w->Verdict(w->keys[12].public_key(), late[0].first)->reason << "\n";
  }

  // The byzantine validator changed no verdict; its votes against them are on its record,
  // and the honest validators have none.
  EXPECT_GT(byzantine.votes(), 0u);
  EXPECT_TRUE(WaitFor([&] {
    return w->Reputation(w->cluster->genesis().validators[kByzantine].key).contradictions > 0;
  }, 30s));
  for (uint32_t v = 0; v < kByzantine; ++v) {
    EXPECT_EQ(w->Reputation(w->cluster->genesis().validators[v].key).contradictions, 0u);
  }
}

TEST(VerifyTest, HonestEdgesGetEveryResultAcceptedDespiteAByzantineValidator) {
  auto w = World::Start(2, {kByzantine});
  ASSERT_NE(w, nullptr);
  ByzantineVoter byzantine(w.get(), {});
  std::vector<std::unique_ptr<EdgeProcess>> edges;
  for (int i = 0; i < 2; ++i) {
    edges.push_back(w->StartEdge(i));
    ASSERT_NE(edges.back(), nullptr);
    ASSERT_TRUE(w->Register(i, "edge" + std::to_string(i), edges.back()->endpoint()).ok());
  }
  for (auto& e : edges) {
    ASSERT_TRUE(WaitFor([&] { return e->Health().serving(); }, 20s)) << e->Log();
  }

  // 1,000 calls: forward and backward, experts of width 16 and 24, 1..64 rows, f32 and bf16
  // activations, 8 callers over both edges.
  constexpr int kCalls = 1000;
  constexpr int kCallers = 8;
  std::atomic<int> next{0}, failed{0};
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> callers;
  for (int t = 0; t < kCallers; ++t) {
    callers.emplace_back([&, t] {
      std::vector<std::unique_ptr<v1::EdgeService::Stub>> stubs;
      for (auto& e : edges) stubs.push_back(e->Stub());
      for (int i = next++; i < kCalls; i = next++) {
        const Expert& e = i % 3 == 0 ? w->b : w->a;
        const int64_t rows = 1 + (i * 37) % 64;
        const DType dtype = i % 4 == 1 ? DType::kBF16 : DType::kF32;
        const Bytes x = File(Random(rows, e.spec.d_model, 1000 + i, dtype));
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + 60s);
        v1::CallResponse response;
        grpc::Status s;
        if (i % 5 == 4) {
          v1::BackwardRequest req;
          req.set_job("honest-job");
          req.set_step(static_cast<uint64_t>(i));
          req.set_expert_cid(e.cid);
          req.set_input(ToString(x));
          req.set_grad_output(ToString(File(Random(rows, e.spec.d_model, 5000 + i, dtype))));
          s = stubs[i % 2]->Backward(&ctx, req, &response);
        } else {
          v1::ForwardRequest req;
          req.set_job("honest-job");
          req.set_step(static_cast<uint64_t>(i));
          req.set_expert_cid(e.cid);
          req.set_input(ToString(x));
          s = stubs[i % 2]->Forward(&ctx, req, &response);
        }
        if (!s.ok()) {
          ++failed;
          ADD_FAILURE() << "call " << i << ": " << s.error_message();
        }
      }
      (void)t;
    });
  }
  for (auto& c : callers) c.join();
  ASSERT_EQ(failed.load(), 0);
  const double call_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // Every result gets its verdict: all ACCEPTED.
  uint64_t accepted = 0, rejected = 0;
  ASSERT_TRUE(WaitFor([&] {
    accepted = rejected = 0;
    for (int i = 0; i < 2; ++i) {
      ledger::Reputation rep = w->Reputation(w->keys[i].public_key());
      accepted += rep.accepted;
      rejected += rep.rejected;
    }
    return accepted + rejected >= static_cast<uint64_t>(kCalls);
  }, 240s)) << accepted << " accepted, " << rejected << " rejected of " << kCalls << "\n"
            << w->cluster->Log(0);
  const double all_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "[ info ] " << kCalls << " calls in " << call_s << " s; all verdicts after " << all_s
            << " s: " << accepted << " accepted, " << rejected << " rejected; byzantine votes "
            << byzantine.votes() << "\n";
  EXPECT_EQ(rejected, 0u);
  EXPECT_EQ(accepted, static_cast<uint64_t>(kCalls));
  for (const auto& [key, value] : w->Scan("result/")) {
    auto record = ResultRecord::Decode(value);
    ASSERT_TRUE(record.ok());
    EXPECT_EQ(record->status, ResultStatus::kAccepted) << key << ": " << record->reason;
  }
  for (auto& e : edges) EXPECT_EQ(e->Stop(), 0);
}

TEST(VerifyTest, ABlacklistedEdgeRefusesToServeUntilTheAdminLiftsIt) {
  auto w = World::Start(1, {});
  ASSERT_NE(w, nullptr);
  auto edge = w->StartEdge(0);
  ASSERT_NE(edge, nullptr);
  ASSERT_TRUE(w->Register(0, "edge0", edge->endpoint()).ok());
  ASSERT_TRUE(WaitFor([&] { return edge->Health().serving(); }, 20s)) << edge->Log();

  // A result signed with the edge's key (its operator, say, ran a tampered build) is caught.
  HostTensor x = Random(8, 16, 1);
  std::vector<float> yv = Floats(Honest(*w, w->a, x));
  for (float& v : yv) v *= 2;
  Cheat c;
  c.claimed = &w->a;
  c.input = File(x);
  c.output = File(WithFloats(Random(8, 16, 1), yv));
  c.rows = 8;
  const uint64_t nonce = Submit(*w, w->keys[0], c);
  auto verdict = w->Verdict(w->keys[0].public_key(), nonce);
  ASSERT_TRUE(verdict.has_value());
  EXPECT_EQ(verdict->status, ResultStatus::kRejected);

  // The edge sees it and refuses to serve.
  ASSERT_TRUE(WaitFor([&] { return !edge->Health().serving(); }, 20s));
  EXPECT_THAT(edge->Health().detail(), HasSubstr("blacklisted"));
  {
    v1::ForwardRequest req;
    req.set_job("j");
    req.set_step(1);
    req.set_expert_cid(w->a.cid);
    req.set_input(ToString(File(x)));
    grpc::ClientContext ctx;
    v1::CallResponse response;
    grpc::Status s = edge->Stub()->Forward(&ctx, req, &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(s.error_message(), HasSubstr("blacklisted"));
  }

  // Only the admin lifts it; then the edge serves again and its results are accepted.
  ledger::LiftBlacklist lift{w->keys[0].public_key(), "operator reinstalled the release build"};
  EXPECT_EQ(w->chain->Submit(w->Tx(ledger::TxType::kLiftBlacklist, w->cluster->key(0), lift.Encode()))
                .status()
                .code(),
            StatusCode::kPermissionDenied);
  ASSERT_TRUE(w->chain->Submit(w->Tx(ledger::TxType::kLiftBlacklist, w->cluster->admin(), lift.Encode()))
                  .ok());
  ASSERT_TRUE(WaitFor([&] { return edge->Health().serving(); }, 20s)) << edge->Log();
  v1::ForwardRequest req;
  req.set_job("j");
  req.set_step(2);
  req.set_expert_cid(w->a.cid);
  req.set_input(ToString(File(x)));
  grpc::ClientContext ctx;
  v1::CallResponse response;
  ASSERT_TRUE(edge->Stub()->Forward(&ctx, req, &response).ok());
  auto tx = ledger::Tx::Decode(AsBytes(response.result_tx()), 1 << 16);
  ASSERT_TRUE(tx.ok());
  auto accepted = w->Verdict(w->keys[0].public_key(), tx->nonce);
  ASSERT_TRUE(accepted.has_value());
  EXPECT_EQ(accepted->status, ResultStatus::kAccepted) << accepted->reason;
  ledger::Reputation rep = w->Reputation(w->keys[0].public_key());
  EXPECT_FALSE(rep.blacklisted);
  EXPECT_EQ(rep.accepted, 1u);
  EXPECT_EQ(rep.rejected, 1u);

  // Forwarding an unpublished expert is refused by the edge itself (it would be a fault).
  req.set_expert_cid(w->a2.cid);
  grpc::ClientContext ctx2;
  grpc::Status s = edge->Stub()->Forward(&ctx2, req, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("not published"));
  EXPECT_EQ(edge->Stop(), 0);
}

// An edge's training step, computed by test code with the CPU runtime as an honest edge would:
// backward results on the parent (committed first), then one Adam step from a fresh state.
// `lr_factor` != 1 makes the child's weight change that much larger than the step says.
struct UpdateCase {
  std::vector<uint64_t> sources;
  ledger::ExpertUpdatedBody body;
  uint64_t nonce = 0;
};

UpdateCase SubmitUpdate(World& w, const crypto::PrivateKey& key, const std::string& job,
                        double lr_factor) {
  UpdateCase out;
  const std::string train = "train/" + key.public_key().Hex();
  EXPECT_TRUE(w.reference->Clone(w.a.cid, train).ok());
  for (int i = 0; i < 2; ++i) {
    HostTensor x = Random(12, 16, 100 + static_cast<uint64_t>(i));
    HostTensor g = Random(12, 16, 200 + static_cast<uint64_t>(i));
    auto back = w.reference->Backward(w.a.cid, x, g, false, false);
    EXPECT_TRUE(back.ok());
    EXPECT_TRUE(w.reference->Backward(train, x, g, false, true).ok());
    Cheat result;
    result.kind = ledger::CallKind::kBackward;
    result.claimed = &w.a;
    result.input = File(x);
    result.grad_output = File(g);
    result.output = File(back->grad_input);
    result.rows = 12;
    out.sources.push_back(Submit(w, key, result));
  }
  edge::OptimizerSpec adam;
  adam.kind = edge::OptimizerKind::kAdam;
  adam.lr = 1e-2 * lr_factor;
  EXPECT_TRUE(w.reference->Step(train, adam).ok());
  Bytes child = w.reference->Export(train, DType::kF32).value();
  Bytes state = w.reference->ExportOptimizerState(train).value();
  EXPECT_TRUE(w.reference->Unload(train).ok());
  EXPECT_TRUE(w.store_client->Put(child, true).ok());
  EXPECT_TRUE(w.store_client->Put(state, true).ok());
  ledger::ExpertUpdatedBody& body = out.body;
  body.job = job;
  body.step = 1;
  body.parent_cid = w.a.cid;
  body.child_cid = crypto::ComputeCid(child).ToString();
  body.child_state_cid = crypto::ComputeCid(state).ToString();
  body.child_size = child.size();
  body.optimizer.kind = ledger::OptimizerKind::kAdam;
  body.optimizer.lr = 1e-2;  // what the commitment says, whatever the child holds
  body.sources = out.sources;
  out.nonce = ledger::FreshNonce();
  auto done = w.chain->Submit(ledger::MakeTx(w.cluster->genesis().chain_id,
                                             ledger::TxType::kExpertUpdated, key, out.nonce,
                                             body.Encode())
                                  .Encode());
  EXPECT_TRUE(done.ok()) << done.status().ToString();
  return out;
}

std::optional<ledger::UpdateRecord> UpdateVerdict(const World& w, const crypto::PublicKey& edge,
                                                  uint64_t nonce) {
  std::optional<ledger::UpdateRecord> out;
  WaitFor(
      [&] {
        const std::string key = ledger::UpdateKey(edge, nonce);
        auto page = w.chain->ScanState(key, "", 1);
        if (!page.ok() || page->entries.empty() || page->entries[0].first != key) return false;
        auto record = ledger::UpdateRecord::Decode(page->entries[0].second);
        if (!record.ok()) return false;
        out = *record;
        return record->status != ResultStatus::kPending;
      },
      60s);
  if (out.has_value() && out->status == ResultStatus::kPending) return std::nullopt;
  return out;
}

TEST(VerifyTest, ExpertUpdatesAreReRunAndAManipulatedOneIsRejected) {
  // Every update re-run (verify_update_fraction_ppm = 10^6).
  auto w = World::Start(2, {}, 1000000);
  ASSERT_NE(w, nullptr);
  UpdateCase honest = SubmitUpdate(*w, w->keys[0], "train-honest", 1.0);
  UpdateCase bent = SubmitUpdate(*w, w->keys[1], "train-bent", 1.3);

  auto good = UpdateVerdict(*w, w->keys[0].public_key(), honest.nonce);
  ASSERT_TRUE(good.has_value()) << "no verdict on the honest update\n" << w->cluster->Log(0);
  EXPECT_EQ(good->status, ResultStatus::kAccepted) << good->reason;
  // The child is published, with its lineage.
  auto child = w->chain->ScanState(ledger::ExpertKey(honest.body.child_cid), "", 1);
  ASSERT_TRUE(child.ok());
  ASSERT_FALSE(child->entries.empty());
  EXPECT_EQ(child->entries[0].first, ledger::ExpertKey(honest.body.child_cid));
  auto lineage = w->chain->ScanState(ledger::LineageKey(honest.body.child_cid), "", 1);
  ASSERT_TRUE(lineage.ok() && !lineage->entries.empty());
  EXPECT_EQ(ToString(lineage->entries[0].second), ledger::UpdateKey(w->keys[0].public_key(),
                                                                    honest.nonce));

  auto bad = UpdateVerdict(*w, w->keys[1].public_key(), bent.nonce);
  ASSERT_TRUE(bad.has_value()) << "no verdict on the manipulated update";
  EXPECT_EQ(bad->status, ResultStatus::kRejected);
  EXPECT_THAT(bad->reason, ::testing::StartsWith("mismatch: tensor "));
  std::cout << "[ info ] update with a 1.3x weight change: REJECTED, " << bad->reason << "\n";
  ledger::Reputation rep = w->Reputation(w->keys[1].public_key());
  EXPECT_TRUE(rep.blacklisted);
  EXPECT_THAT(rep.blacklist_reason, ::testing::StartsWith("update "));
  // The honest edge's backward results and update: all accepted.
  EXPECT_TRUE(WaitFor([&] { return w->Reputation(w->keys[0].public_key()).accepted == 3; }, 30s));
  EXPECT_FALSE(w->Reputation(w->keys[0].public_key()).blacklisted);
}

// A real edge trains: backward calls, then EdgeService.Update twice (the second from the first
// child, with the optimizer state recorded with it); validators re-run both steps.
TEST(VerifyTest, AnEdgeTrainsAnExpertAndValidatorsAcceptItsUpdates) {
  auto w = World::Start(1, {}, 1000000);
  ASSERT_NE(w, nullptr);
  auto edge = w->StartEdge(0);
  ASSERT_NE(edge, nullptr);
  ASSERT_TRUE(w->Register(0, "trainer", edge->endpoint()).ok());
  ASSERT_TRUE(WaitFor([&] { return edge->Health().serving(); }, 20s)) << edge->Log();
  auto stub = edge->Stub();

  auto backward = [&](const std::string& cid, uint64_t seed) -> uint64_t {
    v1::BackwardRequest req;
    req.set_job("train");
    req.set_step(1);
    req.set_expert_cid(cid);
    req.set_input(ToString(File(Random(12, 16, seed))));
    req.set_grad_output(ToString(File(Random(12, 16, seed + 1000))));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 60s);
    v1::CallResponse response;
    grpc::Status s = stub->Backward(&ctx, req, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    auto tx = ledger::Tx::Decode(AsBytes(response.result_tx()), 1 << 16);
    EXPECT_TRUE(tx.ok());
    return tx.ok() ? tx->nonce : 0;
  };
  auto update = [&](const std::string& parent, std::vector<uint64_t> sources,
                    v1::UpdateResponse* response) {
    v1::UpdateRequest req;
    req.set_job("train");
    req.set_step(1);
    req.set_parent_cid(parent);
    for (uint64_t n : sources) req.add_sources(n);
    req.mutable_optimizer()->set_kind("adam");
    req.mutable_optimizer()->set_lr(1e-2);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 60s);
    return stub->Update(&ctx, req, response);
  };

  v1::UpdateResponse first;
  grpc::Status s = update(w->a.cid, {backward(w->a.cid, 1), backward(w->a.cid, 2)}, &first);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << edge->Log();
  EXPECT_FALSE(first.child_state_cid().empty());
  auto tx1 = ledger::Tx::Decode(AsBytes(first.update_tx()), 1 << 16);
  ASSERT_TRUE(tx1.ok());
  auto v1 = UpdateVerdict(*w, w->keys[0].public_key(), tx1->nonce);
  ASSERT_TRUE(v1.has_value()) << "no verdict on the first update\n" << edge->Log();
  EXPECT_EQ(v1->status, ResultStatus::kAccepted) << v1->reason;
  EXPECT_TRUE(v1->body.parent_state_cid.empty());

  // Training goes on from the child, with the state recorded with it.
  v1::UpdateResponse second;
  s = update(first.child_cid(), {backward(first.child_cid(), 3)}, &second);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << edge->Log();
  auto tx2 = ledger::Tx::Decode(AsBytes(second.update_tx()), 1 << 16);
  ASSERT_TRUE(tx2.ok());
  auto v2 = UpdateVerdict(*w, w->keys[0].public_key(), tx2->nonce);
  ASSERT_TRUE(v2.has_value()) << "no verdict on the second update";
  EXPECT_EQ(v2->status, ResultStatus::kAccepted) << v2->reason;
  EXPECT_EQ(v2->body.parent_state_cid, first.child_state_cid());
  std::cout << "[ info ] two updates by a real edge ACCEPTED: " << w->a.cid.substr(12, 8) << " -> "
            << first.child_cid().substr(12, 8) << " -> " << second.child_cid().substr(12, 8)
            << "\n";

  // Bad requests: a source that is not a backward result on the parent, an unpublished
  // parent, an unknown optimizer.
  v1::UpdateResponse refused;
  EXPECT_EQ(update(w->a.cid, {backward(first.child_cid(), 4)}, &refused).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(update(w->a2.cid, {1}, &refused).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  {
    v1::UpdateRequest req;
    req.set_job("train");
    req.set_parent_cid(w->a.cid);
    req.add_sources(1);
    req.mutable_optimizer()->set_kind("lion");
    grpc::ClientContext ctx;
    EXPECT_EQ(stub->Update(&ctx, req, &refused).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  EXPECT_FALSE(w->Reputation(w->keys[0].public_key()).blacklisted);
  EXPECT_EQ(edge->Stop(), 0);
}

}  // namespace
}  // namespace trustmoe::verify::testing
