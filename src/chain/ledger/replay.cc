#include "chain/ledger/replay.h"

namespace trustmoe::ledger {

Result<std::optional<Bytes>> MemoryState::Get(const std::string& key) const {
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::optional<Bytes>();
  return std::optional<Bytes>(it->second);
}

Result<std::vector<std::pair<std::string, Bytes>>> MemoryState::Scan(const std::string& prefix,
                                                                     const std::string& start_after,
                                                                     size_t limit) const {
  std::vector<std::pair<std::string, Bytes>> out;
  auto it = start_after.empty() || start_after < prefix ? entries_.lower_bound(prefix)
                                                        : entries_.upper_bound(start_after);
  for (; it != entries_.end() && out.size() < limit; ++it) {
    if (it->first.compare(0, prefix.size(), prefix) != 0) break;
    out.emplace_back(it->first, it->second);
  }
  return out;
}

void MemoryState::Apply(const std::map<std::string, std::optional<Bytes>>& writes) {
  for (const auto& [key, value] : writes) {
    if (value) {
      entries_[key] = *value;
    } else {
      entries_.erase(key);
    }
  }
}

ChainReplay::ChainReplay(const Genesis& genesis, TxRegistry registry, bool replay_state)
    : genesis_(genesis), registry_(std::move(registry)), replay_state_(replay_state) {
  prev_digest_ = genesis_.Hash();
  auto writes = GenesisWrites(genesis_);
  state_root_ = ComputeStateRoot(prev_digest_, 0, writes);
  state_.Apply(writes);
}

Status ChainReplay::Apply(const StoredBlock& stored) {
  const std::string where = "block " + std::to_string(stored.height);
  if (stored.height != next_height_) {
    return Status::DataLoss(where + " arrived where block " + std::to_string(next_height_) +
                            " was due");
  }
  if (!stored.block) {  // null block: no transactions, the state stays as it is
    prev_digest_ = stored.digest;
    ++next_height_;
    return Status::Ok();
  }
  const BlockHeader& header = stored.block->header;
  if (header.prev_hash != prev_digest_) {
    return Status::DataLoss(where + ": prev_hash " + crypto::DigestHex(header.prev_hash) +
                            " does not name the block before (" + crypto::DigestHex(prev_digest_) +
                            ")");
  }
  if (replay_state_) {
    if (header.state_root != state_root_) {
      return Status::DataLoss(
          where + ": header state root " + crypto::DigestHex(header.state_root) +
          " differs from the replayed state root " + crypto::DigestHex(state_root_));
    }
    TxContext ctx;
    ctx.genesis = &genesis_;
    ctx.height = header.height;
    ctx.time_unix_ms = header.time_unix_ms;
    ctx.proposer = header.proposer;
    StateOverlay overlay(&state_);
    for (size_t i = 0; i < stored.block->txs.size(); ++i) {
      Status executed = ExecuteTx(ctx, registry_, stored.block->txs[i], &overlay);
      if (!executed.ok()) {
        return Status::DataLoss(where + ": transaction " + std::to_string(i) + " (" +
                                crypto::DigestHex(pbft::ComputeTxId(stored.block->txs[i])) +
                                ") does not execute: " + executed.message());
      }
    }
    state_root_ = ComputeStateRoot(state_root_, header.height, overlay.writes());
    state_.Apply(overlay.writes());
  }
  prev_digest_ = stored.digest;
  ++next_height_;
  return Status::Ok();
}

}  // namespace trustmoe::ledger
