// The ledger's block store on RocksDB: committed blocks with their commit certificates, the
// transaction index and the head (docs/formats/block.md, "Storage").
//
// Keys (heights are u64 big-endian so that keys sort by height):
//   "b" height  -> block bytes (Block::Encode; empty for a null block)
//   "c" height  -> CommitCertificate::Encode
//   "t" tx id   -> canonical("trustmoe/ledger/tx-location/v1", height u64, index u32)
//   "head"      -> canonical("trustmoe/ledger/head/v1", height u64, digest)
//   "r" height  -> state root after the block (height 0: the genesis state)
//   "s/" key    -> state (state.h)
//   "pbft/..."  -> the replica's durable consensus state (pbft::PersistAction)
// An append writes all of a block's keys, its state writes and its state root in one synced
// WriteBatch, so a crash leaves either all of them or none.
//
// Thread-safety: reads (including Head) may run concurrently with each other and with one
// writer; Append, InitState and WriteDurable are called from one thread (the validator's
// consensus thread).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "chain/ledger/block.h"
#include "chain/ledger/state.h"
#include "chain/pbft/actions.h"
#include "chain/pbft/replica.h"
#include "common/bytes.h"
#include "common/status.h"

namespace rocksdb {
class DB;
class WriteBatch;
}

namespace trustmoe::ledger {

struct LedgerOptions {
  std::string path;
  // Opens an existing ledger with RocksDB's read-only mode (the auditor, on a copy of a
  // validator's data directory); Append then fails with FailedPrecondition.
  bool read_only = false;
  ValidatorSet validators;
  BlockLimits limits;
  // prev_hash of block 1 (the genesis file's digest once there is one).
  Digest genesis_digest{};
};

struct LedgerHead {
  uint64_t height = 0;  // 0: no block yet
  Digest digest{};      // genesis_digest at height 0
  Digest state_root{};  // state root after the head block (zeros before InitState)
  int64_t time_unix_ms = 0;  // time of the last non-null block (0: none yet)
};

// The state effects of a block: its writes and the root after them.
struct StateCommit {
  std::map<std::string, std::optional<Bytes>> writes;
  Digest root{};
};

// A stored block; `block` is empty for a null block.
struct StoredBlock {
  uint64_t height = 0;
  Digest digest{};
  std::optional<Block> block;
  CommitCertificate cert;
};

struct TxWithProof {
  Bytes tx;
  TxProof proof;
  BlockHeader header;
  CommitCertificate cert;
};

// Storage keys, for tools and tests that look at the database directly.
std::string BlockKey(uint64_t height);
std::string CertKey(uint64_t height);

class LedgerStore : public StateReader {
 public:
  // Opens (creating it unless read_only) the ledger at options.path and checks that the head
  // pointer names a stored block with that digest. InvalidArgument for bad options, Internal
  // when RocksDB cannot open it, DataLoss when the head does not match its block.
  static Result<std::unique_ptr<LedgerStore>> Open(const LedgerOptions& options);
  ~LedgerStore();
  LedgerStore(const LedgerStore&) = delete;
  LedgerStore& operator=(const LedgerStore&) = delete;

  LedgerHead Head() const {
    std::lock_guard lock(head_mu_);
    return head_;
  }

  // True once the genesis state is written (state root at height 0 stored).
  bool StateInitialized() const;
  // Writes the genesis state and its root at height 0. FailedPrecondition when already done.
  Status InitState(const StateCommit& genesis_state);

  // Appends block Head().height + 1 (`block_bytes` empty: a null block) with its certificate,
  // durably. Refuses with:
  //   FailedPrecondition  read-only store; height is not head + 1 (a gap or a repeat);
  //                       prev_hash does not name the head
  //   InvalidArgument     undecodable block; tx_root does not match the transactions
  //   AlreadyExists       a transaction already in the ledger or twice in the block
  //   Unauthenticated     the certificate is not a quorum of valid distinct validator
  //                       signatures over (height, digest)
  //   Internal            RocksDB write failure
  // `state` holds the block's state writes and the root after them; when null the state and
  // its root stay as they are (a null block).
  Status Append(ByteSpan block_bytes, const CommitCertificate& cert,
                const StateCommit* state = nullptr);

  // Block `height` (1..Head().height) with its certificate, checked on the way out: the stored
  // bytes must decode, hash to what the certificate signs, match their tx root, and the
  // certificate must verify. NotFound outside 1..head, DataLoss when the stored data is
  // corrupt.
  Result<StoredBlock> GetBlock(uint64_t height) const;

  // A committed transaction with its inclusion proof, header and certificate. NotFound when
  // the id is not in the index; DataLoss when the block it points to is corrupt.
  Result<TxWithProof> GetTx(const TxId& id) const;

  // True when transaction `id` is in the index (committed).
  bool HasTx(const TxId& id) const;

  // Raw stored bytes of block and certificate at `height`, unchecked (for VerifyChain).
  // NotFound when absent.
  Result<Bytes> RawBlock(uint64_t height) const;
  Result<Bytes> RawCert(uint64_t height) const;

  // State root after block `height` (0: genesis state). NotFound when absent.
  Result<Digest> StateRootAt(uint64_t height) const;

  // StateReader over the committed state (keys without the "s/" prefix).
  Result<std::optional<Bytes>> Get(const std::string& key) const override;
  Result<std::vector<std::pair<std::string, Bytes>>> Scan(const std::string& prefix,
                                                          const std::string& start_after,
                                                          size_t limit) const override;

  // The replica's durable state: applies writes atomically and synced; loads all of it.
  Status WriteDurable(const std::vector<pbft::DurableWrite>& writes);
  Result<pbft::DurableState> LoadDurable() const;

  const LedgerOptions& options() const { return options_; }

 private:
  LedgerStore(LedgerOptions options, std::unique_ptr<rocksdb::DB> db);
  Status LoadHead();
  Status LoadStateRoot();
  static void AddStateWrites(const StateCommit& state, uint64_t height,
                             rocksdb::WriteBatch* batch);
  Result<Bytes> GetRaw(const std::string& key, std::string_view what) const;

  LedgerOptions options_;
  std::unique_ptr<rocksdb::DB> db_;
  mutable std::mutex head_mu_;
  LedgerHead head_;
  bool state_initialized_ = false;
};

// Result of VerifyChain: ok, or the first bad height and why.
struct ChainCheck {
  bool ok = true;
  uint64_t first_bad_height = 0;
  std::string reason;
  uint64_t blocks_checked = 0;
};

// Walks blocks 1..Head().height from the raw stored bytes, checking for each: bytes decode,
// header height, prev_hash links to the previous digest (genesis digest for block 1, the null
// digest after a null block), tx root, and the certificate against the validator keys over the
// block's digest. Stops at the first bad block.
ChainCheck VerifyChain(const LedgerStore& store);

}  // namespace trustmoe::ledger
