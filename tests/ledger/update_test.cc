// Expert updates (type 18): the ExpertUpdated body and the update record, the handler's rules
// (signer, sources, child, parent), and verdicts on updates through the same Vote transactions
// as results. Transactions execute on an in-memory state through ExecuteTx, as a validator
// executes them.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "chain/ledger/genesis.h"
#include "chain/ledger/result.h"
#include "chain/ledger/state.h"
#include "chain/ledger/tx.h"
#include "chain/ledger/update.h"
#include "chain/ledger/verdict.h"
#include "crypto/canonical.h"
#include "tests/ledger/ledger_fixture.h"

namespace trustmoe::ledger {
namespace {

using testing::KeyFromByte;
using testing::MapState;
using testing::Validators;

constexpr char kChain[] = "update-chain";

Genesis MakeGenesis(const Validators& v, const crypto::PrivateKey& admin) {
  Genesis g;
  g.chain_id = kChain;
  g.created_unix_ms = 1700000000000;
  g.f = 1;
  for (size_t i = 0; i < v.keys.size(); ++i) {
    g.validators.push_back(
        {"v" + std::to_string(i), v.keys[i].public_key(), "127.0.0.1:" + std::to_string(7300 + i)});
  }
  g.admin_key = admin.public_key();
  return g;
}

std::string Cid(char c) { return "sha256-tree:" + std::string(64, c); }

// Adam on parent Cid('a') (published directly: a fresh optimizer state) to child Cid('c')
// from backward results 1 and 2.
ExpertUpdatedBody AdamBody() {
  ExpertUpdatedBody body;
  body.job = "job-1";
  body.step = 4;
  body.parent_cid = Cid('a');
  body.child_cid = Cid('c');
  body.child_state_cid = Cid('2');
  body.child_size = 4096;
  body.optimizer.kind = OptimizerKind::kAdam;
  body.optimizer.lr = 3e-4;
  body.optimizer.weight_decay = 0.01;
  body.dtype = ComputeDType::kBF16;
  body.device = "cuda:0";
  body.sources = {1, 2};
  return body;
}

ExpertResultBody BackwardBody(const std::string& expert_cid) {
  ExpertResultBody body;
  body.kind = CallKind::kBackward;
  body.job = "job-1";
  body.step = 3;
  body.expert_cid = expert_cid;
  body.input_cid = Cid('b');
  body.grad_output_cid = Cid('3');
  body.output_cid = Cid('4');
  body.rows = 16;
  return body;
}

// ---- Bodies ----

TEST(ExpertUpdatedBodyTest, EncodeDecodeRoundTrip) {
  const ExpertUpdatedBody adam = AdamBody();
  auto back = ExpertUpdatedBody::Decode(adam.Encode());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, adam);
  EXPECT_EQ(back->Encode(), adam.Encode());

  // SGD with momentum keeps state; plain SGD from a fresh state names none.
  ExpertUpdatedBody momentum = AdamBody();
  momentum.optimizer = OptimizerParams{};
  momentum.optimizer.momentum = 0.9;
  momentum.parent_state_cid.clear();
  ASSERT_TRUE(momentum.optimizer.stateful());
  back = ExpertUpdatedBody::Decode(momentum.Encode());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, momentum);

  ExpertUpdatedBody sgd = momentum;
  sgd.optimizer.momentum = 0;
  sgd.child_state_cid.clear();
  sgd.sources.clear();
  for (uint64_t n = 0; n < kUpdateSourcesMax; ++n) sgd.sources.push_back(n * 7 + 1);
  back = ExpertUpdatedBody::Decode(sgd.Encode());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, sgd);
  EXPECT_FALSE(sgd.optimizer.stateful());

  // Doubles travel as their exact bit patterns.
  ExpertUpdatedBody odd = AdamBody();
  odd.optimizer.lr = std::nextafter(1e-3, 1.0);
  odd.optimizer.beta2 = std::nextafter(1.0, 0.0);
  odd.optimizer.eps = std::numeric_limits<double>::denorm_min();
  back = ExpertUpdatedBody::Decode(odd.Encode());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(std::bit_cast<uint64_t>(back->optimizer.lr), std::bit_cast<uint64_t>(odd.optimizer.lr));
  EXPECT_EQ(back->optimizer, odd.optimizer);

  UpdateRecord record{KeyFromByte(20).public_key(), 0x77, adam, 12, ResultStatus::kRejected,
                      "mismatch: tensor w1",        15};
  auto stored = UpdateRecord::Decode(record.Encode());
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ(stored->edge, record.edge);
  EXPECT_EQ(stored->nonce, 0x77u);
  EXPECT_EQ(stored->body, adam);
  EXPECT_EQ(stored->height, 12u);
  EXPECT_EQ(stored->status, ResultStatus::kRejected);
  EXPECT_EQ(stored->reason, "mismatch: tensor w1");
  EXPECT_EQ(stored->verdict_height, 15u);
  Bytes trailing = record.Encode();
  trailing.push_back(0);
  EXPECT_FALSE(UpdateRecord::Decode(trailing).ok());
  record.status = static_cast<ResultStatus>(3);
  EXPECT_FALSE(UpdateRecord::Decode(record.Encode()).ok());
}

TEST(ExpertUpdatedBodyTest, HostileBodiesAreInvalidArgument) {
  auto expect_invalid = [](const ExpertUpdatedBody& body, const std::string& what) {
    auto r = ExpertUpdatedBody::Decode(body.Encode());
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument)
        << what << ": " << r.status().ToString();
  };
  auto mutated = [](auto mutate) {
    ExpertUpdatedBody body = AdamBody();
    mutate(body);
    return body;
  };
  const double kNan = std::numeric_limits<double>::quiet_NaN();
  const double kInf = std::numeric_limits<double>::infinity();
  for (uint8_t kind : {0, 3, 255}) {
    expect_invalid(mutated([&](auto& b) { b.optimizer.kind = static_cast<OptimizerKind>(kind); }),
                   "optimizer " + std::to_string(kind));
  }
  expect_invalid(mutated([&](auto& b) { b.optimizer.lr = kNan; }), "NaN lr");
  expect_invalid(mutated([&](auto& b) { b.optimizer.lr = kInf; }), "infinite lr");
  expect_invalid(mutated([&](auto& b) { b.optimizer.lr = 0; }), "lr 0");
  expect_invalid(mutated([&](auto& b) { b.optimizer.lr = -1e-3; }), "negative lr");
  expect_invalid(mutated([&](auto& b) { b.optimizer.eps = 0; }), "eps 0");
  expect_invalid(mutated([&](auto& b) { b.optimizer.beta1 = 1; }), "beta1 1");
  expect_invalid(mutated([&](auto& b) { b.optimizer.beta2 = -0.5; }), "negative beta2");
  expect_invalid(mutated([&](auto& b) { b.optimizer.weight_decay = -kInf; }), "weight_decay -inf");
  expect_invalid(mutated([&](auto& b) { b.optimizer.weight_decay = -0.1; }), "negative decay");
  expect_invalid(mutated([&](auto& b) { b.optimizer.momentum = kNan; }), "NaN momentum");
  expect_invalid(mutated([&](auto& b) {
                   b.optimizer.kind = OptimizerKind::kSgd;
                   b.optimizer.momentum = 1;
                 }),
                 "momentum 1");
  expect_invalid(mutated([&](auto& b) { b.sources.clear(); }), "no source");
  expect_invalid(mutated([&](auto& b) {
                   b.sources.clear();
                   for (uint64_t n = 0; n <= kUpdateSourcesMax; ++n) b.sources.push_back(n);
                 }),
                 "1025 sources");
  expect_invalid(mutated([&](auto& b) { b.sources = {5, 6, 5}; }), "duplicate source");
  expect_invalid(mutated([&](auto& b) { b.child_cid = b.parent_cid; }), "child == parent");
  expect_invalid(mutated([&](auto& b) { b.child_state_cid.clear(); }), "Adam without state");
  expect_invalid(mutated([&](auto& b) {
                   b.optimizer = OptimizerParams{};
                   b.optimizer.momentum = 0.5;
                   b.child_state_cid.clear();
                 }),
                 "momentum without state");
  expect_invalid(mutated([&](auto& b) { b.optimizer = OptimizerParams{}; }), "SGD with a state");
  expect_invalid(mutated([&](auto& b) { b.job.clear(); }), "empty job");
  expect_invalid(mutated([&](auto& b) { b.parent_cid = "sha256:abc"; }), "bad parent CID");
  expect_invalid(mutated([&](auto& b) { b.child_cid.clear(); }), "empty child CID");
  expect_invalid(mutated([&](auto& b) { b.parent_state_cid = "state"; }), "bad parent state");
  expect_invalid(mutated([&](auto& b) { b.child_state_cid = "sha256-tree:xyz"; }),
                 "bad child state");
  for (uint8_t dtype : {0, 4}) {
    expect_invalid(mutated([&](auto& b) { b.dtype = static_cast<ComputeDType>(dtype); }),
                   "dtype " + std::to_string(dtype));
  }
  for (const std::string& device : {std::string(""), std::string("CUDA"), std::string("cu da"),
                                    std::string(kDeviceBytesMax + 1, 'a')}) {
    expect_invalid(mutated([&](auto& b) { b.device = device; }), "device '" + device + "'");
  }

  const Bytes good = AdamBody().Encode();
  Bytes trailing = good;
  trailing.push_back(0);
  EXPECT_EQ(ExpertUpdatedBody::Decode(trailing).status().code(), StatusCode::kInvalidArgument);
  for (size_t n = 0; n < good.size(); ++n) {
    EXPECT_EQ(ExpertUpdatedBody::Decode(ByteSpan(good.data(), n)).status().code(),
              StatusCode::kInvalidArgument)
        << "truncated to " << n;
  }
  // A result body is not an update body (domain tags differ).
  EXPECT_FALSE(ExpertUpdatedBody::Decode(BackwardBody(Cid('a')).Encode()).ok());
}

TEST(ExpertUpdatedBodyTest, KeysNestUnderTheirPrefixes) {
  const crypto::PublicKey edge = KeyFromByte(20).public_key();
  EXPECT_EQ(UpdateKey(edge, 0x1f), "update/" + edge.Hex() + "/000000000000001f");
  EXPECT_EQ(PendingUpdateKey(edge, 0x1f), "pending-update/" + edge.Hex() + "/000000000000001f");
  EXPECT_EQ(LineageKey(Cid('c')), "lineage/" + Cid('c'));
  // Votes on an update share the result's vote keys: (edge, nonce) names one or the other.
  EXPECT_EQ(VotePrefix(edge, 0x1f), "vote/" + edge.Hex() + "/000000000000001f/");
}

// ---- Execution ----

// Four validators (f = 1, quorum 3), the admin, one registered edge, one published expert
// (Cid('a')) and the edge's backward results 1 and 2 on it.
class UpdateTest : public ::testing::Test {
 protected:
  UpdateTest()
      : admin_(KeyFromByte(9)), edge_(KeyFromByte(20)), genesis_(MakeGenesis(validators_, admin_)) {
    for (auto& [k, v] : GenesisWrites(genesis_)) state_.map[k] = *v;
    RegisterEdge(edge_);
    EXPECT_TRUE(Run(MakeTx(kChain, TxType::kPublishExpert, admin_, nonce_++,
                           PublishExpert{Cid('a'), "expert-a", "swiglu", 1024}.Encode()))
                    .ok());
    EXPECT_TRUE(SubmitResult(1, BackwardBody(Cid('a'))).ok());
    EXPECT_TRUE(SubmitResult(2, BackwardBody(Cid('a'))).ok());
  }

  // Executes `tx` in block height_ (then advances it); keeps its writes only when it succeeds.
  Status Run(const Tx& tx) {
    TxContext ctx{&genesis_, height_++, 1700000000000, 0};
    StateOverlay overlay(static_cast<const StateReader*>(&state_));
    Status s = ExecuteTx(ctx, registry_, tx.Encode(), &overlay);
    if (s.ok()) {
      state_.Apply(overlay);
    } else {
      EXPECT_TRUE(overlay.writes().empty()) << "a refused tx left writes";
    }
    return s;
  }

  void RegisterEdge(const crypto::PrivateKey& edge) {
    Tx tx = MakeTx(kChain, TxType::kRegisterNode, admin_, nonce_++,
                   RegisterNode{edge.public_key(), NodeRole::kEdge, "edge", ""}.Encode());
    ASSERT_TRUE(Run(tx).ok());
  }

  Status SubmitResult(uint64_t nonce, const ExpertResultBody& body,
                      const crypto::PrivateKey* edge = nullptr) {
    return Run(MakeTx(kChain, TxType::kExpertResult, edge ? *edge : edge_, nonce, body.Encode()));
  }
  Status SubmitUpdate(uint64_t nonce, const ExpertUpdatedBody& body = AdamBody(),
                      const crypto::PrivateKey* signer = nullptr) {
    return Run(
        MakeTx(kChain, TxType::kExpertUpdated, signer ? *signer : edge_, nonce, body.Encode()));
  }
  Status Vote(uint32_t validator, uint64_t nonce, Verdict verdict,
              RejectReason reason = RejectReason::kNone, std::string detail = "") {
    VoteBody body{edge_.public_key(), nonce, verdict, reason, std::move(detail)};
    return Run(MakeTx(kChain, TxType::kVote, validators_.keys[validator], nonce_++, body.Encode()));
  }

  UpdateRecord Update(uint64_t nonce) const {
    auto it = state_.map.find(UpdateKey(edge_.public_key(), nonce));
    EXPECT_NE(it, state_.map.end()) << "no update " << nonce;
    if (it == state_.map.end()) return UpdateRecord{};
    auto record = UpdateRecord::Decode(it->second);
    EXPECT_TRUE(record.ok()) << record.status().ToString();
    return record.ok() ? *record : UpdateRecord{};
  }
  Reputation Rep(const crypto::PublicKey& key) const {
    auto it = state_.map.find(ReputationKey(key));
    if (it == state_.map.end()) return Reputation{};
    auto rep = Reputation::Decode(it->second);
    EXPECT_TRUE(rep.ok()) << rep.status().ToString();
    return rep.ok() ? *rep : Reputation{};
  }
  bool PendingUpdate(uint64_t nonce) const {
    return state_.map.count(PendingUpdateKey(edge_.public_key(), nonce)) != 0;
  }
  bool Published(const std::string& cid) const { return state_.map.count(ExpertKey(cid)) != 0; }

  Validators validators_;
  crypto::PrivateKey admin_;
  crypto::PrivateKey edge_;
  Genesis genesis_;
  TxRegistry registry_ = TxRegistry::Default();
  MapState state_;
  uint64_t height_ = 1;
  uint64_t nonce_ = 1;  // of the admin's and validators' transactions
};

TEST_F(UpdateTest, AnUpdateIsRecordedPendingAndItsChildPublished) {
  const uint64_t h = height_;
  ASSERT_TRUE(SubmitUpdate(10).ok());
  UpdateRecord record = Update(10);
  EXPECT_EQ(record.edge, edge_.public_key());
  EXPECT_EQ(record.nonce, 10u);
  EXPECT_EQ(record.body, AdamBody());
  EXPECT_EQ(record.height, h);
  EXPECT_EQ(record.status, ResultStatus::kPending);
  EXPECT_EQ(record.reason, "");
  EXPECT_EQ(record.verdict_height, 0u);
  EXPECT_TRUE(PendingUpdate(10));
  EXPECT_TRUE(state_.map.at(PendingUpdateKey(edge_.public_key(), 10)).empty());
  // No result of that nonce: the vote handler finds the update.
  EXPECT_FALSE(state_.map.count(ResultKey(edge_.public_key(), 10)));
  EXPECT_FALSE(state_.map.count(PendingKey(edge_.public_key(), 10)));

  ASSERT_TRUE(Published(Cid('c')));
  auto child = ExpertRecord::Decode(state_.map.at(ExpertKey(Cid('c'))));
  ASSERT_TRUE(child.ok()) << child.status().ToString();
  EXPECT_EQ(child->cid, Cid('c'));
  EXPECT_EQ(child->arch, "swiglu");  // the parent's
  EXPECT_EQ(child->size, 4096u);
  EXPECT_EQ(child->publisher, edge_.public_key());
  EXPECT_EQ(child->height, h);
  EXPECT_EQ(child->name, "job-1 step 4");
  const Bytes& lineage = state_.map.at(LineageKey(Cid('c')));
  EXPECT_EQ(std::string(lineage.begin(), lineage.end()), UpdateKey(edge_.public_key(), 10));
  // The child state is only named; the parent stays as it was.
  EXPECT_FALSE(Published(Cid('2')));
  EXPECT_FALSE(state_.map.count(LineageKey(Cid('a'))));
  EXPECT_EQ(Rep(edge_.public_key()).accepted, 0u);

  // Training goes on from the child: backward results on it, then an update of it.
  ASSERT_TRUE(SubmitResult(11, BackwardBody(Cid('c'))).ok());
  ExpertUpdatedBody next = AdamBody();
  next.parent_cid = Cid('c');
  next.parent_state_cid = Cid('2');
  next.child_cid = Cid('d');
  next.child_state_cid = Cid('5');
  next.sources = {11};
  // The parent's optimizer state is the one recorded with it, nothing else.
  ExpertUpdatedBody steered = next;
  steered.parent_state_cid = Cid('9');
  Status refused = SubmitUpdate(13, steered);
  EXPECT_EQ(refused.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.message().find("recorded with the parent"), std::string::npos);
  ASSERT_TRUE(SubmitUpdate(12, next).ok());
  EXPECT_TRUE(Published(Cid('d')));
  EXPECT_EQ(Update(12).status, ResultStatus::kPending);
}

TEST_F(UpdateTest, OnlyARegisteredEdgeSignsAnUpdate) {
  for (const crypto::PrivateKey* signer : {&admin_, &validators_.keys[0]}) {
    EXPECT_EQ(SubmitUpdate(10, AdamBody(), signer).code(), StatusCode::kPermissionDenied);
  }
  const crypto::PrivateKey stranger = KeyFromByte(77);
  EXPECT_EQ(SubmitUpdate(10, AdamBody(), &stranger).code(), StatusCode::kPermissionDenied);
  EXPECT_FALSE(Published(Cid('c')));
  // A hostile body from the edge is refused before anything is written.
  ExpertUpdatedBody bad = AdamBody();
  bad.sources.clear();
  EXPECT_EQ(SubmitUpdate(10, bad).code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(state_.map.count(UpdateKey(edge_.public_key(), 10)));
}

TEST_F(UpdateTest, EverySourceIsABackwardResultOfThisEdgeOnTheParent) {
  const crypto::PrivateKey other = KeyFromByte(21);
  RegisterEdge(other);
  ExpertResultBody forward = BackwardBody(Cid('a'));
  forward.kind = CallKind::kForward;
  forward.grad_output_cid.clear();
  ASSERT_TRUE(SubmitResult(3, forward).ok());
  ASSERT_TRUE(Run(MakeTx(kChain, TxType::kPublishExpert, admin_, nonce_++,
                         PublishExpert{Cid('e'), "expert-e", "swiglu", 1024}.Encode()))
                  .ok());
  ASSERT_TRUE(SubmitResult(4, BackwardBody(Cid('e'))).ok());
  ASSERT_TRUE(SubmitResult(5, BackwardBody(Cid('a')), &other).ok());

  struct Case {
    std::vector<uint64_t> sources;
    const char* what;
  };
  for (const Case& c : {Case{{1, 3}, "a forward result"}, Case{{4}, "a result on another expert"},
                        Case{{2, 5}, "another edge's result"}, Case{{9}, "no result"},
                        Case{{1, 20}, "its own later nonce"}}) {
    ExpertUpdatedBody body = AdamBody();
    body.sources = c.sources;
    Status s = SubmitUpdate(20, body);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.what << ": " << s.ToString();
    EXPECT_NE(s.message().find("source"), std::string::npos) << s.ToString();
  }
  EXPECT_FALSE(state_.map.count(UpdateKey(edge_.public_key(), 20)));
  EXPECT_FALSE(Published(Cid('c')));
  // The other edge's own result is a source for it.
  ExpertUpdatedBody theirs = AdamBody();
  theirs.sources = {5};
  EXPECT_TRUE(SubmitUpdate(20, theirs, &other).ok());
}

TEST_F(UpdateTest, AChildPublishedAlreadyIsRefused) {
  ASSERT_TRUE(Run(MakeTx(kChain, TxType::kPublishExpert, admin_, nonce_++,
                         PublishExpert{Cid('c'), "expert-c", "swiglu", 1024}.Encode()))
                  .ok());
  EXPECT_EQ(SubmitUpdate(10).code(), StatusCode::kAlreadyExists);
  EXPECT_FALSE(state_.map.count(UpdateKey(edge_.public_key(), 10)));
  EXPECT_FALSE(state_.map.count(LineageKey(Cid('c'))));

  // Nor may a second update name the child of a first.
  ExpertUpdatedBody body = AdamBody();
  body.child_cid = Cid('d');
  ASSERT_TRUE(SubmitUpdate(11, body).ok());
  body.sources = {2};
  EXPECT_EQ(SubmitUpdate(12, body).code(), StatusCode::kAlreadyExists);
  const Bytes& lineage = state_.map.at(LineageKey(Cid('d')));
  EXPECT_EQ(std::string(lineage.begin(), lineage.end()), UpdateKey(edge_.public_key(), 11));
  // An update's nonce is used like any other.
  body.child_cid = Cid('f');
  EXPECT_EQ(SubmitUpdate(11, body).code(), StatusCode::kAlreadyExists);
  EXPECT_FALSE(Published(Cid('f')));
}

TEST_F(UpdateTest, AnUpdateOfAnUnpublishedParentIsRejectedAsItIsOrdered) {
  // Backward results on an unpublished expert exist, rejected as they were ordered (one fault);
  // the update naming them is the second fault.
  genesis_.params.fault_threshold = 2;
  ASSERT_TRUE(SubmitResult(3, BackwardBody(Cid('e'))).ok());
  ASSERT_EQ(Rep(edge_.public_key()).faults, 1u);
  ASSERT_FALSE(Rep(edge_.public_key()).blacklisted);
  ExpertUpdatedBody body = AdamBody();
  body.parent_cid = Cid('e');
  body.sources = {3};
  const uint64_t h = height_;
  ASSERT_TRUE(SubmitUpdate(10, body).ok());
  UpdateRecord record = Update(10);
  EXPECT_EQ(record.status, ResultStatus::kRejected);
  EXPECT_EQ(record.height, h);
  EXPECT_EQ(record.verdict_height, h);
  EXPECT_TRUE(record.reason.starts_with("expert-not-published: parent " + Cid('e')))
      << record.reason;
  EXPECT_FALSE(PendingUpdate(10));
  EXPECT_FALSE(Published(Cid('c')));
  EXPECT_FALSE(state_.map.count(LineageKey(Cid('c'))));
  Reputation rep = Rep(edge_.public_key());
  EXPECT_EQ(rep.faults, 2u);
  EXPECT_EQ(rep.strikes, 0u);
  EXPECT_EQ(rep.rejected, 2u);
  EXPECT_TRUE(rep.blacklisted);
  EXPECT_EQ(rep.blacklisted_height, h);
  EXPECT_TRUE(rep.blacklist_reason.starts_with("update 000000000000000a expert-not-published"))
      << rep.blacklist_reason;
  EXPECT_EQ(SubmitUpdate(11, AdamBody()).code(), StatusCode::kPermissionDenied);

  // Votes on it are late votes: an accept is a contradiction and changes nothing.
  ASSERT_TRUE(Vote(0, 10, Verdict::kAccepted).ok());
  EXPECT_EQ(Update(10).status, ResultStatus::kRejected);
  EXPECT_EQ(Rep(validators_.keys[0].public_key()).contradictions, 1u);
}

TEST_F(UpdateTest, AQuorumOfAcceptVotesFinalizesTheUpdateAccepted) {
  ASSERT_TRUE(SubmitUpdate(10).ok());
  const uint64_t accepted_before = Rep(edge_.public_key()).accepted;
  ASSERT_TRUE(Vote(1, 10, Verdict::kAccepted).ok());
  ASSERT_TRUE(Vote(3, 10, Verdict::kAccepted).ok());
  EXPECT_EQ(Update(10).status, ResultStatus::kPending);
  EXPECT_TRUE(PendingUpdate(10));
  EXPECT_TRUE(state_.map.count(VoteKey(edge_.public_key(), 10, 3)));
  EXPECT_EQ(Vote(3, 10, Verdict::kAccepted).code(), StatusCode::kAlreadyExists);
  const uint64_t h = height_;
  ASSERT_TRUE(Vote(0, 10, Verdict::kAccepted).ok());
  UpdateRecord record = Update(10);
  EXPECT_EQ(record.status, ResultStatus::kAccepted);
  EXPECT_EQ(record.verdict_height, h);
  EXPECT_EQ(record.reason, "");
  EXPECT_EQ(record.body, AdamBody());
  EXPECT_FALSE(PendingUpdate(10));
  EXPECT_TRUE(Published(Cid('c')));
  Reputation rep = Rep(edge_.public_key());
  EXPECT_EQ(rep.accepted, accepted_before + 1);
  EXPECT_EQ(rep.rejected, 0u);
  EXPECT_FALSE(rep.blacklisted);
  // The source results are untouched by the update's verdict.
  auto source = ResultRecord::Decode(state_.map.at(ResultKey(edge_.public_key(), 1)));
  ASSERT_TRUE(source.ok());
  EXPECT_EQ(source->status, ResultStatus::kPending);
  // A late reject is a contradiction.
  ASSERT_TRUE(Vote(2, 10, Verdict::kRejected, RejectReason::kMismatch, "late").ok());
  EXPECT_EQ(Update(10).status, ResultStatus::kAccepted);
  EXPECT_EQ(Rep(validators_.keys[2].public_key()).contradictions, 1u);
}

TEST_F(UpdateTest, AQuorumOfMismatchVotesRejectsTheUpdateAndBlacklists) {
  ASSERT_TRUE(SubmitUpdate(0x2a).ok());
  ASSERT_TRUE(Vote(2, 0x2a, Verdict::kRejected, RejectReason::kMismatch, "tensor w2").ok());
  ASSERT_TRUE(Vote(3, 0x2a, Verdict::kAccepted).ok());
  ASSERT_TRUE(Vote(0, 0x2a, Verdict::kRejected, RejectReason::kMismatch, "tensor w1").ok());
  EXPECT_EQ(Update(0x2a).status, ResultStatus::kPending);
  EXPECT_FALSE(Rep(edge_.public_key()).blacklisted);
  const uint64_t h = height_;
  ASSERT_TRUE(Vote(1, 0x2a, Verdict::kRejected, RejectReason::kMismatch, "tensor w3").ok());
  UpdateRecord record = Update(0x2a);
  EXPECT_EQ(record.status, ResultStatus::kRejected);
  EXPECT_EQ(record.reason, "mismatch: tensor w1");  // the lowest rejecting validator's detail
  EXPECT_EQ(record.verdict_height, h);
  EXPECT_FALSE(PendingUpdate(0x2a));
  Reputation rep = Rep(edge_.public_key());
  EXPECT_EQ(rep.rejected, 1u);
  EXPECT_EQ(rep.faults, 1u);
  EXPECT_TRUE(rep.blacklisted);
  EXPECT_EQ(rep.blacklisted_height, h);
  EXPECT_TRUE(rep.blacklist_reason.starts_with("update ")) << rep.blacklist_reason;
  EXPECT_EQ(rep.blacklist_reason, "update 000000000000002a mismatch: tensor w1");
  EXPECT_EQ(Rep(validators_.keys[3].public_key()).contradictions, 1u);
  EXPECT_EQ(SubmitResult(0x2b, BackwardBody(Cid('c'))).code(), StatusCode::kPermissionDenied);
}

TEST_F(UpdateTest, AVoteOnANonceThatIsNeitherResultNorUpdateIsNotFound) {
  ASSERT_TRUE(SubmitUpdate(10).ok());
  Status s = Vote(0, 11, Verdict::kAccepted);
  EXPECT_EQ(s.code(), StatusCode::kNotFound) << s.ToString();
  EXPECT_FALSE(state_.map.count(VoteKey(edge_.public_key(), 11, 0)));
  // A refused update leaves nothing to vote on.
  ExpertUpdatedBody bad = AdamBody();
  bad.sources = {99};
  ASSERT_EQ(SubmitUpdate(12, bad).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Vote(0, 12, Verdict::kAccepted).code(), StatusCode::kNotFound);
  // A vote on a result nonce finalizes the result, not the update.
  ASSERT_TRUE(Vote(0, 1, Verdict::kAccepted).ok());
  ASSERT_TRUE(Vote(1, 1, Verdict::kAccepted).ok());
  ASSERT_TRUE(Vote(2, 1, Verdict::kAccepted).ok());
  auto source = ResultRecord::Decode(state_.map.at(ResultKey(edge_.public_key(), 1)));
  ASSERT_TRUE(source.ok());
  EXPECT_EQ(source->status, ResultStatus::kAccepted);
  EXPECT_EQ(Update(10).status, ResultStatus::kPending);
}

}  // namespace
}  // namespace trustmoe::ledger
