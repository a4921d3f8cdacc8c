#include "common/signals.h"

#include <pthread.h>
#include <signal.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

namespace trustmoe {
namespace {

// Runs WaitForShutdownSignal on a thread that has the signals blocked from its start.
class Waiter {
 public:
  Waiter() {
    BlockShutdownSignals();  // inherited by the thread below
    thread_ = std::thread([this] {
      handle_promise_.set_value(pthread_self());
      result_.set_value(WaitForShutdownSignal());
    });
    handle_ = handle_promise_.get_future().get();
  }
  ~Waiter() {
    if (thread_.joinable()) thread_.join();
  }
  pthread_t handle() const { return handle_; }
  // The signal number it returned, waiting at most 30 s.
  int Result() {
    auto future = result_.get_future();
    EXPECT_EQ(future.wait_for(std::chrono::seconds(30)), std::future_status::ready);
    thread_.join();
    return future.get();
  }

 private:
  std::promise<pthread_t> handle_promise_;
  std::promise<int> result_;
  pthread_t handle_{};
  std::thread thread_;
};

TEST(SignalsTest, RequestShutdownWakesWaiter) {
  Waiter waiter;
  RequestShutdown();
  EXPECT_EQ(waiter.Result(), 0);
}

TEST(SignalsTest, RequestBeforeWaitIsNotLost) {
  BlockShutdownSignals();
  RequestShutdown();
  EXPECT_EQ(WaitForShutdownSignal(), 0);
}

TEST(SignalsTest, ReturnsTheSignal) {
  Waiter waiter;
  ASSERT_EQ(pthread_kill(waiter.handle(), SIGINT), 0);
  EXPECT_EQ(waiter.Result(), SIGINT);
}

TEST(SignalsTest, SighupDoesNotStopTheWait) {
  Waiter waiter;
  ASSERT_EQ(pthread_kill(waiter.handle(), SIGHUP), 0);
  ASSERT_EQ(pthread_kill(waiter.handle(), SIGTERM), 0);
  EXPECT_EQ(waiter.Result(), SIGTERM);
}

TEST(SignalsTest, ProcessDirectedSignal) {
  // Every thread of this test binary that exists now was started after a BlockShutdownSignals
  // call or is the main thread, which blocked them above; the signal reaches the waiter.
  Waiter waiter;
  ASSERT_EQ(::kill(::getpid(), SIGTERM), 0);
  EXPECT_EQ(waiter.Result(), SIGTERM);
}

}  // namespace
}  // namespace trustmoe
