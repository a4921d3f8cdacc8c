// What a PBFT replica asks of the application that owns blocks and state (the ledger in the
// validator, an in-memory application in the simulator).
//
// The replica calls these methods synchronously from inside its event handlers, on the
// caller's thread. Blocks are opaque to the replica: the application builds them, decodes them
// and names their digest, which is what the replica agrees on and what commit certificates sign.
// The ledger's digest is the hash of its block header (height, view, prev_hash, tx Merkle root,
// state root of the previous block, time, proposer).
//
// A null block (empty bytes) may be committed at a sequence number that a new primary had to
// fill in a view change; its digest is NullBlockDigest(seq) and it holds no transactions.
#pragma once

#include <cstdint>
#include <vector>

#include "chain/pbft/messages.h"
#include "common/bytes.h"
#include "common/status.h"

namespace trustmoe::pbft {

// The last executed block and the state after it. Genesis: seq 0 and the application's
// genesis digests.
struct ExecutedHead {
  uint64_t seq = 0;
  Digest block_digest{};
  Digest state_digest{};
};

// Where a block is proposed or validated.
struct BlockContext {
  uint64_t seq = 0;
  uint64_t view = 0;
  uint32_t proposer = 0;
  int64_t now_ms = 0;
};

// A committed block with its certificate; block is empty for a null block.
struct CommittedBlock {
  uint64_t seq = 0;
  Digest digest{};
  Bytes block;
  CommitCertificate cert;
};

class Application {
 public:
  virtual ~Application() = default;

  // The last executed block. Must reflect every ExecuteBlock that returned, also after a
  // restart of the process.
  virtual ExecutedHead Head() = 0;

  // Admission check of a transaction for the pool (format, signature, nonce not yet used).
  // Any non-OK status rejects it; the status is returned to the submitter.
  virtual Status CheckTx(ByteSpan tx) = 0;

  // Builds block ctx.seq on top of Head() (Head().seq == ctx.seq - 1 always). `txs` are
  // candidates in arrival order, already within the block limits and not committed; the
  // application includes those that are valid in the current state, in order, and may leave
  // out the others (the replica then drops them from its pool). Never fails.
  virtual Bytes ProposeBlock(const BlockContext& ctx, const std::vector<Bytes>& txs) = 0;

  // Checks a block proposed by ctx.proposer for ctx.seq on top of Head() (Head().seq ==
  // ctx.seq - 1 always): structure, link to the head, proposer, time, every transaction valid
  // and not yet committed. Must be deterministic in (state, block) except for time checks
  // against ctx.now_ms. Must not crash on hostile bytes.
  virtual Status ValidateBlock(const BlockContext& ctx, ByteSpan block) = 0;

  // Checks a block fetched by state transfer whose commit certificate already verified:
  // structure and link to Head() (Head().seq == seq - 1). Not called for null blocks.
  virtual Status CheckCommittedBlock(uint64_t seq, ByteSpan block) = 0;

  // The transactions of a non-null block, in order. InvalidArgument on hostile bytes.
  virtual Result<std::vector<Bytes>> TxsOf(ByteSpan block) = 0;

  // The digest of a non-null block (the ledger's header hash). InvalidArgument on hostile
  // bytes.
  virtual Result<Digest> BlockDigest(ByteSpan block) = 0;

  // True when a transaction with this id is in an executed block.
  virtual bool IsTxCommitted(const TxId& id) = 0;

  // Executes block.seq == Head().seq + 1, stores it with its certificate, durably, and returns
  // the state digest after it. Called exactly once per sequence number, in order. Must not fail:
  // a ledger that cannot write stops the process.
  virtual Digest ExecuteBlock(const CommittedBlock& block) = 0;

  // An executed block with its certificate, 1 <= seq <= Head().seq, for state transfer to a
  // peer. NotFound when it is no longer stored.
  virtual Result<CommittedBlock> ReadBlock(uint64_t seq) = 0;
};

}  // namespace trustmoe::pbft
