// PBFT messages: canonical encodings, signing and verification (docs/consensus.md, "Messages").
//
// Every message travels as an Envelope:
//   wire    = "trustmoe/pbft/envelope/v1" u8 type, bytes body, bytes signature, bytes payload
//   body    = domain tag of the type, u32 sender, the fields of the type (below)
// The sender signs `body` with its Ed25519 key. `payload` is not signed: it carries blocks whose
// digests the signed body fixes (the block of a pre-prepare, the blocks of a view change or a
// new-view), so that envelopes can be embedded in certificates without their blocks.
// Envelopes embedded in a body are always in stripped form (empty payload).
//
// Decoding never trusts lengths: every blob and count is bounded by the Limits passed in.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "chain/pbft/config.h"
#include "common/bytes.h"
#include "common/status.h"
#include "crypto/ed25519.h"
#include "crypto/sha256.h"

namespace trustmoe::pbft {

using crypto::Digest;
using crypto::Signature;
using TxId = crypto::Digest;

// SHA-256 of a transaction's canonical bytes.
TxId ComputeTxId(ByteSpan tx);

// Digest agreed on for the null block that a new primary puts into a gap at `seq`:
// SHA-256 of "trustmoe/pbft/null-block/v1" u64 seq. Its block bytes are empty.
Digest NullBlockDigest(uint64_t seq);

enum class MsgType : uint8_t {
  kPrePrepare = 1,
  kPrepare = 2,
  kCommit = 3,
  kCheckpoint = 4,
  kViewChange = 5,
  kNewView = 6,
  kStatus = 7,
  kRequest = 8,
  kFetchBlocks = 9,
  kBlocks = 10,
};
inline constexpr uint8_t kMsgTypeMax = 10;

std::string_view MsgTypeName(MsgType type);
// Domain tag of the signed body of `type`, e.g. "trustmoe/pbft/prepare/v1".
std::string_view BodyDomain(MsgType type);

struct Envelope {
  MsgType type = MsgType::kStatus;
  uint32_t sender = 0;
  Bytes body;
  Signature signature{};
  Bytes payload;

  // Wire encoding, with the payload.
  Bytes Encode() const;
  // Wire encoding without the payload (as embedded in certificates).
  Bytes EncodeStripped() const;
  Envelope Stripped() const;
};

// Bounds for decoding untrusted bytes, from the Config.
struct Limits {
  uint32_t n = 0;
  uint64_t message_bytes_max = 0;
  uint64_t block_bytes_max = 0;  // Config::BlockBytesMax()
  uint64_t window = 0;           // watermark window L
  uint32_t fetch_blocks_max = 0;
  uint32_t request_txs_max = 0;
  uint32_t tx_bytes_max = 0;
  static Limits Of(const Config& config);
};

// Decodes an envelope and the domain and sender of its body. InvalidArgument on anything
// malformed (unknown type, bad lengths, trailing bytes, wrong domain). Does not verify the
// signature or that the sender is a validator.
Result<Envelope> DecodeEnvelope(ByteSpan wire, const Limits& limits);

// Signs `body` (which must start with BodyDomain(type) and `sender`).
Envelope SignEnvelope(MsgType type, uint32_t sender, Bytes body, const crypto::PrivateKey& key,
                      Bytes payload = {});

// True when envelope.sender is a validator and the signature over the body verifies.
bool VerifyEnvelope(const Config& config, const Envelope& envelope);

// ---- Message bodies. Each has Body(sender) (the canonical signed encoding) and Parse. ----

// pre-prepare: u64 view, u64 seq, digest. Payload: the block (empty for a null block).
struct PrePrepare {
  uint64_t view = 0;
  uint64_t seq = 0;
  Digest digest{};
  Bytes Body(uint32_t sender) const;
  static Result<PrePrepare> Parse(const Envelope& e);
};

// prepare and commit: u64 view, u64 seq, digest.
struct Prepare {
  uint64_t view = 0;
  uint64_t seq = 0;
  Digest digest{};
  Bytes Body(uint32_t sender) const;
  static Result<Prepare> Parse(const Envelope& e);
};

struct Commit {
  uint64_t view = 0;
  uint64_t seq = 0;
  Digest digest{};
  Bytes Body(uint32_t sender) const;
  static Result<Commit> Parse(const Envelope& e);
};

// checkpoint: u64 seq, digest of the block at seq, digest of the application state after it.
struct Checkpoint {
  uint64_t seq = 0;
  Digest block_digest{};
  Digest state_digest{};
  Bytes Body(uint32_t sender) const;
  static Result<Checkpoint> Parse(const Envelope& e);
  bool operator==(const Checkpoint&) const = default;
};

// A pre-prepare (stripped) and quorum - 1 prepares from distinct backups of its view.
struct PreparedCert {
  Envelope pre_prepare;
  std::vector<Envelope> prepares;
};

// A block attached in a payload: u64 seq, bytes block.
struct AttachedBlock {
  uint64_t seq = 0;
  Bytes block;
};
Bytes EncodeAttachedBlocks(const std::vector<AttachedBlock>& blocks);
Result<std::vector<AttachedBlock>> DecodeAttachedBlocks(ByteSpan payload, const Limits& limits);

// view-change: u64 new_view, stable checkpoint (u64 seq, digest, digest), u32 count + bytes
// checkpoint envelopes (the proof; empty for seq 0), u32 count + prepared certificates (bytes
// pre-prepare envelope, u32 count + bytes prepare envelopes).
// Payload: attached blocks of the prepared certificates above the sender's executed height.
struct ViewChange {
  uint64_t new_view = 0;
  Checkpoint stable;
  std::vector<Envelope> checkpoint_proof;
  std::vector<PreparedCert> prepared;
  Bytes Body(uint32_t sender) const;
  static Result<ViewChange> Parse(const Envelope& e, const Limits& limits);
};

// new-view: u64 view, u32 count + bytes view-change envelopes (stripped), u32 count + bytes
// pre-prepare envelopes (stripped) for the sequence numbers (min-s, max-s].
// Payload: attached blocks of the non-null pre-prepares.
struct NewView {
  uint64_t view = 0;
  std::vector<Envelope> view_changes;
  std::vector<Envelope> pre_prepares;
  Bytes Body(uint32_t sender) const;
  static Result<NewView> Parse(const Envelope& e, const Limits& limits);
};

// status: u64 view, bool view_active, u64 last_executed, u64 stable_seq.
struct StatusMsg {
  uint64_t view = 0;
  bool view_active = true;
  uint64_t last_executed = 0;
  uint64_t stable_seq = 0;
  Bytes Body(uint32_t sender) const;
  static Result<StatusMsg> Parse(const Envelope& e);
};

// request (transactions relayed to the primary): u32 count + bytes tx.
struct Request {
  std::vector<Bytes> txs;
  Bytes Body(uint32_t sender) const;
  static Result<Request> Parse(const Envelope& e, const Limits& limits);
};

// fetch-blocks: u64 from_seq, u32 count_max.
struct FetchBlocks {
  uint64_t from_seq = 0;
  uint32_t count_max = 0;
  Bytes Body(uint32_t sender) const;
  static Result<FetchBlocks> Parse(const Envelope& e);
};

// Commit certificate of a block: quorum signatures of distinct validators over their commit
// bodies for (view, seq, digest). Encoding "trustmoe/pbft/commit-certificate/v1": u64 view,
// u64 seq, digest, u32 count, then per signature u32 validator and bytes signature (64).
struct CommitCertificate {
  uint64_t view = 0;
  uint64_t seq = 0;
  Digest digest{};
  std::vector<std::pair<uint32_t, Signature>> signatures;  // ascending validator ids
  Bytes Encode() const;
  static Result<CommitCertificate> Decode(ByteSpan bytes, uint32_t n);
  bool operator==(const CommitCertificate&) const = default;
};

// OK when `cert` holds at least config.quorum() valid signatures of distinct validators;
// Unauthenticated otherwise, saying why. Usable offline by anyone holding the validator keys.
Status VerifyCommitCertificate(const Config& config, const CommitCertificate& cert);

// blocks (state transfer answer): stable checkpoint (u64 seq, digest, digest), u32 count +
// bytes checkpoint envelopes (its proof), u32 count + entries (u64 seq, bytes block, bytes
// commit certificate).
struct BlockEntry {
  uint64_t seq = 0;
  Bytes block;
  CommitCertificate cert;
};
struct Blocks {
  Checkpoint stable;
  std::vector<Envelope> checkpoint_proof;
  std::vector<BlockEntry> entries;
  Bytes Body(uint32_t sender) const;
  static Result<Blocks> Parse(const Envelope& e, const Limits& limits);
};

}  // namespace trustmoe::pbft
