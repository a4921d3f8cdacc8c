#include <unistd.h>

#include <cstdio>

#include "cli/cli.h"
#include "common/clock.h"

namespace trustmoe::cli {

std::string HumanBytes(uint64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int unit = 0;
  while (v >= 1024 && unit < 4) {
    v /= 1024;
    ++unit;
  }
  char buf[32];
  if (unit == 0) {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[unit]);
  }
  return buf;
}

Progress::Progress(std::string verb)
    : verb_(std::move(verb)),
      tty_(::isatty(STDERR_FILENO) == 1),
      start_ms_(SystemClock::Get()->MonotonicMs()) {}

void Progress::Update(uint64_t done, uint64_t total) {
  constexpr uint64_t kShowFromBytes = 8 << 20;
  if (total < kShowFromBytes) return;
  int64_t now = SystemClock::Get()->MonotonicMs();
  int quarter = static_cast<int>(done * 4 / total);
  if (tty_ ? (now - last_ms_ < 200 && done != total) : quarter == last_quarter_) return;
  last_ms_ = now;
  last_quarter_ = quarter;
  double seconds = std::max<int64_t>(now - start_ms_, 1) / 1000.0;
  std::fprintf(stderr, "%s%s %s / %s (%d%%) %s/s%s", tty_ ? "\r" : "", verb_.c_str(),
               HumanBytes(done).c_str(), HumanBytes(total).c_str(),
               static_cast<int>(done * 100 / total),
               HumanBytes(static_cast<uint64_t>(done / seconds)).c_str(), tty_ ? "  " : "\n");
  std::fflush(stderr);
  shown_ = true;
}

void Progress::Finish() {
  if (shown_ && tty_) std::fprintf(stderr, "\n");
}

}  // namespace trustmoe::cli
