// trustmoe-gate: the job service. Researchers submit training and inference jobs; the gate
// keeps the backbone, gating network and data, routes activated rows to experts on edges, and
// records every job on the chain (docs/gate.md).
#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <climits>
#include <thread>

#include "common/files.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/signals.h"
#include "common/systemd.h"
#include "gate/gate_config.h"
#include "gate/gate_node.h"
#include "gate/job_service.h"
#include "net/transport.h"

namespace trustmoe::gate {
namespace {

int Run(const std::string& config_path) {
  auto config = LoadGateConfig(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "trustmoe-gate: bad config: %s\n", config.status().ToString().c_str());
    return 2;
  }
  config->log.process = "trustmoe-gate";
  if (Status s = InitLogging(config->log); !s.ok()) {
    std::fprintf(stderr, "trustmoe-gate: %s\n", s.ToString().c_str());
    return 2;
  }
  // JobService's own limit; the gate's clients of the store, the validators and the edges keep
  // theirs.
  net::TransportConfig serving = config->transport;
  serving.message_bytes_max =
      static_cast<int>(std::min<uint64_t>(config->request_bytes_max + (64 << 10), INT_MAX));
  MetricsRegistry metrics;
  auto node = GateNode::Open(*config, &metrics);
  if (!node.ok()) {
    TM_ERROR("{}", node.status().ToString());
    return 2;
  }
  JobService service(node->get(), config->request_bytes_max);
  auto server = net::StartServer(config->listen, serving, {&service});
  if (!server.ok()) {
    TM_ERROR("{}", server.status().ToString());
    return 1;
  }
  GateNode* raw = node->get();
  HttpServer http(&metrics, [raw] {
    return HealthReport{raw->healthy(), raw->healthy() ? "serving" : "stopping"};
  });
  std::string http_host;
  int http_port = 0;
  (void)net::SplitHostPort(config->http_listen, &http_host, &http_port);
  if (Status s = http.Start(http_host, http_port); !s.ok()) {
    TM_ERROR("{}", s.ToString());
    return 1;
  }
  (*node)->Start();
  if (!config->port_file.empty()) {
    std::string ports =
        std::to_string(server->bound_port) + " " + std::to_string(http.port()) + "\n";
    if (Status s = WriteFileAtomic(config->port_file, ports); !s.ok()) {
      TM_ERROR("{}", s.ToString());
      return 1;
    }
  }
  TM_INFO("trustmoe-gate 0.1.0 serving on port {} (http {}), gate key {}", server->bound_port,
          http.port(), (*node)->gate_key().Hex());
  systemd::NotifyReady("serving on port " + std::to_string(server->bound_port));
  std::atomic<bool> stopping{false};
  std::thread watchdog([&stopping] {
    const int64_t interval = systemd::WatchdogIntervalMs();
    if (interval <= 0) return;
    while (!stopping) {
      systemd::NotifyWatchdog();
      for (int64_t slept = 0; slept < interval / 2 && !stopping; slept += 100) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  });
  int sig = WaitForShutdownSignal();
  TM_INFO("signal {}: stopping; running jobs stop at their next step and resume at the next start",
          sig);
  systemd::NotifyStopping();
  (*node)->Stop();
  server->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server->server->Wait();
  stopping = true;
  watchdog.join();
  http.Stop();
  TM_INFO("stopped cleanly");
  return 0;
}

}  // namespace
}  // namespace trustmoe::gate

int main(int argc, char** argv) {
  // Before any thread starts: otherwise SIGTERM can reach a thread that does not block it and
  // kill the gate at once instead of stopping its jobs at a step.
  trustmoe::BlockShutdownSignals();
  CLI::App app{"trustmoe-gate: the TrustMoE job service"};
  std::string config_path;
  app.add_option("-c,--config", config_path, "TOML config file")->required();
  app.set_version_flag("--version", "trustmoe-gate 0.1.0");
  CLI11_PARSE(app, argc, argv);
  return trustmoe::gate::Run(config_path);
}
