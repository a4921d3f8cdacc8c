// The ledger's replicated state and the execution of transactions on it (docs/ledger-state.md).
//
// State is a sorted key-value map stored in the ledger's RocksDB under "s/". Keys:
//   node/<key hex>               NodeRecord         registry: role, name, endpoint
//   rep/<key hex>                Reputation         accepted results, strikes, blacklist
//   nonce/<key hex>/<u64 hex>    (empty)            used (signer, nonce) pairs
//   expert/<cid>                 ExpertRecord
//   model/<cid>                  ModelRecord
// Later transaction types add their own prefixes (docs/ledger-state.md lists them).
//
// State root. After executing block h the state root is
//   root_h = SHA-256(canonical("trustmoe/ledger/state-root/v1", root_{h-1}, u64 h, u32 count,
//                              per written key in key order: str key, bool present, bytes value))
// and root_0 is the same over the genesis writes with root_{-1} = the genesis digest. A null
// block leaves the root unchanged. It commits to the whole history of writes, so two replicas
// with equal roots hold equal state; an auditor recomputes it by replaying the chain.
//
// Execution is deterministic: a handler sees only the state, the transaction and the block
// context (height, time, proposer), never a clock or the network.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <set>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "chain/ledger/genesis.h"
#include "chain/ledger/tx.h"
#include "common/bytes.h"
#include "common/status.h"
#include "crypto/sha256.h"

namespace trustmoe::ledger {

inline constexpr std::string_view kStateRootDomain = "trustmoe/ledger/state-root/v1";

std::string NodeKey(const crypto::PublicKey& key);
std::string ReputationKey(const crypto::PublicKey& key);
std::string NonceKey(const crypto::PublicKey& key, uint64_t nonce);
std::string ExpertKey(std::string_view cid);
std::string ModelKey(std::string_view cid);

// canonical("trustmoe/state/node/v1", bytes key, u8 role, str name, str endpoint,
//           u64 registered_height)
struct NodeRecord {
  crypto::PublicKey key;
  NodeRole role = NodeRole::kEdge;
  std::string name;
  std::string endpoint;
  uint64_t registered_height = 0;  // 0: genesis
  Bytes Encode() const;
  static Result<NodeRecord> Decode(ByteSpan bytes);
};

// canonical("trustmoe/state/reputation/v1", u64 accepted, u64 rejected, u32 strikes,
//           u32 faults, u64 contradictions, bool blacklisted, u64 blacklisted_height,
//           str blacklist_reason)
// Edges: verdicts on their results. Validators: votes that contradicted a final verdict.
struct Reputation {
  uint64_t accepted = 0;        // results ACCEPTED
  uint64_t rejected = 0;        // results REJECTED, any reason
  uint32_t strikes = 0;         // availability rejections since the last lift
  uint32_t faults = 0;          // integrity rejections since the last lift
  uint64_t contradictions = 0;  // a validator's votes against the final verdict
  bool blacklisted = false;
  uint64_t blacklisted_height = 0;
  std::string blacklist_reason;  // the verdict that blacklisted it
  Bytes Encode() const;
  static Result<Reputation> Decode(ByteSpan bytes);
};

// canonical("trustmoe/state/expert/v1", str cid, str name, str arch, u64 size,
//           bytes publisher, u64 height)
struct ExpertRecord {
  std::string cid;
  std::string name;
  std::string arch;
  uint64_t size = 0;
  crypto::PublicKey publisher;
  uint64_t height = 0;
  Bytes Encode() const;
  static Result<ExpertRecord> Decode(ByteSpan bytes);
};

// canonical("trustmoe/state/model/v1", str manifest_cid, str name, bytes publisher, u64 height)
struct ModelRecord {
  std::string manifest_cid;
  std::string name;
  crypto::PublicKey publisher;
  uint64_t height = 0;
  Bytes Encode() const;
  static Result<ModelRecord> Decode(ByteSpan bytes);
};

// Read access to committed state.
class StateReader {
 public:
  virtual ~StateReader() = default;
  // nullopt when absent; Internal on a storage error.
  virtual Result<std::optional<Bytes>> Get(const std::string& key) const = 0;
  // Keys with `prefix`, in key order, after `start_after` (exclusive; "" = from the start), at
  // most `limit`.
  virtual Result<std::vector<std::pair<std::string, Bytes>>> Scan(const std::string& prefix,
                                                                  const std::string& start_after,
                                                                  size_t limit) const = 0;
};

// Pending writes of a block (or of one transaction) over a reader. Nested overlays let a
// transaction's writes be dropped when it fails.
class StateOverlay {
 public:
  explicit StateOverlay(const StateReader* base) : base_(base) {}
  explicit StateOverlay(StateOverlay* parent) : parent_(parent) {}

  Result<std::optional<Bytes>> Get(const std::string& key) const;
  void Put(const std::string& key, Bytes value) { writes_[key] = std::move(value); }
  void Erase(const std::string& key) { writes_[key] = std::nullopt; }
  // Moves this overlay's writes into its parent.
  void MergeIntoParent();

  // Typed helpers. Decode errors are DataLoss (the stored state is corrupt).
  Result<std::optional<NodeRecord>> GetNode(const crypto::PublicKey& key) const;
  Result<Reputation> GetReputation(const crypto::PublicKey& key) const;  // default when absent

  const std::map<std::string, std::optional<Bytes>>& writes() const { return writes_; }

 private:
  const StateReader* base_ = nullptr;
  StateOverlay* parent_ = nullptr;
  std::map<std::string, std::optional<Bytes>> writes_;
};

Digest ComputeStateRoot(const Digest& prev_root, uint64_t height,
                        const std::map<std::string, std::optional<Bytes>>& writes);

// Where a transaction executes.
struct TxContext {
  const Genesis* genesis = nullptr;
  uint64_t height = 0;
  int64_t time_unix_ms = 0;
  uint32_t proposer = 0;
};

// Executes one type of transaction. The signature, nonce and signer's blacklist status are
// checked before the handler runs; the handler checks authorization and the body, and writes
// its effects. A non-OK status rejects the transaction (its writes are dropped) with that
// reason; it must be deterministic.
class TxHandler {
 public:
  virtual ~TxHandler() = default;
  virtual std::string_view name() const = 0;
  virtual Status Execute(const TxContext& ctx, const Tx& tx, StateOverlay* state) const = 0;
};

// The transaction types known to a validator. Default(): this module's types; later modules
// add theirs with Register before the validator starts.
class TxRegistry {
 public:
  static TxRegistry Default();
  void Register(uint8_t type, std::shared_ptr<const TxHandler> handler);
  const TxHandler* Find(uint8_t type) const;

 private:
  std::map<uint8_t, std::shared_ptr<const TxHandler>> handlers_;
};

// Ids of transactions whose signature verified. The id hashes the whole transaction, signature
// included, so a hit means these exact bytes verified before. Bounded (oldest entries are
// forgotten); thread-safe.
class SignatureCache {
 public:
  explicit SignatureCache(size_t capacity = 1 << 17) : capacity_(capacity) {}
  bool Contains(const pbft::TxId& id) const;
  void Insert(const pbft::TxId& id);

 private:
  mutable std::mutex mu_;
  size_t capacity_;
  std::set<pbft::TxId> set_;
  std::deque<pbft::TxId> order_;
};

// Checks and executes one encoded transaction into `state` (a child overlay is used, so
// `state` is untouched on failure): decode, chain-id signature, known type, unused nonce,
// signer not blacklisted, then the handler. Marks the nonce used. With a cache, a signature
// is verified once per transaction (pool admission, proposal, validation and execution all
// execute the same bytes).
Status ExecuteTx(const TxContext& ctx, const TxRegistry& registry, ByteSpan tx_bytes,
                 StateOverlay* state, SignatureCache* cache = nullptr);

// The writes that create the genesis state: every validator registered with role validator.
std::map<std::string, std::optional<Bytes>> GenesisWrites(const Genesis& genesis);

}  // namespace trustmoe::ledger
