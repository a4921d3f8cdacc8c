// Time as an interface, so that tests and the simulator can move it by hand.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace trustmoe {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch (wall time, for records and retention).
  virtual int64_t NowUnixMs() const = 0;
  // Monotonic milliseconds (for timeouts and rates).
  virtual int64_t MonotonicMs() const = 0;
};

class SystemClock final : public Clock {
 public:
  int64_t NowUnixMs() const override;
  int64_t MonotonicMs() const override;
  // A process-wide instance.
  static SystemClock* Get();
};

// A clock that only moves when told to. Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_unix_ms = 1'700'000'000'000) : now_(start_unix_ms) {}
  int64_t NowUnixMs() const override { return now_.load(); }
  int64_t MonotonicMs() const override { return now_.load(); }
  void AdvanceMs(int64_t ms) { now_.fetch_add(ms); }

 private:
  std::atomic<int64_t> now_;
};

}  // namespace trustmoe
