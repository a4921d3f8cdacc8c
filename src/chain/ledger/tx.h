// Ledger transactions (docs/formats/tx.md): a signed envelope around a typed body.
//
//   tx        = canonical("trustmoe/tx/v1", u8 type, bytes signer (32), u64 nonce,
//                         bytes body, bytes signature (64))
//   signed    = canonical("trustmoe/tx/sign/v1", str chain_id, u8 type, bytes signer,
//                         u64 nonce, bytes body)
// The chain id inside the signed bytes keeps a transaction of one chain from being replayed on
// another. The tx id is SHA-256 of the tx bytes (pbft::ComputeTxId). A (signer, nonce) pair is
// used at most once: the ledger records used nonces, so a replay is rejected even if a client
// re-signs the same body. Nonces need not be consecutive (clients may submit concurrently);
// the CLI uses the current time in nanoseconds.
//
// Bodies are canonical encodings with their own domain tags, defined below. New transaction
// types (verification verdicts, expert lineage, jobs) register a TxHandler (state.h) for their
// type number; an unknown type is rejected with a reason and never recorded.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "chain/pbft/messages.h"
#include "common/bytes.h"
#include "common/status.h"
#include "crypto/canonical.h"
#include "crypto/ed25519.h"

namespace trustmoe::ledger {

inline constexpr std::string_view kTxDomain = "trustmoe/tx/v1";
inline constexpr std::string_view kTxSignDomain = "trustmoe/tx/sign/v1";

// Type numbers are part of the format: never reuse one.
enum class TxType : uint8_t {
  kRegisterNode = 1,
  kPublishExpert = 2,
  kPublishModel = 3,
  // Reserved for the verification and job transactions.
  kExpertResult = 16,
  kVote = 17,
  kExpertUpdated = 18,
  kJobRecord = 19,
  kLiftBlacklist = 20,
  kReportCommitment = 21,
};
std::string_view TxTypeName(uint8_t type);  // "register-node", ..., "unknown"

// Bounds of strings and bodies inside transactions.
inline constexpr uint32_t kNameBytesMax = 128;
inline constexpr uint32_t kEndpointBytesMax = 256;
inline constexpr uint32_t kCidBytesMax = 128;

struct Tx {
  uint8_t type = 0;
  crypto::PublicKey signer;
  uint64_t nonce = 0;
  Bytes body;
  crypto::Signature signature{};

  Bytes Encode() const;
  // Structure only (no signature check). InvalidArgument on malformed bytes or a body over
  // `tx_bytes_max`.
  static Result<Tx> Decode(ByteSpan bytes, uint32_t tx_bytes_max);
  Bytes SignedBytes(std::string_view chain_id) const;
  // Unauthenticated when the signature does not verify for `chain_id`.
  Status VerifySignature(std::string_view chain_id) const;
  pbft::TxId Id() const { return pbft::ComputeTxId(Encode()); }
};

// Reads a 32-byte Ed25519 public key written as bytes (the encoding of every key in
// transactions and state records).
Result<crypto::PublicKey> ReadPublicKey(crypto::CanonicalReader* r);

// Builds and signs a transaction.
Tx MakeTx(std::string_view chain_id, TxType type, const crypto::PrivateKey& signer,
          uint64_t nonce, Bytes body);

// A nonce for a new transaction: the current time in nanoseconds, strictly increasing within
// the process.
uint64_t FreshNonce();

// ---- Bodies of this module's transaction types. ----

enum class NodeRole : uint8_t {
  kEdge = 1,        // runs experts
  kGate = 2,        // runs jobs, publishes models
  kResearcher = 3,  // publishes experts and models, submits jobs
  kValidator = 4,   // registered at genesis
  kAuditor = 5,     // read-only, recorded for accountability
};
std::string_view NodeRoleName(NodeRole role);  // "edge", "gate", ...
Result<NodeRole> ParseNodeRole(std::string_view name);

// RegisterNode, signed by the genesis admin key. Registering a key again replaces its role,
// name and endpoint (and keeps its reputation).
// canonical("trustmoe/tx/register-node/v1", bytes key, u8 role, str name, str endpoint)
struct RegisterNode {
  crypto::PublicKey key;
  NodeRole role = NodeRole::kEdge;
  std::string name;
  std::string endpoint;  // host:port of its service; may be empty for clients
  Bytes Encode() const;
  static Result<RegisterNode> Decode(ByteSpan body);
};

// PublishExpert, signed by a registered researcher or gate (or the admin).
// canonical("trustmoe/tx/publish-expert/v1", str cid, str name, str arch, u64 size)
struct PublishExpert {
  std::string cid;   // sha256-tree:<hex> of the expert file in the store
  std::string name;  // e.g. "fmnist-moe/expert-3"
  std::string arch;  // e.g. "swiglu"
  uint64_t size = 0;
  Bytes Encode() const;
  static Result<PublishExpert> Decode(ByteSpan body);
};

// PublishModel, signed like PublishExpert.
// canonical("trustmoe/tx/publish-model/v1", str manifest_cid, str name)
struct PublishModel {
  std::string manifest_cid;
  std::string name;
  Bytes Encode() const;
  static Result<PublishModel> Decode(ByteSpan body);
};

// InvalidArgument unless `cid` looks like "sha256-tree:" and 64 lowercase hex digits.
Status CheckCidSyntax(std::string_view cid);

}  // namespace trustmoe::ledger
