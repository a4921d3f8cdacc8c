#include "crypto/cid.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>

#include "common/check.h"

namespace trustmoe::crypto {

namespace {

constexpr uint8_t kLeafPrefix = 0x00;
constexpr uint8_t kNodePrefix = 0x01;

// Largest power of two strictly below n (n >= 2): the RFC 6962 split point.
uint64_t SplitPoint(uint64_t n) {
  TRUSTMOE_CHECK(n >= 2);
  return std::bit_floor(n - 1);
}

// One level up: pairs are hashed, an odd last node is promoted unchanged.
std::vector<Digest> NextLevel(const std::vector<Digest>& level) {
  std::vector<Digest> up;
  up.reserve((level.size() + 1) / 2);
  for (size_t i = 0; i + 1 < level.size(); i += 2) up.push_back(NodeHash(level[i], level[i + 1]));
  if (level.size() % 2 == 1) up.push_back(level.back());
  return up;
}

bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

Status ErrnoStatus(int err, const std::string& what, const std::string& path) {
  std::string msg = what + " " + path + ": " + std::strerror(err);
  if (err == ENOENT || err == ENOTDIR) return Status::NotFound(std::move(msg));
  if (err == EACCES || err == EPERM) return Status::PermissionDenied(std::move(msg));
  return Status::Internal(std::move(msg));
}

}  // namespace

std::string Cid::ToString() const {
  std::string out(kCidPrefix);
  out += DigestHex(root);
  return out;
}

Result<Cid> Cid::Parse(std::string_view text) {
  if (!text.starts_with(kCidPrefix)) {
    return Status::InvalidArgument("CID must start with \"" + std::string(kCidPrefix) + "\"");
  }
  std::string_view hex = text.substr(kCidPrefix.size());
  if (hex.size() != 64) {
    return Status::InvalidArgument("CID must have 64 hex digits after \"" +
                                   std::string(kCidPrefix) + "\", got " +
                                   std::to_string(hex.size()) + " characters");
  }
  // Only lower case is accepted, so that one CID has exactly one text form (map keys, file
  // names and string comparisons stay consistent).
  for (size_t i = 0; i < hex.size(); ++i) {
    if (!IsLowerHex(hex[i])) {
      return Status::InvalidArgument(
          "CID has a character that is not a lower-case hex digit at "
          "position " +
          std::to_string(kCidPrefix.size() + i));
    }
  }
  TRUSTMOE_ASSIGN_OR_RETURN(Digest root, DigestFromHex(hex));
  return Cid{root};
}

uint64_t ChunkCount(uint64_t size) {
  if (size == 0) return 1;
  return size / kChunkBytes + (size % kChunkBytes != 0 ? 1 : 0);
}

uint64_t ChunkLength(uint64_t size, uint64_t index) {
  TRUSTMOE_CHECK(index < ChunkCount(size));
  uint64_t begin = index * kChunkBytes;
  return std::min(kChunkBytes, size - begin);
}

Digest LeafHash(ByteSpan chunk) {
  Sha256 h;
  h.Update(ByteSpan(&kLeafPrefix, 1));
  h.Update(chunk);
  return h.Final();
}

Digest NodeHash(const Digest& left, const Digest& right) {
  std::array<uint8_t, 1 + 2 * 32> buf;
  buf[0] = kNodePrefix;
  std::copy(left.begin(), left.end(), buf.begin() + 1);
  std::copy(right.begin(), right.end(), buf.begin() + 1 + 32);
  return Sha256::Hash(buf);
}

MerkleTree::MerkleTree(std::vector<Digest> leaves) : leaf_count_(leaves.size()) {
  TRUSTMOE_CHECK(!leaves.empty());
  levels_.push_back(std::move(leaves));
  while (levels_.back().size() > 1) levels_.push_back(NextLevel(levels_.back()));
  root_ = levels_.back()[0];
  TRUSTMOE_CHECK(root_ == Subtree(0, leaf_count_));
}

Digest MerkleTree::Subtree(uint64_t begin, uint64_t end) const {
  TRUSTMOE_CHECK(begin < end && end <= leaf_count_);
  uint64_t n = end - begin;
  // The node at level k covers 2^k leaves, or fewer at the right edge of the tree.
  unsigned level = static_cast<unsigned>(std::bit_width(n - 1));
  TRUSTMOE_CHECK(level < levels_.size());
  uint64_t span = uint64_t{1} << level;
  TRUSTMOE_CHECK(begin % span == 0);
  TRUSTMOE_CHECK(end == std::min(begin + span, leaf_count_));
  return levels_[level][begin >> level];
}

void MerkleTree::Path(uint64_t index, uint64_t begin, uint64_t end,
                      std::vector<Digest>* out) const {
  // RFC 6962 section 2.1.1: PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) for m < k, and
  // PATH(m - k, D[k:n]) : MTH(D[0:k]) otherwise.
  if (end - begin == 1) return;
  uint64_t mid = begin + SplitPoint(end - begin);
  if (index < mid) {
    Path(index, begin, mid, out);
    out->push_back(Subtree(mid, end));
  } else {
    Path(index, mid, end, out);
    out->push_back(Subtree(begin, mid));
  }
}

std::vector<Digest> MerkleTree::Proof(uint64_t index) const {
  TRUSTMOE_CHECK(index < leaf_count_);
  std::vector<Digest> out;
  out.reserve(levels_.size());
  Path(index, 0, leaf_count_, &out);
  return out;
}

Digest MerkleRoot(const std::vector<Digest>& leaves) {
  TRUSTMOE_CHECK(!leaves.empty());
  if (leaves.size() == 1) return leaves[0];
  std::vector<Digest> level = NextLevel(leaves);
  while (level.size() > 1) level = NextLevel(level);
  return level[0];
}

bool VerifyMerkleProof(const Digest& leaf, uint64_t index, uint64_t leaf_count,
                       const std::vector<Digest>& proof, const Digest& root) {
  // RFC 9162 section 2.1.3.2.
  if (index >= leaf_count) return false;
  uint64_t fn = index;
  uint64_t sn = leaf_count - 1;
  Digest r = leaf;
  for (const Digest& p : proof) {
    if (sn == 0) return false;  // proof too long
    if ((fn & 1) == 1 || fn == sn) {
      r = NodeHash(p, r);
      if ((fn & 1) == 0) {
        // fn is the last node of its level and was promoted: skip the levels where it has no
        // sibling.
        while ((fn & 1) == 0 && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      r = NodeHash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) return false;  // proof too short
  return r == root;
}

void CidBuilder::Update(ByteSpan data) {
  while (!data.empty()) {
    if (!chunk_started_) {
      chunk_hash_.Update(ByteSpan(&kLeafPrefix, 1));
      chunk_started_ = true;
    }
    uint64_t take = std::min<uint64_t>(kChunkBytes - chunk_fill_, data.size());
    chunk_hash_.Update(data.first(take));
    data = data.subspan(take);
    chunk_fill_ += take;
    size_ += take;
    if (chunk_fill_ == kChunkBytes) {
      leaves_.push_back(chunk_hash_.Final());
      chunk_fill_ = 0;
      chunk_started_ = false;
    }
  }
}

Cid CidBuilder::Finish() {
  if (chunk_started_) {
    leaves_.push_back(chunk_hash_.Final());
    chunk_fill_ = 0;
    chunk_started_ = false;
  }
  if (leaves_.empty()) leaves_.push_back(LeafHash({}));  // the empty blob is one empty chunk
  TRUSTMOE_CHECK(leaves_.size() == ChunkCount(size_));
  return Cid{MerkleRoot(leaves_)};
}

Cid ComputeCid(ByteSpan data) {
  uint64_t count = ChunkCount(data.size());
  std::vector<Digest> leaves;
  leaves.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    leaves.push_back(LeafHash(data.subspan(i * kChunkBytes, ChunkLength(data.size(), i))));
  }
  return Cid{MerkleRoot(leaves)};
}

Cid ComputeCidParallel(ByteSpan data, unsigned threads) {
  const uint64_t count = ChunkCount(data.size());
  if (threads <= 1 || count <= 1) return ComputeCid(data);
  std::vector<Digest> leaves(count);
  const uint64_t workers = std::min<uint64_t>(threads, count);
  std::vector<std::thread> pool;
  pool.reserve(workers - 1);
  auto hash_share = [&](uint64_t w) {
    for (uint64_t i = w; i < count; i += workers) {
      leaves[i] = LeafHash(data.subspan(i * kChunkBytes, ChunkLength(data.size(), i)));
    }
  };
  for (uint64_t w = 1; w < workers; ++w) pool.emplace_back(hash_share, w);
  hash_share(0);
  for (std::thread& t : pool) t.join();
  return Cid{MerkleRoot(leaves)};
}

Result<Cid> ComputeFileCid(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "cannot open", path);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus(err, "cannot stat", path);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::InvalidArgument("not a regular file: " + path);
  }
  CidBuilder builder;
  std::vector<uint8_t> buf(kChunkBytes);
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return ErrnoStatus(err, "cannot read", path);
    }
    if (n == 0) break;
    builder.Update(ByteSpan(buf.data(), static_cast<size_t>(n)));
  }
  ::close(fd);
  return builder.Finish();
}

}  // namespace trustmoe::crypto
