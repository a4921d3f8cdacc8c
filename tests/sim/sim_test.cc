// Runs the cluster simulation over many seeds for every fault mix. A failure names the seed and
// the command that replays it step by step.
#include <gtest/gtest.h>

#include <ostream>
#include <string>

#include "sim_cluster.h"

namespace trustmoe::sim {

// Test names and ctest listings show the mix by name.
void PrintTo(const FaultMix& mix, std::ostream* os) { *os << mix.name; }

namespace {

// Seeds per mix: kSeedsPerMix with clients that submit to every replica, then
// kOneReplicaSeedsPerMix with each transaction given to one replica only (it reaches the others
// only through relaying). 12 mixes x (12 + 6) -> 216 seeds in all.
constexpr uint64_t kSeedsPerMix = 12;
constexpr uint64_t kOneReplicaSeedsPerMix = 6;

// Runs `count` seeds from 1 and reports each failure with the command that replays it.
void RunSeeds(const FaultMix& mix, uint64_t count, bool one_replica) {
  uint64_t failed = 0;
  for (uint64_t seed = 1; seed <= count; ++seed) {
    SimOptions options;
    options.seed = seed;
    options.mix = mix;
    options.one_replica_per_tx = one_replica;
    SimResult result = RunSimulation(options);
    EXPECT_TRUE(result.ok) << "seed " << seed << " mix " << mix.name
                           << (one_replica ? " (one replica per transaction)" : "") << ": "
                           << result.Summary() << "\n  replay: sim --start " << seed
                           << " --seeds 1 --faults " << mix.name
                           << (one_replica ? " --one-replica" : "") << " --verbose";
    failed += result.ok ? 0 : 1;
  }
  ::testing::Test::RecordProperty("seeds", static_cast<int>(count));
  ::testing::Test::RecordProperty("failed", static_cast<int>(failed));
}

class SimSeeds : public ::testing::TestWithParam<FaultMix> {};

TEST_P(SimSeeds, InvariantsHold) { RunSeeds(GetParam(), kSeedsPerMix, /*one_replica=*/false); }

TEST_P(SimSeeds, InvariantsHoldWithOneReplicaPerTx) {
  RunSeeds(GetParam(), kOneReplicaSeedsPerMix, /*one_replica=*/true);
}

INSTANTIATE_TEST_SUITE_P(Mixes, SimSeeds, ::testing::ValuesIn(AllMixes()),
                         [](const ::testing::TestParamInfo<FaultMix>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace trustmoe::sim
