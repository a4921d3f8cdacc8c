// The sampling arithmetic of verification (seed, sample size, rows, tolerance, row error) and
// ResultVerifier end to end: an in-memory blob source, the libtorch runtime on the CPU in f32
// for the re-computation, and a second runtime standing in for an honest edge; the same for
// expert updates (VerifyUpdate, UpdateSelected).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "chain/ledger/genesis.h"
#include "chain/ledger/result.h"
#include "chain/ledger/update.h"
#include "chain/ledger/verdict.h"
#include "chain/verify/sampling.h"
#include "chain/verify/verifier.h"
#include "common/clock.h"
#include "crypto/cid.h"
#include "crypto/ed25519.h"
#include "crypto/sha256.h"
#include "edge/numeric.h"
#include "edge/runtime.h"
#include "edge/safetensors.h"

namespace trustmoe::verify {
namespace {

using edge::DType;
using edge::HostTensor;
using ::testing::HasSubstr;

crypto::Digest CountingDigest(uint8_t first) {
  crypto::Digest d;
  for (size_t i = 0; i < d.size(); ++i) d[i] = static_cast<uint8_t>(first + i);
  return d;
}

crypto::PublicKey KeyOf(uint8_t fill) {
  std::array<uint8_t, 32> raw;
  raw.fill(fill);
  Result<crypto::PublicKey> key = crypto::PublicKey::FromBytes(raw);
  TRUSTMOE_CHECK(key.ok());
  return *key;
}

// ---------------------------------------------------------------------------------------------
// SampleSize

TEST(SampleSizeTest, RowsMinIsTheFloor) {
  // 5% of 100 is 5, below the floor of 16.
  EXPECT_EQ(SampleSize(100, 16, 50000), 16);
  EXPECT_EQ(SampleSize(1000, 16, 0), 16);
}

TEST(SampleSizeTest, FractionRoundsUp) {
  EXPECT_EQ(SampleSize(1000, 1, 50000), 50);  // exactly 50
  EXPECT_EQ(SampleSize(1001, 1, 50000), 51);  // 50.05 -> 51
  EXPECT_EQ(SampleSize(1000, 0, 1), 1);       // 0.001 -> 1
  EXPECT_EQ(SampleSize(999999, 0, 1), 1);     // 0.999999 -> 1
  EXPECT_EQ(SampleSize(1000001, 0, 1), 2);    // 1.000001 -> 2
  EXPECT_EQ(SampleSize(1000, 0, 0), 0);
  // No overflow for the largest row counts.
  EXPECT_EQ(SampleSize(int64_t{1} << 62, 0, 1000000), int64_t{1} << 62);
  EXPECT_EQ(SampleSize(int64_t{1} << 62, 0, 500000), int64_t{1} << 61);
}

TEST(SampleSizeTest, CappedAtRows) {
  EXPECT_EQ(SampleSize(10, 16, 50000), 10);
  EXPECT_EQ(SampleSize(16, 16, 50000), 16);
  EXPECT_EQ(SampleSize(10, 0, 1000000), 10);
  EXPECT_EQ(SampleSize(1, 16, 0), 1);
}

TEST(SampleSizeTest, ZeroRows) {
  EXPECT_EQ(SampleSize(0, 16, 50000), 0);
  EXPECT_EQ(SampleSize(0, 0, 1000000), 0);
  EXPECT_TRUE(SampleRows(CountingDigest(0), 0, 16, 50000).empty());
}

// ---------------------------------------------------------------------------------------------
// SampleRows

TEST(SampleRowsTest, DeterministicForASeed) {
  const crypto::Digest seed = CountingDigest(9);
  EXPECT_EQ(SampleRows(seed, 1000, 16, 50000), SampleRows(seed, 1000, 16, 50000));
}

TEST(SampleRowsTest, DifferentSeedsGiveDifferentSamples) {
  std::set<std::vector<int64_t>> samples;
  for (uint8_t i = 0; i < 32; ++i) samples.insert(SampleRows(CountingDigest(i), 1000, 16, 0));
  EXPECT_EQ(samples.size(), 32u);
}

TEST(SampleRowsTest, DistinctAscendingInRange) {
  for (uint8_t i = 0; i < 64; ++i) {
    const int64_t rows = 1 + i * 37;
    const std::vector<int64_t> s = SampleRows(CountingDigest(i), rows, 16, 50000);
    ASSERT_EQ(static_cast<int64_t>(s.size()), SampleSize(rows, 16, 50000)) << "rows " << rows;
    for (size_t j = 0; j < s.size(); ++j) {
      EXPECT_GE(s[j], 0) << "rows " << rows;
      EXPECT_LT(s[j], rows) << "rows " << rows;
      if (j > 0) {
        EXPECT_LT(s[j - 1], s[j]) << "rows " << rows;
      }
    }
  }
}

TEST(SampleRowsTest, AllRowsWhenSampleIsEveryRow) {
  for (int64_t rows : {1, 5, 16}) {
    std::vector<int64_t> all(static_cast<size_t>(rows));
    for (int64_t i = 0; i < rows; ++i) all[static_cast<size_t>(i)] = i;
    EXPECT_EQ(SampleRows(CountingDigest(3), rows, 16, 0), all);
  }
  std::vector<int64_t> all(100);
  for (int64_t i = 0; i < 100; ++i) all[static_cast<size_t>(i)] = i;
  EXPECT_EQ(SampleRows(CountingDigest(3), 100, 0, 1000000), all);
}

// Known answer. seed = bytes 0x00, 0x01, ..., 0x1f; rows = 100, k = SampleSize(100, 8, 0) = 8.
// To re-derive: words are SHA-256(seed || u64 counter, little-endian), counter 0, 1, ..., each
// digest read as four little-endian u64 words in order. Below(bound) takes the next word w,
// rejects it while w >= L where L = M - M % bound, M = 2^64 - 1, and returns w % bound.
// Floyd: for j = rows - k .. rows - 1: t = Below(j + 1); add t, or j when t is taken already.
// The sample is the set, ascending.
TEST(SampleRowsTest, KnownAnswer) {
  const std::vector<int64_t> expected = {26, 28, 42, 61, 70, 89, 90, 93};
  EXPECT_EQ(SampleRows(CountingDigest(0), 100, 8, 0), expected);
  // Same derivation, rows = 1000, k = 16.
  const std::vector<int64_t> expected_1000 = {5,   20,  44,  110, 244, 264, 272, 302,
                                              520, 537, 569, 635, 641, 719, 822, 878};
  EXPECT_EQ(SampleRows(CountingDigest(0), 1000, 16, 0), expected_1000);
}

TEST(SampleRowsTest, RoughlyUniform) {
  constexpr int kSeeds = 20000;
  constexpr int64_t kRows = 100;
  constexpr uint32_t kK = 10;
  std::vector<int> hits(kRows, 0);
  for (int i = 0; i < kSeeds; ++i) {
    uint8_t raw[8];
    for (int b = 0; b < 8; ++b) raw[b] = static_cast<uint8_t>(i >> (8 * b));
    const crypto::Digest seed = crypto::Sha256::Hash(ByteSpan(raw, 8));
    for (int64_t r : SampleRows(seed, kRows, kK, 0)) ++hits[static_cast<size_t>(r)];
  }
  // Each row is expected kSeeds * k / rows = 2000 times (standard deviation about 42).
  const double expected = static_cast<double>(kSeeds) * kK / kRows;
  for (int64_t r = 0; r < kRows; ++r) {
    EXPECT_GT(hits[static_cast<size_t>(r)], 0.85 * expected) << "row " << r;
    EXPECT_LT(hits[static_cast<size_t>(r)], 1.15 * expected) << "row " << r;
  }
}

// ---------------------------------------------------------------------------------------------
// SampleSeed

// Known answer: SHA-256 of canonical("trustmoe/verify/sample-seed/v1", bytes block_digest,
// bytes edge, u64 nonce), i.e. u32 big-endian 30 || the domain || u32 32 || 0x00..0x1f ||
// u32 32 || 32 x 0xab || u64 big-endian 7.
TEST(SampleSeedTest, KnownAnswer) {
  EXPECT_EQ(crypto::DigestHex(SampleSeed(CountingDigest(0), KeyOf(0xab), 7)),
            "e64336e45bfcc791aa8d3c713682358090a9892960e51fc8ff8c58e59b4e83dd");
}

TEST(SampleSeedTest, DiffersWithEachInput) {
  const crypto::Digest base = SampleSeed(CountingDigest(0), KeyOf(1), 7);
  EXPECT_EQ(SampleSeed(CountingDigest(0), KeyOf(1), 7), base);
  EXPECT_NE(SampleSeed(CountingDigest(1), KeyOf(1), 7), base);
  EXPECT_NE(SampleSeed(CountingDigest(0), KeyOf(2), 7), base);
  EXPECT_NE(SampleSeed(CountingDigest(0), KeyOf(1), 8), base);
}

// ---------------------------------------------------------------------------------------------
// Tolerance and RowError

TEST(ToleranceTest, PicksThePpmOfTheDType) {
  ledger::ChainParams params;
  params.tolerance_f32_ppm = 7;
  params.tolerance_bf16_ppm = 11000;
  params.tolerance_f16_ppm = 130;
  EXPECT_DOUBLE_EQ(Tolerance(params, ledger::ComputeDType::kF32), 7e-6);
  EXPECT_DOUBLE_EQ(Tolerance(params, ledger::ComputeDType::kBF16), 0.011);
  EXPECT_DOUBLE_EQ(Tolerance(params, ledger::ComputeDType::kF16), 1.3e-4);
}

TEST(RowErrorTest, ZeroForEqualRows) {
  const std::vector<float> row = {1.5f, -2.0f, 0.25f, 3.0f};
  EXPECT_EQ(RowError(row, row), 0.0);
}

TEST(RowErrorTest, RelativeL2) {
  const std::vector<float> ref = {1.0f, -2.0f, 0.5f, 4.0f};
  std::vector<float> scaled = ref;
  for (float& v : scaled) v *= 1.5f;
  EXPECT_NEAR(RowError(scaled, ref), 0.5, 1e-12);
  // (3, 4) against (3, 0): ‖(0, 4)‖ / ‖(3, 0)‖ = 4 / 3.
  EXPECT_NEAR(RowError(std::vector<float>{3.0f, 4.0f}, std::vector<float>{3.0f, 0.0f}), 4.0 / 3.0,
              1e-12);
}

TEST(RowErrorTest, InfinityForNonFiniteClaims) {
  const std::vector<float> ref = {1.0f, 2.0f, 3.0f};
  const float kInf = std::numeric_limits<float>::infinity();
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), kInf, -kInf}) {
    std::vector<float> claimed = ref;
    claimed[1] = bad;
    EXPECT_EQ(RowError(claimed, ref), std::numeric_limits<double>::infinity()) << bad;
  }
}

TEST(RowErrorTest, FloorForAnAllZeroReference) {
  const std::vector<float> zero(4, 0.0f);
  EXPECT_EQ(RowError(zero, zero), 0.0);
  // ‖(1e-6, 0, 0, 0)‖ / (1e-6 · √4) = 0.5 (up to 1e-6's float rounding).
  const std::vector<float> tiny = {1e-6f, 0.0f, 0.0f, 0.0f};
  EXPECT_NEAR(RowError(tiny, zero), 0.5, 1e-6);
  // Without the floor this would be a division by zero.
  const std::vector<float> one = {1.0f, 0.0f, 0.0f, 0.0f};
  EXPECT_NEAR(RowError(one, zero), 5e5, 1e-3);
}

// ---------------------------------------------------------------------------------------------
// ResultVerifier

// A map from CID to bytes. Over bytes_max it answers FailedPrecondition, as StoreClient::Get
// does; a CID can be made to fail with a given status, or to be NotFound for its first reads.
class MapBlobSource final : public BlobSource {
 public:
  std::string Put(const Bytes& bytes) {
    const crypto::Cid cid = crypto::ComputeCid(bytes);
    blobs_[cid] = bytes;
    return cid.ToString();
  }
  void Fail(const std::string& cid, Status status) { failures_[Parse(cid)] = std::move(status); }
  void MissingFor(const std::string& cid, int gets) { missing_gets_[Parse(cid)] = gets; }
  void SetCreated(const std::string& cid, int64_t unix_ms) { created_[Parse(cid)] = unix_ms; }
  Result<int64_t> CreatedUnixMs(const crypto::Cid& cid) override {
    auto it = created_.find(cid);
    return it == created_.end() ? int64_t{0} : it->second;
  }
  int Gets(const std::string& cid) const {
    auto it = gets_.find(Parse(cid));
    return it == gets_.end() ? 0 : it->second;
  }

  Result<Bytes> Get(const crypto::Cid& cid, uint64_t bytes_max) override {
    ++gets_[cid];
    if (auto f = failures_.find(cid); f != failures_.end()) return f->second;
    if (auto m = missing_gets_.find(cid); m != missing_gets_.end() && m->second > 0) {
      --m->second;
      return Status::NotFound("not yet");
    }
    auto it = blobs_.find(cid);
    if (it == blobs_.end()) return Status::NotFound("no such blob");
    if (it->second.size() > bytes_max) return Status::FailedPrecondition("over bytes_max");
    return it->second;
  }

 private:
  static crypto::Cid Parse(const std::string& text) {
    Result<crypto::Cid> cid = crypto::Cid::Parse(text);
    TRUSTMOE_CHECK(cid.ok());
    return *cid;
  }
  std::map<crypto::Cid, Bytes> blobs_;
  std::map<crypto::Cid, Status> failures_;
  std::map<crypto::Cid, int64_t> created_;
  std::map<crypto::Cid, int> missing_gets_;
  std::map<crypto::Cid, int> gets_;
};

constexpr int64_t kDModel = 32;

HostTensor Random(int64_t rows, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(rows * kDModel));
  for (float& f : v) f = normal(rng);
  return {DType::kF32, rows, kDModel, edge::FromFloats(DType::kF32, v)};
}

std::vector<float> Floats(const HostTensor& t) {
  Result<std::vector<float>> v = edge::ToFloats(t.dtype, t.data);
  TRUSTMOE_CHECK(v.ok());
  return *v;
}

HostTensor WithFloats(const HostTensor& shape, DType dtype, const std::vector<float>& v) {
  return {dtype, shape.rows, shape.cols, edge::FromFloats(dtype, v)};
}

HostTensor Scaled(const HostTensor& t, float factor, DType dtype = DType::kF32) {
  std::vector<float> v = Floats(t);
  for (float& f : v) f *= factor;
  return WithFloats(t, dtype, v);
}

// `t` with 1.0 added to every element of row `row`.
HostTensor RowChanged(const HostTensor& t, int64_t row) {
  std::vector<float> v = Floats(t);
  for (int64_t c = 0; c < t.cols; ++c) v[static_cast<size_t>(row * t.cols + c)] += 1.0f;
  return WithFloats(t, t.dtype, v);
}

Bytes File(const HostTensor& t) {
  Result<Bytes> file = edge::WriteActivations(t);
  TRUSTMOE_CHECK(file.ok());
  return *file;
}

std::unique_ptr<edge::ExpertRuntime> CpuRuntime() {
  edge::RuntimeOptions options;
  options.device = "cpu";
  options.compute_dtype = DType::kF32;
  options.threads = 1;
  Result<std::unique_ptr<edge::ExpertRuntime>> runtime = edge::ExpertRuntime::Create(options);
  TRUSTMOE_CHECK(runtime.ok());
  return std::move(runtime).value();
}

class VerifierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const edge::ExpertSpec spec{std::string(edge::kArchGeluMlp), kDModel, 64, DType::kF32};
    Result<Bytes> expert = edge::NewExpertFile(spec, 1);
    ASSERT_TRUE(expert.ok()) << expert.status().ToString();
    expert_cid_ = blobs_.Put(*expert);
    edge_ = CpuRuntime();
    ASSERT_TRUE(edge_->Load(expert_cid_, *expert).ok());
    validator_ = CpuRuntime();
    options_.fetch_retry_ms = 10;
  }

  // What an honest edge returns for `x`.
  HostTensor Honest(const HostTensor& x) {
    Result<HostTensor> y = edge_->Forward(expert_cid_, x);
    TRUSTMOE_CHECK(y.ok());
    return *y;
  }

  ledger::ResultRecord Record(const Bytes& input, const Bytes& output, uint64_t rows) {
    ledger::ResultRecord record;
    record.edge = KeyOf(0x5e);
    record.nonce = 42;
    record.height = 9;
    record.body.kind = ledger::CallKind::kForward;
    record.body.job = "job";
    record.body.step = 1;
    record.body.expert_cid = expert_cid_;
    record.body.input_cid = blobs_.Put(input);
    record.body.output_cid = blobs_.Put(output);
    record.body.rows = rows;
    record.body.dtype = ledger::ComputeDType::kF32;
    return record;
  }
  ledger::ResultRecord Record(const HostTensor& x, const HostTensor& y) {
    return Record(File(x), File(y), static_cast<uint64_t>(x.rows));
  }

  Result<Outcome> Check(const ledger::ResultRecord& record,
                        const crypto::Digest& block = CountingDigest(0x40),
                        int64_t ordered_unix_ms = 0) {
    ResultVerifier verifier(params_, validator_.get(), &blobs_, options_);
    return verifier.Verify(record, block, ordered_unix_ms);
  }

  // The rows the verifier samples for `record` in `block`.
  std::vector<int64_t> Sampled(const ledger::ResultRecord& record, const crypto::Digest& block) {
    return SampleRows(SampleSeed(block, record.edge, record.nonce),
                      static_cast<int64_t>(record.body.rows), params_.verify_rows_min,
                      params_.verify_fraction_ppm);
  }

  ledger::ChainParams params_;
  VerifierOptions options_;
  MapBlobSource blobs_;
  std::string expert_cid_;
  std::unique_ptr<edge::ExpertRuntime> edge_;       // the honest edge's runtime
  std::unique_ptr<edge::ExpertRuntime> validator_;  // the verifier's, initially empty
};

void ExpectAccepted(const Result<Outcome>& outcome) {
  ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
  EXPECT_EQ(outcome->verdict, ledger::Verdict::kAccepted)
      << ledger::RejectReasonName(outcome->reason) << ": " << outcome->detail;
  EXPECT_EQ(outcome->reason, ledger::RejectReason::kNone);
}

void ExpectRejected(const Result<Outcome>& outcome, ledger::RejectReason reason) {
  ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
  EXPECT_EQ(outcome->verdict, ledger::Verdict::kRejected);
  EXPECT_EQ(ledger::RejectReasonName(outcome->reason), ledger::RejectReasonName(reason))
      << outcome->detail;
}

TEST_F(VerifierTest, HonestForwardIsAccepted) {
  const HostTensor x = Random(16, 1);
  ledger::ResultRecord record = Record(x, Honest(x));
  Result<Outcome> outcome = Check(record);
  ASSERT_NO_FATAL_FAILURE(ExpectAccepted(outcome));
  EXPECT_EQ(outcome->rows_checked, 16);
  EXPECT_LE(outcome->max_error, Tolerance(params_, ledger::ComputeDType::kF32));
  EXPECT_TRUE(validator_->Holds(expert_cid_));  // loaded from the blob source

  const ledger::VoteBody vote = outcome->Vote(record.edge, record.nonce);
  EXPECT_EQ(vote.verdict, ledger::Verdict::kAccepted);
  EXPECT_EQ(vote.reason, ledger::RejectReason::kNone);
  EXPECT_EQ(vote.result_nonce, 42u);
}

TEST_F(VerifierTest, HonestBackwardIsAccepted) {
  const HostTensor x = Random(16, 2);
  const HostTensor g = Random(16, 3);
  Result<edge::BackwardResult> back = edge_->Backward(expert_cid_, x, g, false, false);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ledger::ResultRecord record = Record(x, back->grad_input);
  record.body.kind = ledger::CallKind::kBackward;
  record.body.grad_output_cid = blobs_.Put(File(g));
  ExpectAccepted(Check(record));

  // The forward output in place of grad_input is wrong.
  ledger::ResultRecord forward_output = Record(x, Honest(x));
  forward_output.body.kind = ledger::CallKind::kBackward;
  forward_output.body.grad_output_cid = record.body.grad_output_cid;
  ExpectRejected(Check(forward_output), ledger::RejectReason::kMismatch);
}

TEST_F(VerifierTest, Bf16OutputOfAnF32ComputationIsAcceptedWithinBf16Tolerance) {
  const HostTensor x = Random(16, 4);
  const HostTensor y = Honest(x);
  Result<Outcome> outcome = Check(Record(x, Scaled(y, 1.0f, DType::kBF16)));
  ASSERT_NO_FATAL_FAILURE(ExpectAccepted(outcome));
  // bf16's rounding alone is beyond the f32 tolerance: the output dtype set the bound.
  EXPECT_GT(outcome->max_error, Tolerance(params_, ledger::ComputeDType::kF32));

  Result<Outcome> off = Check(Record(x, Scaled(y, 1.1f, DType::kBF16)));
  ASSERT_NO_FATAL_FAILURE(ExpectRejected(off, ledger::RejectReason::kMismatch));
  EXPECT_NEAR(off->max_error, 0.1, 0.01);
  EXPECT_THAT(off->detail, HasSubstr("output bf16"));
}

TEST_F(VerifierTest, ScaledOutputIsAMismatch) {
  const HostTensor x = Random(16, 5);
  Result<Outcome> outcome = Check(Record(x, Scaled(Honest(x), 1.5f)));
  ASSERT_NO_FATAL_FAILURE(ExpectRejected(outcome, ledger::RejectReason::kMismatch));
  EXPECT_NEAR(outcome->max_error, 0.5, 1e-3);
  const ledger::VoteBody vote = outcome->Vote(KeyOf(0x5e), 42);
  EXPECT_EQ(vote.verdict, ledger::Verdict::kRejected);
  EXPECT_EQ(vote.reason, ledger::RejectReason::kMismatch);
  EXPECT_EQ(vote.detail, outcome->detail);
}

TEST_F(VerifierTest, OneChangedRowOfSixteenIsNamed) {
  // 16 rows with verify_rows_min 16: every row is checked.
  const HostTensor x = Random(16, 6);
  Result<Outcome> outcome = Check(Record(x, RowChanged(Honest(x), 11)));
  ASSERT_NO_FATAL_FAILURE(ExpectRejected(outcome, ledger::RejectReason::kMismatch));
  EXPECT_THAT(outcome->detail, HasSubstr("row 11:"));
}

TEST_F(VerifierTest, ChangedRowOfAThousandIsFoundExactlyWhenSampled) {
  constexpr int64_t kRows = 1000;
  constexpr int64_t kChanged = 617;
  const HostTensor x = Random(kRows, 7);
  ledger::ResultRecord record = Record(x, RowChanged(Honest(x), kChanged));
  ASSERT_EQ(SampleSize(kRows, params_.verify_rows_min, params_.verify_fraction_ppm), 50);

  auto samples_changed = [&](const crypto::Digest& block) {
    const std::vector<int64_t> rows = Sampled(record, block);
    return std::binary_search(rows.begin(), rows.end(), kChanged);
  };
  std::vector<crypto::Digest> hitting, missing;
  for (uint32_t i = 0; i < 2000 && (hitting.size() < 2 || missing.size() < 4); ++i) {
    const uint8_t raw[4] = {static_cast<uint8_t>(i), static_cast<uint8_t>(i >> 8), 0, 0};
    const crypto::Digest block = crypto::Sha256::Hash(ByteSpan(raw, 4));
    std::vector<crypto::Digest>& list = samples_changed(block) ? hitting : missing;
    if (list.size() < (&list == &hitting ? 2u : 4u)) list.push_back(block);
  }
  ASSERT_EQ(hitting.size(), 2u);
  ASSERT_EQ(missing.size(), 4u);
  for (const crypto::Digest& block : hitting) {
    Result<Outcome> outcome = Check(record, block);
    ASSERT_NO_FATAL_FAILURE(ExpectRejected(outcome, ledger::RejectReason::kMismatch));
    EXPECT_THAT(outcome->detail, HasSubstr("row " + std::to_string(kChanged) + ":"));
    EXPECT_EQ(outcome->rows_checked, 50);
  }
  for (const crypto::Digest& block : missing) {
    Result<Outcome> outcome = Check(record, block);
    ASSERT_NO_FATAL_FAILURE(ExpectAccepted(outcome));
    EXPECT_EQ(outcome->rows_checked, 50);
  }
}

TEST_F(VerifierTest, WrongWidthIsWrongShape) {
  const HostTensor x = Random(16, 8);
  std::vector<float> narrow(16 * 16, 0.5f);
  const HostTensor y{DType::kF32, 16, 16, edge::FromFloats(DType::kF32, narrow)};
  Result<Outcome> outcome = Check(Record(File(x), File(y), 16));
  ASSERT_NO_FATAL_FAILURE(ExpectRejected(outcome, ledger::RejectReason::kWrongShape));
  EXPECT_THAT(outcome->detail, HasSubstr("output is [16, 16]"));
}

TEST_F(VerifierTest, RowCountOtherThanCommittedIsWrongShape) {
  const HostTensor x = Random(16, 9);
  const HostTensor y = Honest(Random(15, 9));
  Result<Outcome> outcome = Check(Record(File(x), File(y), 16));
  ASSERT_NO_FATAL_FAILURE(ExpectRejected(outcome, ledger::RejectReason::kWrongShape));
  EXPECT_THAT(outcome->detail, HasSubstr("output is [15, 32]"));

  // Both tensors of 16 rows, but the commitment says 17.
  ExpectRejected(Check(Record(File(x), File(Honest(x)), 17)), ledger::RejectReason::kWrongShape);
}

TEST_F(VerifierTest, GarbageOutputIsMalformed) {
  const HostTensor x = Random(16, 10);
  const Bytes garbage = {'n', 'o', 't', ' ', 'a', ' ', 't', 'e', 'n', 's', 'o', 'r'};
  ExpectRejected(Check(Record(File(x), garbage, 16)), ledger::RejectReason::kMalformedTensor);
}

TEST_F(VerifierTest, NanInASampledInputRowIsMalformed) {
  // 16 rows: row 3 is sampled.
  const HostTensor clean = Random(16, 11);
  const HostTensor y = Honest(clean);
  std::vector<float> v = Floats(clean);
  v[3 * kDModel + 5] = std::numeric_limits<float>::quiet_NaN();
  Result<Outcome> outcome = Check(Record(WithFloats(clean, DType::kF32, v), y));
  ASSERT_NO_FATAL_FAILURE(ExpectRejected(outcome, ledger::RejectReason::kMalformedTensor));
  EXPECT_THAT(outcome->detail, HasSubstr("input row 3 "));
}

TEST_F(VerifierTest, MissingOutputIsOutputMissingAfterTheDeadline) {
  params_.verify_deadline_ms = 100;
  const HostTensor x = Random(16, 12);
  ledger::ResultRecord record = Record(x, Honest(x));
  record.body.output_cid = crypto::ComputeCid(AsBytes("never uploaded")).ToString();
  const int64_t start_ms = SystemClock::Get()->MonotonicMs();
  Result<Outcome> outcome = Check(record);
  const int64_t elapsed_ms = SystemClock::Get()->MonotonicMs() - start_ms;
  ASSERT_NO_FATAL_FAILURE(ExpectRejected(outcome, ledger::RejectReason::kOutputMissing));
  EXPECT_GE(elapsed_ms, params_.verify_deadline_ms);
  EXPECT_GT(blobs_.Gets(record.body.output_cid), 1);  // retried meanwhile
}

// The deadline is anchored to the ordering block's time, so every validator decides alike
// whenever it checks: a tensor that reached the store after it counts as missing, and one
// missing once the deadline has passed is missing at once.
TEST_F(VerifierTest, TheDeadlineIsAnchoredToTheOrderingBlock) {
  params_.verify_deadline_ms = 1000;
  const int64_t now = SystemClock::Get()->NowUnixMs();
  const HostTensor x = Random(16, 21);
  ledger::ResultRecord record = Record(x, Honest(x));
  const int64_t ordered = now - 60000;  // a minute ago: a validator catching up

  blobs_.SetCreated(record.body.output_cid, ordered - 5);  // uploaded before ordering
  ExpectAccepted(Check(record, CountingDigest(0x40), ordered));

  blobs_.SetCreated(record.body.output_cid, ordered + 1500);  // 500 ms after the deadline
  Result<Outcome> late = Check(record, CountingDigest(0x40), ordered);
  ASSERT_NO_FATAL_FAILURE(ExpectRejected(late, ledger::RejectReason::kOutputMissing));
  EXPECT_THAT(late->detail, HasSubstr("500 ms after the deadline"));

  ledger::ResultRecord missing = Record(x, Honest(x));
  missing.body.output_cid = crypto::ComputeCid(AsBytes("never uploaded either")).ToString();
  const int64_t start_ms = SystemClock::Get()->MonotonicMs();
  ASSERT_NO_FATAL_FAILURE(ExpectRejected(Check(missing, CountingDigest(0x40), ordered),
                                         ledger::RejectReason::kOutputMissing));
  EXPECT_LT(SystemClock::Get()->MonotonicMs() - start_ms, 500);  // no waiting: it is past
}

TEST_F(VerifierTest, OutputArrivingBeforeTheDeadlineIsVerified) {
  params_.verify_deadline_ms = 5000;
  const HostTensor x = Random(16, 13);
  ledger::ResultRecord record = Record(x, Honest(x));
  blobs_.MissingFor(record.body.output_cid, 3);
  ExpectAccepted(Check(record));
  EXPECT_EQ(blobs_.Gets(record.body.output_cid), 4);
}

TEST_F(VerifierTest, UnavailableStoreGivesNoVerdict) {
  const HostTensor x = Random(16, 14);
  ledger::ResultRecord record = Record(x, Honest(x));
  blobs_.Fail(record.body.output_cid, Status::Unavailable("store down"));
  Result<Outcome> outcome = Check(record);
  ASSERT_FALSE(outcome.ok());
  EXPECT_EQ(outcome.status().code(), StatusCode::kUnavailable);

  blobs_.Fail(record.body.input_cid, Status::Unavailable("store down"));
  EXPECT_FALSE(Check(record).ok());
}

TEST_F(VerifierTest, BusyOrCorruptStoreGivesNoVerdict) {
  const HostTensor x = Random(16, 17);
  ledger::ResultRecord record = Record(x, Honest(x));
  for (const Status& status :
       {Status::ResourceExhausted("too many streams"), Status::DataLoss("chunk does not verify"),
        Status::DeadlineExceeded("slow")}) {
    blobs_.Fail(record.body.output_cid, status);
    Result<Outcome> outcome = Check(record);
    if (outcome.ok()) {
      ADD_FAILURE() << status.ToString()
                    << " gave a verdict: " << ledger::RejectReasonName(outcome->reason) << " "
                    << outcome->detail;
      continue;
    }
    EXPECT_EQ(outcome.status().code(), status.code()) << outcome.status().ToString();
  }
}

TEST_F(VerifierTest, MissingExpertGivesNoVerdict) {
  const HostTensor x = Random(16, 15);
  ledger::ResultRecord record = Record(x, Honest(x));
  blobs_.Fail(expert_cid_, Status::NotFound("no such blob"));
  Result<Outcome> outcome = Check(record);
  ASSERT_FALSE(outcome.ok());
  EXPECT_FALSE(validator_->Holds(expert_cid_));

  // An expert file that does not load: no verdict either.
  record.body.expert_cid = blobs_.Put(File(x));
  EXPECT_FALSE(Check(record).ok());
}

TEST_F(VerifierTest, OutputOverTheValidatorsLimitGivesNoVerdict) {
  // A bf16 input is half the size of the f32 output; the limit admits the input only.
  const HostTensor x = Scaled(Random(16, 16), 1.0f, DType::kBF16);
  const HostTensor y = Honest(Scaled(x, 1.0f, DType::kF32));
  const Bytes input = File(x);
  const Bytes output = File(y);
  ASSERT_LT(input.size(), output.size());
  // The limit is this validator's own setting, not a rule of the chain: no vote against the
  // edge, the operator is told to raise it.
  options_.tensor_bytes_max = input.size();
  Result<Outcome> outcome = Check(Record(input, output, 16));
  ASSERT_FALSE(outcome.ok());
  EXPECT_EQ(outcome.status().code(), StatusCode::kResourceExhausted);
  EXPECT_THAT(outcome.status().message(), HasSubstr("limit of " + std::to_string(input.size())));

  // Within the limit, the same result is accepted.
  options_.tensor_bytes_max = output.size();
  ExpectAccepted(Check(Record(input, output, 16)));
}

// ---------------------------------------------------------------------------------------------
// UpdateSelected and VerifyUpdate

TEST(UpdateSelectedTest, DeterministicAndRoughlyTheFraction) {
  const crypto::Digest block = CountingDigest(0x21);
  int selected = 0;
  for (uint64_t i = 0; i < 2000; ++i) {
    const crypto::PublicKey edge = KeyOf(static_cast<uint8_t>(i % 7));
    const uint64_t nonce = i * 1000003;
    const bool half = UpdateSelected(block, edge, nonce, 500000);
    EXPECT_EQ(UpdateSelected(block, edge, nonce, 500000), half);
    selected += half ? 1 : 0;
    // Selected at one fraction, selected at every larger one.
    if (UpdateSelected(block, edge, nonce, 100000)) {
      EXPECT_TRUE(half);
    }
    if (half) {
      EXPECT_TRUE(UpdateSelected(block, edge, nonce, 900000));
    }
    EXPECT_FALSE(UpdateSelected(block, edge, nonce, 0));
    EXPECT_TRUE(UpdateSelected(block, edge, nonce, 1000000));
  }
  // 1000 expected, standard deviation about 22.
  EXPECT_GT(selected, 900);
  EXPECT_LT(selected, 1100);
  // The block decides too: another block selects another set.
  int same = 0;
  for (uint64_t i = 0; i < 200; ++i) {
    same += UpdateSelected(block, KeyOf(1), i, 500000) ==
                    UpdateSelected(CountingDigest(0x22), KeyOf(1), i, 500000)
                ? 1
                : 0;
  }
  EXPECT_LT(same, 200);
}

// An expert update of the fixture's expert (gelu_mlp 32 -> 64), its sources backward results
// of the honest edge; the edge's optimizer step runs on edge_.
class UpdateVerifierTest : public VerifierTest {
 protected:
  void SetUp() override {
    VerifierTest::SetUp();
    params_.verify_update_fraction_ppm = 1000000;
  }

  // A backward result of the edge on `expert_cid` over `rows` random rows, its tensors in the
  // store.
  ledger::ResultRecord Source(const std::string& expert_cid, int64_t rows, uint64_t seed,
                              uint64_t nonce) {
    const HostTensor x = Random(rows, seed);
    const HostTensor g = Random(rows, seed + 1000);
    Result<edge::BackwardResult> back = edge_->Backward(expert_cid, x, g, false, false);
    TRUSTMOE_CHECK(back.ok());
    ledger::ResultRecord record = Record(x, back->grad_input);
    record.nonce = nonce;
    record.body.kind = ledger::CallKind::kBackward;
    record.body.expert_cid = expert_cid;
    record.body.grad_output_cid = blobs_.Put(File(g));
    source_inputs_[nonce] = {x, g};
    return record;
  }

  struct Step {
    Bytes child;
    Bytes child_state;  // empty for a stateless optimizer
  };
  // What an honest edge uploads: its step on `parent_cid` (with `parent_state` unless empty)
  // from the sources, the child as f32.
  Step EdgeStep(const std::string& parent_cid, const Bytes& parent_state,
                const std::vector<ledger::ResultRecord>& sources,
                const ledger::OptimizerParams& optimizer) {
    const std::string key = "training " + std::to_string(steps_++);
    TRUSTMOE_CHECK(edge_->Clone(parent_cid, key).ok());
    if (!parent_state.empty()) TRUSTMOE_CHECK(edge_->ImportOptimizerState(key, parent_state).ok());
    for (const ledger::ResultRecord& source : sources) {
      const auto& [x, g] = source_inputs_.at(source.nonce);
      TRUSTMOE_CHECK(edge_->Backward(key, x, g, false, true).ok());
    }
    edge::OptimizerSpec spec;
    spec.kind = optimizer.kind == ledger::OptimizerKind::kAdam ? edge::OptimizerKind::kAdam
                                                               : edge::OptimizerKind::kSgd;
    spec.lr = optimizer.lr;
    spec.momentum = optimizer.momentum;
    spec.beta1 = optimizer.beta1;
    spec.beta2 = optimizer.beta2;
    spec.eps = optimizer.eps;
    spec.weight_decay = optimizer.weight_decay;
    TRUSTMOE_CHECK(edge_->Step(key, spec).ok());
    Step out;
    out.child = *edge_->Export(key, DType::kF32);
    if (optimizer.stateful()) out.child_state = *edge_->ExportOptimizerState(key);
    TRUSTMOE_CHECK(edge_->Unload(key).ok());
    return out;
  }

  // The update record of `step` (both files put in the store) from `parent_cid`.
  ledger::UpdateRecord Update(const std::string& parent_cid, const std::string& parent_state_cid,
                              const Step& step, const ledger::OptimizerParams& optimizer,
                              const std::vector<ledger::ResultRecord>& sources,
                              uint64_t nonce = 77) {
    ledger::UpdateRecord record;
    record.edge = KeyOf(0x5e);
    record.nonce = nonce;
    record.height = 10;
    ledger::ExpertUpdatedBody& body = record.body;
    body.job = "job";
    body.step = 2;
    body.parent_cid = parent_cid;
    body.parent_state_cid = parent_state_cid;
    body.child_cid = blobs_.Put(step.child);
    if (!step.child_state.empty()) body.child_state_cid = blobs_.Put(step.child_state);
    body.child_size = step.child.size();
    body.optimizer = optimizer;
    for (const ledger::ResultRecord& s : sources) body.sources.push_back(s.nonce);
    return record;
  }

  Result<Outcome> CheckUpdate(const ledger::UpdateRecord& record,
                              const std::vector<ledger::ResultRecord>& sources,
                              const crypto::Digest& block = CountingDigest(0x40)) {
    ResultVerifier verifier(params_, validator_.get(), &blobs_, options_);
    Result<Outcome> outcome = verifier.VerifyUpdate(record, block, sources);
    // The re-run's training copy does not outlive the check.
    EXPECT_FALSE(validator_->Holds(ledger::UpdateKey(record.edge, record.nonce)));
    return outcome;
  }

  std::vector<ledger::ResultRecord> TwoSources(const std::string& expert_cid, uint64_t seed) {
    return {Source(expert_cid, 16, seed, 1), Source(expert_cid, 9, seed + 1, 2)};
  }

  static ledger::OptimizerParams Sgd() {
    ledger::OptimizerParams o;
    o.lr = 0.05;
    return o;
  }
  static ledger::OptimizerParams Adam() {
    ledger::OptimizerParams o;
    o.kind = ledger::OptimizerKind::kAdam;
    o.lr = 1e-3;
    o.weight_decay = 0.01;
    return o;
  }

  std::map<uint64_t, std::pair<HostTensor, HostTensor>> source_inputs_;
  int steps_ = 0;
};

// `file` (a safetensors file) with every value of the tensors `pick` selects mapped by `f`,
// the metadata kept.
template <typename Pick, typename F>
Bytes MapTensors(const Bytes& file, Pick pick, F f) {
  Result<edge::SafetensorsFile> parsed = edge::ParseSafetensors(file);
  TRUSTMOE_CHECK(parsed.ok());
  std::vector<Bytes> data;
  data.reserve(parsed->tensors().size());
  std::vector<edge::TensorData> tensors;
  for (const edge::TensorInfo& t : parsed->tensors()) {
    std::vector<float> v = *edge::ToFloats(t.dtype, parsed->Data(t));
    if (pick(t.name)) {
      for (size_t i = 0; i < v.size(); ++i) v[i] = f(t.name, i, v[i]);
    }
    data.push_back(edge::FromFloats(t.dtype, v));
    tensors.push_back({t.name, t.dtype, t.shape, data.back()});
  }
  Result<Bytes> out = edge::WriteSafetensors(parsed->metadata(), std::move(tensors));
  TRUSTMOE_CHECK(out.ok());
  return *out;
}

// `child` with its change from `parent` scaled by `factor`, tensor by tensor.
Bytes ScaledChange(const Bytes& parent, const Bytes& child, float factor) {
  Result<edge::SafetensorsFile> p = edge::ParseSafetensors(parent);
  TRUSTMOE_CHECK(p.ok());
  std::map<std::string, std::vector<float>> before;
  for (const edge::TensorInfo& t : p->tensors())
    before[t.name] = *edge::ToFloats(t.dtype, p->Data(t));
  return MapTensors(
      child, [](const std::string&) { return true; },
      [&](const std::string& name, size_t i, float v) {
        const float b = before.at(name)[i];
        return b + factor * (v - b);
      });
}

TEST_F(UpdateVerifierTest, HonestSgdUpdateIsAccepted) {
  const std::vector<ledger::ResultRecord> sources = TwoSources(expert_cid_, 100);
  const Step step = EdgeStep(expert_cid_, {}, sources, Sgd());
  ASSERT_TRUE(step.child_state.empty());
  const ledger::UpdateRecord record = Update(expert_cid_, "", step, Sgd(), sources);
  Result<Outcome> outcome = CheckUpdate(record, sources);
  ASSERT_NO_FATAL_FAILURE(ExpectAccepted(outcome));
  EXPECT_EQ(outcome->rows_checked, 16 + 9);
  EXPECT_LE(outcome->max_error, params_.tolerance_update_ppm * 1e-6);
  EXPECT_EQ(outcome->detail, "");
  const ledger::VoteBody vote = outcome->Vote(record.edge, record.nonce);
  EXPECT_EQ(vote.verdict, ledger::Verdict::kAccepted);
  EXPECT_EQ(vote.result_nonce, 77u);

  // The step from one source only is not this update.
  const Step one = EdgeStep(expert_cid_, {}, {sources[0]}, Sgd());
  Result<Outcome> wrong = CheckUpdate(Update(expert_cid_, "", one, Sgd(), sources, 78), sources);
  ASSERT_NO_FATAL_FAILURE(ExpectRejected(wrong, ledger::RejectReason::kMismatch));
}

TEST_F(UpdateVerifierTest, HonestAdamUpdatesWithStateAreAcceptedStepAfterStep) {
  const std::vector<ledger::ResultRecord> first = TwoSources(expert_cid_, 200);
  const Step step1 = EdgeStep(expert_cid_, {}, first, Adam());
  ASSERT_FALSE(step1.child_state.empty());
  const ledger::UpdateRecord update1 = Update(expert_cid_, "", step1, Adam(), first);
  ASSERT_NO_FATAL_FAILURE(ExpectAccepted(CheckUpdate(update1, first)));

  // The second step: from the child and its state, on backward results on the child.
  const std::string child_cid = update1.body.child_cid;
  ASSERT_TRUE(edge_->Load(child_cid, step1.child).ok());
  const std::vector<ledger::ResultRecord> second = {Source(child_cid, 12, 300, 3),
                                                    Source(child_cid, 5, 301, 4)};
  const Step step2 = EdgeStep(child_cid, step1.child_state, second, Adam());
  const ledger::UpdateRecord update2 =
      Update(child_cid, update1.body.child_state_cid, step2, Adam(), second, 79);
  Result<Outcome> outcome = CheckUpdate(update2, second);
  ASSERT_NO_FATAL_FAILURE(ExpectAccepted(outcome));
  EXPECT_EQ(outcome->rows_checked, 12 + 5);

  // The same child claimed from a fresh state is not what a fresh state gives.
  ledger::UpdateRecord fresh = update2;
  fresh.nonce = 80;
  fresh.body.parent_state_cid.clear();
  ASSERT_NO_FATAL_FAILURE(
      ExpectRejected(CheckUpdate(fresh, second), ledger::RejectReason::kMismatch));
}

TEST_F(UpdateVerifierTest, SgdMomentumStateIsComparedToo) {
  ledger::OptimizerParams momentum = Sgd();
  momentum.momentum = 0.9;
  const std::vector<ledger::ResultRecord> sources = TwoSources(expert_cid_, 250);
  const Step step = EdgeStep(expert_cid_, {}, sources, momentum);
  ASSERT_FALSE(step.child_state.empty());
  ASSERT_NO_FATAL_FAILURE(
      ExpectAccepted(CheckUpdate(Update(expert_cid_, "", step, momentum, sources), sources)));
  Step altered = step;
  altered.child_state = MapTensors(
      step.child_state, [](const std::string& name) { return name == "momentum.w1"; },
      [](const std::string&, size_t, float v) { return v * 0.5f; });
  Result<Outcome> outcome =
      CheckUpdate(Update(expert_cid_, "", altered, momentum, sources, 78), sources);
  ASSERT_NO_FATAL_FAILURE(ExpectRejected(outcome, ledger::RejectReason::kMismatch));
  EXPECT_THAT(outcome->detail, HasSubstr("momentum.w1"));
}

TEST_F(UpdateVerifierTest, ScaledWeightChangeIsAMismatchNamingATensor) {
  const std::vector<ledger::ResultRecord> sources = TwoSources(expert_cid_, 400);
  Step step = EdgeStep(expert_cid_, {}, sources, Sgd());
  Result<Bytes> parent = edge_->Export(expert_cid_, DType::kF32);
  ASSERT_TRUE(parent.ok());
  step.child = ScaledChange(*parent, step.child, 1.1f);
  Result<Outcome> outcome = CheckUpdate(Update(expert_cid_, "", step, Sgd(), sources), sources);
  ASSERT_NO_FATAL_FAILURE(ExpectRejected(outcome, ledger::RejectReason::kMismatch));
  EXPECT_THAT(outcome->detail, HasSubstr("tensor "));
  EXPECT_THAT(outcome->detail, ::testing::ContainsRegex("tensor (w1|b1|w2|b2):"));
  EXPECT_NEAR(outcome->max_error, 0.1, 0.01);

  // Within the tolerance (1 %), a change scaled by 1.001 passes.
  Step close = EdgeStep(expert_cid_, {}, sources, Sgd());
  close.child = ScaledChange(*parent, close.child, 1.001f);
  ASSERT_NO_FATAL_FAILURE(
      ExpectAccepted(CheckUpdate(Update(expert_cid_, "", close, Sgd(), sources, 78), sources)));
}

TEST_F(UpdateVerifierTest, AlteredChildStateIsAMismatch) {
  const std::vector<ledger::ResultRecord> sources = TwoSources(expert_cid_, 500);
  Step step = EdgeStep(expert_cid_, {}, sources, Adam());
  step.child_state = MapTensors(
      step.child_state, [](const std::string& name) { return name == "adam_m.w2"; },
      [](const std::string&, size_t, float v) { return v * 1.5f; });
  Result<Outcome> outcome = CheckUpdate(Update(expert_cid_, "", step, Adam(), sources), sources);
  ASSERT_NO_FATAL_FAILURE(ExpectRejected(outcome, ledger::RejectReason::kMismatch));
  EXPECT_THAT(outcome->detail, HasSubstr("optimizer state adam_m.w2"));

  // A state without one of the step's tensors does not hold the step.
  Step partial = EdgeStep(expert_cid_, {}, sources, Adam());
  Result<edge::SafetensorsFile> parsed = edge::ParseSafetensors(partial.child_state);
  ASSERT_TRUE(parsed.ok());
  std::vector<edge::TensorData> kept;
  for (const edge::TensorInfo& t : parsed->tensors()) {
    if (t.name != "adam_v.b1") kept.push_back({t.name, t.dtype, t.shape, parsed->Data(t)});
  }
  Bytes partial_state = *edge::WriteSafetensors(parsed->metadata(), std::move(kept));
  partial.child_state = partial_state;
  ASSERT_NO_FATAL_FAILURE(
      ExpectRejected(CheckUpdate(Update(expert_cid_, "", partial, Adam(), sources, 78), sources),
                     ledger::RejectReason::kMalformedTensor));
}

TEST_F(UpdateVerifierTest, ChildStateWithAnotherAdamStepCountIsAMismatch) {
  // The step count is part of the state: the next step's bias correction depends on it.
  const std::vector<ledger::ResultRecord> sources = TwoSources(expert_cid_, 550);
  Step step = EdgeStep(expert_cid_, {}, sources, Adam());
  Result<edge::SafetensorsFile> parsed = edge::ParseSafetensors(step.child_state);
  ASSERT_TRUE(parsed.ok());
  ASSERT_EQ(parsed->metadata().at("trustmoe.adam_steps"), "1");
  edge::Metadata metadata = parsed->metadata();
  metadata["trustmoe.adam_steps"] = "0";
  std::vector<edge::TensorData> tensors;
  for (const edge::TensorInfo& t : parsed->tensors()) {
    tensors.push_back({t.name, t.dtype, t.shape, parsed->Data(t)});
  }
  step.child_state = *edge::WriteSafetensors(metadata, std::move(tensors));
  Result<Outcome> outcome = CheckUpdate(Update(expert_cid_, "", step, Adam(), sources), sources);
  ASSERT_NO_FATAL_FAILURE(ExpectRejected(outcome, ledger::RejectReason::kMismatch));
  EXPECT_THAT(outcome->detail, HasSubstr("adam_steps"));
}

TEST_F(UpdateVerifierTest, ChildOfAnotherArchitectureOrSizeIsWrongShape) {
  const std::vector<ledger::ResultRecord> sources = TwoSources(expert_cid_, 600);
  for (const edge::ExpertSpec& spec :
       {edge::ExpertSpec{std::string(edge::kArchSwiglu), kDModel, 64, DType::kF32},
        edge::ExpertSpec{std::string(edge::kArchGeluMlp), kDModel, 65, DType::kF32}}) {
    Step other;
    other.child = *edge::NewExpertFile(spec, 3);
    Result<Outcome> outcome = CheckUpdate(Update(expert_cid_, "", other, Sgd(), sources), sources);
    ASSERT_NO_FATAL_FAILURE(ExpectRejected(outcome, ledger::RejectReason::kWrongShape))
        << spec.arch << " " << spec.d_ff;
  }

  const Step step = EdgeStep(expert_cid_, {}, sources, Sgd());
  ledger::UpdateRecord record = Update(expert_cid_, "", step, Sgd(), sources);
  ASSERT_NO_FATAL_FAILURE(ExpectAccepted(CheckUpdate(record, sources)));
  for (uint64_t size : {record.body.child_size + 1, record.body.child_size - 1, uint64_t{0}}) {
    ledger::UpdateRecord wrong = record;
    wrong.body.child_size = size;
    ASSERT_NO_FATAL_FAILURE(
        ExpectRejected(CheckUpdate(wrong, sources), ledger::RejectReason::kWrongShape))
        << size;
  }
  // The same weights as bf16: the same architecture, so not a wrong shape.
  Step bf16 = step;
  ASSERT_TRUE(edge_->Load("stepped", step.child).ok());
  bf16.child = *edge_->Export("stepped", DType::kBF16);
  Result<Outcome> rounded = CheckUpdate(Update(expert_cid_, "", bf16, Sgd(), sources, 78), sources);
  ASSERT_TRUE(rounded.ok());
  EXPECT_NE(rounded->reason, ledger::RejectReason::kWrongShape);
  // Garbage is malformed.
  Step garbage;
  garbage.child = Bytes{'n', 'o', 't', ' ', 'a', 'n', ' ', 'e', 'x', 'p', 'e', 'r', 't'};
  ASSERT_NO_FATAL_FAILURE(
      ExpectRejected(CheckUpdate(Update(expert_cid_, "", garbage, Sgd(), sources, 79), sources),
                     ledger::RejectReason::kMalformedTensor));
}

TEST_F(UpdateVerifierTest, MissingChildIsOutputMissingAfterTheDeadline) {
  params_.verify_deadline_ms = 100;
  const std::vector<ledger::ResultRecord> sources = TwoSources(expert_cid_, 700);
  const Step step = EdgeStep(expert_cid_, {}, sources, Sgd());
  ledger::UpdateRecord record = Update(expert_cid_, "", step, Sgd(), sources);
  record.body.child_cid = crypto::ComputeCid(AsBytes("never uploaded")).ToString();
  const int64_t start_ms = SystemClock::Get()->MonotonicMs();
  Result<Outcome> outcome = CheckUpdate(record, sources);
  const int64_t elapsed_ms = SystemClock::Get()->MonotonicMs() - start_ms;
  ASSERT_NO_FATAL_FAILURE(ExpectRejected(outcome, ledger::RejectReason::kOutputMissing));
  EXPECT_THAT(outcome->detail, HasSubstr("child weights"));
  EXPECT_GE(elapsed_ms, params_.verify_deadline_ms);
  EXPECT_GT(blobs_.Gets(record.body.child_cid), 1);

  // A missing child optimizer state likewise.
  const Step adam = EdgeStep(expert_cid_, {}, sources, Adam());
  ledger::UpdateRecord no_state = Update(expert_cid_, "", adam, Adam(), sources, 78);
  no_state.body.child_state_cid = crypto::ComputeCid(AsBytes("no state")).ToString();
  ASSERT_NO_FATAL_FAILURE(
      ExpectRejected(CheckUpdate(no_state, sources), ledger::RejectReason::kOutputMissing));

  // An unreachable store gives no verdict.
  blobs_.Fail(record.body.child_cid, Status::Unavailable("store down"));
  EXPECT_EQ(CheckUpdate(record, sources).status().code(), StatusCode::kUnavailable);
}

TEST_F(UpdateVerifierTest, AnUnselectedUpdateIsOnlyCheckedForForm) {
  params_.verify_update_fraction_ppm = 0;
  const std::vector<ledger::ResultRecord> sources = TwoSources(expert_cid_, 800);
  Step step = EdgeStep(expert_cid_, {}, sources, Sgd());
  step.child = ScaledChange(*edge_->Export(expert_cid_, DType::kF32), step.child, 1.1f);
  const ledger::UpdateRecord record = Update(expert_cid_, "", step, Sgd(), sources);
  Result<Outcome> outcome = CheckUpdate(record, sources);
  ASSERT_NO_FATAL_FAILURE(ExpectAccepted(outcome));
  EXPECT_THAT(outcome->detail, HasSubstr("not selected"));
  EXPECT_EQ(outcome->rows_checked, 0);

  // Selected, the same update is a mismatch.
  params_.verify_update_fraction_ppm = 1000000;
  ASSERT_NO_FATAL_FAILURE(
      ExpectRejected(CheckUpdate(record, sources), ledger::RejectReason::kMismatch));

  // The form is checked whether selected or not.
  params_.verify_update_fraction_ppm = 0;
  Step other;
  other.child = *edge::NewExpertFile(
      edge::ExpertSpec{std::string(edge::kArchSwiglu), kDModel, 64, DType::kF32}, 3);
  ASSERT_NO_FATAL_FAILURE(
      ExpectRejected(CheckUpdate(Update(expert_cid_, "", other, Sgd(), sources, 78), sources),
                     ledger::RejectReason::kWrongShape));

  // At half, the verdict follows UpdateSelected for the update's block, edge and nonce.
  params_.verify_update_fraction_ppm = 500000;
  int selected = 0;
  for (uint8_t b = 0; b < 8; ++b) {
    const crypto::Digest block = CountingDigest(static_cast<uint8_t>(0x60 + b));
    const bool chosen = UpdateSelected(block, record.edge, record.nonce, 500000);
    selected += chosen ? 1 : 0;
    Result<Outcome> at_half = CheckUpdate(record, sources, block);
    ASSERT_TRUE(at_half.ok()) << at_half.status().ToString();
    EXPECT_EQ(at_half->verdict, chosen ? ledger::Verdict::kRejected : ledger::Verdict::kAccepted)
        << "block " << int{b};
  }
  EXPECT_GT(selected, 0);
  EXPECT_LT(selected, 8);
}

}  // namespace
}  // namespace trustmoe::verify
