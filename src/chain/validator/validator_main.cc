// trustmoe-validator: one PBFT replica of the TrustMoE chain (docs/validator.md).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "chain/validator/validator.h"
#include "chain/validator/validator_config.h"
#include "chain/verify/verification.h"
#include "common/files.h"
#include "common/log.h"
#include "common/signals.h"
#include "common/systemd.h"

namespace trustmoe::validator {
namespace {

// Pings the systemd watchdog while the validator reports healthy, so that a stuck consensus
// thread gets the service restarted.
class Watchdog {
 public:
  explicit Watchdog(const Validator* validator) : validator_(validator) {
    interval_ms_ = systemd::WatchdogIntervalMs();
    if (interval_ms_ > 0) thread_ = std::thread([this] { Run(); });
  }
  ~Watchdog() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Run() {
    int64_t tick_ms = std::max<int64_t>(interval_ms_ / 3, 100);
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::milliseconds(tick_ms), [this] { return stop_; })) {
      HealthReport health = validator_->Health();
      if (health.healthy) {
        systemd::NotifyWatchdog();
      } else {
        TM_WARN("unhealthy, not pinging the watchdog: {}", health.detail);
      }
    }
  }

  const Validator* validator_;
  int64_t interval_ms_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

int Run(const std::string& config_path) {
  auto config = LoadValidatorConfig(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "trustmoe-validator: bad config: %s\n",
                 config.status().ToString().c_str());
    return 2;
  }
  config->log.process = "trustmoe-validator";
  if (Status s = InitLogging(config->log); !s.ok()) {
    std::fprintf(stderr, "trustmoe-validator: %s\n", s.ToString().c_str());
    return 2;
  }
  auto validator = Validator::Start(*config);
  if (!validator.ok()) {
    TM_ERROR("cannot start: {}", validator.status().ToString());
    return validator.status().code() == StatusCode::kUnavailable ? 1 : 2;
  }
  Validator* v = validator->get();
  if (!config->port_file.empty()) {
    std::string ports =
        std::to_string(v->grpc_port()) + " " + std::to_string(v->http_port()) + "\n";
    if (Status s = WriteFileAtomic(config->port_file, ports); !s.ok()) {
      TM_ERROR("{}", s.ToString());
      return 1;
    }
  }
  std::unique_ptr<verify::Verification> verification;
  if (config->verifying()) {
#ifdef TRUSTMOE_VERIFY_WITH_TORCH
    edge::RuntimeOptions runtime_options;
    runtime_options.device = "cpu";
    runtime_options.compute_dtype = edge::DType::kF32;
    runtime_options.device_bytes_max = config->verify_memory_bytes_max;
    runtime_options.threads = static_cast<int>(config->verify_torch_threads);
    auto runtime = edge::ExpertRuntime::Create(runtime_options);
    if (!runtime.ok()) {
      TM_ERROR("cannot start verification: {}", runtime.status().ToString());
      return 2;
    }
    auto started = verify::Verification::Start(*config, v, std::move(runtime).value());
    if (!started.ok()) {
      TM_ERROR("cannot start verification: {}", started.status().ToString());
      return 2;
    }
    verification = std::move(started).value();
#else
    TM_ERROR("[verify] store is set but this build has no libtorch (TRUSTMOE_WITH_TORCH=OFF): "
             "it cannot re-compute results; build with libtorch or set [verify] enabled = false");
    return 2;
#endif
  } else {
    TM_WARN("verification off ([verify] store unset or enabled = false): this validator orders "
            "results but does not vote on them");
  }
  systemd::NotifyReady("validator " + std::to_string(v->node()->id()) + " serving on port " +
                       std::to_string(v->grpc_port()));
  int sig = 0;
  {
    Watchdog watchdog(v);
    sig = WaitForShutdownSignal();
  }
  TM_INFO("signal {}: finishing the current step and stopping", sig);
  systemd::NotifyStopping();
  if (verification) verification->Stop();
  v->Stop();
  validator->reset();
  TM_INFO("stopped cleanly");
  return 0;
}

}  // namespace
}  // namespace trustmoe::validator

int main(int argc, char** argv) {
  trustmoe::BlockShutdownSignals();
  CLI::App app{"trustmoe-validator: a PBFT validator of the TrustMoE chain"};
  std::string config_path;
  app.add_option("-c,--config", config_path, "TOML config file")->required();
  app.set_version_flag("--version", "trustmoe-validator 0.1.0");
  CLI11_PARSE(app, argc, argv);
  return trustmoe::validator::Run(config_path);
}
