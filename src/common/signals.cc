#include "common/signals.h"

#include <pthread.h>
#include <signal.h>

#include <cerrno>
#include <ctime>
#include <mutex>

#include "common/check.h"

namespace trustmoe {

namespace {

// RequestShutdown wakes the waiter with a thread-directed SIGTERM (pthread_kill), which the
// waiter has blocked and so receives through sigwait; `requested` tells it apart from a real one.
// The mutex orders the request against the waiter's registration, so a request made before the
// wait, during it, or as it ends is never lost and never sent to a thread that has returned.
struct ShutdownState {
  std::mutex mu;
  bool requested = false;  // a RequestShutdown not yet consumed by a wait
  bool has_waiter = false;
  pthread_t waiter{};
};

ShutdownState& State() {
  static ShutdownState state;
  return state;
}

sigset_t ShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}

// Consumes a wake-up SIGTERM that RequestShutdown sent to this thread while it was returning
// for another signal. Called with the lock held and after has_waiter was cleared, so any such
// signal is already pending.
void DrainWakeUp() {
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  timespec zero{0, 0};
  while (sigtimedwait(&term, nullptr, &zero) < 0 && errno == EINTR) {
  }
}

}  // namespace

void BlockShutdownSignals() {
  sigset_t set = ShutdownSignals();
  TRUSTMOE_CHECK(pthread_sigmask(SIG_BLOCK, &set, nullptr) == 0);
}

int WaitForShutdownSignal() {
  // sigwait needs the signals blocked in the calling thread; block them here too so that the
  // wake-up signal can never take its default action on this thread.
  BlockShutdownSignals();
  ShutdownState& state = State();
  {
    std::lock_guard<std::mutex> lock(state.mu);
    TRUSTMOE_CHECK(!state.has_waiter);  // one waiter at a time
    if (state.requested) {
      state.requested = false;
      return 0;
    }
    state.waiter = pthread_self();
    state.has_waiter = true;
  }
  const sigset_t set = ShutdownSignals();
  while (true) {
    int sig = 0;
    TRUSTMOE_CHECK(sigwait(&set, &sig) == 0);
    std::lock_guard<std::mutex> lock(state.mu);
    if (state.requested) {
      state.requested = false;
      state.has_waiter = false;
      DrainWakeUp();
      return 0;
    }
    if (sig == SIGHUP) continue;  // reserved for reloads; not a shutdown
    state.has_waiter = false;
    return sig;
  }
}

void RequestShutdown() {
  ShutdownState& state = State();
  std::lock_guard<std::mutex> lock(state.mu);
  state.requested = true;
  if (state.has_waiter) TRUSTMOE_CHECK(pthread_kill(state.waiter, SIGTERM) == 0);
}

}  // namespace trustmoe
