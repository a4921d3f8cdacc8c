#include "chain/verify/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "crypto/canonical.h"

namespace trustmoe::verify {
namespace {

constexpr std::string_view kSeedDomain = "trustmoe/verify/sample-seed/v1";

// Uniform 64-bit words: SHA-256(seed || u64 counter), four words per hash, little-endian.
class WordStream {
 public:
  explicit WordStream(const crypto::Digest& seed) : seed_(seed) {}
  uint64_t Next() {
    if (used_ == 4) Refill();
    uint64_t w = 0;
    for (int i = 0; i < 8; ++i) w |= uint64_t{block_[used_ * 8 + i]} << (8 * i);
    ++used_;
    return w;
  }
  // Uniform in [0, bound), bound >= 1: rejects the words of the incomplete last interval.
  uint64_t Below(uint64_t bound) {
    const uint64_t limit = std::numeric_limits<uint64_t>::max() -
                           std::numeric_limits<uint64_t>::max() % bound;
    for (;;) {
      uint64_t w = Next();
      if (w < limit) return w % bound;
    }
  }

 private:
  void Refill() {
    crypto::Sha256 h;
    h.Update(ByteSpan(seed_.data(), seed_.size()));
    uint8_t counter[8];
    for (int i = 0; i < 8; ++i) counter[i] = static_cast<uint8_t>(counter_ >> (8 * i));
    h.Update(ByteSpan(counter, 8));
    ++counter_;
    block_ = h.Final();
    used_ = 0;
  }
  crypto::Digest seed_;
  crypto::Digest block_{};
  uint64_t counter_ = 0;
  int used_ = 4;
};

}  // namespace

crypto::Digest SampleSeed(const crypto::Digest& block_digest, const crypto::PublicKey& edge,
                          uint64_t nonce) {
  crypto::CanonicalWriter w(kSeedDomain);
  w.Blob(ByteSpan(block_digest.data(), block_digest.size())).Blob(edge.bytes()).U64(nonce);
  return crypto::Sha256::Hash(w.Take());
}

int64_t SampleSize(int64_t rows, uint32_t rows_min, uint32_t fraction_ppm) {
  if (rows <= 0) return 0;
  const int64_t by_fraction =
      static_cast<int64_t>((static_cast<unsigned __int128>(rows) * fraction_ppm + 999999) / 1000000);
  return std::min<int64_t>(rows, std::max<int64_t>(rows_min, by_fraction));
}

std::vector<int64_t> SampleRows(const crypto::Digest& seed, int64_t rows, uint32_t rows_min,
                                uint32_t fraction_ppm) {
  const int64_t k = SampleSize(rows, rows_min, fraction_ppm);
  std::vector<int64_t> out;
  if (k == rows) {
    out.resize(static_cast<size_t>(rows));
    for (int64_t i = 0; i < rows; ++i) out[static_cast<size_t>(i)] = i;
    return out;
  }
  // Floyd: for j in [rows - k, rows): pick t in [0, j]; take t unless taken, else j.
  WordStream words(seed);
  std::set<int64_t> chosen;
  for (int64_t j = rows - k; j < rows; ++j) {
    const auto t = static_cast<int64_t>(words.Below(static_cast<uint64_t>(j) + 1));
    if (!chosen.insert(t).second) chosen.insert(j);
  }
  out.assign(chosen.begin(), chosen.end());
  return out;
}

double Tolerance(const ledger::ChainParams& params, ledger::ComputeDType dtype) {
  uint32_t ppm = params.tolerance_f32_ppm;
  if (dtype == ledger::ComputeDType::kBF16) ppm = params.tolerance_bf16_ppm;
  if (dtype == ledger::ComputeDType::kF16) ppm = params.tolerance_f16_ppm;
  return ppm * 1e-6;
}

double RowError(std::span<const float> claimed, std::span<const float> reference) {
  double diff = 0, norm = 0;
  const size_t d = std::min(claimed.size(), reference.size());
  for (size_t i = 0; i < d; ++i) {
    const double c = claimed[i];
    if (!std::isfinite(c)) return std::numeric_limits<double>::infinity();
    const double r = reference[i];
    diff += (c - r) * (c - r);
    norm += r * r;
  }
  const double floor = 1e-6 * std::sqrt(static_cast<double>(d));
  return std::sqrt(diff) / std::max(std::sqrt(norm), floor);
}

}  // namespace trustmoe::verify
