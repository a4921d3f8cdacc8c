// The arithmetic of verification (docs/verification.md): which rows a validator re-computes,
// and how a row of the edge's output is compared with the re-computation. Deterministic and
// free of libtorch, so that an auditor can redo it.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "chain/ledger/genesis.h"
#include "chain/ledger/result.h"
#include "crypto/ed25519.h"
#include "crypto/sha256.h"

namespace trustmoe::verify {

// SHA-256(canonical("trustmoe/verify/sample-seed/v1", bytes block_digest, bytes edge,
//                   u64 nonce)): the digest of the block that ordered the result, which the
// edge could not know when it signed it.
crypto::Digest SampleSeed(const crypto::Digest& block_digest, const crypto::PublicKey& edge,
                          uint64_t nonce);

// How many rows are sampled out of `rows`: max(rows_min, ceil(rows * fraction_ppm / 1e6)),
// at most `rows`.
int64_t SampleSize(int64_t rows, uint32_t rows_min, uint32_t fraction_ppm);

// SampleSize(...) distinct row indices in [0, rows), ascending, drawn by Floyd's algorithm from
// a SHA-256 counter stream over `seed` (unbiased: rejection sampling).
std::vector<int64_t> SampleRows(const crypto::Digest& seed, int64_t rows, uint32_t rows_min,
                                uint32_t fraction_ppm);

// The per-row tolerance for an edge's compute dtype, from the genesis parameters.
double Tolerance(const ledger::ChainParams& params, ledger::ComputeDType dtype);

// Per-row relative L2 error ‖claimed − reference‖₂ / max(‖reference‖₂, 1e-6·√d), where d is
// the row width; infinity when `claimed` holds a NaN or infinity.
double RowError(std::span<const float> claimed, std::span<const float> reference);

}  // namespace trustmoe::verify
