#include "chain/ledger/block.h"

#include <gtest/gtest.h>

#include "crypto/canonical.h"
#include "crypto/cid.h"
#include "tests/ledger/ledger_fixture.h"

namespace trustmoe::ledger {
namespace {

using testing::MakeBlock;
using testing::Tx;
using testing::Validators;

TEST(BlockHeader, EncodeDecodeRoundTrip) {
  Block b = MakeBlock(7, crypto::Sha256::Hash(Tx("prev")), {Tx("a"), Tx("b")}, 3);
  auto decoded = BlockHeader::Decode(b.header.Encode());
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded.value(), b.header);
  EXPECT_EQ(b.Hash(), crypto::Sha256::Hash(b.header.Encode()));
}

TEST(BlockHeader, EncodingIsTheDocumentedOne) {
  BlockHeader h;
  h.height = 1;
  h.view = 2;
  h.prev_hash.fill(3);
  h.tx_root.fill(4);
  h.state_root.fill(5);
  h.time_unix_ms = -6;
  h.proposer = 7;
  Bytes expected = crypto::CanonicalWriter("trustmoe/ledger/header/v1")
                       .U64(1)
                       .U64(2)
                       .Fixed(h.prev_hash)
                       .Fixed(h.tx_root)
                       .Fixed(h.state_root)
                       .I64(-6)
                       .U32(7)
                       .Take();
  EXPECT_EQ(h.Encode(), expected);
}

TEST(BlockHeader, EveryFieldChangesTheHash) {
  BlockHeader base = MakeBlock(5, {}, {Tx("x")}).header;
  std::vector<BlockHeader> variants(7, base);
  variants[0].height++;
  variants[1].view++;
  variants[2].prev_hash[0] ^= 1;
  variants[3].tx_root[0] ^= 1;
  variants[4].state_root[0] ^= 1;
  variants[5].time_unix_ms++;
  variants[6].proposer++;
  for (const BlockHeader& v : variants) EXPECT_NE(v.Hash(), base.Hash());
}

TEST(BlockHeader, RejectsTrailingAndTruncatedBytes) {
  Bytes bytes = MakeBlock(1, {}, {}).header.Encode();
  Bytes longer = bytes;
  longer.push_back(0);
  EXPECT_FALSE(BlockHeader::Decode(longer).ok());
  bytes.pop_back();
  EXPECT_FALSE(BlockHeader::Decode(bytes).ok());
}

TEST(Block, EncodeDecodeRoundTripAndLimits) {
  Block b = MakeBlock(2, {}, {Tx("one"), Tx(""), Tx("three")});
  auto decoded = Block::Decode(b.Encode(), BlockLimits{});
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded.value(), b);
  EXPECT_FALSE(Block::Decode(b.Encode(), BlockLimits{2, 100}).ok());
  EXPECT_FALSE(Block::Decode(b.Encode(), BlockLimits{10, 4}).ok());
  EXPECT_FALSE(Block::Decode(Tx("garbage"), BlockLimits{}).ok());
}

TEST(TxRoot, EmptyBlockRootIsTheDocumentedConstant) {
  EXPECT_EQ(TxRoot({}), EmptyTxRoot());
  EXPECT_EQ(
      EmptyTxRoot(),
      crypto::Sha256::Hash(crypto::CanonicalWriter("trustmoe/ledger/empty-tx-root/v1").bytes()));
}

TEST(TxRoot, IsTheMerkleRootOverLeafHashesOfTxIds) {
  std::vector<Bytes> txs = {Tx("a"), Tx("b"), Tx("c")};
  std::vector<Digest> leaves;
  for (const Bytes& tx : txs) leaves.push_back(crypto::LeafHash(crypto::Sha256::Hash(tx)));
  EXPECT_EQ(TxRoot(txs), crypto::MerkleRoot(leaves));
  EXPECT_EQ(TxRoot({Tx("a")}), crypto::LeafHash(crypto::Sha256::Hash(Tx("a"))));
  EXPECT_NE(TxRoot({Tx("a"), Tx("b")}), TxRoot({Tx("b"), Tx("a")}));
}

TEST(Certificate, QuorumOfValidSignaturesVerifies) {
  Validators v;
  Digest d = MakeBlock(1, {}, {}).Hash();
  EXPECT_TRUE(VerifyCertificate(v.set, v.Certify(0, 1, d), 1, d).ok());
  EXPECT_TRUE(VerifyCertificate(v.set, v.Certify(0, 1, d, {0, 1, 2, 3}), 1, d).ok());
  // Committed in a later view than it was first proposed in.
  EXPECT_TRUE(VerifyCertificate(v.set, v.Certify(4, 1, d, {1, 2, 3}), 1, d).ok());
}

TEST(Certificate, RoundTripsThroughThePbftEncoding) {
  Validators v;
  Digest d = MakeBlock(1, {}, {}).Hash();
  CommitCertificate cert = v.Certify(0, 1, d);
  auto decoded = CommitCertificate::Decode(cert.Encode(), 4);
  ASSERT_TRUE(decoded.ok());
  EXPECT_TRUE(VerifyCertificate(v.set, decoded.value(), 1, d).ok());
}

// A certificate assembled as the replica does (handle_commit.cc): from the signatures of the
// commit envelopes it received, over the wire.
TEST(Certificate, ReplicaCommitEnvelopesMakeAValidCertificate) {
  Validators v;
  Block b = MakeBlock(9, {}, {Tx("a")}, 2);
  pbft::Config config;
  config.validators = v.set.keys;
  config.f = 1;
  CommitCertificate cert{3, 9, b.Hash(), {}};
  for (uint32_t id : {0u, 2u, 3u}) {
    pbft::Envelope sent = pbft::SignEnvelope(pbft::MsgType::kCommit, id,
                                             pbft::Commit{3, 9, b.Hash()}.Body(id), v.keys[id]);
    auto received = pbft::DecodeEnvelope(sent.Encode(), pbft::Limits::Of(config));
    ASSERT_TRUE(received.ok()) << received.status().ToString();
    ASSERT_TRUE(pbft::VerifyEnvelope(config, received.value()));
    cert.signatures.emplace_back(id, received.value().signature);
  }
  Status s = VerifyCertificate(v.set, cert, 9, b.Hash());
  EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST(Certificate, RefusesFPlusOneSignatures) {
  Validators v;
  Digest d = MakeBlock(1, {}, {}).Hash();
  Status s = VerifyCertificate(v.set, v.Certify(0, 1, d, {0, 1}), 1, d);
  EXPECT_EQ(s.code(), StatusCode::kUnauthenticated) << s.ToString();
}

TEST(Certificate, RefusesDuplicateSigners) {
  Validators v;
  Digest d = MakeBlock(1, {}, {}).Hash();
  Status s = VerifyCertificate(v.set, v.Certify(0, 1, d, {0, 1, 1}), 1, d);
  EXPECT_EQ(s.code(), StatusCode::kUnauthenticated) << s.ToString();
}

TEST(Certificate, RefusesNonValidatorSignatures) {
  Validators v;
  Digest d = MakeBlock(1, {}, {}).Hash();
  crypto::PrivateKey outsider = testing::KeyFromByte(99);
  // An outsider under a validator's id.
  CommitCertificate cert = v.Certify(0, 1, d, {0, 1});
  cert.signatures.emplace_back(2, Validators::SignCommit(outsider, 2, 0, 1, d));
  EXPECT_EQ(VerifyCertificate(v.set, cert, 1, d).code(), StatusCode::kUnauthenticated);
  // An outsider under an id outside the validator set.
  cert = v.Certify(0, 1, d, {0, 1});
  cert.signatures.emplace_back(4, Validators::SignCommit(outsider, 4, 0, 1, d));
  EXPECT_EQ(VerifyCertificate(v.set, cert, 1, d).code(), StatusCode::kUnauthenticated);
}

TEST(Certificate, RefusesAnotherHeightOrDigest) {
  Validators v;
  Digest d = MakeBlock(1, {}, {}).Hash();
  Digest other = MakeBlock(1, {}, {Tx("x")}).Hash();
  EXPECT_FALSE(VerifyCertificate(v.set, v.Certify(0, 1, d), 2, d).ok());
  EXPECT_FALSE(VerifyCertificate(v.set, v.Certify(0, 1, d), 1, other).ok());
  CommitCertificate forged = v.Certify(0, 1, d);
  forged.digest = other;  // signatures are over d
  EXPECT_FALSE(VerifyCertificate(v.set, forged, 1, other).ok());
}

class InclusionProof : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 5; ++i) txs_.push_back(Tx("tx " + std::to_string(i)));
    block_ = MakeBlock(3, {}, txs_);
    cert_ = v_.Certify(0, 3, block_.Hash());
    std::vector<Digest> leaves;
    for (const Bytes& tx : txs_) leaves.push_back(TxLeaf(crypto::Sha256::Hash(tx)));
    tree_ = std::make_unique<crypto::MerkleTree>(leaves);
  }
  TxProof ProofOf(uint32_t i) const { return {3, i, 5, tree_->Proof(i)}; }

  Validators v_;
  std::vector<Bytes> txs_;
  Block block_;
  CommitCertificate cert_;
  std::unique_ptr<crypto::MerkleTree> tree_;
};

TEST_F(InclusionProof, EveryTransactionVerifies) {
  for (uint32_t i = 0; i < 5; ++i) {
    TxProof proof = ProofOf(i);
    auto decoded = TxProof::Decode(proof.Encode());
    ASSERT_TRUE(decoded.ok());
    EXPECT_EQ(decoded.value(), proof);
    Status s = VerifyTxInclusion(txs_[i], decoded.value(), block_.header, cert_, v_.set);
    EXPECT_TRUE(s.ok()) << i << ": " << s.ToString();
  }
}

TEST_F(InclusionProof, FailsWhenTampered) {
  TxProof proof = ProofOf(2);
  EXPECT_FALSE(VerifyTxInclusion(Tx("tx 9"), proof, block_.header, cert_, v_.set).ok());
  TxProof bad = proof;
  bad.index = 3;
  EXPECT_FALSE(VerifyTxInclusion(txs_[2], bad, block_.header, cert_, v_.set).ok());
  bad = proof;
  bad.path[0][5] ^= 1;
  EXPECT_FALSE(VerifyTxInclusion(txs_[2], bad, block_.header, cert_, v_.set).ok());
  bad = proof;
  bad.path.pop_back();
  EXPECT_FALSE(VerifyTxInclusion(txs_[2], bad, block_.header, cert_, v_.set).ok());
  bad = proof;
  bad.height = 4;
  EXPECT_FALSE(VerifyTxInclusion(txs_[2], bad, block_.header, cert_, v_.set).ok());
  BlockHeader header = block_.header;
  header.time_unix_ms++;  // the certificate no longer signs this header
  EXPECT_FALSE(VerifyTxInclusion(txs_[2], proof, header, cert_, v_.set).ok());
  CommitCertificate weak = v_.Certify(0, 3, block_.Hash(), {0, 3});
  EXPECT_FALSE(VerifyTxInclusion(txs_[2], proof, block_.header, weak, v_.set).ok());
  EXPECT_FALSE(TxProof::Decode(Tx("junk")).ok());
}

}  // namespace
}  // namespace trustmoe::ledger
