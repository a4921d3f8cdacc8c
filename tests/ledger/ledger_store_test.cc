#include "chain/ledger/ledger_store.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <cstdint>
#include <filesystem>
#include <memory>

#include "tests/common/test_dir.h"
#include "tests/ledger/ledger_fixture.h"

namespace trustmoe::ledger {
namespace {

using testing::MakeBlock;
using testing::Tx;
using testing::Validators;

class LedgerStoreTest : public ::testing::Test {
 protected:
  LedgerOptions Options(const std::string& path, bool read_only = false) const {
    LedgerOptions o;
    o.path = path;
    o.read_only = read_only;
    o.validators = v_.set;
    o.genesis_digest = crypto::Sha256::Hash(Tx("genesis"));
    return o;
  }
  std::string Path() const { return dir_.path() + "/ledger"; }

  std::unique_ptr<LedgerStore> OpenStore(bool read_only = false) {
    auto store = LedgerStore::Open(Options(Path(), read_only));
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return store.ok() ? std::move(store).value() : nullptr;
  }

  // Appends a block of `txs` on the head of `store`, certified by validators 0..2.
  Block AppendBlock(LedgerStore* store, std::vector<Bytes> txs) {
    LedgerHead head = store->Head();
    Block b = MakeBlock(head.height + 1, head.digest, std::move(txs));
    Status s = store->Append(b.Encode(), v_.Certify(0, b.header.height, b.Hash()));
    EXPECT_TRUE(s.ok()) << s.ToString();
    return b;
  }

  // Appends blocks 1..3 holding "tx <height>.<i>".
  std::vector<Block> AppendThree(LedgerStore* store) {
    std::vector<Block> blocks;
    for (int h = 1; h <= 3; ++h) {
      std::vector<Bytes> txs;
      for (int i = 0; i < h + 1; ++i)
        txs.push_back(Tx("tx " + std::to_string(h) + "." + std::to_string(i)));
      blocks.push_back(AppendBlock(store, txs));
    }
    return blocks;
  }

  static constexpr size_t kLastByte = SIZE_MAX;

  // Flips one byte (kLastByte: the last) of the stored bytes under `key`, by hand, with the
  // store closed.
  void FlipStoredByte(const std::string& key, size_t offset) {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), Path(), &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    std::string value;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), key, &value).ok());
    if (offset == kLastByte) offset = value.size() - 1;
    ASSERT_LT(offset, value.size());
    value[offset] = static_cast<char>(value[offset] ^ 0x01);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), key, value).ok());
  }

  Validators v_;
  trustmoe::testutil::TempDir dir_;
};

TEST_F(LedgerStoreTest, AppendsAndReadsBack) {
  auto store = OpenStore();
  EXPECT_EQ(store->Head().height, 0u);
  std::vector<Block> blocks = AppendThree(store.get());
  EXPECT_EQ(store->Head().height, 3u);
  EXPECT_EQ(store->Head().digest, blocks[2].Hash());
  for (uint64_t h = 1; h <= 3; ++h) {
    auto got = store->GetBlock(h);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ASSERT_TRUE(got.value().block.has_value());
    EXPECT_EQ(*got.value().block, blocks[h - 1]);
    EXPECT_EQ(got.value().digest, blocks[h - 1].Hash());
    EXPECT_EQ(got.value().cert, v_.Certify(0, h, blocks[h - 1].Hash()));
  }
  EXPECT_EQ(store->GetBlock(0).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store->GetBlock(4).status().code(), StatusCode::kNotFound);
  ChainCheck check = VerifyChain(*store);
  EXPECT_TRUE(check.ok) << check.reason;
  EXPECT_EQ(check.blocks_checked, 3u);
}

TEST_F(LedgerStoreTest, RefusesWrongPrevHash) {
  auto store = OpenStore();
  AppendBlock(store.get(), {Tx("a")});
  Block b = MakeBlock(2, crypto::Sha256::Hash(Tx("not the head")), {Tx("b")});
  Status s = store->Append(b.Encode(), v_.Certify(0, 2, b.Hash()));
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_EQ(store->Head().height, 1u);
}

TEST_F(LedgerStoreTest, RefusesAGapAndARepeat) {
  auto store = OpenStore();
  AppendBlock(store.get(), {Tx("a")});
  Block gap = MakeBlock(3, store->Head().digest, {Tx("b")});
  EXPECT_EQ(store->Append(gap.Encode(), v_.Certify(0, 3, gap.Hash())).code(),
            StatusCode::kFailedPrecondition);
  Block repeat = MakeBlock(1, store->Head().digest, {Tx("b")});
  EXPECT_EQ(store->Append(repeat.Encode(), v_.Certify(0, 1, repeat.Hash())).code(),
            StatusCode::kFailedPrecondition);
  // Certificate for the right height, block header for another.
  EXPECT_EQ(store->Append(gap.Encode(), v_.Certify(0, 2, gap.Hash())).code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->Head().height, 1u);
}

TEST_F(LedgerStoreTest, RefusesBadCertificates) {
  auto store = OpenStore();
  Block b = MakeBlock(1, store->Head().digest, {Tx("a")});
  const Digest d = b.Hash();
  EXPECT_EQ(store->Append(b.Encode(), v_.Certify(0, 1, d, {0, 1})).code(),
            StatusCode::kUnauthenticated);
  EXPECT_EQ(store->Append(b.Encode(), v_.Certify(0, 1, d, {0, 1, 0})).code(),
            StatusCode::kUnauthenticated);
  crypto::PrivateKey outsider = testing::KeyFromByte(77);
  CommitCertificate cert = v_.Certify(0, 1, d, {0, 1});
  cert.signatures.emplace_back(3, Validators::SignCommit(outsider, 3, 0, 1, d));
  EXPECT_EQ(store->Append(b.Encode(), cert).code(), StatusCode::kUnauthenticated);
  cert = v_.Certify(0, 1, d, {0, 1});
  cert.signatures.emplace_back(4, Validators::SignCommit(outsider, 4, 0, 1, d));
  EXPECT_EQ(store->Append(b.Encode(), cert).code(), StatusCode::kUnauthenticated);
  // A valid certificate of another block.
  Block other = MakeBlock(1, store->Head().digest, {Tx("z")});
  EXPECT_EQ(store->Append(b.Encode(), v_.Certify(0, 1, other.Hash())).code(),
            StatusCode::kUnauthenticated);
  EXPECT_EQ(store->Head().height, 0u);
  EXPECT_TRUE(store->Append(b.Encode(), v_.Certify(0, 1, d, {1, 2, 3})).ok());
}

TEST_F(LedgerStoreTest, RefusesBadTxRootAndDuplicateTransactions) {
  auto store = OpenStore();
  Block b = MakeBlock(1, store->Head().digest, {Tx("a")});
  b.header.tx_root = TxRoot({Tx("b")});
  EXPECT_EQ(store->Append(b.Encode(), v_.Certify(0, 1, b.Hash())).code(),
            StatusCode::kInvalidArgument);
  Block twice = MakeBlock(1, store->Head().digest, {Tx("a"), Tx("a")});
  EXPECT_EQ(store->Append(twice.Encode(), v_.Certify(0, 1, twice.Hash())).code(),
            StatusCode::kAlreadyExists);
  AppendBlock(store.get(), {Tx("a")});
  Block replay = MakeBlock(2, store->Head().digest, {Tx("c"), Tx("a")});
  EXPECT_EQ(store->Append(replay.Encode(), v_.Certify(0, 2, replay.Hash())).code(),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(store->Head().height, 1u);
}

TEST_F(LedgerStoreTest, NullBlocksLinkByTheirNullDigest) {
  auto store = OpenStore();
  AppendBlock(store.get(), {Tx("a")});
  const Digest null_digest = pbft::NullBlockDigest(2);
  ASSERT_TRUE(store->Append({}, v_.Certify(1, 2, null_digest)).ok());
  EXPECT_EQ(store->Head().digest, null_digest);
  auto null_block = store->GetBlock(2);
  ASSERT_TRUE(null_block.ok()) << null_block.status().ToString();
  EXPECT_FALSE(null_block.value().block.has_value());
  AppendBlock(store.get(), {Tx("b")});
  auto third = store->GetBlock(3);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third.value().block->header.prev_hash, null_digest);
  EXPECT_TRUE(VerifyChain(*store).ok);
}

TEST_F(LedgerStoreTest, InclusionProofsVerifyOfflineAndFailWhenTampered) {
  auto store = OpenStore();
  std::vector<Block> blocks = AppendThree(store.get());
  for (const Block& b : blocks) {
    for (const Bytes& tx : b.txs) {
      auto got = store->GetTx(crypto::Sha256::Hash(tx));
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      EXPECT_EQ(got.value().tx, tx);
      EXPECT_EQ(got.value().header, b.header);
      auto proof = TxProof::Decode(got.value().proof.Encode());
      ASSERT_TRUE(proof.ok());
      EXPECT_TRUE(
          VerifyTxInclusion(tx, proof.value(), got.value().header, got.value().cert, v_.set).ok());
    }
  }
  auto got = store->GetTx(crypto::Sha256::Hash(Tx("tx 3.2"))).value();
  Bytes tampered = got.tx;
  tampered.back() ^= 1;
  EXPECT_FALSE(VerifyTxInclusion(tampered, got.proof, got.header, got.cert, v_.set).ok());
  TxProof bad = got.proof;
  bad.path[1][0] ^= 1;
  EXPECT_FALSE(VerifyTxInclusion(got.tx, bad, got.header, got.cert, v_.set).ok());
  BlockHeader header = got.header;
  header.state_root[0] ^= 1;
  EXPECT_FALSE(VerifyTxInclusion(got.tx, got.proof, header, got.cert, v_.set).ok());
  EXPECT_EQ(store->GetTx(crypto::Sha256::Hash(Tx("never sent"))).status().code(),
            StatusCode::kNotFound);
}

TEST_F(LedgerStoreTest, VerifyChainNamesTheBlockWithAChangedTxByte) {
  {
    auto store = OpenStore();
    AppendThree(store.get());
  }
  FlipStoredByte(BlockKey(2), kLastByte);  // last byte of the last transaction
  auto store = OpenStore();
  ChainCheck check = VerifyChain(*store);
  EXPECT_FALSE(check.ok);
  EXPECT_EQ(check.first_bad_height, 2u) << check.reason;
  EXPECT_NE(check.reason.find("Merkle"), std::string::npos) << check.reason;
  EXPECT_EQ(store->GetBlock(2).status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(store->GetBlock(1).ok());
  EXPECT_TRUE(store->GetBlock(3).ok());
  EXPECT_EQ(store->GetTx(crypto::Sha256::Hash(Tx("tx 2.0"))).status().code(),
            StatusCode::kDataLoss);
}

TEST_F(LedgerStoreTest, VerifyChainNamesTheBlockWithAChangedHeaderByte) {
  {
    auto store = OpenStore();
    AppendThree(store.get());
  }
  // Low byte of the header's view: block domain, header length, header domain, height, view.
  const size_t view_low_byte = 4 + kBlockDomain.size() + 4 + 4 + kHeaderDomain.size() + 8 + 7;
  FlipStoredByte(BlockKey(1), view_low_byte);
  auto store = OpenStore();
  ChainCheck check = VerifyChain(*store);
  EXPECT_FALSE(check.ok);
  EXPECT_EQ(check.first_bad_height, 1u) << check.reason;
  EXPECT_EQ(store->GetBlock(1).status().code(), StatusCode::kDataLoss);
}

// A block replaced by hand with one that is well certified (the test holds the validator keys)
// but does not link to its predecessor.
TEST_F(LedgerStoreTest, VerifyChainNamesABrokenHashLink) {
  {
    auto store = OpenStore();
    AppendThree(store.get());
  }
  Block forged = MakeBlock(2, crypto::Sha256::Hash(Tx("elsewhere")), {Tx("forged")});
  {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), Path(), &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    Bytes block = forged.Encode();
    Bytes cert = v_.Certify(0, 2, forged.Hash()).Encode();
    ASSERT_TRUE(
        db->Put(rocksdb::WriteOptions(), BlockKey(2), std::string(block.begin(), block.end()))
            .ok());
    ASSERT_TRUE(
        db->Put(rocksdb::WriteOptions(), CertKey(2), std::string(cert.begin(), cert.end())).ok());
  }
  auto store = OpenStore();
  ChainCheck check = VerifyChain(*store);
  EXPECT_FALSE(check.ok);
  EXPECT_EQ(check.first_bad_height, 2u) << check.reason;
  EXPECT_NE(check.reason.find("prev_hash"), std::string::npos) << check.reason;
}

TEST_F(LedgerStoreTest, VerifyChainNamesAMissingCertificate) {
  {
    auto store = OpenStore();
    AppendThree(store.get());
  }
  {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), Path(), &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), CertKey(1)).ok());
  }
  auto store = OpenStore();
  ChainCheck check = VerifyChain(*store);
  EXPECT_FALSE(check.ok);
  EXPECT_EQ(check.first_bad_height, 1u) << check.reason;
  EXPECT_EQ(store->GetBlock(1).status().code(), StatusCode::kDataLoss);
}

TEST_F(LedgerStoreTest, OpenRefusesAHeadWhoseBlockIsCorrupt) {
  {
    auto store = OpenStore();
    AppendThree(store.get());
  }
  FlipStoredByte(CertKey(3), 60);
  auto store = LedgerStore::Open(Options(Path()));
  EXPECT_EQ(store.status().code(), StatusCode::kDataLoss) << store.status().ToString();
}

TEST_F(LedgerStoreTest, ReopenKeepsEverything) {
  std::vector<Block> blocks;
  {
    auto store = OpenStore();
    blocks = AppendThree(store.get());
  }
  auto store = OpenStore();
  EXPECT_EQ(store->Head().height, 3u);
  EXPECT_EQ(store->Head().digest, blocks[2].Hash());
  EXPECT_EQ(*store->GetBlock(2).value().block, blocks[1]);
  EXPECT_TRUE(store->GetTx(crypto::Sha256::Hash(Tx("tx 1.1"))).ok());
  EXPECT_TRUE(VerifyChain(*store).ok);
  AppendBlock(store.get(), {Tx("after reopen")});
  EXPECT_EQ(store->Head().height, 4u);
}

TEST_F(LedgerStoreTest, ReadOnlyOpenOnACopy) {
  std::vector<Block> blocks;
  {
    auto store = OpenStore();
    blocks = AppendThree(store.get());
  }
  const std::string copy = dir_.path() + "/copy";
  std::filesystem::copy(Path(), copy, std::filesystem::copy_options::recursive);
  auto store = LedgerStore::Open(Options(copy, /*read_only=*/true));
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ(store.value()->Head().height, 3u);
  EXPECT_EQ(*store.value()->GetBlock(3).value().block, blocks[2]);
  EXPECT_TRUE(store.value()->GetTx(crypto::Sha256::Hash(Tx("tx 2.1"))).ok());
  EXPECT_TRUE(VerifyChain(*store.value()).ok);
  Block next = MakeBlock(4, blocks[2].Hash(), {Tx("x")});
  EXPECT_EQ(store.value()->Append(next.Encode(), v_.Certify(0, 4, next.Hash())).code(),
            StatusCode::kFailedPrecondition);
  // Read-only never creates a ledger.
  EXPECT_FALSE(LedgerStore::Open(Options(dir_.path() + "/missing", true)).ok());
}

}  // namespace
}  // namespace trustmoe::ledger
