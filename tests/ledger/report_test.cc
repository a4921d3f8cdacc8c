// Reports of bad commitments (type 21): the body and record encodings, the judgement of the
// evidence (undecodable, signed by another key, bad signature, a nonce signed over two bodies,
// a commitment for another call), who may report, the refusal of valid commitments and of
// duplicates, and the fault and blacklisting that follow. Transactions execute on an in-memory
// state through ExecuteTx, as a validator executes them.
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "chain/ledger/genesis.h"
#include "chain/ledger/report.h"
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

constexpr char kChain[] = "report-chain";
constexpr std::string_view kReportDomain = "trustmoe/tx/report-commitment/v1";

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
  g.params.fault_threshold = 1;
  return g;
}

std::string Cid(char c) { return "sha256-tree:" + std::string(64, c); }

// A forward call of expert Cid('a') on input Cid('b').
ExpertResultBody ForwardBody(std::string job = "job-1", uint64_t step = 3) {
  ExpertResultBody body;
  body.kind = CallKind::kForward;
  body.job = std::move(job);
  body.step = step;
  body.expert_cid = Cid('a');
  body.input_cid = Cid('b');
  body.output_cid = Cid('c');
  body.rows = 16;
  return body;
}

// ---- Encodings ----

TEST(ReportCommitmentBodyTest, RoundTripAndBounds) {
  ReportCommitment report{KeyFromByte(20).public_key(), Bytes(100, 7), Cid('a'), Cid('b')};
  auto back = ReportCommitment::Decode(report.Encode(), 100);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->edge, report.edge);
  EXPECT_EQ(back->commitment, report.commitment);
  EXPECT_EQ(back->expert_cid, Cid('a'));
  EXPECT_EQ(back->input_cid, Cid('b'));
  EXPECT_EQ(back->Encode(), report.Encode());

  // Over the limit (the chain's tx_bytes_max).
  EXPECT_EQ(ReportCommitment::Decode(report.Encode(), 99).status().code(),
            StatusCode::kInvalidArgument);
  // An empty commitment decodes: it is evidence of nothing handed over in a valid form.
  EXPECT_TRUE(ReportCommitment::Decode(
                  ReportCommitment{report.edge, Bytes(), Cid('a'), Cid('b')}.Encode(), 100)
                  .ok());
  for (const auto& [expert, input] :
       {std::pair{std::string("sha256-tree:AB"), Cid('b')}, std::pair{Cid('a'), std::string("")},
        std::pair{Cid('a'), Cid('b') + "0"}}) {
    EXPECT_EQ(ReportCommitment::Decode(
                  ReportCommitment{report.edge, Bytes(1, 1), expert, input}.Encode(), 100)
                  .status()
                  .code(),
              StatusCode::kInvalidArgument)
        << expert << " " << input;
  }
  Bytes trailing = report.Encode();
  trailing.push_back(0);
  EXPECT_EQ(ReportCommitment::Decode(trailing, 100).status().code(), StatusCode::kInvalidArgument);
  const Bytes good = report.Encode();
  for (size_t n = 0; n < good.size(); n += 7) {
    EXPECT_FALSE(ReportCommitment::Decode(ByteSpan(good.data(), n), 100).ok()) << n;
  }
  crypto::CanonicalWriter short_key(kReportDomain);
  short_key.Blob(Bytes(31, 1)).Blob(Bytes(1, 1)).Str(Cid('a')).Str(Cid('b'));
  EXPECT_FALSE(ReportCommitment::Decode(short_key.Take(), 100).ok());
  // A vote body is not a report (domain tags differ).
  EXPECT_FALSE(
      ReportCommitment::Decode(
          VoteBody{report.edge, 1, Verdict::kAccepted, RejectReason::kNone, ""}.Encode(), 100)
          .ok());
}

TEST(ReportRecordTest, RoundTripAndKeys) {
  const crypto::PublicKey edge = KeyFromByte(20).public_key();
  const pbft::TxId id = pbft::ComputeTxId(Bytes(5, 5));
  ReportRecord record{.edge = edge,
                      .commitment_id = id,
                      .reporter = KeyFromByte(30).public_key(),
                      .report_nonce = 0x1f,
                      .expert_cid = Cid('a'),
                      .input_cid = Cid('b'),
                      .reason = RejectReason::kReplayedNonce,
                      .detail = "nonce 5",
                      .height = 42};
  auto back = ReportRecord::Decode(record.Encode());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->edge, edge);
  EXPECT_EQ(back->commitment_id, id);
  EXPECT_EQ(back->reporter, record.reporter);
  EXPECT_EQ(back->report_nonce, 0x1fu);
  EXPECT_EQ(back->reason, RejectReason::kReplayedNonce);
  EXPECT_EQ(back->detail, "nonce 5");
  EXPECT_EQ(back->height, 42u);
  EXPECT_EQ(back->Encode(), record.Encode());
  record.reason = RejectReason::kNone;
  EXPECT_FALSE(ReportRecord::Decode(record.Encode()).ok());

  EXPECT_EQ(ReportPrefix(edge), "report/" + edge.Hex() + "/");
  EXPECT_EQ(ReportKey(edge, id), "report/" + edge.Hex() + "/" + crypto::DigestHex(id));
  // Reports live apart from the edge's own results.
  EXPECT_FALSE(ReportKey(edge, id).starts_with("result/"));
  EXPECT_EQ(TxTypeName(static_cast<uint8_t>(TxType::kReportCommitment)), "report-commitment");
}

// ---- Execution ----

// Four validators (f = 1), the admin, a registered edge, a second edge, two gates, a researcher,
// and the published expert Cid('a'). fault_threshold 1.
class ReportTest : public ::testing::Test {
 protected:
  ReportTest()
      : admin_(KeyFromByte(9)),
        edge_(KeyFromByte(20)),
        other_edge_(KeyFromByte(21)),
        gate_(KeyFromByte(30)),
        gate2_(KeyFromByte(31)),
        researcher_(KeyFromByte(32)),
        stranger_(KeyFromByte(77)),
        genesis_(MakeGenesis(validators_, admin_)) {
    for (auto& [k, v] : GenesisWrites(genesis_)) state_.map[k] = *v;
    Register(edge_, NodeRole::kEdge);
    Register(other_edge_, NodeRole::kEdge);
    Register(gate_, NodeRole::kGate);
    Register(gate2_, NodeRole::kGate);
    Register(researcher_, NodeRole::kResearcher);
    Tx publish = MakeTx(kChain, TxType::kPublishExpert, admin_, nonce_++,
                        PublishExpert{Cid('a'), "expert-a", "swiglu", 1024}.Encode());
    EXPECT_TRUE(Run(publish).ok());
  }

  TxContext NextContext() { return TxContext{&genesis_, height_++, 1700000000000, 0}; }

  // Executes `tx` in block height_ (then advances it); keeps its writes only when it succeeds.
  Status Run(const Tx& tx) { return RunBytes(tx.Encode()); }
  Status RunBytes(const Bytes& tx_bytes) {
    TxContext ctx = NextContext();
    StateOverlay overlay(static_cast<const StateReader*>(&state_));
    Status s = ExecuteTx(ctx, registry_, tx_bytes, &overlay);
    if (s.ok()) {
      state_.Apply(overlay);
    } else {
      EXPECT_TRUE(overlay.writes().empty()) << "a rejected tx left writes";
    }
    return s;
  }

  void Register(const crypto::PrivateKey& key, NodeRole role) {
    Tx tx = MakeTx(kChain, TxType::kRegisterNode, admin_, nonce_++,
                   RegisterNode{key.public_key(), role, "node", ""}.Encode());
    ASSERT_TRUE(Run(tx).ok());
  }

  // The expert-result transaction an edge hands the gate.
  static Bytes Commitment(const crypto::PrivateKey& signer, uint64_t nonce,
                          const ExpertResultBody& body = ForwardBody(),
                          std::string_view chain = kChain) {
    return MakeTx(chain, TxType::kExpertResult, signer, nonce, body.Encode()).Encode();
  }

  Tx ReportTx(const crypto::PrivateKey& reporter, const crypto::PublicKey& edge,
              const Bytes& commitment, std::string expert = Cid('a'),
              std::string input = Cid('b')) {
    ReportCommitment body{edge, commitment, std::move(expert), std::move(input)};
    return MakeTx(kChain, TxType::kReportCommitment, reporter, nonce_++, body.Encode());
  }
  Status Report(const crypto::PrivateKey& reporter, const crypto::PublicKey& edge,
                const Bytes& commitment, std::string expert = Cid('a'),
                std::string input = Cid('b')) {
    return Run(ReportTx(reporter, edge, commitment, std::move(expert), std::move(input)));
  }
  Status Report(const Bytes& commitment, std::string expert = Cid('a'),
                std::string input = Cid('b')) {
    return Report(gate_, edge_.public_key(), commitment, std::move(expert), std::move(input));
  }

  Status SubmitResult(uint64_t nonce, const ExpertResultBody& body = ForwardBody()) {
    return RunBytes(Commitment(edge_, nonce, body));
  }

  std::optional<ReportRecord> Stored(const Bytes& commitment) const {
    auto it = state_.map.find(ReportKey(edge_.public_key(), pbft::ComputeTxId(commitment)));
    if (it == state_.map.end()) return std::nullopt;
    auto record = ReportRecord::Decode(it->second);
    EXPECT_TRUE(record.ok()) << record.status().ToString();
    if (!record.ok()) return std::nullopt;
    return *record;
  }
  Reputation Rep(const crypto::PublicKey& key) const {
    auto it = state_.map.find(ReputationKey(key));
    if (it == state_.map.end()) return Reputation{};
    auto rep = Reputation::Decode(it->second);
    EXPECT_TRUE(rep.ok()) << rep.status().ToString();
    return rep.ok() ? *rep : Reputation{};
  }
  size_t CountPrefix(const std::string& prefix) const {
    size_t n = 0;
    for (const auto& [key, value] : state_.map) n += key.starts_with(prefix) ? 1 : 0;
    return n;
  }

  // Reports `commitment` as gate_ and expects it recorded with `reason` and a detail starting
  // with `detail_prefix`, one fault on the edge, and the edge blacklisted by it.
  void ExpectReportedAndBlacklisted(const Bytes& commitment, RejectReason reason,
                                    const std::string& detail_prefix,
                                    std::string input = Cid('b')) {
    const uint64_t h = height_;
    const uint64_t report_nonce = nonce_;
    const size_t results_before = CountPrefix("result/");
    ASSERT_TRUE(Report(commitment, Cid('a'), input).ok());
    std::optional<ReportRecord> record = Stored(commitment);
    ASSERT_TRUE(record.has_value());
    EXPECT_EQ(record->edge, edge_.public_key());
    EXPECT_EQ(record->commitment_id, pbft::ComputeTxId(commitment));
    EXPECT_EQ(record->reporter, gate_.public_key());
    EXPECT_EQ(record->report_nonce, report_nonce);
    EXPECT_EQ(record->expert_cid, Cid('a'));
    EXPECT_EQ(record->input_cid, input);
    EXPECT_EQ(record->reason, reason);
    EXPECT_TRUE(record->detail.starts_with(detail_prefix)) << record->detail;
    EXPECT_LE(record->detail.size(), kReportDetailBytesMax);
    EXPECT_EQ(record->height, h);
    // A report writes no result/ or pending/ key of the edge.
    EXPECT_EQ(CountPrefix("result/"), results_before);

    Reputation rep = Rep(edge_.public_key());
    EXPECT_EQ(rep.rejected, 1u);
    EXPECT_EQ(rep.faults, 1u);
    EXPECT_EQ(rep.strikes, 0u);
    EXPECT_EQ(rep.accepted, 0u);
    EXPECT_TRUE(rep.blacklisted);
    EXPECT_EQ(rep.blacklisted_height, h);
    EXPECT_EQ(rep.blacklist_reason,
              "report " + crypto::DigestHex(pbft::ComputeTxId(commitment)).substr(0, 16) + " " +
                  VerdictReasonText(reason, record->detail));
    // Blacklisted: the edge's results are refused from now on.
    EXPECT_EQ(SubmitResult(0x7000).code(), StatusCode::kPermissionDenied);
    EXPECT_FALSE(state_.map.count(ResultKey(edge_.public_key(), 0x7000)));
  }

  Validators validators_;
  crypto::PrivateKey admin_;
  crypto::PrivateKey edge_;
  crypto::PrivateKey other_edge_;
  crypto::PrivateKey gate_;
  crypto::PrivateKey gate2_;
  crypto::PrivateKey researcher_;
  crypto::PrivateKey stranger_;
  Genesis genesis_;
  TxRegistry registry_ = TxRegistry::Default();
  MapState state_;
  uint64_t height_ = 1;
  uint64_t nonce_ = 1;  // of every transaction but the edge's results
};

// (a) Bytes that are not an expert-result transaction with a valid body.
TEST_F(ReportTest, AnUndecodableCommitmentIsABadSignature) {
  ExpectReportedAndBlacklisted(Bytes{'n', 'o', 't', ' ', 'a', ' ', 't', 'x'},
                               RejectReason::kBadSignature, "commitment does not decode: ");
  // Other shapes of it, on the now blacklisted edge: each is recorded and counted.
  Bytes vote =
      MakeTx(kChain, TxType::kVote, edge_, 5,
             VoteBody{edge_.public_key(), 1, Verdict::kAccepted, RejectReason::kNone, ""}.Encode())
          .Encode();
  ExpertResultBody no_rows = ForwardBody();
  no_rows.rows = 0;
  Bytes bad_body = Commitment(edge_, 6, no_rows);
  Bytes truncated = Commitment(edge_, 7);
  truncated.pop_back();
  for (const Bytes& c : {vote, bad_body, truncated, Bytes()}) {
    ASSERT_TRUE(Report(c).ok());
    ASSERT_TRUE(Stored(c).has_value());
    EXPECT_EQ(Stored(c)->reason, RejectReason::kBadSignature);
    EXPECT_TRUE(Stored(c)->detail.starts_with("commitment does not decode: ")) << Stored(c)->detail;
  }
  EXPECT_NE(Stored(vote)->detail.find("a vote transaction (type 17)"), std::string::npos)
      << Stored(vote)->detail;
  EXPECT_EQ(Rep(edge_.public_key()).faults, 5u);
  EXPECT_EQ(Rep(edge_.public_key()).rejected, 5u);
}

// (b) A valid commitment, but of another key.
TEST_F(ReportTest, ACommitmentSignedByAnotherKeyIsABadSignature) {
  const Bytes by_other = Commitment(other_edge_, 5);
  ExpectReportedAndBlacklisted(
      by_other, RejectReason::kBadSignature,
      "signed by " + other_edge_.public_key().Hex().substr(0, 16) + "..., not by the edge called");
  // The other edge is not touched: its commitment is valid for itself.
  EXPECT_EQ(Rep(other_edge_.public_key()).rejected, 0u);
  EXPECT_TRUE(RunBytes(by_other).ok());
}

// (c) Signed by the edge's key, but the signature does not verify for this chain.
TEST_F(ReportTest, ACommitmentWhoseSignatureDoesNotVerifyIsABadSignature) {
  Bytes forged = Commitment(edge_, 5);
  forged[forged.size() - 1] ^= 0x01;  // the last byte of the signature
  ASSERT_TRUE(Tx::Decode(forged, genesis_.params.tx_bytes_max).ok());
  ExpectReportedAndBlacklisted(forged, RejectReason::kBadSignature,
                               "signature does not verify for chain 'report-chain'");
  const Bytes other_chain = Commitment(edge_, 6, ForwardBody(), "another-chain");
  ASSERT_TRUE(Report(other_chain).ok());
  EXPECT_EQ(Stored(other_chain)->reason, RejectReason::kBadSignature);
  EXPECT_EQ(Rep(edge_.public_key()).faults, 2u);
}

// (d) The edge signed two bodies with one nonce; the ledger holds the other one. No trust in the
// reporter is needed, and the finding comes before a CID mismatch.
TEST_F(ReportTest, ANonceSignedOverTwoBodiesIsAReplayedNonce) {
  ASSERT_TRUE(SubmitResult(5, ForwardBody("job-1", 3)).ok());
  ExpertResultBody second = ForwardBody("job-1", 4);
  second.input_cid = Cid('d');
  const Bytes equivocation = Commitment(edge_, 5, second);
  // The chain refuses it on its own: the nonce is used.
  ASSERT_EQ(RunBytes(equivocation).code(), StatusCode::kAlreadyExists);
  ExpectReportedAndBlacklisted(
      equivocation, RejectReason::kReplayedNonce,
      "nonce 0000000000000005 signed over two bodies: result 0000000000000005 on the ledger is "
      "job 'job-1' step 3, this one job 'job-1' step 4",
      Cid('d'));
  // The ledger's result keeps its own course: still pending its verdict.
  auto result = ResultRecord::Decode(state_.map.at(ResultKey(edge_.public_key(), 5)));
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->status, ResultStatus::kPending);
  EXPECT_TRUE(state_.map.count(PendingKey(edge_.public_key(), 5)));
}

// (e) A valid commitment of the edge, for a call the gate did not make.
TEST_F(ReportTest, ACommitmentForAnotherCallIsAMismatch) {
  const Bytes commitment = Commitment(edge_, 5);  // input Cid('b')
  ExpectReportedAndBlacklisted(commitment, RejectReason::kMismatch,
                               "commitment for another call: input sha256-tree:bbbbbbbbbbbbbbbb... "
                               "instead of sha256-tree:dddddddddddddddd...",
                               Cid('d'));
}

TEST_F(ReportTest, ACommitmentForAnotherExpertAndInputNamesBoth) {
  genesis_.params.fault_threshold = 2;
  const Bytes commitment = Commitment(edge_, 5);
  ASSERT_TRUE(Report(commitment, Cid('e'), Cid('f')).ok());
  EXPECT_EQ(Stored(commitment)->reason, RejectReason::kMismatch);
  EXPECT_EQ(Stored(commitment)->detail,
            "commitment for another call: expert sha256-tree:aaaaaaaaaaaaaaaa... instead of "
            "sha256-tree:eeeeeeeeeeeeeeee..., input sha256-tree:bbbbbbbbbbbbbbbb... instead of "
            "sha256-tree:ffffffffffffffff...");
  // Below the threshold one report is a fault, not yet a blacklisting; a verdict's fault adds
  // to the same count.
  Reputation rep = Rep(edge_.public_key());
  EXPECT_EQ(rep.faults, 1u);
  EXPECT_FALSE(rep.blacklisted);
  ExpertResultBody unpublished = ForwardBody();
  unpublished.expert_cid = Cid('9');
  ASSERT_TRUE(SubmitResult(6, unpublished).ok());
  rep = Rep(edge_.public_key());
  EXPECT_EQ(rep.faults, 2u);
  EXPECT_EQ(rep.rejected, 2u);
  EXPECT_TRUE(rep.blacklisted);
  EXPECT_TRUE(rep.blacklist_reason.starts_with("result 0000000000000006 expert-not-published"))
      << rep.blacklist_reason;
}

TEST_F(ReportTest, AValidCommitmentProvesNothing) {
  // Not yet on the ledger: the gate should submit it, not report it.
  const Bytes fresh = Commitment(edge_, 5);
  Status s = Report(fresh);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("the commitment is valid"), std::string::npos) << s.ToString();
  // On the ledger already, as the same body.
  ASSERT_TRUE(RunBytes(fresh).ok());
  s = Report(fresh);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("the commitment is valid (it is result 0000000000000005"),
            std::string::npos)
      << s.ToString();
  // The admin fares no better.
  EXPECT_EQ(Report(admin_, edge_.public_key(), Commitment(edge_, 6)).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(CountPrefix("report/"), 0u);
  Reputation rep = Rep(edge_.public_key());
  EXPECT_EQ(rep.rejected, 0u);
  EXPECT_EQ(rep.faults, 0u);
  EXPECT_FALSE(rep.blacklisted);
  EXPECT_TRUE(SubmitResult(6).ok());
}

TEST_F(ReportTest, OnlyGatesAndTheAdminReport) {
  const Bytes garbage{1, 2, 3};
  for (const crypto::PrivateKey* reporter :
       {&edge_, &other_edge_, &researcher_, &stranger_, &validators_.keys[0]}) {
    EXPECT_EQ(Report(*reporter, edge_.public_key(), garbage).code(), StatusCode::kPermissionDenied)
        << reporter->public_key().Hex();
  }
  EXPECT_EQ(CountPrefix("report/"), 0u);
  EXPECT_EQ(Rep(edge_.public_key()).faults, 0u);
  ASSERT_TRUE(Report(admin_, edge_.public_key(), garbage).ok());
  EXPECT_EQ(Stored(garbage)->reporter, admin_.public_key());
  ASSERT_TRUE(Report(gate2_, edge_.public_key(), Bytes{4, 5, 6}).ok());
  EXPECT_EQ(Rep(edge_.public_key()).faults, 2u);
}

TEST_F(ReportTest, OnlyRegisteredEdgesAreReported) {
  const Bytes by_stranger = Commitment(stranger_, 5);
  EXPECT_EQ(Report(gate_, stranger_.public_key(), by_stranger).code(), StatusCode::kNotFound);
  // A gate (or any node that is not an edge) is not reported either.
  EXPECT_EQ(Report(gate_, gate2_.public_key(), Bytes{1}).code(), StatusCode::kNotFound);
  EXPECT_EQ(Report(gate_, researcher_.public_key(), Bytes{1}).code(), StatusCode::kNotFound);
  EXPECT_EQ(CountPrefix("report/"), 0u);
  EXPECT_EQ(Rep(gate2_.public_key()).rejected, 0u);
}

TEST_F(ReportTest, AnOversizedCommitmentIsInvalid) {
  const Bytes huge(genesis_.params.tx_bytes_max + 1, 0xab);
  EXPECT_EQ(Report(huge).code(), StatusCode::kInvalidArgument);
  // The body's own bound, below the envelope's.
  ReportCommitment body{edge_.public_key(), Bytes(200, 1), Cid('a'), Cid('b')};
  EXPECT_EQ(ReportCommitment::Decode(body.Encode(), 199).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(CountPrefix("report/"), 0u);
  EXPECT_EQ(Rep(edge_.public_key()).faults, 0u);
}

TEST_F(ReportTest, OneReportPerCommitment) {
  genesis_.params.fault_threshold = 10;
  const Bytes by_other = Commitment(other_edge_, 5);
  ASSERT_TRUE(Report(by_other).ok());
  EXPECT_EQ(Report(by_other).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(Report(gate2_, edge_.public_key(), by_other).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(Report(admin_, edge_.public_key(), by_other, Cid('a'), Cid('d')).code(),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(Rep(edge_.public_key()).faults, 1u);
  EXPECT_EQ(CountPrefix(ReportPrefix(edge_.public_key())), 1u);
  // Other bytes are another commitment.
  ASSERT_TRUE(Report(Commitment(other_edge_, 6)).ok());
  EXPECT_EQ(Rep(edge_.public_key()).faults, 2u);
}

TEST_F(ReportTest, EveryReplicaJudgesAReportAlike) {
  ASSERT_TRUE(SubmitResult(5, ForwardBody("job-1", 3)).ok());
  const Bytes report =
      ReportTx(gate_, edge_.public_key(), Commitment(edge_, 5, ForwardBody("job-1", 4))).Encode();
  TxContext ctx = NextContext();
  std::vector<Digest> roots;
  for (int replica = 0; replica < 3; ++replica) {
    MapState copy = state_;
    StateOverlay block(static_cast<const StateReader*>(&copy));
    ASSERT_TRUE(ExecuteTx(ctx, registry_, report, &block).ok());
    roots.push_back(ComputeStateRoot(Digest{}, ctx.height, block.writes()));
  }
  EXPECT_EQ(roots[0], roots[1]);
  EXPECT_EQ(roots[0], roots[2]);
}

}  // namespace
}  // namespace trustmoe::ledger
