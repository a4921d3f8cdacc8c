// Content identifiers (docs/formats/cid.md).
//
// A blob is cut into fixed chunks of kChunkBytes (the last one may be shorter; an empty blob is
// one empty chunk). The CID is the root of a binary Merkle tree over the chunks, shaped as in
// RFC 6962 (split at the largest power of two below n), with domain-separated hashes:
//   leaf = SHA-256(0x00 || chunk)        node = SHA-256(0x01 || left || right)
// Text form: "sha256-tree:" followed by 64 lower-case hex digits.
// Any chunk is verified alone with its index, the chunk count and an audit path.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "common/status.h"
#include "crypto/sha256.h"

namespace trustmoe::crypto {

inline constexpr uint64_t kChunkBytes = 1 << 20;
inline constexpr std::string_view kCidPrefix = "sha256-tree:";

struct Cid {
  Digest root{};

  std::string ToString() const;
  // Parses the text form; InvalidArgument with what is wrong otherwise.
  static Result<Cid> Parse(std::string_view text);
  bool operator==(const Cid&) const = default;
  auto operator<=>(const Cid&) const = default;
};

// Number of chunks of a blob of `size` bytes: max(1, ceil(size / kChunkBytes)).
uint64_t ChunkCount(uint64_t size);
// Length of chunk `index` of a blob of `size` bytes (index < ChunkCount(size)).
uint64_t ChunkLength(uint64_t size, uint64_t index);

Digest LeafHash(ByteSpan chunk);
Digest NodeHash(const Digest& left, const Digest& right);

// Merkle tree over leaf hashes; keeps every level so that Root() is O(1) and Proof() is
// O(log n) after an O(n) build. Requires at least one leaf.
class MerkleTree {
 public:
  explicit MerkleTree(std::vector<Digest> leaves);

  const Digest& Root() const { return root_; }
  uint64_t LeafCount() const { return leaf_count_; }
  // Audit path of leaf `index`, bottom-up (sibling hashes as in RFC 6962 PATH).
  std::vector<Digest> Proof(uint64_t index) const;

 private:
  Digest Subtree(uint64_t begin, uint64_t end) const;
  void Path(uint64_t index, uint64_t begin, uint64_t end, std::vector<Digest>* out) const;

  uint64_t leaf_count_;
  // levels_[0] are the leaves; levels_[k][i] is the RFC 6962 hash of leaves
  // [i * 2^k, min((i + 1) * 2^k, leaf_count_)): a level of odd size promotes its last node
  // unchanged, which yields exactly the RFC 6962 shape. Every subtree that PATH visits is one of
  // these nodes, so Subtree() is O(1) and Proof() is O(log n).
  std::vector<std::vector<Digest>> levels_;
  Digest root_{};
};

// Root of the tree over `leaves` (at least one).
Digest MerkleRoot(const std::vector<Digest>& leaves);

// True when the leaf hash `leaf` at `index` of a tree of `leaf_count` leaves leads through
// `proof` to `root` (RFC 9162 section 2.1.3.2). False, never a crash, for index >= leaf_count,
// leaf_count == 0, or a proof that is too short or too long for (index, leaf_count).
bool VerifyMerkleProof(const Digest& leaf, uint64_t index, uint64_t leaf_count,
                       const std::vector<Digest>& proof, const Digest& root);

// Computes a CID over bytes fed in pieces of any size.
class CidBuilder {
 public:
  void Update(ByteSpan data);
  // The CID of everything fed so far; the builder must not be used afterwards.
  Cid Finish();
  uint64_t size() const { return size_; }
  // Leaf hashes of the complete chunks so far (all of them after Finish()).
  const std::vector<Digest>& leaves() const { return leaves_; }

 private:
  Sha256 chunk_hash_;
  uint64_t chunk_fill_ = 0;
  uint64_t size_ = 0;
  bool chunk_started_ = false;
  std::vector<Digest> leaves_;
};

Cid ComputeCid(ByteSpan data);
// The same CID, the chunks hashed on up to `threads` threads (for large in-memory blobs on a
// latency path, such as an edge's activations).
Cid ComputeCidParallel(ByteSpan data, unsigned threads);
// CID of a file's contents, read in kChunkBytes buffers. NotFound / PermissionDenied / Internal
// naming the path when it cannot be read.
Result<Cid> ComputeFileCid(const std::string& path);

}  // namespace trustmoe::crypto
