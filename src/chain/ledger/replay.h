// Replays verified blocks from the genesis on, in memory, checking what a block's commit
// certificate alone does not: that each block links to the one before, that its header's state
// root is the root of the state replayed so far (state.h, "State root"), and that every
// transaction in it executes. This is how an auditor checks a chain fetched from validators
// without trusting their stored state; VerifyChainAndState (app.h) runs it over a ledger
// directory.
//
// Not thread-safe. Memory: the whole state (registry, reputation, used nonces).
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "chain/ledger/genesis.h"
#include "chain/ledger/ledger_store.h"
#include "chain/ledger/state.h"
#include "common/status.h"

namespace trustmoe::ledger {

// Committed state held in memory.
class MemoryState : public StateReader {
 public:
  Result<std::optional<Bytes>> Get(const std::string& key) const override;
  Result<std::vector<std::pair<std::string, Bytes>>> Scan(const std::string& prefix,
                                                          const std::string& start_after,
                                                          size_t limit) const override;
  void Apply(const std::map<std::string, std::optional<Bytes>>& writes);

 private:
  std::map<std::string, Bytes> entries_;
};

class ChainReplay {
 public:
  // Starts from the genesis state. With `replay_state` false only links are checked.
  ChainReplay(const Genesis& genesis, TxRegistry registry, bool replay_state = true);

  // Applies block next_height(), which must already be verified (chain::VerifyBlockBytes or
  // LedgerStore::GetBlock). DataLoss naming the height when it does not link, its state root
  // differs from the replayed one, or a transaction fails; the replay must not be continued
  // after an error.
  Status Apply(const StoredBlock& block);

  uint64_t next_height() const { return next_height_; }
  // Root of the state after block next_height() - 1.
  const Digest& state_root() const { return state_root_; }
  const MemoryState& state() const { return state_; }

 private:
  const Genesis& genesis_;
  TxRegistry registry_;
  bool replay_state_;
  uint64_t next_height_ = 1;
  Digest prev_digest_{};
  Digest state_root_{};
  MemoryState state_;
};

}  // namespace trustmoe::ledger
