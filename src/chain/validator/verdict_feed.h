// What ChainService.WatchVerdicts reads from the ledger: the verdicts finalized in one block,
// and a result with its votes as a VerdictInfo message.
//
// A result's verdict is finalized in block h when a vote transaction of block h brings one
// verdict to a quorum, or when the result's own transaction in block h names an unpublished
// expert (rejected as it is ordered, without votes); the result record then says
// verdict_height = h, for good. So the verdicts of block h are found by reading the result
// named by each vote and expert-result transaction of the block and keeping those whose
// verdict_height is h (a result named several times in the block is kept once, at its first
// transaction). Everything is read from the committed ledger, which is safe beside the
// consensus thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "chain/ledger/ledger_store.h"
#include "chain/ledger/result.h"
#include "chain/ledger/state.h"
#include "common/status.h"
#include "crypto/ed25519.h"
#include "trustmoe/v1/chain.pb.h"

namespace trustmoe::validator {

// Which verdicts a stream wants.
struct VerdictFilter {
  std::string job;                        // empty: every job
  std::optional<crypto::PublicKey> edge;  // nullopt: every edge
  uint64_t from_height = 1;
  uint64_t to_height = 0;  // 0: no end
};

// The filter of a request. InvalidArgument when the edge is not empty and not a 32-byte
// public key, the job is over ledger::kJobBytesMax bytes, or to_height is below from_height.
Result<VerdictFilter> ParseVerdictFilter(const v1::WatchVerdictsRequest& request);

// A result by its key.
struct ResultId {
  crypto::PublicKey edge;
  uint64_t nonce = 0;
  bool operator<(const ResultId& o) const {
    return edge != o.edge ? edge < o.edge : nonce < o.nonce;
  }
};

// The results whose verdict block `height` (1..head) finalized and that pass `filter`'s job and
// edge, in the order of their first transaction in the block; at most one per transaction of
// the block. A null block has none. NotFound above the head; DataLoss when a stored block or
// record does not decode.
Result<std::vector<ResultId>> VerdictsOfBlock(const ledger::LedgerStore& store, uint64_t height,
                                              const VerdictFilter& filter);

// Fills `info` with result `id`, its verdict and every vote recorded on it (at most
// `validators` of them). NotFound when there is no such result; DataLoss when a stored record
// does not decode.
Status ReadVerdictInfo(const ledger::StateReader& state, const ResultId& id, size_t validators,
                       v1::VerdictInfo* info);

}  // namespace trustmoe::validator
