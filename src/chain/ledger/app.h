// The validator's PBFT application: builds, checks and executes ledger blocks on the RocksDB
// ledger and its state (pbft/application.h has the contract).
//
// Block rules (checked by ValidateBlock and, for blocks fetched by state transfer,
// CheckCommittedBlock):
//  - header.height = seq, prev_hash = digest of the head (the genesis digest for block 1,
//    the null digest after a null block), state_root = state root after the head,
//    tx_root over the transactions, proposer = the primary of the view, view = ctx.view;
//  - time: not before the head block's time, at most max_clock_skew_ms ahead of the local
//    clock (ValidateBlock only: a committed block is final);
//  - every transaction executes successfully, in order, on the state (ExecuteTx).
// Execution appends the block, its certificate, its state writes and the new state root in one
// synced RocksDB batch.
#pragma once

#include <cstdint>
#include <memory>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "chain/ledger/genesis.h"
#include "chain/ledger/ledger_store.h"
#include "chain/ledger/state.h"
#include "chain/pbft/application.h"

namespace trustmoe::ledger {

class LedgerApp : public pbft::Application {
 public:
  // `store` must have been opened with genesis.Hash() as its genesis digest and outlive the
  // app. Writes the genesis state into an empty ledger; FailedPrecondition when the ledger
  // belongs to another genesis.
  static Result<std::unique_ptr<LedgerApp>> Create(LedgerStore* store, const Genesis& genesis,
                                                   TxRegistry registry);

  pbft::ExecutedHead Head() override;
  Status CheckTx(ByteSpan tx) override;
  Bytes ProposeBlock(const pbft::BlockContext& ctx, const std::vector<Bytes>& txs) override;
  Status ValidateBlock(const pbft::BlockContext& ctx, ByteSpan block) override;
  Status CheckCommittedBlock(uint64_t seq, ByteSpan block) override;
  Result<std::vector<Bytes>> TxsOf(ByteSpan block) override;
  Result<Digest> BlockDigest(ByteSpan block) override;
  bool IsTxCommitted(const pbft::TxId& id) override;
  pbft::Digest ExecuteBlock(const pbft::CommittedBlock& block) override;
  Result<pbft::CommittedBlock> ReadBlock(uint64_t seq) override;

  // Thread-safe, for any thread but the consensus thread: verifies the signature of `tx` (of
  // every transaction of a block) and remembers the ones that verify, so that the consensus
  // thread's own checks hit the signature cache instead of doing Ed25519 work. Nothing else is
  // checked and nothing fails: the consensus thread still checks everything.
  void PreverifyTx(ByteSpan tx);
  void PreverifyBlock(ByteSpan block);

  const Genesis& genesis() const { return genesis_; }
  LedgerStore* store() const { return store_; }

 private:
  LedgerApp(LedgerStore* store, Genesis genesis, TxRegistry registry);
  // Executes `txs` on the committed state; the first failure is returned with its index.
  Status ExecuteAll(const TxContext& ctx, const std::vector<Bytes>& txs, StateOverlay* state);
  Result<Block> DecodeBlock(ByteSpan block) const;
  // Structure and link of a decoded block `seq` to the head (CheckCommittedBlock's rules).
  Status CheckLink(uint64_t seq, const Block& block) const;
  // Time of the head block (0 when the head is genesis or a null block before any block).
  int64_t head_time_ms_ = 0;

  // The state writes of the last block this replica proposed or validated, kept for its
  // execution: a block that commits is executed on the same head it was checked on (one block
  // in flight), so its writes are known already. Keyed by the head (height and state root) and
  // the block digest; anything else is executed afresh.
  struct CheckedWrites {
    uint64_t head_height = 0;
    Digest head_state_root{};
    Digest block_digest{};
    std::map<std::string, std::optional<Bytes>> writes;
  };
  void RememberWrites(const LedgerHead& head, const Digest& digest, const StateOverlay& state);
  std::optional<CheckedWrites> checked_;

  LedgerStore* store_;
  Genesis genesis_;
  Digest genesis_digest_;
  TxRegistry registry_;
  SignatureCache signatures_;
};

// VerifyChain (links, tx roots, certificates) plus a replay of every transaction from the
// genesis state, checking each header's state root and that every transaction executes. The
// replay holds the state in memory.
ChainCheck VerifyChainAndState(const LedgerStore& store, const Genesis& genesis,
                               const TxRegistry& registry);

}  // namespace trustmoe::ledger
