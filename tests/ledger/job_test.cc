// Job records (type 19): the body of every event, the job and placement records, their strict
// decoding, and the handler's rules (who may record, the researcher's signed request, the job
// id, ownership by the submitting gate, placement checks, increasing checkpoints, nothing after
// a final status). Transactions execute on an in-memory state through ExecuteTx, as a
// validator executes them.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "chain/ledger/genesis.h"
#include "chain/ledger/job.h"
#include "chain/ledger/result.h"
#include "chain/ledger/state.h"
#include "chain/ledger/tx.h"
#include "crypto/canonical.h"
#include "crypto/sha256.h"
#include "tests/ledger/ledger_fixture.h"

namespace trustmoe::ledger {
namespace {

using testing::KeyFromByte;
using testing::MapState;
using testing::Validators;

constexpr char kChain[] = "job-chain";
constexpr std::string_view kJobRecordDomain = "trustmoe/tx/job-record/v1";
constexpr char kSpec[] = "[job]\nname = \"fmnist\"\nkind = \"training\"\n";

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

// The submitted event of `researcher`'s signed request, with the id the request names.
JobRecordBody Submitted(const crypto::PrivateKey& researcher, uint64_t request_nonce,
                        std::string spec = kSpec, std::string_view chain = kChain,
                        std::string_view method = "SubmitJob") {
  JobRecordBody body;
  body.event = JobEvent::kSubmitted;
  body.researcher = researcher.public_key();
  body.request_nonce = request_nonce;
  body.spec_toml = std::move(spec);
  body.job = JobIdFor(body.researcher, request_nonce, body.spec_toml);
  const crypto::Signature sig =
      researcher.Sign(GateRequestMessage(chain, method, request_nonce, AsBytes(body.spec_toml)));
  body.signature.assign(sig.begin(), sig.end());
  return body;
}

JobRecordBody Placement(const std::string& job, std::vector<PlacementEntry> entries) {
  JobRecordBody body;
  body.job = job;
  body.event = JobEvent::kPlacement;
  body.placement = std::move(entries);
  return body;
}

JobMetrics Metrics(uint64_t step, double loss = 0.5, double accuracy = 0.8) {
  return JobMetrics{step, loss, accuracy, 10 * step, step / 2};
}

// A checkpoint or completion.
JobRecordBody WithMetrics(const std::string& job, JobEvent event, JobMetrics metrics,
                          std::string cid) {
  JobRecordBody body;
  body.job = job;
  body.event = event;
  body.metrics = metrics;
  body.cid = std::move(cid);
  return body;
}

JobRecordBody Ended(const std::string& job, JobEvent event, std::string detail) {
  JobRecordBody body;
  body.job = job;
  body.event = event;
  body.detail = std::move(detail);
  return body;
}

// One body of each event.
std::vector<JobRecordBody> EveryEvent() {
  const crypto::PrivateKey researcher = KeyFromByte(32);
  const JobRecordBody submitted = Submitted(researcher, 1700000000123456789);
  const std::string job = submitted.job;
  return {
      submitted,
      Placement(job, {{0, Cid('a'), {KeyFromByte(20).public_key()}},
                      {7, Cid('b'), {KeyFromByte(20).public_key(), KeyFromByte(21).public_key()}}}),
      WithMetrics(job, JobEvent::kCheckpoint, Metrics(100, 0.25, 0.9), Cid('c')),
      WithMetrics(job, JobEvent::kCompleted, Metrics(200, 0.125, 1.0), Cid('d')),
      Ended(job, JobEvent::kCancelled, "cancelled by the researcher"),
      Ended(job, JobEvent::kFailed, std::string(kJobDetailBytesMax, 'x'))};
}

void ExpectInvalid(const Bytes& bytes, const std::string& what) {
  auto r = JobRecordBody::Decode(bytes);
  ASSERT_FALSE(r.ok()) << what;
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument)
      << what << ": " << r.status().ToString();
}

void ExpectInvalid(const JobRecordBody& body, const std::string& what) {
  ExpectInvalid(body.Encode(), what);
}

// ---- Encodings ----

TEST(JobIdTest, NamesOneSignedRequest) {
  const crypto::PublicKey researcher = KeyFromByte(32).public_key();
  const std::string id = JobIdFor(researcher, 5, kSpec);
  ASSERT_EQ(id.size(), 32u);
  EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
  crypto::CanonicalWriter w("trustmoe/gate/job-id/v1");
  w.Blob(researcher.bytes()).U64(5).Str(kSpec);
  EXPECT_EQ(id, ToHex(ByteSpan(w.Hash().data(), 16)));
  EXPECT_EQ(JobIdFor(researcher, 5, kSpec), id);
  EXPECT_NE(JobIdFor(researcher, 6, kSpec), id);
  EXPECT_NE(JobIdFor(KeyFromByte(33).public_key(), 5, kSpec), id);
  EXPECT_NE(JobIdFor(researcher, 5, std::string(kSpec) + " "), id);

  crypto::CanonicalWriter m("trustmoe/gate/request/v1");
  m.Str(kChain).Str("SubmitJob").U64(5).Blob(AsBytes(kSpec));
  EXPECT_EQ(GateRequestMessage(kChain, "SubmitJob", 5, AsBytes(kSpec)), m.bytes());
  EXPECT_NE(GateRequestMessage("other-chain", "SubmitJob", 5, AsBytes(kSpec)), m.bytes());
  EXPECT_NE(GateRequestMessage(kChain, "CancelJob", 5, AsBytes(kSpec)), m.bytes());
}

TEST(JobRecordBodyTest, EveryEventRoundTrips) {
  for (const JobRecordBody& body : EveryEvent()) {
    const Bytes bytes = body.Encode();
    auto back = JobRecordBody::Decode(bytes);
    ASSERT_TRUE(back.ok()) << JobEventName(body.event) << ": " << back.status().ToString();
    EXPECT_EQ(*back, body) << JobEventName(body.event);
    EXPECT_EQ(back->Encode(), bytes) << JobEventName(body.event);
  }
  // Doubles travel as their exact bit patterns; bounds are inclusive.
  JobRecordBody odd =
      WithMetrics("ab", JobEvent::kCheckpoint,
                  {1, -std::numeric_limits<double>::denorm_min(), 0.0, 0, 0}, Cid('c'));
  odd.metrics.loss = std::nextafter(0.3, 1.0);
  auto back = JobRecordBody::Decode(odd.Encode());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(std::bit_cast<uint64_t>(back->metrics.loss), std::bit_cast<uint64_t>(odd.metrics.loss));
  // Limits that are allowed: the largest spec, job id, placement and edge count.
  JobRecordBody big = Submitted(KeyFromByte(32), 1, std::string(kJobSpecBytesMax, 'x'));
  big.job = std::string(kJobBytesMax, 'f');
  EXPECT_TRUE(JobRecordBody::Decode(big.Encode()).ok());
  std::vector<crypto::PublicKey> edges;
  for (uint8_t i = 0; i < kPlacementEdgesMax; ++i)
    edges.push_back(KeyFromByte(100 + i).public_key());
  std::vector<PlacementEntry> entries;
  for (uint32_t i = 0; i < kPlacementEntriesMax; ++i) entries.push_back({i, Cid('a'), {edges[0]}});
  entries.front().edges = edges;
  EXPECT_TRUE(JobRecordBody::Decode(Placement("ab", entries).Encode()).ok());
  EXPECT_EQ(JobEventName(JobEvent::kPlacement), "placement");
  EXPECT_EQ(JobStatusName(JobStatus::kCancelled), "cancelled");
  EXPECT_EQ(TxTypeName(static_cast<uint8_t>(TxType::kJobRecord)), "job-record");
}

TEST(JobRecordBodyTest, TruncatedAndTrailingBytesAreInvalid) {
  for (const JobRecordBody& body : EveryEvent()) {
    const Bytes good = body.Encode();
    for (size_t n = 0; n < good.size(); n += (good.size() > 2000 ? 97 : 1)) {
      ExpectInvalid(Bytes(good.begin(), good.begin() + static_cast<ptrdiff_t>(n)),
                    std::string(JobEventName(body.event)) + " cut at " + std::to_string(n));
    }
    Bytes trailing = good;
    trailing.push_back(0);
    ExpectInvalid(trailing, std::string(JobEventName(body.event)) + " with a trailing byte");
  }
  // Another body type is not a job record.
  ExpectInvalid(PublishModel{Cid('a'), "m"}.Encode(), "publish-model body");
}

TEST(JobRecordBodyTest, BadEventsAndJobIdsAreInvalid) {
  for (uint8_t event : {0, 7, 255}) {
    crypto::CanonicalWriter w(kJobRecordDomain);
    w.Str("ab").U8(event).Str("detail");
    ExpectInvalid(w.Take(), "event " + std::to_string(event));
  }
  const JobRecordBody cancelled = Ended("ab", JobEvent::kCancelled, "stop");
  for (const std::string& job :
       {std::string(), std::string("AB"), std::string("job-1"), std::string("ab "),
        std::string(kJobBytesMax + 1, 'a'), std::string("a\0b", 3)}) {
    JobRecordBody body = cancelled;
    body.job = job;
    ExpectInvalid(body, "job id '" + job + "'");
  }
  ExpectInvalid(Ended("ab", JobEvent::kCancelled, ""), "empty detail");
  ExpectInvalid(Ended("ab", JobEvent::kFailed, std::string(kJobDetailBytesMax + 1, 'x')),
                "long detail");
}

TEST(JobRecordBodyTest, BadSubmissionsAreInvalid) {
  const JobRecordBody good = Submitted(KeyFromByte(32), 9);
  ExpectInvalid(Submitted(KeyFromByte(32), 9, std::string(kJobSpecBytesMax + 1, 'x')),
                "oversize spec");
  JobRecordBody short_sig = good;
  short_sig.signature.pop_back();
  ExpectInvalid(short_sig, "63-byte signature");
  JobRecordBody long_sig = good;
  long_sig.signature.push_back(0);
  ExpectInvalid(long_sig, "65-byte signature");
  crypto::CanonicalWriter short_key(kJobRecordDomain);
  short_key.Str(good.job).U8(1).Blob(Bytes(31, 1)).U64(9).Str(kSpec).Blob(good.signature);
  ExpectInvalid(short_key.Take(), "31-byte researcher key");
  // A declared spec length above the bound fails before anything is allocated.
  crypto::CanonicalWriter huge(kJobRecordDomain);
  huge.Str(good.job).U8(1).Blob(good.researcher.bytes()).U64(9).U32(0xffffffff);
  ExpectInvalid(huge.Take(), "spec declaring 4 GiB");
}

TEST(JobRecordBodyTest, BadMetricsAndCidsAreInvalid) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (JobEvent event : {JobEvent::kCheckpoint, JobEvent::kCompleted}) {
    const std::string what(JobEventName(event));
    ExpectInvalid(WithMetrics("ab", event, Metrics(1, nan), Cid('c')), what + " NaN loss");
    ExpectInvalid(WithMetrics("ab", event, Metrics(1, -inf), Cid('c')), what + " -inf loss");
    ExpectInvalid(WithMetrics("ab", event, Metrics(1, 0.5, inf), Cid('c')), what + " inf accuracy");
    ExpectInvalid(WithMetrics("ab", event, Metrics(1, 0.5, nan), Cid('c')), what + " NaN accuracy");
    ExpectInvalid(WithMetrics("ab", event, Metrics(1, 0.5, std::nextafter(1.0, 2.0)), Cid('c')),
                  what + " accuracy above 1");
    ExpectInvalid(WithMetrics("ab", event, Metrics(1, 0.5, -0.01), Cid('c')),
                  what + " negative accuracy");
    for (const std::string& cid :
         {std::string(), std::string("sha256-tree:AB"), "sha256-tree:" + std::string(64, 'A'),
          Cid('c') + "0", std::string(kCidBytesMax + 1, 'c')}) {
      ExpectInvalid(WithMetrics("ab", event, Metrics(1), cid), what + " cid '" + cid + "'");
    }
  }
}

TEST(JobRecordBodyTest, BadPlacementsAreInvalid) {
  const crypto::PublicKey e1 = KeyFromByte(20).public_key();
  const crypto::PublicKey e2 = KeyFromByte(21).public_key();
  ExpectInvalid(Placement("ab", {}), "no entries");
  ExpectInvalid(Placement("ab", {{0, Cid('a'), {e1, e2, e1}}}), "an edge twice");
  ExpectInvalid(Placement("ab", {{3, Cid('a'), {e1}}, {3, Cid('b'), {e2}}}), "an index twice");
  ExpectInvalid(Placement("ab", {{0, Cid('a'), {}}}), "no edges");
  std::vector<crypto::PublicKey> many;
  for (uint8_t i = 0; i <= kPlacementEdgesMax; ++i)
    many.push_back(KeyFromByte(100 + i).public_key());
  ExpectInvalid(Placement("ab", {{0, Cid('a'), many}}), "17 edges");
  ExpectInvalid(Placement("ab", {{kPlacementEntriesMax, Cid('a'), {e1}}}), "index at the bound");
  ExpectInvalid(Placement("ab", {{0, "sha256-tree:xyz", {e1}}}), "bad expert cid");
  ExpectInvalid(Placement("ab", {{0, "", {e1}}}), "empty expert cid");
  std::vector<PlacementEntry> over;
  for (uint32_t i = 0; i <= kPlacementEntriesMax; ++i) over.push_back({i % 7, Cid('a'), {e1}});
  ExpectInvalid(Placement("ab", over), "entries over the bound");
  // Declared counts above their bounds fail before anything is read or allocated.
  crypto::CanonicalWriter count(kJobRecordDomain);
  count.Str("ab").U8(2).U32(0xffffffff);
  ExpectInvalid(count.Take(), "placement declaring 2^32-1 entries");
  crypto::CanonicalWriter edges(kJobRecordDomain);
  edges.Str("ab").U8(2).U32(1).U32(0).Str(Cid('a')).U32(0xffffffff);
  ExpectInvalid(edges.Take(), "entry declaring 2^32-1 edges");
  crypto::CanonicalWriter short_edge(kJobRecordDomain);
  short_edge.Str("ab").U8(2).U32(1).U32(0).Str(Cid('a')).U32(1).Blob(Bytes(33, 1));
  ExpectInvalid(short_edge.Take(), "33-byte edge key");
}

TEST(JobStateRecordsTest, RoundTripsAndKeys) {
  JobRecord record;
  record.gate = KeyFromByte(30).public_key();
  record.researcher = KeyFromByte(32).public_key();
  record.request_nonce = 77;
  record.spec_sha256 = crypto::Sha256::Hash(AsBytes(kSpec));
  record.status = JobStatus::kCompleted;
  record.submitted_height = 3;
  record.updated_height = 9;
  record.events = 5;
  record.metrics = Metrics(40, 0.1, 0.93);
  record.checkpoint_cid = Cid('c');
  record.output_cid = Cid('d');
  record.detail = "";
  auto back = JobRecord::Decode(record.Encode());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, record);
  EXPECT_EQ(back->Encode(), record.Encode());
  Bytes trailing = record.Encode();
  trailing.push_back(1);
  EXPECT_FALSE(JobRecord::Decode(trailing).ok());
  for (uint8_t status : {0, 5}) {
    JobRecord bad = record;
    bad.status = static_cast<JobStatus>(status);
    EXPECT_FALSE(JobRecord::Decode(bad.Encode()).ok()) << int{status};
  }
  JobRecord fresh = record;
  fresh.checkpoint_cid.clear();
  fresh.output_cid.clear();
  EXPECT_TRUE(JobRecord::Decode(fresh.Encode()).ok());

  PlacementRecord placement{
      {12, Cid('a'), {KeyFromByte(20).public_key(), KeyFromByte(21).public_key()}}, 8};
  auto stored = PlacementRecord::Decode(placement.Encode(), 12);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ(*stored, placement);
  // The index lives in the key, not in the value.
  EXPECT_EQ(PlacementRecord::Decode(placement.Encode(), 13)->entry.index, 13u);
  placement.entry.edges.push_back(placement.entry.edges[0]);
  EXPECT_FALSE(PlacementRecord::Decode(placement.Encode(), 12).ok());

  EXPECT_EQ(JobKey("0af"), "job/0af");
  EXPECT_EQ(PlacementPrefix("0af"), "placement/0af/");
  EXPECT_EQ(PlacementKey("0af", 0x1c), "placement/0af/0000001c");
  EXPECT_EQ(PlacementKey("0af", 0xffffffff), "placement/0af/ffffffff");
}

// ---- Execution ----

// MapState with a real Scan, for ReadJobState; pages of at most `page_max` entries.
class ScanningState : public MapState {
 public:
  Result<std::vector<std::pair<std::string, Bytes>>> Scan(const std::string& prefix,
                                                          const std::string& start_after,
                                                          size_t limit) const override {
    std::vector<std::pair<std::string, Bytes>> out;
    auto it = start_after.empty() ? map.lower_bound(prefix) : map.upper_bound(start_after);
    for (; it != map.end() && it->first.starts_with(prefix); ++it) {
      if (out.size() >= std::min(limit, page_max)) break;
      out.emplace_back(it->first, it->second);
    }
    return out;
  }
  size_t page_max = std::numeric_limits<size_t>::max();
};

// Four validators (f = 1), the admin, two gates, two researchers, two edges, an auditor, and
// the published experts Cid('a') and Cid('b').
class JobTest : public ::testing::Test {
 protected:
  JobTest()
      : admin_(KeyFromByte(9)),
        edge_(KeyFromByte(20)),
        edge2_(KeyFromByte(21)),
        gate_(KeyFromByte(30)),
        gate2_(KeyFromByte(31)),
        researcher_(KeyFromByte(32)),
        researcher2_(KeyFromByte(33)),
        auditor_(KeyFromByte(34)),
        stranger_(KeyFromByte(77)),
        genesis_(MakeGenesis(validators_, admin_)) {
    for (auto& [k, v] : GenesisWrites(genesis_)) state_.map[k] = *v;
    Register(edge_, NodeRole::kEdge);
    Register(edge2_, NodeRole::kEdge);
    Register(gate_, NodeRole::kGate);
    Register(gate2_, NodeRole::kGate);
    Register(researcher_, NodeRole::kResearcher);
    Register(researcher2_, NodeRole::kResearcher);
    Register(auditor_, NodeRole::kAuditor);
    for (char c : {'a', 'b'}) {
      EXPECT_TRUE(
          Run(MakeTx(kChain, TxType::kPublishExpert, admin_, nonce_++,
                     PublishExpert{Cid(c), std::string("expert-") + c, "swiglu", 1024}.Encode()))
              .ok());
    }
  }

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

  void Register(const crypto::PrivateKey& key, NodeRole role) {
    Tx tx = MakeTx(kChain, TxType::kRegisterNode, admin_, nonce_++,
                   RegisterNode{key.public_key(), role, "node", ""}.Encode());
    ASSERT_TRUE(Run(tx).ok());
  }

  void Blacklist(const crypto::PrivateKey& key) {
    Reputation rep;
    rep.faults = 1;
    rep.blacklisted = true;
    rep.blacklisted_height = 2;
    state_.map[ReputationKey(key.public_key())] = rep.Encode();
  }

  Status Record(const crypto::PrivateKey& signer, const JobRecordBody& body) {
    return Run(MakeTx(kChain, TxType::kJobRecord, signer, nonce_++, body.Encode()));
  }

  // researcher_'s job submitted by gate_.
  std::string SubmitJob(uint64_t request_nonce = 1) {
    const JobRecordBody body = Submitted(researcher_, request_nonce);
    Status s = Record(gate_, body);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return body.job;
  }

  std::optional<JobRecord> Job(const std::string& job) const {
    auto it = state_.map.find(JobKey(job));
    if (it == state_.map.end()) return std::nullopt;
    auto record = JobRecord::Decode(it->second);
    EXPECT_TRUE(record.ok()) << record.status().ToString();
    if (!record.ok()) return std::nullopt;
    return *record;
  }

  std::optional<PlacementRecord> Placed(const std::string& job, uint32_t index) const {
    auto it = state_.map.find(PlacementKey(job, index));
    if (it == state_.map.end()) return std::nullopt;
    auto record = PlacementRecord::Decode(it->second, index);
    EXPECT_TRUE(record.ok()) << record.status().ToString();
    if (!record.ok()) return std::nullopt;
    return *record;
  }

  size_t CountPrefix(const std::string& prefix) const {
    size_t n = 0;
    for (const auto& [key, value] : state_.map) n += key.starts_with(prefix) ? 1 : 0;
    return n;
  }

  Validators validators_;
  crypto::PrivateKey admin_, edge_, edge2_, gate_, gate2_, researcher_, researcher2_, auditor_,
      stranger_;
  Genesis genesis_;
  ScanningState state_;
  TxRegistry registry_ = TxRegistry::Default();
  uint64_t height_ = 1;
  uint64_t nonce_ = 1;
};

TEST_F(JobTest, TheDefaultRegistryKnowsJobRecords) {
  const TxHandler* handler = registry_.Find(static_cast<uint8_t>(TxType::kJobRecord));
  ASSERT_NE(handler, nullptr);
  EXPECT_EQ(handler->name(), "job-record");
}

TEST_F(JobTest, ASubmissionRecordsTheJobOwnedByTheGate) {
  const uint64_t h = height_;
  const JobRecordBody body = Submitted(researcher_, 41);
  ASSERT_TRUE(Record(gate_, body).ok());
  std::optional<JobRecord> job = Job(body.job);
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(job->gate, gate_.public_key());
  EXPECT_EQ(job->researcher, researcher_.public_key());
  EXPECT_EQ(job->request_nonce, 41u);
  EXPECT_EQ(job->spec_sha256, crypto::Sha256::Hash(AsBytes(kSpec)));
  EXPECT_EQ(job->status, JobStatus::kRunning);
  EXPECT_EQ(job->submitted_height, h);
  EXPECT_EQ(job->updated_height, h);
  EXPECT_EQ(job->events, 1u);
  EXPECT_EQ(job->metrics, JobMetrics{});
  EXPECT_TRUE(job->checkpoint_cid.empty());
  EXPECT_TRUE(job->output_cid.empty());
  EXPECT_EQ(CountPrefix("placement/"), 0u);
}

TEST_F(JobTest, OnlyARegisteredGateNotBlacklistedRecordsJobs) {
  const JobRecordBody body = Submitted(researcher_, 1);
  for (const crypto::PrivateKey* signer : {&stranger_, &researcher_, &edge_, &auditor_, &admin_}) {
    Status s = Record(*signer, body);
    EXPECT_EQ(s.code(), StatusCode::kPermissionDenied) << s.ToString();
  }
  Blacklist(gate2_);
  EXPECT_EQ(Record(gate2_, body).code(), StatusCode::kPermissionDenied);
  // The handler checks it too, not only ExecuteTx.
  StateOverlay overlay(static_cast<const StateReader*>(&state_));
  Status s = MakeJobRecordHandler()->Execute(
      TxContext{&genesis_, height_, 0, 0},
      MakeTx(kChain, TxType::kJobRecord, gate2_, 999, body.Encode()), &overlay);
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied) << s.ToString();
  EXPECT_NE(s.message().find("blacklisted"), std::string::npos) << s.message();
  EXPECT_FALSE(Job(body.job).has_value());
}

TEST_F(JobTest, TheResearcherMustBeARegisteredResearcherNotBlacklisted) {
  EXPECT_EQ(Record(gate_, Submitted(stranger_, 1)).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(Record(gate_, Submitted(edge_, 1)).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(Record(gate_, Submitted(gate2_, 1)).code(), StatusCode::kPermissionDenied);
  Blacklist(researcher2_);
  Status s = Record(gate_, Submitted(researcher2_, 1));
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(s.message().find("blacklisted"), std::string::npos) << s.message();
  EXPECT_EQ(CountPrefix("job/"), 0u);
}

TEST_F(JobTest, TheRequestSignatureMustVerifyOnThisChain) {
  JobRecordBody flipped = Submitted(researcher_, 1);
  flipped.signature[10] ^= 1;
  EXPECT_EQ(Record(gate_, flipped).code(), StatusCode::kUnauthenticated);
  // Signed by another researcher, presented as researcher_'s.
  JobRecordBody other = Submitted(researcher2_, 1);
  other.researcher = researcher_.public_key();
  other.job = JobIdFor(other.researcher, 1, other.spec_toml);
  EXPECT_EQ(Record(gate_, other).code(), StatusCode::kUnauthenticated);
  // A request signed for another chain, or for another method.
  EXPECT_EQ(Record(gate_, Submitted(researcher_, 1, kSpec, "other-chain")).code(),
            StatusCode::kUnauthenticated);
  EXPECT_EQ(Record(gate_, Submitted(researcher_, 1, kSpec, kChain, "CancelJob")).code(),
            StatusCode::kUnauthenticated);
  // The spec the gate records is the one signed.
  JobRecordBody edited = Submitted(researcher_, 1);
  edited.spec_toml += "# more";
  edited.job = JobIdFor(edited.researcher, 1, edited.spec_toml);
  EXPECT_EQ(Record(gate_, edited).code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(CountPrefix("job/"), 0u);
}

TEST_F(JobTest, TheJobIdMustBeTheRequestsId) {
  JobRecordBody body = Submitted(researcher_, 1);
  body.job = JobIdFor(researcher_.public_key(), 2, kSpec);
  EXPECT_EQ(Record(gate_, body).code(), StatusCode::kInvalidArgument);
  body.job = "abc";
  EXPECT_EQ(Record(gate_, body).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(CountPrefix("job/"), 0u);
}

TEST_F(JobTest, ARequestIsRecordedOnce) {
  const JobRecordBody body = Submitted(researcher_, 1);
  ASSERT_TRUE(Record(gate_, body).ok());
  EXPECT_EQ(Record(gate_, body).code(), StatusCode::kAlreadyExists);
  // Another gate replaying the researcher's request does not take the job over.
  EXPECT_EQ(Record(gate2_, body).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(Job(body.job)->gate, gate_.public_key());
  EXPECT_EQ(Job(body.job)->events, 1u);
  // A new request of the same spec is a new job.
  EXPECT_TRUE(Record(gate2_, Submitted(researcher_, 2)).ok());
  EXPECT_EQ(CountPrefix("job/"), 2u);
}

TEST_F(JobTest, EventsNeedTheJobAndItsGate) {
  const std::string unknown = JobIdFor(researcher_.public_key(), 99, kSpec);
  EXPECT_EQ(Record(gate_, Ended(unknown, JobEvent::kFailed, "x")).code(), StatusCode::kNotFound);
  const std::string job = SubmitJob();
  for (const JobRecordBody& body :
       {Placement(job, {{0, Cid('a'), {edge_.public_key()}}}),
        WithMetrics(job, JobEvent::kCheckpoint, Metrics(1), Cid('c')),
        WithMetrics(job, JobEvent::kCompleted, Metrics(1), Cid('d')),
        Ended(job, JobEvent::kCancelled, "mine now"), Ended(job, JobEvent::kFailed, "mine now")}) {
    Status s = Record(gate2_, body);
    EXPECT_EQ(s.code(), StatusCode::kPermissionDenied)
        << JobEventName(body.event) << ": " << s.ToString();
  }
  EXPECT_EQ(Job(job)->events, 1u);
  EXPECT_EQ(Job(job)->status, JobStatus::kRunning);
}

TEST_F(JobTest, PlacementWritesOneKeyPerIndexAndReplacesEarlierOnes) {
  const std::string job = SubmitJob();
  const uint64_t h = height_;
  ASSERT_TRUE(
      Record(gate_, Placement(job, {{0, Cid('a'), {edge_.public_key()}},
                                    {5, Cid('b'), {edge_.public_key(), edge2_.public_key()}}}))
          .ok());
  EXPECT_EQ(CountPrefix(PlacementPrefix(job)), 2u);
  std::optional<PlacementRecord> p0 = Placed(job, 0);
  ASSERT_TRUE(p0.has_value());
  EXPECT_EQ(p0->entry, (PlacementEntry{0, Cid('a'), {edge_.public_key()}}));
  EXPECT_EQ(p0->height, h);
  std::optional<PlacementRecord> p5 = Placed(job, 5);
  ASSERT_TRUE(p5.has_value());
  EXPECT_EQ(p5->entry.edges, (std::vector{edge_.public_key(), edge2_.public_key()}));
  EXPECT_EQ(Job(job)->events, 2u);
  EXPECT_EQ(Job(job)->updated_height, h);

  // Re-placing index 0 replaces it and leaves index 5.
  const uint64_t h2 = height_;
  ASSERT_TRUE(Record(gate_, Placement(job, {{0, Cid('b'), {edge2_.public_key()}}})).ok());
  EXPECT_EQ(CountPrefix(PlacementPrefix(job)), 2u);
  EXPECT_EQ(Placed(job, 0)->entry, (PlacementEntry{0, Cid('b'), {edge2_.public_key()}}));
  EXPECT_EQ(Placed(job, 0)->height, h2);
  EXPECT_EQ(Placed(job, 5)->height, h);
  EXPECT_EQ(Job(job)->events, 3u);

  auto read = ReadJobState(state_, job);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ASSERT_TRUE(read->has_value());
  EXPECT_EQ((*read)->record, *Job(job));
  ASSERT_EQ((*read)->placement.size(), 2u);
  EXPECT_EQ((*read)->placement[0], *Placed(job, 0));
  EXPECT_EQ((*read)->placement[1], *Placed(job, 5));
}

TEST_F(JobTest, PlacementNeedsPublishedExpertsAndGoodEdges) {
  const std::string job = SubmitJob();
  auto expect = [&](StatusCode code, std::vector<PlacementEntry> entries, const std::string& what) {
    Status s = Record(gate_, Placement(job, std::move(entries)));
    EXPECT_EQ(s.code(), code) << what << ": " << s.ToString();
  };
  const crypto::PublicKey e = edge_.public_key();
  expect(StatusCode::kNotFound, {{0, Cid('a'), {e}}, {1, Cid('9'), {e}}}, "unpublished expert");
  expect(StatusCode::kNotFound, {{0, Cid('a'), {e, stranger_.public_key()}}}, "unregistered key");
  expect(StatusCode::kNotFound, {{0, Cid('a'), {gate2_.public_key()}}}, "a gate's key");
  expect(StatusCode::kNotFound, {{0, Cid('a'), {researcher_.public_key()}}}, "a researcher's key");
  expect(StatusCode::kInvalidArgument, {{2, Cid('a'), {e}}, {2, Cid('b'), {e}}}, "index twice");
  Blacklist(edge2_);
  Status s =
      Record(gate_, Placement(job, {{0, Cid('a'), {e}}, {1, Cid('b'), {edge2_.public_key()}}}));
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("blacklisted"), std::string::npos) << s.message();
  EXPECT_EQ(CountPrefix("placement/"), 0u);
  EXPECT_EQ(Job(job)->events, 1u);
}

TEST_F(JobTest, CheckpointStepsIncrease) {
  const std::string job = SubmitJob();
  EXPECT_EQ(Record(gate_, WithMetrics(job, JobEvent::kCheckpoint, Metrics(0), Cid('c'))).code(),
            StatusCode::kInvalidArgument);
  const uint64_t h = height_;
  ASSERT_TRUE(Record(gate_, WithMetrics(job, JobEvent::kCheckpoint, Metrics(5), Cid('c'))).ok());
  EXPECT_EQ(Job(job)->metrics, Metrics(5));
  EXPECT_EQ(Job(job)->checkpoint_cid, Cid('c'));
  EXPECT_EQ(Job(job)->updated_height, h);
  for (uint64_t step : {5, 4}) {
    Status s = Record(gate_, WithMetrics(job, JobEvent::kCheckpoint, Metrics(step), Cid('e')));
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << step << ": " << s.ToString();
  }
  ASSERT_TRUE(
      Record(gate_, WithMetrics(job, JobEvent::kCheckpoint, Metrics(6, 0.4, 0.85), Cid('e'))).ok());
  EXPECT_EQ(Job(job)->metrics, Metrics(6, 0.4, 0.85));
  EXPECT_EQ(Job(job)->checkpoint_cid, Cid('e'));
  EXPECT_EQ(Job(job)->events, 3u);
  EXPECT_EQ(Job(job)->status, JobStatus::kRunning);
}

TEST_F(JobTest, NothingFollowsAFinalEvent) {
  struct Case {
    JobRecordBody final_event;
    JobStatus status;
  };
  for (uint64_t n = 1; n <= 3; ++n) {
    const std::string job = SubmitJob(n);
    ASSERT_TRUE(Record(gate_, WithMetrics(job, JobEvent::kCheckpoint, Metrics(5), Cid('c'))).ok());
    const Case c =
        n == 1 ? Case{WithMetrics(job, JobEvent::kCompleted, Metrics(9, 0.2, 0.91), Cid('d')),
                      JobStatus::kCompleted}
        : n == 2
            ? Case{Ended(job, JobEvent::kCancelled, "by the researcher"), JobStatus::kCancelled}
            : Case{Ended(job, JobEvent::kFailed, "no edge holds expert 3"), JobStatus::kFailed};
    const uint64_t h = height_;
    ASSERT_TRUE(Record(gate_, c.final_event).ok());
    std::optional<JobRecord> record = Job(job);
    ASSERT_TRUE(record.has_value());
    EXPECT_EQ(record->status, c.status);
    EXPECT_EQ(record->events, 3u);
    EXPECT_EQ(record->updated_height, h);
    EXPECT_EQ(record->checkpoint_cid, Cid('c'));
    if (c.status == JobStatus::kCompleted) {
      EXPECT_EQ(record->metrics, Metrics(9, 0.2, 0.91));
      EXPECT_EQ(record->output_cid, Cid('d'));
      EXPECT_TRUE(record->detail.empty());
    } else {
      EXPECT_EQ(record->metrics, Metrics(5));
      EXPECT_TRUE(record->output_cid.empty());
      EXPECT_EQ(record->detail, c.final_event.detail);
    }
    for (const JobRecordBody& body :
         {Placement(job, {{0, Cid('a'), {edge_.public_key()}}}),
          WithMetrics(job, JobEvent::kCheckpoint, Metrics(50), Cid('c')),
          WithMetrics(job, JobEvent::kCompleted, Metrics(50), Cid('d')),
          Ended(job, JobEvent::kCancelled, "again"), Ended(job, JobEvent::kFailed, "again")}) {
      Status s = Record(gate_, body);
      EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition)
          << JobEventName(body.event) << " after " << JobStatusName(c.status) << ": "
          << s.ToString();
    }
    EXPECT_EQ(*Job(job), *record);
  }
  EXPECT_EQ(CountPrefix("placement/"), 0u);
}

TEST_F(JobTest, ReadJobStateReadsAcrossPagesAndRefusesCorruptState) {
  const std::string job = SubmitJob();
  std::vector<PlacementEntry> entries;
  for (uint32_t i = 0; i < 5; ++i) entries.push_back({i * 3, Cid('a'), {edge_.public_key()}});
  ASSERT_TRUE(Record(gate_, Placement(job, entries)).ok());
  // Another job's placement shares no prefix with this one's.
  const std::string other = SubmitJob(2);
  ASSERT_TRUE(Record(gate_, Placement(other, {{1, Cid('b'), {edge2_.public_key()}}})).ok());

  state_.page_max = 2;
  auto read = ReadJobState(state_, job);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ASSERT_TRUE(read->has_value());
  ASSERT_EQ((*read)->placement.size(), 5u);
  for (uint32_t i = 0; i < 5; ++i) EXPECT_EQ((*read)->placement[i].entry, entries[i]);
  EXPECT_EQ((*read)->record.events, 2u);

  auto absent = ReadJobState(state_, JobIdFor(researcher_.public_key(), 99, kSpec));
  ASSERT_TRUE(absent.ok());
  EXPECT_FALSE(absent->has_value());
  EXPECT_EQ(ReadJobState(state_, "NOT-HEX").status().code(), StatusCode::kInvalidArgument);

  state_.map[PlacementPrefix(job) + "zz"] = Bytes();
  EXPECT_EQ(ReadJobState(state_, job).status().code(), StatusCode::kDataLoss);
  state_.map.erase(PlacementPrefix(job) + "zz");
  state_.map[PlacementKey(job, 1)] = Bytes(3, 0);
  EXPECT_EQ(ReadJobState(state_, job).status().code(), StatusCode::kDataLoss);
  state_.map.erase(PlacementKey(job, 1));
  state_.map[JobKey(job)] = Bytes(5, 1);
  EXPECT_EQ(ReadJobState(state_, job).status().code(), StatusCode::kDataLoss);
  // The handler reports the corrupt record as DataLoss as well.
  EXPECT_EQ(Record(gate_, Ended(job, JobEvent::kFailed, "x")).code(), StatusCode::kDataLoss);
}

TEST_F(JobTest, ReplicasExecutingTheSameJobRecordsWriteTheSameState) {
  const JobRecordBody submitted = Submitted(researcher_, 7);
  std::vector<Bytes> txs = {
      MakeTx(kChain, TxType::kJobRecord, gate_, 1000, submitted.Encode()).Encode(),
      MakeTx(kChain, TxType::kJobRecord, gate_, 1001,
             Placement(submitted.job, {{0, Cid('a'), {edge_.public_key()}}}).Encode())
          .Encode(),
      MakeTx(kChain, TxType::kJobRecord, gate_, 1002,
             WithMetrics(submitted.job, JobEvent::kCompleted, Metrics(3), Cid('d')).Encode())
          .Encode()};
  std::vector<Digest> roots;
  for (int replica = 0; replica < 2; ++replica) {
    StateOverlay block(static_cast<const StateReader*>(&state_));
    TxContext ctx{&genesis_, 50, 1700000000000 + replica, static_cast<uint32_t>(replica)};
    for (const Bytes& tx : txs) ASSERT_TRUE(ExecuteTx(ctx, registry_, tx, &block).ok());
    roots.push_back(ComputeStateRoot(Digest{}, 50, block.writes()));
  }
  EXPECT_EQ(roots[0], roots[1]);
}

}  // namespace
}  // namespace trustmoe::ledger
