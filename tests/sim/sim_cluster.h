// Deterministic simulation of a PBFT cluster: the real Replica code over a simulated network
// and clock, in one process, driven by one seeded std::mt19937_64. Messages are delivered one
// by one from a priority queue ordered by delivery time.
//
// Faults (per FaultMix): drop, duplicate, delay and reorder, delay spikes, partitions that heal,
// crash and restart from the persisted state (optionally in the middle of a step, after some
// of its actions), and byzantine replicas (equivocating primary, bad signatures, messages for
// views without certificates, garbage).
//
// Invariants checked while it runs and at the end:
//  - agreement: no two honest replicas execute different blocks at one height;
//  - validity: only submitted, correctly tagged transactions execute, each at most once, and
//    every executed block carries a commit certificate that verifies;
//  - order: each honest replica executes heights 1, 2, 3... exactly once, across restarts;
//  - client acceptance: a client accepts at f + 1 matching replies, and what it accepts is what
//    the honest replicas executed;
//  - liveness: after the network heals (at heal_ms), every submitted transaction is accepted
//    within liveness_bound_ms;
//  - catch-up: at the end every honest replica has executed the whole chain.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace trustmoe::sim {

enum ByzantineFlags : uint32_t {
  kEquivocate = 1 << 0,     // conflicting pre-prepares / votes to different replicas
  kBadSignatures = 1 << 1,  // corrupted signatures, spoofed senders
  kBogusViews = 1 << 2,     // new-views without certificates, messages for future views, lies
  kGarbage = 1 << 3,        // random and mutated bytes
  kForgedTxs = 1 << 4,      // proposes blocks with transactions it made up
  kWrongReplies = 1 << 5,   // answers clients with wrong results
};

struct FaultMix {
  std::string name;
  uint32_t f = 1;  // n = 3f + 1
  double drop = 0;
  double drop_commits = 0;  // extra drop probability for commit messages (before heal_ms)
  double duplicate = 0;
  int64_t delay_min_ms = 1;
  int64_t delay_max_ms = 5;
  double spike = 0;  // probability of a delay of up to spike_ms instead
  int64_t spike_ms = 400;
  int partitions = 0;  // partition episodes before heal_ms
  bool split = false;  // partitions cut the cluster in halves: no side has a quorum
  int64_t partition_max_ms = 3000;
  int crashes = 0;              // crash / restart episodes before heal_ms
  int64_t crash_max_ms = 3000;  // longest downtime
  bool torn_crashes = false;    // crash in the middle of a step
  uint32_t byzantine = 0;  // number of byzantine replicas (ids 0, 1, ...; 0 is the first primary)
  uint32_t byzantine_flags = 0;
  bool submit_to_one = false;     // each try goes to one random replica (exercises relaying)
  bool drops_after_heal = false;  // keep dropping (at `drop`) after heal_ms
};

// The named mixes: clean, lossy, commitloss, partition, split, crash, outage, amnesia,
// equivocate, byzantine, chaos, f2.
std::vector<FaultMix> AllMixes();
// A mix by name; the "all" pseudo-mix is resolved by the caller. False if unknown.
bool MixByName(const std::string& name, FaultMix* out);

struct SimOptions {
  uint64_t seed = 1;
  FaultMix mix;
  uint32_t clients = 3;
  uint32_t txs_per_client = 8;
  int64_t submit_window_ms = 4000;
  int64_t heal_ms = 6000;
  int64_t liveness_bound_ms = 20000;
  int64_t settle_ms = 3000;
  // Client mode: each transaction goes to one honest replica, picked by the seed, and every
  // retry goes to that same replica, so the others learn of it only through relaying (a
  // replica that keeps it to itself stalls it for good). With each retry the client also asks
  // the other replicas whether they executed it (as GetTx), since one replica's answer alone
  // is not f + 1.
  bool one_replica_per_tx = false;
  bool verbose = false;
};

struct SimResult {
  bool ok = true;
  std::string invariant;  // which one broke
  std::string detail;
  // Figures of the run.
  int64_t end_ms = 0;
  uint64_t height = 0;
  uint64_t view = 0;
  uint64_t messages = 0;
  uint64_t view_changes = 0;
  uint64_t state_transfer_blocks = 0;
  uint64_t rejected = 0;
  uint64_t txs = 0;
  int64_t last_accept_after_heal_ms = 0;
  std::string rejects;  // honest replicas' rejected messages by reason
  std::string Summary() const;
};

SimResult RunSimulation(const SimOptions& options);

}  // namespace trustmoe::sim
