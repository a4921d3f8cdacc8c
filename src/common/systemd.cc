#include "common/systemd.h"

#include <systemd/sd-daemon.h>

#include <algorithm>

namespace trustmoe::systemd {

namespace {

// A newline in a status would start a new assignment in the notification; keep it one line.
std::string OneLine(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  return text;
}

// sd_notify returns 0 when NOTIFY_SOCKET is unset (not run by systemd) and a negative errno on
// failure; neither is something a daemon can act on, so the result is dropped.
void Notify(const std::string& state) { (void)sd_notify(0, state.c_str()); }

}  // namespace

void NotifyReady(const std::string& status) { Notify("READY=1\nSTATUS=" + OneLine(status)); }

void NotifyStopping() { Notify("STOPPING=1"); }

void NotifyWatchdog() { Notify("WATCHDOG=1"); }

void NotifyStatus(const std::string& status) { Notify("STATUS=" + OneLine(status)); }

int64_t WatchdogIntervalMs() {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0) return 0;
  return static_cast<int64_t>(usec / 1000);
}

}  // namespace trustmoe::systemd
