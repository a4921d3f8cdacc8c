// What a replica asks its caller to do. Every entry point of Replica returns a list of actions
// that the caller must carry out in order: a Persist must be durable before any later Send of
// the same list leaves the process.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "chain/pbft/messages.h"
#include "common/bytes.h"

namespace trustmoe::pbft {

inline constexpr uint32_t kBroadcast = UINT32_MAX;

// Send `bytes` (an encoded envelope) to validator `to`, or to every other validator when `to`
// is kBroadcast. Delivery is best effort: the protocol retransmits what it needs.
struct SendAction {
  uint32_t to = kBroadcast;
  Bytes bytes;
};

// One key of the replica's durable state: set to `value`, or erased when it is empty.
struct DurableWrite {
  std::string key;
  std::optional<Bytes> value;
};

// Apply all writes atomically and durably before continuing with the next action. Keys start
// with "pbft/"; the state is handed back to Replica::Create after a restart.
struct PersistAction {
  std::vector<DurableWrite> writes;
};

// A block was executed (in order, exactly once per sequence number) by
// Application::ExecuteBlock; the caller may now answer the clients of `tx_ids`.
struct CommitAction {
  uint64_t seq = 0;
  Digest digest{};
  Bytes block;
  CommitCertificate cert;
  std::vector<TxId> tx_ids;
  bool via_state_transfer = false;
};

// Call Replica::OnTick at `deadline_ms` (replaces any earlier timer request).
struct TimerAction {
  int64_t deadline_ms = 0;
};

using Action = std::variant<SendAction, PersistAction, CommitAction, TimerAction>;
using Actions = std::vector<Action>;

}  // namespace trustmoe::pbft
