// The genesis file (docs/formats/genesis.md): the chain's identity, validator set, admin key and
// protocol parameters. Every validator and every auditor starts from the same file; its digest
// is the prev_hash of block 1 and the root of the initial state.
//
// The file is JSON, written by `trustmoe genesis`. Its digest is the SHA-256 of a canonical
// encoding of the parsed fields (not of the JSON text), so reformatting the file does not change
// it:
//   canonical("trustmoe/ledger/genesis/v1", chain_id str, created_unix_ms i64, f u32,
//             admin_key bytes, u32 count, then per validator (name str, public_key bytes,
//             endpoint str), then every parameter in the order of ChainParams as u64/i64)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "chain/ledger/block.h"
#include "chain/pbft/config.h"
#include "common/bytes.h"
#include "common/status.h"
#include "crypto/ed25519.h"

namespace trustmoe::ledger {

inline constexpr std::string_view kGenesisDomain = "trustmoe/ledger/genesis/v1";

// Protocol parameters fixed at genesis (every validator must use the same values).
struct ChainParams {
  uint64_t checkpoint_interval = 16;
  uint64_t watermark_window = 32;
  uint32_t block_txs_max = 2000;
  uint64_t block_bytes_max = 2ull << 20;
  uint32_t tx_bytes_max = 64 * 1024;
  int64_t view_change_timeout_ms = 1000;
  // A proposed block's time may be at most this far ahead of a validator's clock.
  int64_t max_clock_skew_ms = 5000;
  // Reputation (docs/verification.md): a REJECTED verdict for availability (output withheld,
  // fetch deadline) is a strike, one for integrity (mismatch, malformed or wrong-shaped tensor,
  // unpublished expert) a fault; this many of either blacklist an edge.
  uint32_t strike_threshold = 3;
  uint32_t fault_threshold = 1;
  // Re-computation: rows sampled per result, max(verify_rows_min, verify_fraction_ppm of the
  // rows), at most all rows; how long a validator waits for a result's tensors in the store.
  uint32_t verify_rows_min = 16;
  uint32_t verify_fraction_ppm = 50000;
  int64_t verify_deadline_ms = 10000;
  // Per-row relative L2 error allowed between the edge's output and the validator's f32
  // re-computation, by the edge's compute dtype, in parts per million.
  uint32_t tolerance_f32_ppm = 100;
  uint32_t tolerance_bf16_ppm = 30000;
  uint32_t tolerance_f16_ppm = 10000;
  // Expert updates: the fraction whose optimizer step validators re-run, and the per-tensor
  // relative L2 error allowed on the weight change (child − parent) against the re-run.
  uint32_t verify_update_fraction_ppm = 100000;
  uint32_t tolerance_update_ppm = 10000;
  bool operator==(const ChainParams&) const = default;
};

struct GenesisValidator {
  std::string name;          // operator-chosen label, e.g. "v0"
  crypto::PublicKey key;     // Ed25519 identity key of the validator
  std::string endpoint;      // host:port of its gRPC server (peers and clients)
};

struct Genesis {
  std::string chain_id;  // [a-z0-9._-]{1,64}
  int64_t created_unix_ms = 0;
  uint32_t f = 1;
  std::vector<GenesisValidator> validators;  // validator id = index
  crypto::PublicKey admin_key;               // signs RegisterNode
  ChainParams params;

  // InvalidArgument naming the first bad field: chain id syntax, n < 3f + 1, duplicate keys or
  // names, empty endpoints, parameters out of range.
  Status Validate() const;

  Bytes Canonical() const;
  Digest Hash() const;

  // Pretty-printed JSON; public keys and digests as lowercase hex.
  std::string ToJson() const;
  // Parses and validates. InvalidArgument naming the field on malformed or hostile input
  // (unknown keys are errors too, so that a typo is not silently ignored).
  static Result<Genesis> FromJson(std::string_view text);
  // Reads a file of at most 1 MiB. NotFound when missing.
  static Result<Genesis> Load(const std::string& path);

  ValidatorSet Validators() const;
  // Bounds for decoding this chain's blocks.
  BlockLimits Limits() const { return {params.block_txs_max, params.tx_bytes_max}; }
  // The replica configuration derived from the validator set and parameters.
  pbft::Config PbftConfig() const;
  // Validator id of `key`, or -1 when it is not a validator.
  int ValidatorId(const crypto::PublicKey& key) const;
};

}  // namespace trustmoe::ledger
