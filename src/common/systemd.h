// systemd integration (libsystemd). Every call is a no-op when not run by systemd.
#pragma once

#include <cstdint>
#include <string>

namespace trustmoe::systemd {

// READY=1 with a STATUS= line.
void NotifyReady(const std::string& status);
// STOPPING=1.
void NotifyStopping();
// WATCHDOG=1.
void NotifyWatchdog();
// STATUS=<text>.
void NotifyStatus(const std::string& status);
// The watchdog interval systemd asked for (WatchdogSec), in ms; 0 when none.
int64_t WatchdogIntervalMs();

}  // namespace trustmoe::systemd
