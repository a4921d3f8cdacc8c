#include "crypto/cid.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include <gtest/gtest.h>

namespace trustmoe::crypto {
namespace {

constexpr uint64_t kMiB = 1 << 20;

Bytes Mod251(uint64_t size) {
  Bytes out(size);
  for (uint64_t i = 0; i < size; ++i) out[i] = static_cast<uint8_t>(i % 251);
  return out;
}

// The test vectors of docs/formats/cid.md, computed independently with Python's hashlib.
struct CidVector {
  const char* name;
  Bytes data;
  uint64_t chunks;
  const char* cid;
};

std::vector<CidVector> Vectors() {
  return {
      {"empty",
       {},
       1,
       "sha256-tree:6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"},
      {"abc", Bytes{'a', 'b', 'c'}, 1,
       "sha256-tree:609f6e36d2405585188d5cfd761f407c7cc46a7d3f314c88270469dde315fcd1"},
      {"1 MiB of zeros", Bytes(kMiB, 0), 1,
       "sha256-tree:2cb74edba754a81d121c9db6833704a8e7d417e5b13d1a19f4a52f007d644264"},
      {"1 MiB + 1 of zeros", Bytes(kMiB + 1, 0), 2,
       "sha256-tree:cc3bcbf84b5b9b48b225f1b678f1a04faca9dfb14587e15145de3e7d1b2037ba"},
      {"3 MiB of i % 251", Mod251(3 * kMiB), 3,
       "sha256-tree:062d9057692524803edcdf17d4b5465325bbb35d99cc9c65907aa4f0dfa4449c"},
      {"5 MiB + 7 of i % 251", Mod251(5 * kMiB + 7), 6,
       "sha256-tree:a8cf7b705ecfcbad9ea17052bd5ea6b41c5e02466f6268f2492b786854fa6b1e"},
  };
}

TEST(CidTest, Vectors) {
  for (const CidVector& v : Vectors()) {
    SCOPED_TRACE(v.name);
    EXPECT_EQ(ChunkCount(v.data.size()), v.chunks);
    EXPECT_EQ(ComputeCid(v.data).ToString(), v.cid);
    CidBuilder builder;
    builder.Update(v.data);
    EXPECT_EQ(builder.size(), v.data.size());
    EXPECT_EQ(builder.Finish().ToString(), v.cid);
    EXPECT_EQ(builder.leaves().size(), v.chunks);
  }
}

TEST(CidTest, EmptyBlobIsOneEmptyChunk) {
  EXPECT_EQ(ComputeCid({}).root, LeafHash({}));
  EXPECT_EQ(ChunkLength(0, 0), 0u);
}

TEST(CidTest, ChunkArithmetic) {
  EXPECT_EQ(ChunkCount(1), 1u);
  EXPECT_EQ(ChunkCount(kMiB), 1u);
  EXPECT_EQ(ChunkCount(kMiB + 1), 2u);
  EXPECT_EQ(ChunkCount(3 * kMiB), 3u);
  EXPECT_EQ(ChunkLength(kMiB + 1, 0), kMiB);
  EXPECT_EQ(ChunkLength(kMiB + 1, 1), 1u);
  EXPECT_EQ(ChunkLength(3 * kMiB, 2), kMiB);
  EXPECT_EQ(ChunkCount(uint64_t{1} << 50), uint64_t{1} << 30);
}

TEST(CidTest, ParallelEqualsSerial) {
  for (uint64_t size : {uint64_t{0}, uint64_t{5}, kChunkBytes, 3 * kChunkBytes + 17,
                        9 * kChunkBytes}) {
    Bytes data(size);
    for (uint64_t i = 0; i < size; ++i) data[i] = static_cast<uint8_t>((i * 131) ^ (i >> 11));
    for (unsigned threads : {1u, 2u, 4u, 16u}) {
      EXPECT_EQ(ComputeCidParallel(data, threads), ComputeCid(data)) << size << " " << threads;
    }
  }
}

TEST(CidTest, BuilderInRandomPiecesEqualsComputeCid) {
  uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  for (uint64_t size :
       {uint64_t{0}, uint64_t{1}, kMiB - 1, kMiB, kMiB + 1, 2 * kMiB, 3 * kMiB + 12345}) {
    Bytes data = Mod251(size);
    for (unsigned b = 0; b < data.size(); b += 4093) data[b] ^= static_cast<uint8_t>(rng());
    Cid expected = ComputeCid(data);
    for (int round = 0; round < 3; ++round) {
      CidBuilder builder;
      uint64_t pos = 0;
      // Pieces from empty to a little over a chunk, so pieces straddle chunk boundaries.
      std::uniform_int_distribution<uint64_t> piece(0, round == 0 ? 17 : kMiB + 3);
      while (pos < size) {
        uint64_t n = std::min(piece(rng), size - pos);
        builder.Update(ByteSpan(data).subspan(pos, n));
        pos += n;
      }
      EXPECT_EQ(builder.Finish(), expected) << "size " << size << " round " << round;
    }
  }
}

TEST(CidTest, LeavesAreChunkLeafHashes) {
  Bytes data = Mod251(2 * kMiB + 5);
  CidBuilder builder;
  builder.Update(data);
  Cid cid = builder.Finish();
  ASSERT_EQ(builder.leaves().size(), 3u);
  for (uint64_t i = 0; i < 3; ++i) {
    ByteSpan chunk = ByteSpan(data).subspan(i * kMiB, ChunkLength(data.size(), i));
    EXPECT_EQ(builder.leaves()[i], LeafHash(chunk));
  }
  EXPECT_EQ(MerkleRoot(builder.leaves()), cid.root);
  EXPECT_EQ(MerkleTree(builder.leaves()).Root(), cid.root);
}

TEST(CidTest, LeafAndNodeHashesAreDomainSeparated) {
  Digest a = Sha256::Hash(AsBytes("a"));
  Digest b = Sha256::Hash(AsBytes("b"));
  Bytes concat(a.begin(), a.end());
  concat.insert(concat.end(), b.begin(), b.end());
  EXPECT_NE(LeafHash(concat), NodeHash(a, b));
  EXPECT_NE(NodeHash(a, b), NodeHash(b, a));
}

std::vector<Digest> TestLeaves(uint64_t n) {
  std::vector<Digest> leaves;
  for (uint64_t i = 0; i < n; ++i) leaves.push_back(LeafHash(AsBytes(std::to_string(i))));
  return leaves;
}

// RFC 6962 MTH, written out recursively as the specification states it.
Digest ReferenceRoot(const std::vector<Digest>& leaves, size_t begin, size_t end) {
  if (end - begin == 1) return leaves[begin];
  size_t k = 1;
  while (2 * k < end - begin) k *= 2;
  return NodeHash(ReferenceRoot(leaves, begin, begin + k), ReferenceRoot(leaves, begin + k, end));
}

TEST(MerkleTest, RootMatchesRecursiveDefinition) {
  for (uint64_t n = 1; n <= 70; ++n) {
    std::vector<Digest> leaves = TestLeaves(n);
    Digest expected = ReferenceRoot(leaves, 0, n);
    EXPECT_EQ(MerkleRoot(leaves), expected) << n;
    MerkleTree tree(leaves);
    EXPECT_EQ(tree.Root(), expected) << n;
    EXPECT_EQ(tree.LeafCount(), n);
  }
}

// Expected audit path length: the depth of leaf `index` in the RFC 6962 tree of n leaves.
size_t PathLength(uint64_t index, uint64_t n) {
  size_t len = 0;
  while (n > 1) {
    uint64_t k = 1;
    while (2 * k < n) k *= 2;
    if (index < k) {
      n = k;
    } else {
      index -= k;
      n -= k;
    }
    ++len;
  }
  return len;
}

TEST(MerkleTest, EveryProofVerifies) {
  for (uint64_t n = 1; n <= 70; ++n) {
    std::vector<Digest> leaves = TestLeaves(n);
    MerkleTree tree(leaves);
    for (uint64_t i = 0; i < n; ++i) {
      std::vector<Digest> proof = tree.Proof(i);
      EXPECT_EQ(proof.size(), PathLength(i, n)) << "n " << n << " index " << i;
      EXPECT_TRUE(VerifyMerkleProof(leaves[i], i, n, proof, tree.Root()))
          << "n " << n << " index " << i;
    }
  }
}

TEST(MerkleTest, TamperedProofsFail) {
  for (uint64_t n = 1; n <= 70; ++n) {
    std::vector<Digest> leaves = TestLeaves(n);
    MerkleTree tree(leaves);
    const Digest& root = tree.Root();
    for (uint64_t i = 0; i < n; ++i) {
      SCOPED_TRACE("n " + std::to_string(n) + " index " + std::to_string(i));
      std::vector<Digest> proof = tree.Proof(i);
      // Wrong index: every other position, and positions past the end.
      for (uint64_t j = 0; j < n + 3; ++j) {
        if (j != i) {
          EXPECT_FALSE(VerifyMerkleProof(leaves[i], j, n, proof, root)) << "j " << j;
        }
      }
      EXPECT_FALSE(VerifyMerkleProof(leaves[i], UINT64_MAX, n, proof, root));
      // Wrong leaf.
      if (n > 1) {
        EXPECT_FALSE(VerifyMerkleProof(leaves[(i + 1) % n], i, n, proof, root));
      }
      // Wrong root.
      EXPECT_FALSE(VerifyMerkleProof(leaves[i], i, n, proof, LeafHash(AsBytes("x"))));
      // A modified sibling, one bit at a time.
      for (size_t s = 0; s < proof.size(); ++s) {
        std::vector<Digest> bad = proof;
        bad[s][s % 32] ^= 0x80;
        EXPECT_FALSE(VerifyMerkleProof(leaves[i], i, n, bad, root)) << "sibling " << s;
      }
      // Too short and too long.
      if (!proof.empty()) {
        std::vector<Digest> shorter(proof.begin(), proof.end() - 1);
        EXPECT_FALSE(VerifyMerkleProof(leaves[i], i, n, shorter, root));
        std::vector<Digest> no_first(proof.begin() + 1, proof.end());
        EXPECT_FALSE(VerifyMerkleProof(leaves[i], i, n, no_first, root));
      }
      std::vector<Digest> longer = proof;
      longer.push_back(root);
      EXPECT_FALSE(VerifyMerkleProof(leaves[i], i, n, longer, root));
      longer = proof;
      longer.insert(longer.begin(), leaves[i]);
      EXPECT_FALSE(VerifyMerkleProof(leaves[i], i, n, longer, root));
    }
  }
}

// A wrong leaf count fails whenever it changes the length of the audit path, and always at the
// last leaf (under either count): there the claimed shape needs a leaf hash where the real tree
// has a node hash, which domain separation rules out. An interior leaf's proof alone does not
// fix the count (RFC 6962 roots do not commit to the size); docs/formats/cid.md explains why a
// download still cannot be fooled.
TEST(MerkleTest, WrongLeafCountFails) {
  for (uint64_t n = 1; n <= 70; ++n) {
    std::vector<Digest> leaves = TestLeaves(n);
    MerkleTree tree(leaves);
    const Digest& root = tree.Root();
    for (uint64_t m = 1; m <= 80; ++m) {
      if (m == n) continue;
      SCOPED_TRACE("n " + std::to_string(n) + " claimed count " + std::to_string(m));
      uint64_t last = std::min(n, m) - 1;
      EXPECT_FALSE(VerifyMerkleProof(leaves[last], last, m, tree.Proof(last), root));
      for (uint64_t i = 0; i < std::min(n, m); ++i) {
        if (PathLength(i, m) != PathLength(i, n)) {
          EXPECT_FALSE(VerifyMerkleProof(leaves[i], i, m, tree.Proof(i), root)) << "index " << i;
        }
      }
    }
  }
}

TEST(MerkleTest, DegenerateInputsFailWithoutCrashing) {
  std::vector<Digest> leaves = TestLeaves(5);
  MerkleTree tree(leaves);
  std::vector<Digest> proof = tree.Proof(2);
  EXPECT_FALSE(VerifyMerkleProof(leaves[2], 2, 0, proof, tree.Root()));
  EXPECT_FALSE(VerifyMerkleProof(leaves[2], 0, 0, {}, tree.Root()));
  EXPECT_FALSE(VerifyMerkleProof(leaves[2], 5, 5, proof, tree.Root()));
  EXPECT_FALSE(VerifyMerkleProof(leaves[2], 2, UINT64_MAX, proof, tree.Root()));
  std::vector<Digest> huge(200, leaves[0]);
  EXPECT_FALSE(VerifyMerkleProof(leaves[2], 2, 5, huge, tree.Root()));
  EXPECT_FALSE(VerifyMerkleProof(leaves[2], 2, 5, {}, tree.Root()));
  // A one-leaf tree: the root is the leaf and the proof is empty.
  EXPECT_TRUE(VerifyMerkleProof(leaves[0], 0, 1, {}, leaves[0]));
  EXPECT_FALSE(VerifyMerkleProof(leaves[0], 0, 1, {leaves[1]}, leaves[0]));
}

TEST(CidTest, ChunkProofsOfARealBlob) {
  Bytes data = Mod251(5 * kMiB + 7);
  CidBuilder builder;
  builder.Update(data);
  Cid cid = builder.Finish();
  MerkleTree tree(builder.leaves());
  ASSERT_EQ(tree.Root(), cid.root);
  uint64_t count = ChunkCount(data.size());
  for (uint64_t i = 0; i < count; ++i) {
    ByteSpan chunk = ByteSpan(data).subspan(i * kMiB, ChunkLength(data.size(), i));
    EXPECT_TRUE(VerifyMerkleProof(LeafHash(chunk), i, count, tree.Proof(i), cid.root)) << i;
    Bytes corrupted(chunk.begin(), chunk.end());
    corrupted[corrupted.size() / 2] ^= 1;
    EXPECT_FALSE(VerifyMerkleProof(LeafHash(corrupted), i, count, tree.Proof(i), cid.root)) << i;
  }
}

TEST(CidTest, ParseAcceptsOnlyTheCanonicalTextForm) {
  Cid cid = ComputeCid(AsBytes("abc"));
  std::string text = cid.ToString();
  Result<Cid> back = Cid::Parse(text);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, cid);

  std::string hex = text.substr(kCidPrefix.size());
  std::string upper = hex;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  ASSERT_NE(upper, hex);
  const std::string bad_inputs[] = {
      "",
      hex,                              // missing prefix
      "sha256:" + hex,                  // wrong prefix
      "SHA256-TREE:" + hex,             // prefix is case-sensitive
      " " + text,                       // leading space
      text + " ",                       // trailing space
      text.substr(0, text.size() - 1),  // 63 digits
      text + "0",                       // 65 digits
      std::string(kCidPrefix),          // no digits
      std::string(kCidPrefix) + upper,  // upper case is rejected: one CID, one text form
      std::string(kCidPrefix) + "g" + hex.substr(1),  // non-hex
      std::string(kCidPrefix) + std::string(64, 'z'),
      std::string(kCidPrefix) + hex.substr(0, 63) + '\0',
  };
  for (const std::string& input : bad_inputs) {
    Result<Cid> parsed = Cid::Parse(input);
    EXPECT_FALSE(parsed.ok()) << "accepted \"" << input << "\"";
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(CidTest, OrderingAndEquality) {
  Cid a = ComputeCid(AsBytes("a"));
  Cid b = ComputeCid(AsBytes("b"));
  EXPECT_NE(a, b);
  EXPECT_EQ(a, ComputeCid(AsBytes("a")));
  EXPECT_TRUE(a < b || b < a);
}

class TempDir {
 public:
  TempDir() {
    std::string templ = ::testing::TempDir() + "cid_test_XXXXXX";
    path_ = ::mkdtemp(templ.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

TEST(CidTest, FileCidEqualsMemoryCid) {
  TempDir dir;
  for (const CidVector& v : Vectors()) {
    SCOPED_TRACE(v.name);
    std::string path = dir.File("blob");
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out.write(reinterpret_cast<const char*>(v.data.data()),
                static_cast<std::streamsize>(v.data.size()));
    }
    Result<Cid> cid = ComputeFileCid(path);
    ASSERT_TRUE(cid.ok()) << cid.status().ToString();
    EXPECT_EQ(cid->ToString(), v.cid);
  }
}

TEST(CidTest, FileCidErrorsNameThePath) {
  TempDir dir;
  Result<Cid> missing = ComputeFileCid(dir.File("missing"));
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find(dir.File("missing")), std::string::npos);
  Result<Cid> directory = ComputeFileCid(dir.File(""));
  EXPECT_FALSE(directory.ok());
}

}  // namespace
}  // namespace trustmoe::crypto
