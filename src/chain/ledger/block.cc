#include "chain/ledger/block.h"

#include <string>

#include "chain/pbft/config.h"
#include "crypto/canonical.h"
#include "crypto/cid.h"

namespace trustmoe::ledger {

using crypto::CanonicalReader;
using crypto::CanonicalWriter;

namespace {

constexpr uint32_t kHeaderBytesMax = 1024;
constexpr uint32_t kProofPathMax = 64;

}  // namespace

Bytes BlockHeader::Encode() const {
  CanonicalWriter w(kHeaderDomain);
  w.U64(height).U64(view).Fixed(prev_hash).Fixed(tx_root).Fixed(state_root);
  w.I64(time_unix_ms).U32(proposer);
  return w.Take();
}

Result<BlockHeader> BlockHeader::Decode(ByteSpan bytes) {
  CanonicalReader r(bytes);
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kHeaderDomain));
  BlockHeader h;
  TRUSTMOE_ASSIGN_OR_RETURN(h.height, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(h.view, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(h.prev_hash, r.Fixed());
  TRUSTMOE_ASSIGN_OR_RETURN(h.tx_root, r.Fixed());
  TRUSTMOE_ASSIGN_OR_RETURN(h.state_root, r.Fixed());
  TRUSTMOE_ASSIGN_OR_RETURN(h.time_unix_ms, r.I64());
  TRUSTMOE_ASSIGN_OR_RETURN(h.proposer, r.U32());
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  return h;
}

Digest BlockHeader::Hash() const { return crypto::Sha256::Hash(Encode()); }

Bytes Block::Encode() const {
  CanonicalWriter w(kBlockDomain);
  w.Blob(header.Encode()).U32(static_cast<uint32_t>(txs.size()));
  for (const Bytes& tx : txs) w.Blob(tx);
  return w.Take();
}

Result<Block> Block::Decode(ByteSpan bytes, const BlockLimits& limits) {
  CanonicalReader r(bytes);
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kBlockDomain));
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes header_bytes, r.Blob(kHeaderBytesMax));
  Block b;
  TRUSTMOE_ASSIGN_OR_RETURN(b.header, BlockHeader::Decode(header_bytes));
  TRUSTMOE_ASSIGN_OR_RETURN(uint32_t count, r.U32());
  if (count > limits.block_txs_max) {
    return Status::InvalidArgument("block holds " + std::to_string(count) +
                                   " transactions, the limit is " +
                                   std::to_string(limits.block_txs_max));
  }
  b.txs.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    TRUSTMOE_ASSIGN_OR_RETURN(Bytes tx, r.Blob(limits.tx_bytes_max));
    b.txs.push_back(std::move(tx));
  }
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  return b;
}

Digest TxLeaf(const TxId& id) { return crypto::LeafHash(id); }

Digest EmptyTxRoot() { return CanonicalWriter(kEmptyTxRootDomain).Hash(); }

Digest TxRoot(const std::vector<Bytes>& txs) {
  if (txs.empty()) return EmptyTxRoot();
  std::vector<Digest> leaves;
  leaves.reserve(txs.size());
  for (const Bytes& tx : txs) leaves.push_back(TxLeaf(pbft::ComputeTxId(tx)));
  return crypto::MerkleRoot(leaves);
}

uint32_t ValidatorSet::quorum() const {
  pbft::Config config;
  config.validators = keys;
  config.f = f;
  return config.quorum();
}

Status VerifyCertificate(const ValidatorSet& validators, const CommitCertificate& cert,
                         uint64_t height, const Digest& digest) {
  if (cert.seq != height) {
    return Status::Unauthenticated("commit certificate is for height " + std::to_string(cert.seq) +
                                   ", not " + std::to_string(height));
  }
  if (cert.digest != digest) {
    return Status::Unauthenticated("commit certificate of height " + std::to_string(height) +
                                   " signs another block digest");
  }
  pbft::Config config;
  config.validators = validators.keys;
  config.f = validators.f;
  return pbft::VerifyCommitCertificate(config, cert);
}

Bytes TxProof::Encode() const {
  CanonicalWriter w(kTxProofDomain);
  w.U64(height).U32(index).U32(tx_count).U32(static_cast<uint32_t>(path.size()));
  for (const Digest& d : path) w.Fixed(d);
  return w.Take();
}

Result<TxProof> TxProof::Decode(ByteSpan bytes) {
  CanonicalReader r(bytes);
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kTxProofDomain));
  TxProof p;
  TRUSTMOE_ASSIGN_OR_RETURN(p.height, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(p.index, r.U32());
  TRUSTMOE_ASSIGN_OR_RETURN(p.tx_count, r.U32());
  TRUSTMOE_ASSIGN_OR_RETURN(uint32_t count, r.U32());
  if (count > kProofPathMax) return Status::InvalidArgument("proof path is too long");
  for (uint32_t i = 0; i < count; ++i) {
    TRUSTMOE_ASSIGN_OR_RETURN(Digest d, r.Fixed());
    p.path.push_back(d);
  }
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  return p;
}

Status VerifyTxInclusion(ByteSpan tx, const TxProof& proof, const BlockHeader& header,
                         const CommitCertificate& cert, const ValidatorSet& validators) {
  if (proof.height != header.height) {
    return Status::InvalidArgument("proof is for height " + std::to_string(proof.height) +
                                   ", the header for " + std::to_string(header.height));
  }
  if (!crypto::VerifyMerkleProof(TxLeaf(pbft::ComputeTxId(tx)), proof.index, proof.tx_count,
                                 proof.path, header.tx_root)) {
    return Status::Unauthenticated("transaction is not in the block of height " +
                                   std::to_string(header.height) + " (Merkle proof fails)");
  }
  return VerifyCertificate(validators, cert, header.height, header.Hash());
}

}  // namespace trustmoe::ledger
