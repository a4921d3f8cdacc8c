#include "common/systemd.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <string>

namespace trustmoe {
namespace {

TEST(SystemdTest, NoOpsOutsideSystemd) {
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
  ::unsetenv("WATCHDOG_PID");
  systemd::NotifyReady("serving");
  systemd::NotifyStatus("line one\nline two");
  systemd::NotifyWatchdog();
  systemd::NotifyStopping();
  EXPECT_EQ(systemd::WatchdogIntervalMs(), 0);
}

TEST(SystemdTest, WatchdogIntervalFromEnvironment) {
  ::setenv("WATCHDOG_USEC", "3000000", 1);
  ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
  EXPECT_EQ(systemd::WatchdogIntervalMs(), 3000);
  ::unsetenv("WATCHDOG_USEC");
  ::unsetenv("WATCHDOG_PID");
}

}  // namespace
}  // namespace trustmoe
