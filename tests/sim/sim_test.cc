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

// Seeds per mix; 12 mixes -> 216 seeds in all.
constexpr uint64_t kSeedsPerMix = 18;

class SimSeeds : public ::testing::TestWithParam<FaultMix> {};

TEST_P(SimSeeds, InvariantsHold) {
  const FaultMix& mix = GetParam();
  uint64_t failed = 0;
  for (uint64_t seed = 1; seed <= kSeedsPerMix; ++seed) {
    SimOptions options;
    options.seed = seed;
    options.mix = mix;
    SimResult result = RunSimulation(options);
    EXPECT_TRUE(result.ok) << "seed " << seed << " mix " << mix.name << ": " << result.Summary()
                           << "\n  replay: sim --start " << seed << " --seeds 1 --faults "
                           << mix.name << " --verbose";
    failed += result.ok ? 0 : 1;
  }
  RecordProperty("seeds", static_cast<int>(kSeedsPerMix));
  RecordProperty("failed", static_cast<int>(failed));
}

INSTANTIATE_TEST_SUITE_P(Mixes, SimSeeds, ::testing::ValuesIn(AllMixes()),
                         [](const ::testing::TestParamInfo<FaultMix>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace trustmoe::sim
