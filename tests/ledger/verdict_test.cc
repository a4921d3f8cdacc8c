// Verdicts on expert results: vote and lift-blacklist bodies, the vote handler's quorum rule,
// reputation (strikes, faults, contradictions) and blacklisting, the result's dtype and device
// fields and indexes, and the genesis parameters of verification. Transactions execute on an
// in-memory state through ExecuteTx, as a validator executes them.
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>

#include "chain/ledger/genesis.h"
#include "chain/ledger/result.h"
#include "chain/ledger/state.h"
#include "chain/ledger/tx.h"
#include "chain/ledger/verdict.h"
#include "crypto/canonical.h"
#include "tests/ledger/ledger_fixture.h"

namespace trustmoe::ledger {
namespace {

using testing::KeyFromByte;
using testing::MapState;
using testing::Validators;

constexpr char kChain[] = "verdict-chain";
constexpr std::string_view kVoteDomain = "trustmoe/tx/vote/v1";

Genesis MakeGenesis(const Validators& v, const crypto::PrivateKey& admin) {
  Genesis g;
  g.chain_id = kChain;
  g.created_unix_ms = 1700000000000;
  g.f = 1;
  for (size_t i = 0; i < v.keys.size(); ++i) {
    g.validators.push_back(
        {"v" + std::to_string(i), v.keys[i].public_key(), "127.0.0.1:" + std::to_string(7200 + i)});
  }
  g.admin_key = admin.public_key();
  return g;
}

std::string Cid(char c) { return "sha256-tree:" + std::string(64, c); }

ExpertResultBody ForwardBody(std::string job = "job-1") {
  ExpertResultBody body;
  body.kind = CallKind::kForward;
  body.job = std::move(job);
  body.step = 3;
  body.expert_cid = Cid('a');
  body.input_cid = Cid('b');
  body.output_cid = Cid('c');
  body.rows = 16;
  return body;
}

// A vote body written field by field, so that a test can put any byte in any field.
Bytes RawVote(const crypto::PublicKey& edge, uint64_t nonce, uint8_t verdict, uint8_t reason,
              std::string_view detail) {
  crypto::CanonicalWriter w(kVoteDomain);
  w.Blob(edge.bytes()).U64(nonce).U8(verdict).U8(reason).Str(detail);
  return w.Take();
}

// ---- Bodies ----

TEST(VoteBodyTest, EncodeDecodeRoundTrip) {
  VoteBody accept{KeyFromByte(20).public_key(), 0x0102030405060708, Verdict::kAccepted,
                  RejectReason::kNone, ""};
  auto back = VoteBody::Decode(accept.Encode());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->edge, accept.edge);
  EXPECT_EQ(back->result_nonce, accept.result_nonce);
  EXPECT_EQ(back->verdict, Verdict::kAccepted);
  EXPECT_EQ(back->reason, RejectReason::kNone);
  EXPECT_EQ(back->Encode(), accept.Encode());

  VoteBody reject{KeyFromByte(21).public_key(), 9, Verdict::kRejected,
                  RejectReason::kExpertNotPublished, std::string(kVoteDetailBytesMax, 'r')};
  back = VoteBody::Decode(reject.Encode());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->verdict, Verdict::kRejected);
  EXPECT_EQ(back->reason, RejectReason::kExpertNotPublished);
  EXPECT_EQ(back->detail, reject.detail);
  EXPECT_EQ(back->Encode(), reject.Encode());

  VoteRecord record{3, Verdict::kRejected, RejectReason::kWrongShape, "rows 7 != 8", 41};
  auto stored = VoteRecord::Decode(record.Encode());
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ(stored->validator, 3u);
  EXPECT_EQ(stored->reason, RejectReason::kWrongShape);
  EXPECT_EQ(stored->detail, "rows 7 != 8");
  EXPECT_EQ(stored->height, 41u);
}

TEST(VoteBodyTest, HostileBodiesAreInvalidArgument) {
  const crypto::PublicKey edge = KeyFromByte(20).public_key();
  auto expect_invalid = [](const Bytes& body, const char* what) {
    auto r = VoteBody::Decode(body);
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << what;
  };
  ASSERT_TRUE(VoteBody::Decode(RawVote(edge, 1, 2, 1, "row 3")).ok());
  expect_invalid(RawVote(edge, 1, 0, 0, ""), "verdict 0");
  expect_invalid(RawVote(edge, 1, 3, 1, ""), "verdict 3");
  expect_invalid(RawVote(edge, 1, 2, kRejectReasonMax + 1, ""), "reason 9");
  expect_invalid(RawVote(edge, 1, 2, 255, ""), "reason 255");
  expect_invalid(RawVote(edge, 1, 1, 1, ""), "accepted with a reason");
  expect_invalid(RawVote(edge, 1, 2, 0, ""), "rejected without a reason");
  expect_invalid(RawVote(edge, 1, 2, 1, std::string(kVoteDetailBytesMax + 1, 'x')),
                 "detail of 257 bytes");
  Bytes trailing = RawVote(edge, 1, 2, 1, "d");
  trailing.push_back(0);
  expect_invalid(trailing, "trailing byte");
  const Bytes good = RawVote(edge, 1, 2, 1, "detail");
  for (size_t n = 0; n < good.size(); ++n) {
    EXPECT_EQ(VoteBody::Decode(ByteSpan(good.data(), n)).status().code(),
              StatusCode::kInvalidArgument)
        << "truncated to " << n;
  }
  crypto::CanonicalWriter short_key(kVoteDomain);
  short_key.Blob(Bytes(31, 1)).U64(1).U8(1).U8(0).Str("");
  EXPECT_FALSE(VoteBody::Decode(short_key.Take()).ok());
  // A lift-blacklist body is not a vote (domain tags differ).
  expect_invalid(LiftBlacklist{edge, "appeal"}.Encode(), "lift body as vote");
}

TEST(LiftBlacklistBodyTest, RoundTripAndReasonBounds) {
  LiftBlacklist lift{KeyFromByte(20).public_key(), "operator replaced the GPU"};
  auto back = LiftBlacklist::Decode(lift.Encode());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->key, lift.key);
  EXPECT_EQ(back->reason, lift.reason);
  EXPECT_TRUE(LiftBlacklist::Decode(LiftBlacklist{lift.key, std::string(256, 'a')}.Encode()).ok());
  EXPECT_EQ(LiftBlacklist::Decode(LiftBlacklist{lift.key, std::string(257, 'a')}.Encode())
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(LiftBlacklist::Decode(LiftBlacklist{lift.key, ""}.Encode()).status().code(),
            StatusCode::kInvalidArgument);
  Bytes trailing = lift.Encode();
  trailing.push_back(7);
  EXPECT_FALSE(LiftBlacklist::Decode(trailing).ok());
}

TEST(ExpertResultBodyTest, DtypeAndDeviceRoundTripAndBounds) {
  ExpertResultBody body = ForwardBody();
  body.dtype = ComputeDType::kBF16;
  body.device = "cuda:0";
  auto back = ExpertResultBody::Decode(body.Encode());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, body);
  body.device = std::string(kDeviceBytesMax, 'a');
  EXPECT_TRUE(ExpertResultBody::Decode(body.Encode()).ok());

  for (uint8_t dtype : {0, 4, 255}) {
    ExpertResultBody bad = ForwardBody();
    bad.dtype = static_cast<ComputeDType>(dtype);
    EXPECT_EQ(ExpertResultBody::Decode(bad.Encode()).status().code(), StatusCode::kInvalidArgument)
        << "dtype " << int{dtype};
  }
  for (const std::string& device :
       {std::string(""), std::string("CUDA"), std::string(kDeviceBytesMax + 1, 'a'),
        std::string("cu da"), std::string("cuda/0")}) {
    ExpertResultBody bad = ForwardBody();
    bad.device = device;
    EXPECT_EQ(ExpertResultBody::Decode(bad.Encode()).status().code(), StatusCode::kInvalidArgument)
        << "device '" << device << "'";
  }
  EXPECT_EQ(ParseComputeDType("bf16").value(), ComputeDType::kBF16);
  EXPECT_EQ(ComputeDTypeName(ComputeDType::kF16), "f16");
  EXPECT_FALSE(ParseComputeDType("fp32").ok());
}

TEST(VerdictKeysTest, KeysNestUnderTheirPrefixes) {
  const crypto::PublicKey edge = KeyFromByte(20).public_key();
  EXPECT_EQ(ResultKey(edge, 0x1f), "result/" + edge.Hex() + "/000000000000001f");
  EXPECT_EQ(PendingKey(edge, 0x1f), "pending/" + edge.Hex() + "/000000000000001f");
  EXPECT_EQ(VotePrefix(edge, 0x1f), "vote/" + edge.Hex() + "/000000000000001f/");
  EXPECT_EQ(VoteKey(edge, 0x1f, 10), VotePrefix(edge, 0x1f) + "000a");
  EXPECT_EQ(JobResultPrefix("ab"), "job-result/6162/");
  EXPECT_EQ(JobResultKey("ab", edge, 0x1f), "job-result/6162/" + edge.Hex() + "/000000000000001f");
  // Validator ids sort numerically in key order.
  EXPECT_LT(VoteKey(edge, 1, 9), VoteKey(edge, 1, 10));
  EXPECT_LT(VoteKey(edge, 1, 255), VoteKey(edge, 1, 256));
  EXPECT_EQ(VerdictReasonText(RejectReason::kMismatch, ""), "mismatch");
  EXPECT_EQ(VerdictReasonText(RejectReason::kFetchTimeout, "store"), "fetch-timeout: store");
}

// ---- Execution ----

// Four validators (f = 1, quorum 3), the admin, one registered edge and one published expert
// (Cid('a'), the expert of ForwardBody).
class VerdictTest : public ::testing::Test {
 protected:
  VerdictTest()
      : admin_(KeyFromByte(9)), edge_(KeyFromByte(20)), genesis_(MakeGenesis(validators_, admin_)) {
    for (auto& [k, v] : GenesisWrites(genesis_)) state_.map[k] = *v;
    RegisterEdge(edge_);
    Tx publish = MakeTx(kChain, TxType::kPublishExpert, admin_, nonce_++,
                        PublishExpert{Cid('a'), "expert-a", "swiglu", 1024}.Encode());
    EXPECT_TRUE(Run(publish).ok());
  }

  // Executes `tx` in block height_ (then advances it); keeps its writes only when it succeeds.
  Status Run(const Tx& tx) {
    TxContext ctx{&genesis_, height_++, 1700000000000, 0};
    StateOverlay overlay(static_cast<const StateReader*>(&state_));
    Status s = ExecuteTx(ctx, registry_, tx.Encode(), &overlay);
    if (s.ok()) {
      state_.Apply(overlay);
    } else {
      EXPECT_TRUE(overlay.writes().empty()) << "a rejected tx left writes";
    }
    return s;
  }

  void RegisterEdge(const crypto::PrivateKey& edge) {
    Tx tx = MakeTx(kChain, TxType::kRegisterNode, admin_, nonce_++,
                   RegisterNode{edge.public_key(), NodeRole::kEdge, "edge", ""}.Encode());
    ASSERT_TRUE(Run(tx).ok());
  }

  Status SubmitResult(uint64_t result_nonce, const ExpertResultBody& body = ForwardBody(),
                      const crypto::PrivateKey* edge = nullptr) {
    return Run(
        MakeTx(kChain, TxType::kExpertResult, edge ? *edge : edge_, result_nonce, body.Encode()));
  }

  Status Vote(uint32_t validator, uint64_t result_nonce, Verdict verdict,
              RejectReason reason = RejectReason::kNone, std::string detail = "") {
    return VoteAs(validators_.keys[validator], result_nonce, verdict, reason, std::move(detail));
  }
  Status VoteAs(const crypto::PrivateKey& signer, uint64_t result_nonce, Verdict verdict,
                RejectReason reason = RejectReason::kNone, std::string detail = "") {
    VoteBody body{edge_.public_key(), result_nonce, verdict, reason, std::move(detail)};
    return Run(MakeTx(kChain, TxType::kVote, signer, nonce_++, body.Encode()));
  }
  // Rejects result `result_nonce` with `reason` by validators 0, 1 and 2.
  void RejectByQuorum(uint64_t result_nonce, RejectReason reason) {
    for (uint32_t v = 0; v < 3; ++v) {
      ASSERT_TRUE(Vote(v, result_nonce, Verdict::kRejected, reason, "v" + std::to_string(v)).ok());
    }
  }

  Status Lift(const crypto::PrivateKey& signer, const crypto::PublicKey& key,
              std::string reason = "appeal granted") {
    return Run(MakeTx(kChain, TxType::kLiftBlacklist, signer, nonce_++,
                      LiftBlacklist{key, std::move(reason)}.Encode()));
  }

  ResultRecord Record(uint64_t result_nonce) const {
    auto record = ResultRecord::Decode(state_.map.at(ResultKey(edge_.public_key(), result_nonce)));
    EXPECT_TRUE(record.ok()) << record.status().ToString();
    return record.ok() ? *record : ResultRecord{};
  }
  Reputation Rep(const crypto::PublicKey& key) const {
    auto it = state_.map.find(ReputationKey(key));
    if (it == state_.map.end()) return Reputation{};
    auto rep = Reputation::Decode(it->second);
    EXPECT_TRUE(rep.ok()) << rep.status().ToString();
    return rep.ok() ? *rep : Reputation{};
  }
  Reputation ValidatorRep(uint32_t validator) const {
    return Rep(validators_.keys[validator].public_key());
  }
  bool Pending(uint64_t result_nonce) const {
    return state_.map.count(PendingKey(edge_.public_key(), result_nonce)) != 0;
  }

  Validators validators_;
  crypto::PrivateKey admin_;
  crypto::PrivateKey edge_;
  Genesis genesis_;
  TxRegistry registry_ = TxRegistry::Default();
  MapState state_;
  uint64_t height_ = 1;
  uint64_t nonce_ = 1;  // of the admin's and validators' transactions
};

TEST_F(VerdictTest, ResultsAreIndexedPendingAndByJob) {
  crypto::PrivateKey other = KeyFromByte(21);
  RegisterEdge(other);
  ASSERT_TRUE(SubmitResult(5, ForwardBody("job-a")).ok());
  ASSERT_TRUE(SubmitResult(6, ForwardBody("job-b")).ok());
  ASSERT_TRUE(SubmitResult(5, ForwardBody("job-a"), &other).ok());
  EXPECT_TRUE(Pending(5));
  EXPECT_TRUE(Pending(6));
  EXPECT_TRUE(state_.map.count(PendingKey(other.public_key(), 5)));
  const std::string a5 = JobResultKey("job-a", edge_.public_key(), 5);
  ASSERT_TRUE(state_.map.count(a5));
  EXPECT_TRUE(state_.map.at(a5).empty());
  EXPECT_TRUE(state_.map.count(JobResultKey("job-b", edge_.public_key(), 6)));
  EXPECT_TRUE(state_.map.count(JobResultKey("job-a", other.public_key(), 5)));
  EXPECT_FALSE(state_.map.count(JobResultKey("job-b", edge_.public_key(), 5)));
  size_t under_a = 0;
  for (const auto& [key, value] : state_.map) {
    if (key.starts_with(JobResultPrefix("job-a"))) ++under_a;
  }
  EXPECT_EQ(under_a, 2u);
  ResultRecord record = Record(5);
  EXPECT_EQ(record.status, ResultStatus::kPending);
  EXPECT_EQ(record.verdict_height, 0u);
  EXPECT_EQ(record.body.dtype, ComputeDType::kF32);
  EXPECT_EQ(record.body.device, "cpu");
}

TEST_F(VerdictTest, ResultBodiesWithABadDtypeOrDeviceAreRefused) {
  uint64_t n = 100;
  for (uint8_t dtype : {0, 4}) {
    ExpertResultBody bad = ForwardBody();
    bad.dtype = static_cast<ComputeDType>(dtype);
    EXPECT_EQ(SubmitResult(n++, bad).code(), StatusCode::kInvalidArgument) << int{dtype};
  }
  for (const std::string& device :
       {std::string(""), std::string("CUDA"), std::string(33, 'a'), std::string("cu da")}) {
    ExpertResultBody bad = ForwardBody();
    bad.device = device;
    EXPECT_EQ(SubmitResult(n++, bad).code(), StatusCode::kInvalidArgument) << device;
  }
  for (uint64_t i = 100; i < n; ++i) {
    EXPECT_FALSE(state_.map.count(ResultKey(edge_.public_key(), i)));
    EXPECT_FALSE(Pending(i));
  }
  ExpertResultBody good = ForwardBody();
  good.dtype = ComputeDType::kF16;
  good.device = "cuda:1";
  ASSERT_TRUE(SubmitResult(n, good).ok());
  EXPECT_EQ(Record(n).body, good);
}

TEST_F(VerdictTest, OnlyValidatorsVoteOnceOnAnExistingResult) {
  ASSERT_TRUE(SubmitResult(7).ok());
  EXPECT_EQ(VoteAs(edge_, 7, Verdict::kAccepted).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(VoteAs(admin_, 7, Verdict::kAccepted).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(VoteAs(KeyFromByte(77), 7, Verdict::kAccepted).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(Vote(0, 8, Verdict::kAccepted).code(), StatusCode::kNotFound);
  EXPECT_FALSE(state_.map.count(VoteKey(edge_.public_key(), 8, 0)));

  const uint64_t h = height_;
  ASSERT_TRUE(Vote(1, 7, Verdict::kRejected, RejectReason::kMismatch, "row 2").ok());
  auto stored = VoteRecord::Decode(state_.map.at(VoteKey(edge_.public_key(), 7, 1)));
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ(stored->validator, 1u);
  EXPECT_EQ(stored->verdict, Verdict::kRejected);
  EXPECT_EQ(stored->detail, "row 2");
  EXPECT_EQ(stored->height, h);
  // A second vote of the same validator, same or changed verdict, is refused.
  EXPECT_EQ(Vote(1, 7, Verdict::kRejected, RejectReason::kMismatch, "row 2").code(),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(Vote(1, 7, Verdict::kAccepted).code(), StatusCode::kAlreadyExists);
  // A hostile body from a validator is refused before anything is written.
  Tx hostile = MakeTx(kChain, TxType::kVote, validators_.keys[2], nonce_++,
                      RawVote(edge_.public_key(), 7, 1, 3, ""));
  EXPECT_EQ(Run(hostile).code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(state_.map.count(VoteKey(edge_.public_key(), 7, 2)));
  EXPECT_EQ(Record(7).status, ResultStatus::kPending);
}

TEST_F(VerdictTest, AQuorumOfAcceptVotesFinalizesAccepted) {
  ASSERT_TRUE(SubmitResult(7).ok());
  ASSERT_TRUE(Vote(2, 7, Verdict::kAccepted).ok());
  ASSERT_TRUE(Vote(0, 7, Verdict::kAccepted).ok());
  EXPECT_EQ(Record(7).status, ResultStatus::kPending);
  EXPECT_EQ(Record(7).verdict_height, 0u);
  EXPECT_TRUE(Pending(7));
  EXPECT_EQ(Rep(edge_.public_key()).accepted, 0u);

  const uint64_t h = height_;
  ASSERT_TRUE(Vote(3, 7, Verdict::kAccepted).ok());
  ResultRecord record = Record(7);
  EXPECT_EQ(record.status, ResultStatus::kAccepted);
  EXPECT_EQ(record.verdict_height, h);
  EXPECT_EQ(record.reason, "");
  EXPECT_FALSE(Pending(7));
  EXPECT_TRUE(state_.map.count(JobResultKey("job-1", edge_.public_key(), 7)));
  Reputation rep = Rep(edge_.public_key());
  EXPECT_EQ(rep.accepted, 1u);
  EXPECT_EQ(rep.rejected, 0u);
  EXPECT_FALSE(rep.blacklisted);
  for (uint32_t v = 0; v < 4; ++v) EXPECT_EQ(ValidatorRep(v).contradictions, 0u) << v;

  // The fourth vote agrees: recorded, nothing else changes.
  ASSERT_TRUE(Vote(1, 7, Verdict::kAccepted).ok());
  EXPECT_TRUE(state_.map.count(VoteKey(edge_.public_key(), 7, 1)));
  EXPECT_EQ(Record(7).verdict_height, h);
  EXPECT_EQ(Rep(edge_.public_key()).accepted, 1u);
  EXPECT_EQ(ValidatorRep(1).contradictions, 0u);
}

TEST_F(VerdictTest, RejectedTakesTheMajorityReasonAndTheLowestVoterDetail) {
  genesis_.params.fault_threshold = 10;  // keep the edge off the blacklist here
  ASSERT_TRUE(SubmitResult(7).ok());
  // Arrival order differs from validator order: the detail is validator 1's, not 3's.
  ASSERT_TRUE(Vote(3, 7, Verdict::kRejected, RejectReason::kMismatch, "from v3").ok());
  ASSERT_TRUE(Vote(0, 7, Verdict::kRejected, RejectReason::kWrongShape, "from v0").ok());
  EXPECT_EQ(Record(7).status, ResultStatus::kPending);
  const uint64_t h = height_;
  ASSERT_TRUE(Vote(1, 7, Verdict::kRejected, RejectReason::kMismatch, "from v1").ok());
  ResultRecord record = Record(7);
  EXPECT_EQ(record.status, ResultStatus::kRejected);
  EXPECT_EQ(record.reason, "mismatch: from v1");
  EXPECT_EQ(record.verdict_height, h);
  EXPECT_FALSE(Pending(7));
  Reputation rep = Rep(edge_.public_key());
  EXPECT_EQ(rep.rejected, 1u);
  EXPECT_EQ(rep.accepted, 0u);
  EXPECT_EQ(rep.faults, 1u);
  EXPECT_EQ(rep.strikes, 0u);
  EXPECT_FALSE(rep.blacklisted);
  // Rejecting with another reason is not a contradiction.
  EXPECT_EQ(ValidatorRep(0).contradictions, 0u);

  // Three different reasons: the tie goes to the lowest reason code.
  ASSERT_TRUE(SubmitResult(8).ok());
  ASSERT_TRUE(Vote(0, 8, Verdict::kRejected, RejectReason::kWrongShape, "a").ok());
  ASSERT_TRUE(Vote(1, 8, Verdict::kRejected, RejectReason::kFetchTimeout, "b").ok());
  ASSERT_TRUE(Vote(2, 8, Verdict::kRejected, RejectReason::kMalformedTensor, "c").ok());
  EXPECT_EQ(Record(8).reason, "fetch-timeout: b");
  rep = Rep(edge_.public_key());
  EXPECT_EQ(rep.rejected, 2u);
  EXPECT_EQ(rep.faults, 1u);
  EXPECT_EQ(rep.strikes, 1u);
}

TEST_F(VerdictTest, AFaultBlacklistsAtTheFaultThreshold) {
  genesis_.params.fault_threshold = 1;
  ASSERT_TRUE(SubmitResult(0x2a).ok());
  ASSERT_TRUE(Vote(0, 0x2a, Verdict::kRejected, RejectReason::kMismatch, "row 17").ok());
  ASSERT_TRUE(Vote(1, 0x2a, Verdict::kRejected, RejectReason::kMismatch, "row 4").ok());
  EXPECT_FALSE(Rep(edge_.public_key()).blacklisted);
  const uint64_t h = height_;
  ASSERT_TRUE(Vote(2, 0x2a, Verdict::kRejected, RejectReason::kMismatch, "row 9").ok());
  Reputation rep = Rep(edge_.public_key());
  EXPECT_TRUE(rep.blacklisted);
  EXPECT_EQ(rep.blacklisted_height, h);
  EXPECT_EQ(rep.faults, 1u);
  EXPECT_EQ(rep.strikes, 0u);
  EXPECT_EQ(rep.blacklist_reason, "result 000000000000002a mismatch: row 17");

  // Its later results are refused; votes on its earlier results still count.
  EXPECT_EQ(SubmitResult(0x2b).code(), StatusCode::kPermissionDenied);
  EXPECT_FALSE(state_.map.count(ResultKey(edge_.public_key(), 0x2b)));
  EXPECT_TRUE(Vote(3, 0x2a, Verdict::kRejected, RejectReason::kMismatch).ok());
  EXPECT_EQ(Rep(edge_.public_key()).blacklisted_height, h);
}

TEST_F(VerdictTest, IntegrityReasonsAreFaultsBelowAHigherThreshold) {
  genesis_.params.fault_threshold = 2;
  ASSERT_TRUE(SubmitResult(1).ok());
  RejectByQuorum(1, RejectReason::kMalformedTensor);
  Reputation rep = Rep(edge_.public_key());
  EXPECT_EQ(rep.faults, 1u);
  EXPECT_EQ(rep.strikes, 0u);
  EXPECT_FALSE(rep.blacklisted);
  ASSERT_TRUE(SubmitResult(2).ok());
  RejectByQuorum(2, RejectReason::kExpertNotPublished);
  rep = Rep(edge_.public_key());
  EXPECT_EQ(rep.faults, 2u);
  EXPECT_TRUE(rep.blacklisted);
}

TEST_F(VerdictTest, AvailabilityRejectionsAreStrikesAndBlacklistAtTheStrikeThreshold) {
  genesis_.params.strike_threshold = 3;
  genesis_.params.fault_threshold = 1;
  ASSERT_TRUE(SubmitResult(1).ok());
  RejectByQuorum(1, RejectReason::kOutputMissing);
  ASSERT_TRUE(SubmitResult(2).ok());
  RejectByQuorum(2, RejectReason::kFetchTimeout);
  Reputation rep = Rep(edge_.public_key());
  EXPECT_EQ(rep.strikes, 2u);
  EXPECT_EQ(rep.faults, 0u);  // a fault would have blacklisted at threshold 1
  EXPECT_FALSE(rep.blacklisted);
  EXPECT_EQ(Record(2).reason, "fetch-timeout: v0");

  ASSERT_TRUE(SubmitResult(3).ok());
  ASSERT_TRUE(Vote(0, 3, Verdict::kRejected, RejectReason::kOutputMissing).ok());
  ASSERT_TRUE(Vote(1, 3, Verdict::kRejected, RejectReason::kOutputMissing).ok());
  const uint64_t h = height_;
  ASSERT_TRUE(Vote(2, 3, Verdict::kRejected, RejectReason::kOutputMissing).ok());
  rep = Rep(edge_.public_key());
  EXPECT_EQ(rep.strikes, 3u);
  EXPECT_EQ(rep.rejected, 3u);
  EXPECT_TRUE(rep.blacklisted);
  EXPECT_EQ(rep.blacklisted_height, h);
  EXPECT_EQ(rep.blacklist_reason, "result 0000000000000003 output-missing");
  EXPECT_EQ(SubmitResult(4).code(), StatusCode::kPermissionDenied);
}

TEST_F(VerdictTest, VotesAgainstTheFinalVerdictAreContradictions) {
  genesis_.params.fault_threshold = 10;
  // Before the verdict: validator 3 rejects, the others accept.
  ASSERT_TRUE(SubmitResult(1).ok());
  ASSERT_TRUE(Vote(3, 1, Verdict::kRejected, RejectReason::kMismatch, "x").ok());
  ASSERT_TRUE(Vote(0, 1, Verdict::kAccepted).ok());
  ASSERT_TRUE(Vote(1, 1, Verdict::kAccepted).ok());
  EXPECT_EQ(ValidatorRep(3).contradictions, 0u);  // no verdict yet
  ASSERT_TRUE(Vote(2, 1, Verdict::kAccepted).ok());
  EXPECT_EQ(Record(1).status, ResultStatus::kAccepted);
  EXPECT_EQ(ValidatorRep(3).contradictions, 1u);
  for (uint32_t v = 0; v < 3; ++v) EXPECT_EQ(ValidatorRep(v).contradictions, 0u) << v;

  // After the verdict: validator 3 accepts a result the others rejected.
  ASSERT_TRUE(SubmitResult(2).ok());
  RejectByQuorum(2, RejectReason::kMismatch);
  ASSERT_TRUE(Vote(3, 2, Verdict::kAccepted).ok());
  EXPECT_EQ(Record(2).status, ResultStatus::kRejected);  // a late vote changes nothing
  EXPECT_EQ(Record(2).reason, "mismatch: v0");
  EXPECT_EQ(ValidatorRep(3).contradictions, 2u);
  EXPECT_EQ(Rep(edge_.public_key()).accepted, 1u);
  EXPECT_EQ(Rep(edge_.public_key()).rejected, 1u);

  // A late vote that agrees is no contradiction; validators are never blacklisted.
  ASSERT_TRUE(SubmitResult(3).ok());
  RejectByQuorum(3, RejectReason::kMismatch);
  ASSERT_TRUE(Vote(3, 3, Verdict::kRejected, RejectReason::kWrongShape).ok());
  EXPECT_EQ(ValidatorRep(3).contradictions, 2u);
  EXPECT_FALSE(ValidatorRep(3).blacklisted);
}

TEST_F(VerdictTest, AResultForAnUnpublishedExpertIsRejectedAsItIsOrdered) {
  genesis_.params.fault_threshold = 2;
  ExpertResultBody body = ForwardBody("job-u");
  body.expert_cid = Cid('e');
  const uint64_t h = height_;
  ASSERT_TRUE(SubmitResult(9, body).ok());
  ResultRecord record = Record(9);
  EXPECT_EQ(record.status, ResultStatus::kRejected);
  EXPECT_EQ(record.verdict_height, h);
  EXPECT_EQ(record.height, h);
  EXPECT_TRUE(record.reason.starts_with("expert-not-published: " + Cid('e'))) << record.reason;
  EXPECT_FALSE(Pending(9));
  EXPECT_TRUE(state_.map.count(JobResultKey("job-u", edge_.public_key(), 9)));
  Reputation rep = Rep(edge_.public_key());
  EXPECT_EQ(rep.faults, 1u);
  EXPECT_EQ(rep.rejected, 1u);
  EXPECT_FALSE(rep.blacklisted);
  // Votes on it are late votes: an accept is a contradiction and changes nothing.
  ASSERT_TRUE(Vote(0, 9, Verdict::kAccepted).ok());
  ASSERT_TRUE(Vote(1, 9, Verdict::kAccepted).ok());
  ASSERT_TRUE(Vote(2, 9, Verdict::kAccepted).ok());
  EXPECT_EQ(Record(9).status, ResultStatus::kRejected);
  EXPECT_EQ(Rep(edge_.public_key()).accepted, 0u);
  for (uint32_t v = 0; v < 3; ++v) EXPECT_EQ(ValidatorRep(v).contradictions, 1u) << v;
  ASSERT_TRUE(Vote(3, 9, Verdict::kRejected, RejectReason::kExpertNotPublished).ok());
  EXPECT_EQ(ValidatorRep(3).contradictions, 0u);
}

TEST_F(VerdictTest, TheAdminLiftsABlacklisting) {
  ASSERT_TRUE(SubmitResult(1).ok());
  EXPECT_EQ(Lift(admin_, edge_.public_key()).code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(Vote(3, 1, Verdict::kRejected, RejectReason::kFetchTimeout).ok());
  RejectByQuorum(1, RejectReason::kMismatch);
  ASSERT_TRUE(Rep(edge_.public_key()).blacklisted);
  EXPECT_EQ(Rep(edge_.public_key()).faults, 1u);

  EXPECT_EQ(Lift(validators_.keys[0], edge_.public_key()).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(Lift(edge_, edge_.public_key()).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(Lift(admin_, edge_.public_key(), "").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Lift(admin_, KeyFromByte(55).public_key()).code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Rep(edge_.public_key()).blacklisted);

  ASSERT_TRUE(Lift(admin_, edge_.public_key()).ok());
  Reputation rep = Rep(edge_.public_key());
  EXPECT_FALSE(rep.blacklisted);
  EXPECT_EQ(rep.blacklisted_height, 0u);
  EXPECT_EQ(rep.blacklist_reason, "");
  EXPECT_EQ(rep.strikes, 0u);
  EXPECT_EQ(rep.faults, 0u);
  EXPECT_EQ(rep.rejected, 1u);  // the history stays
  EXPECT_EQ(Lift(admin_, edge_.public_key()).code(), StatusCode::kFailedPrecondition);

  // Lifted, the edge may commit results again, and one more fault blacklists it again.
  ASSERT_TRUE(SubmitResult(2).ok());
  RejectByQuorum(2, RejectReason::kWrongShape);
  rep = Rep(edge_.public_key());
  EXPECT_TRUE(rep.blacklisted);
  EXPECT_EQ(rep.faults, 1u);
  EXPECT_EQ(rep.rejected, 2u);
}

// ---- Genesis parameters of verification ----

TEST(VerifyParamsTest, OutOfRangeParametersAreRefusedNamingTheField) {
  const Validators v;
  const Genesis good = MakeGenesis(v, KeyFromByte(9));
  ASSERT_TRUE(good.Validate().ok()) << good.Validate().ToString();
  auto expect_refused = [&](auto mutate, const char* field) {
    Genesis g = good;
    mutate(g.params);
    Status s = g.Validate();
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << field;
    EXPECT_NE(s.message().find(field), std::string::npos) << s.ToString();
    auto parsed = Genesis::FromJson(g.ToJson());
    EXPECT_FALSE(parsed.ok()) << field << " accepted from JSON";
  };
  expect_refused([](ChainParams& p) { p.fault_threshold = 0; }, "fault_threshold");
  expect_refused([](ChainParams& p) { p.verify_rows_min = 0; }, "verify_rows_min");
  expect_refused([](ChainParams& p) { p.verify_rows_min = 1000001; }, "verify_rows_min");
  expect_refused([](ChainParams& p) { p.verify_fraction_ppm = 1000001; }, "verify_fraction_ppm");
  expect_refused([](ChainParams& p) { p.verify_deadline_ms = 50; }, "verify_deadline_ms");
  expect_refused([](ChainParams& p) { p.verify_deadline_ms = 3600001; }, "verify_deadline_ms");
  expect_refused([](ChainParams& p) { p.verify_deadline_ms = -1; }, "verify_deadline_ms");
  expect_refused([](ChainParams& p) { p.tolerance_f32_ppm = 0; }, "tolerance_f32_ppm");
  expect_refused([](ChainParams& p) { p.tolerance_bf16_ppm = 1000001; }, "tolerance_bf16_ppm");
  expect_refused([](ChainParams& p) { p.tolerance_f16_ppm = 0; }, "tolerance_f16_ppm");
  expect_refused([](ChainParams& p) { p.verify_update_fraction_ppm = 1000001; },
                 "verify_update_fraction_ppm");
  expect_refused([](ChainParams& p) { p.tolerance_update_ppm = 0; }, "tolerance_update_ppm");
  expect_refused([](ChainParams& p) { p.tolerance_update_ppm = 1000001; }, "tolerance_update_ppm");

  // The bounds themselves are accepted.
  Genesis edge = good;
  edge.params.verify_rows_min = 1000000;
  edge.params.verify_fraction_ppm = 0;
  edge.params.verify_deadline_ms = 100;
  edge.params.tolerance_f32_ppm = 1;
  edge.params.tolerance_bf16_ppm = 1000000;
  edge.params.verify_update_fraction_ppm = 0;
  edge.params.tolerance_update_ppm = 1;
  EXPECT_TRUE(edge.Validate().ok()) << edge.Validate().ToString();
  edge.params.verify_fraction_ppm = 1000000;
  edge.params.verify_deadline_ms = 3600000;
  edge.params.verify_update_fraction_ppm = 1000000;
  edge.params.tolerance_update_ppm = 1000000;
  EXPECT_TRUE(edge.Validate().ok()) << edge.Validate().ToString();

  // Negative or non-integer values in the file are refused by the parser.
  std::string text = good.ToJson();
  const std::string from = "\"fault_threshold\": 1";
  ASSERT_NE(text.find(from), std::string::npos);
  std::string negative = text;
  negative.replace(negative.find(from), from.size(), "\"fault_threshold\": -1");
  EXPECT_FALSE(Genesis::FromJson(negative).ok());
  std::string typo = text;
  typo.replace(typo.find(from), from.size(), "\"fault_treshold\": 1");
  EXPECT_FALSE(Genesis::FromJson(typo).ok());
}

TEST(VerifyParamsTest, JsonRoundTripKeepsThemAndEachChangesTheDigest) {
  const Validators v;
  Genesis g = MakeGenesis(v, KeyFromByte(9));
  g.params.fault_threshold = 2;
  g.params.verify_rows_min = 32;
  g.params.verify_fraction_ppm = 125000;
  g.params.verify_deadline_ms = 20000;
  g.params.tolerance_f32_ppm = 200;
  g.params.tolerance_bf16_ppm = 40000;
  g.params.tolerance_f16_ppm = 15000;
  g.params.verify_update_fraction_ppm = 250000;
  g.params.tolerance_update_ppm = 5000;
  ASSERT_TRUE(g.Validate().ok()) << g.Validate().ToString();
  auto back = Genesis::FromJson(g.ToJson());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->params, g.params);
  EXPECT_EQ(back->Hash(), g.Hash());

  // Missing from the file: the defaults.
  Genesis defaults = MakeGenesis(v, KeyFromByte(9));
  EXPECT_EQ(defaults.params.fault_threshold, 1u);
  EXPECT_EQ(defaults.params.verify_rows_min, 16u);
  EXPECT_EQ(defaults.params.verify_fraction_ppm, 50000u);
  EXPECT_EQ(defaults.params.verify_deadline_ms, 10000);
  EXPECT_EQ(defaults.params.tolerance_f32_ppm, 100u);
  EXPECT_EQ(defaults.params.tolerance_bf16_ppm, 30000u);
  EXPECT_EQ(defaults.params.tolerance_f16_ppm, 10000u);
  EXPECT_EQ(defaults.params.verify_update_fraction_ppm, 100000u);
  EXPECT_EQ(defaults.params.tolerance_update_ppm, 10000u);

  const Digest base = g.Hash();
  for (auto mutate : std::initializer_list<void (*)(ChainParams&)>{
           [](ChainParams& p) { p.fault_threshold += 1; },
           [](ChainParams& p) { p.verify_rows_min += 1; },
           [](ChainParams& p) { p.verify_fraction_ppm += 1; },
           [](ChainParams& p) { p.verify_deadline_ms += 1; },
           [](ChainParams& p) { p.tolerance_f32_ppm += 1; },
           [](ChainParams& p) { p.tolerance_bf16_ppm += 1; },
           [](ChainParams& p) { p.tolerance_f16_ppm += 1; },
           [](ChainParams& p) { p.verify_update_fraction_ppm += 1; },
           [](ChainParams& p) { p.tolerance_update_ppm += 1; }}) {
    Genesis other = g;
    mutate(other.params);
    EXPECT_NE(other.Hash(), base);
  }
}

// The canonical encoding documented in docs/formats/genesis.md, field by field.
TEST(VerifyParamsTest, CanonicalEncodingFollowsTheDocumentedOrder) {
  const Validators v;
  Genesis g = MakeGenesis(v, KeyFromByte(9));
  g.params.fault_threshold = 2;
  g.params.verify_rows_min = 32;
  g.params.verify_fraction_ppm = 125000;
  g.params.verify_deadline_ms = 20000;
  g.params.tolerance_f32_ppm = 200;
  g.params.tolerance_bf16_ppm = 40000;
  g.params.tolerance_f16_ppm = 15000;
  g.params.verify_update_fraction_ppm = 250000;
  g.params.tolerance_update_ppm = 5000;
  const ChainParams& p = g.params;
  crypto::CanonicalWriter w(kGenesisDomain);
  w.Str(g.chain_id).I64(g.created_unix_ms).U32(g.f).Blob(g.admin_key.bytes());
  w.U32(static_cast<uint32_t>(g.validators.size()));
  for (const GenesisValidator& gv : g.validators) {
    w.Str(gv.name).Blob(gv.key.bytes()).Str(gv.endpoint);
  }
  w.U64(p.checkpoint_interval).U64(p.watermark_window).U64(p.block_txs_max);
  w.U64(p.block_bytes_max).U64(p.tx_bytes_max).I64(p.view_change_timeout_ms);
  w.I64(p.max_clock_skew_ms).U64(p.strike_threshold);
  w.U64(p.fault_threshold).U64(p.verify_rows_min).U64(p.verify_fraction_ppm);
  w.I64(p.verify_deadline_ms).U64(p.tolerance_f32_ppm).U64(p.tolerance_bf16_ppm);
  w.U64(p.tolerance_f16_ppm).U64(p.verify_update_fraction_ppm).U64(p.tolerance_update_ppm);
  EXPECT_EQ(g.Canonical(), w.bytes());
}

}  // namespace
}  // namespace trustmoe::ledger
