#include "common/clock.h"

#include <gtest/gtest.h>

namespace trustmoe {
namespace {

TEST(ManualClockTest, MovesOnlyWhenTold) {
  ManualClock clock(1000);
  EXPECT_EQ(clock.NowUnixMs(), 1000);
  EXPECT_EQ(clock.MonotonicMs(), 1000);
  clock.AdvanceMs(250);
  EXPECT_EQ(clock.NowUnixMs(), 1250);
  EXPECT_EQ(clock.MonotonicMs(), 1250);
}

TEST(SystemClockTest, WallTimeIsPlausibleAndMonotonicDoesNotGoBack) {
  SystemClock* clock = SystemClock::Get();
  EXPECT_EQ(clock, SystemClock::Get());
  EXPECT_GT(clock->NowUnixMs(), 1'600'000'000'000);  // after 2020
  int64_t a = clock->MonotonicMs();
  int64_t b = clock->MonotonicMs();
  EXPECT_LE(a, b);
}

}  // namespace
}  // namespace trustmoe
