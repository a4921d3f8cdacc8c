// Ledger blocks: header, transactions, transaction Merkle root, commit certificates and
// inclusion proofs (docs/formats/block.md).
//
// A block's digest, which PBFT agrees on and commit certificates sign, is the header hash.
// A null block (committed by PBFT to fill a view-change gap) has no bytes and no header; its
// digest is pbft::NullBlockDigest(height).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "chain/pbft/messages.h"
#include "common/bytes.h"
#include "common/status.h"
#include "crypto/ed25519.h"
#include "crypto/sha256.h"

namespace trustmoe::ledger {

using crypto::Digest;
using pbft::CommitCertificate;
using pbft::TxId;

inline constexpr std::string_view kHeaderDomain = "trustmoe/ledger/header/v1";
inline constexpr std::string_view kBlockDomain = "trustmoe/ledger/block/v1";
inline constexpr std::string_view kEmptyTxRootDomain = "trustmoe/ledger/empty-tx-root/v1";
inline constexpr std::string_view kTxProofDomain = "trustmoe/ledger/tx-proof/v1";

// Bounds for decoding untrusted block bytes (defaults match pbft::Config's).
struct BlockLimits {
  uint32_t block_txs_max = 1000;
  uint32_t tx_bytes_max = 64 * 1024;
};

struct BlockHeader {
  uint64_t height = 0;
  uint64_t view = 0;    // view of the proposal
  Digest prev_hash{};   // digest of block height - 1 (genesis digest for height 1)
  Digest tx_root{};     // TxRoot of the block's transactions
  Digest state_root{};  // state digest after block height - 1
  int64_t time_unix_ms = 0;
  uint32_t proposer = 0;  // validator id

  // canonical(kHeaderDomain, height u64, view u64, prev_hash, tx_root, state_root,
  // time_unix_ms i64, proposer u32).
  Bytes Encode() const;
  // InvalidArgument on malformed bytes (wrong domain, truncation, trailing bytes).
  static Result<BlockHeader> Decode(ByteSpan bytes);
  // SHA-256 of Encode(): the block digest.
  Digest Hash() const;
  bool operator==(const BlockHeader&) const = default;
};

struct Block {
  BlockHeader header;
  std::vector<Bytes> txs;

  // canonical(kBlockDomain, bytes header encoding, u32 count, bytes tx...).
  Bytes Encode() const;
  // InvalidArgument on malformed bytes or bytes over `limits`. Does not check tx_root.
  static Result<Block> Decode(ByteSpan bytes, const BlockLimits& limits);
  Digest Hash() const { return header.Hash(); }
  bool operator==(const Block&) const = default;
};

// Merkle leaf of a transaction: crypto::LeafHash(tx id) = SHA-256(0x00 || SHA-256(tx)).
Digest TxLeaf(const TxId& id);
// crypto::MerkleRoot over TxLeaf of each transaction id, in block order. The root of a block
// without transactions is SHA-256(canonical(kEmptyTxRootDomain)).
Digest TxRoot(const std::vector<Bytes>& txs);
Digest EmptyTxRoot();

// The validator set from the genesis file: validator id = index.
struct ValidatorSet {
  std::vector<crypto::PublicKey> keys;
  uint32_t f = 1;
  // pbft::Config::quorum(): 2f + 1 when n = 3f + 1.
  uint32_t quorum() const;
};

// OK when `cert` is for (height, digest) and holds a quorum of valid signatures of distinct
// validators over their PBFT commit bodies (pbft::VerifyCommitCertificate). Unauthenticated,
// saying why, otherwise. cert.view may exceed the header's view: a prepared block is carried
// into later views unchanged.
Status VerifyCertificate(const ValidatorSet& validators, const CommitCertificate& cert,
                         uint64_t height, const Digest& digest);

// Inclusion proof of transaction `index` of a block of `tx_count` transactions at `height`:
// the Merkle audit path of its leaf, bottom-up.
struct TxProof {
  uint64_t height = 0;
  uint32_t index = 0;
  uint32_t tx_count = 0;
  std::vector<Digest> path;

  // canonical(kTxProofDomain, height u64, index u32, tx_count u32, u32 count, digest...).
  Bytes Encode() const;
  // InvalidArgument on malformed bytes; at most 64 path entries.
  static Result<TxProof> Decode(ByteSpan bytes);
  bool operator==(const TxProof&) const = default;
};

// Offline check, by anyone holding the validator keys, that `tx` is in the block of `header`
// and that this block was committed: proof height matches, the path leads from TxLeaf to
// header.tx_root, and `cert` certifies header.Hash() at that height. OK or Unauthenticated /
// InvalidArgument naming what failed.
Status VerifyTxInclusion(ByteSpan tx, const TxProof& proof, const BlockHeader& header,
                         const CommitCertificate& cert, const ValidatorSet& validators);

}  // namespace trustmoe::ledger
