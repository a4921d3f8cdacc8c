#include "chain/ledger/app.h"

#include <set>

#include "chain/ledger/replay.h"
#include "common/check.h"
#include "common/log.h"

namespace trustmoe::ledger {

LedgerApp::LedgerApp(LedgerStore* store, Genesis genesis, TxRegistry registry)
    : store_(store),
      genesis_(std::move(genesis)),
      genesis_digest_(genesis_.Hash()),
      registry_(std::move(registry)) {}

Result<std::unique_ptr<LedgerApp>> LedgerApp::Create(LedgerStore* store, const Genesis& genesis,
                                                     TxRegistry registry) {
  TRUSTMOE_RETURN_IF_ERROR(genesis.Validate());
  if (store->options().genesis_digest != genesis.Hash()) {
    return Status::FailedPrecondition(
        "the ledger was opened for another genesis (its genesis digest differs)");
  }
  std::unique_ptr<LedgerApp> app(new LedgerApp(store, genesis, std::move(registry)));
  if (!store->StateInitialized()) {
    if (store->Head().height != 0) {
      return Status::FailedPrecondition(
          "the ledger has blocks but no state; was it written by "
          "another program?");
    }
    StateCommit initial;
    initial.writes = GenesisWrites(genesis);
    initial.root = ComputeStateRoot(app->genesis_digest_, 0, initial.writes);
    TRUSTMOE_RETURN_IF_ERROR(store->InitState(initial));
  }
  return app;
}

pbft::ExecutedHead LedgerApp::Head() {
  LedgerHead head = store_->Head();
  return {head.height, head.digest, head.state_root};
}

Status LedgerApp::CheckTx(ByteSpan tx) {
  LedgerHead head = store_->Head();
  TxContext ctx{&genesis_, head.height + 1, head.time_unix_ms, 0};
  StateOverlay scratch(static_cast<const StateReader*>(store_));
  return ExecuteTx(ctx, registry_, tx, &scratch, &signatures_);
}

Bytes LedgerApp::ProposeBlock(const pbft::BlockContext& ctx, const std::vector<Bytes>& txs) {
  LedgerHead head = store_->Head();
  TRUSTMOE_CHECK(head.height + 1 == ctx.seq);
  Block block;
  BlockHeader& h = block.header;
  h.height = ctx.seq;
  h.view = ctx.view;
  h.prev_hash = head.digest;
  h.state_root = head.state_root;
  h.time_unix_ms = std::max(ctx.now_ms, head.time_unix_ms);
  h.proposer = ctx.proposer;
  TxContext tctx{&genesis_, h.height, h.time_unix_ms, h.proposer};
  StateOverlay state(static_cast<const StateReader*>(store_));
  std::set<pbft::TxId> ids;
  for (const Bytes& tx : txs) {
    if (!ids.insert(pbft::ComputeTxId(tx)).second) continue;
    Status s = ExecuteTx(tctx, registry_, tx, &state, &signatures_);
    if (!s.ok()) {
      TM_DEBUG("block {}: leaving out a transaction: {}", h.height, s.ToString());
      continue;
    }
    block.txs.push_back(tx);
  }
  h.tx_root = TxRoot(block.txs);
  RememberWrites(head, block.Hash(), state);
  return block.Encode();
}

void LedgerApp::RememberWrites(const LedgerHead& head, const Digest& digest,
                               const StateOverlay& state) {
  checked_ = CheckedWrites{head.height, head.state_root, digest, state.writes()};
}

void LedgerApp::PreverifyTx(ByteSpan bytes) {
  const pbft::TxId id = pbft::ComputeTxId(bytes);
  if (signatures_.Contains(id)) return;
  auto tx = Tx::Decode(bytes, genesis_.params.tx_bytes_max);
  if (tx.ok() && tx->VerifySignature(genesis_.chain_id).ok()) signatures_.Insert(id);
}

void LedgerApp::PreverifyBlock(ByteSpan bytes) {
  auto block = DecodeBlock(bytes);
  if (!block.ok()) return;
  for (const Bytes& tx : block->txs) PreverifyTx(tx);
}

Result<Block> LedgerApp::DecodeBlock(ByteSpan bytes) const {
  return Block::Decode(bytes, genesis_.Limits());
}

Status LedgerApp::ExecuteAll(const TxContext& ctx, const std::vector<Bytes>& txs,
                             StateOverlay* state) {
  std::set<pbft::TxId> ids;
  for (size_t i = 0; i < txs.size(); ++i) {
    pbft::TxId id = pbft::ComputeTxId(txs[i]);
    if (!ids.insert(id).second || store_->HasTx(id)) {
      return Status::InvalidArgument("transaction " + std::to_string(i) +
                                     " is already committed or repeated in the block");
    }
    Status s = ExecuteTx(ctx, registry_, txs[i], state, &signatures_);
    if (!s.ok()) return s.WithContext("transaction " + std::to_string(i));
  }
  return Status::Ok();
}

Status LedgerApp::ValidateBlock(const pbft::BlockContext& ctx, ByteSpan bytes) {
  TRUSTMOE_ASSIGN_OR_RETURN(Block block, DecodeBlock(bytes));
  const BlockHeader& h = block.header;
  TRUSTMOE_RETURN_IF_ERROR(CheckLink(ctx.seq, block));
  if (h.view != ctx.view || h.proposer != ctx.proposer) {
    return Status::InvalidArgument("block names view " + std::to_string(h.view) + " and proposer " +
                                   std::to_string(h.proposer) + ", expected view " +
                                   std::to_string(ctx.view) + " and proposer " +
                                   std::to_string(ctx.proposer));
  }
  if (h.time_unix_ms > ctx.now_ms + genesis_.params.max_clock_skew_ms) {
    return Status::InvalidArgument("block time is " + std::to_string(h.time_unix_ms - ctx.now_ms) +
                                   " ms in the future");
  }
  TxContext tctx{&genesis_, h.height, h.time_unix_ms, h.proposer};
  StateOverlay state(static_cast<const StateReader*>(store_));
  TRUSTMOE_RETURN_IF_ERROR(ExecuteAll(tctx, block.txs, &state));
  RememberWrites(store_->Head(), block.Hash(), state);
  return Status::Ok();
}

Status LedgerApp::CheckCommittedBlock(uint64_t seq, ByteSpan bytes) {
  TRUSTMOE_ASSIGN_OR_RETURN(Block block, DecodeBlock(bytes));
  return CheckLink(seq, block);
}

Status LedgerApp::CheckLink(uint64_t seq, const Block& block) const {
  const BlockHeader& h = block.header;
  LedgerHead head = store_->Head();
  if (h.height != seq || seq != head.height + 1) {
    return Status::InvalidArgument("block has height " + std::to_string(h.height) +
                                   ", the next height is " + std::to_string(head.height + 1));
  }
  if (h.prev_hash != head.digest) return Status::InvalidArgument("prev_hash does not link");
  if (h.state_root != head.state_root) {
    return Status::InvalidArgument("state root differs from this ledger's");
  }
  if (h.tx_root != TxRoot(block.txs)) return Status::InvalidArgument("wrong tx Merkle root");
  if (h.time_unix_ms < head.time_unix_ms) {
    return Status::InvalidArgument("block time is before the previous block's");
  }
  if (h.proposer >= genesis_.validators.size()) {
    return Status::InvalidArgument("proposer is not a validator");
  }
  return Status::Ok();
}

Result<std::vector<Bytes>> LedgerApp::TxsOf(ByteSpan bytes) {
  TRUSTMOE_ASSIGN_OR_RETURN(Block block, DecodeBlock(bytes));
  return std::move(block.txs);
}

Result<Digest> LedgerApp::BlockDigest(ByteSpan bytes) {
  TRUSTMOE_ASSIGN_OR_RETURN(Block block, DecodeBlock(bytes));
  return block.Hash();
}

bool LedgerApp::IsTxCommitted(const pbft::TxId& id) { return store_->HasTx(id); }

pbft::Digest LedgerApp::ExecuteBlock(const pbft::CommittedBlock& committed) {
  LedgerHead head = store_->Head();
  TRUSTMOE_CHECK(committed.seq == head.height + 1);
  StateCommit state;
  state.root = head.state_root;
  if (!committed.block.empty()) {
    auto block = DecodeBlock(committed.block);
    TRUSTMOE_CHECK(block.ok());
    const BlockHeader& h = block.value().header;
    if (checked_ && checked_->head_height == head.height &&
        checked_->head_state_root == head.state_root &&
        checked_->block_digest == committed.digest) {
      state.writes = std::move(checked_->writes);  // executed when proposed or validated
    } else {
      TxContext tctx{&genesis_, h.height, h.time_unix_ms, h.proposer};
      StateOverlay overlay(static_cast<const StateReader*>(store_));
      for (size_t i = 0; i < block.value().txs.size(); ++i) {
        // A quorum validated the block, so every transaction executes; a failure here means
        // non-determinism, and the transaction is left without effect on every honest replica.
        Status s = ExecuteTx(tctx, registry_, block.value().txs[i], &overlay, &signatures_);
        if (!s.ok()) {
          TM_ERROR("block {}: committed transaction {} does not execute: {}", h.height, i,
                   s.ToString());
        }
      }
      state.writes = overlay.writes();
    }
    checked_.reset();
    state.root = ComputeStateRoot(head.state_root, committed.seq, state.writes);
  }
  Status s = store_->Append(committed.block, committed.cert, &state);
  if (!s.ok()) {
    TM_ERROR("cannot append block {} to the ledger: {}", committed.seq, s.ToString());
    TRUSTMOE_CHECK(false && "the ledger cannot write a committed block");
  }
  return state.root;
}

Result<pbft::CommittedBlock> LedgerApp::ReadBlock(uint64_t seq) {
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes raw, store_->RawBlock(seq));
  TRUSTMOE_ASSIGN_OR_RETURN(StoredBlock stored, store_->GetBlock(seq));
  return pbft::CommittedBlock{seq, stored.digest, std::move(raw), std::move(stored.cert)};
}

ChainCheck VerifyChainAndState(const LedgerStore& store, const Genesis& genesis,
                               const TxRegistry& registry) {
  ChainCheck out = VerifyChain(store);
  if (!out.ok) return out;
  auto fail = [&](uint64_t height, std::string reason) {
    out.ok = false;
    out.first_bad_height = height;
    out.reason = std::move(reason);
    return out;
  };
  if (store.options().genesis_digest != genesis.Hash()) {
    return fail(0, "the ledger's genesis digest is not this genesis file's");
  }
  ChainReplay replay(genesis, registry);
  const uint64_t head = store.Head().height;
  for (uint64_t height = 1; height <= head; ++height) {
    auto stored = store.GetBlock(height);
    if (!stored.ok()) return fail(height, stored.status().message());
    Status applied = replay.Apply(*stored);
    if (!applied.ok()) return fail(height, applied.message());
  }
  auto stored_root = store.StateRootAt(head);
  if (stored_root.ok() && stored_root.value() != replay.state_root()) {
    return fail(head, "the stored state root differs from the replayed state");
  }
  return out;
}

}  // namespace trustmoe::ledger
