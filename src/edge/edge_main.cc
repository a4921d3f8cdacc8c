// trustmoe-edge: runs the experts the gate activates, signs and commits every result
// (docs/edge.md).
#include <CLI/CLI.hpp>

#include <chrono>
#include <climits>
#include <thread>

#include "common/files.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/malloc_tuning.h"
#include "common/signals.h"
#include "common/systemd.h"
#include "edge/edge_config.h"
#include "edge/edge_node.h"
#include "edge/edge_service.h"
#include "edge/numeric.h"
#include "edge/runtime.h"
#include "net/transport.h"

namespace trustmoe::edge {
namespace {

int Run(const std::string& config_path) {
  auto config = LoadEdgeConfig(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "trustmoe-edge: bad config: %s\n", config.status().ToString().c_str());
    return 2;
  }
  config->log.process = "trustmoe-edge";
  if (Status s = InitLogging(config->log); !s.ok()) {
    std::fprintf(stderr, "trustmoe-edge: %s\n", s.ToString().c_str());
    return 2;
  }
  // Backward carries two tensors; leave room for the rest of the message.
  config->transport.message_bytes_max = static_cast<int>(
      std::min<uint64_t>(2 * config->tensor_bytes_max + (1 << 20), INT_MAX));

  RuntimeOptions runtime_options;
  runtime_options.device = config->device;
  auto dtype = ParseDTypeFlag(config->dtype);  // LoadEdgeConfig resolved and checked it
  if (!dtype.ok()) {
    TM_ERROR("runtime: {}", dtype.status().ToString());
    return 2;
  }
  runtime_options.compute_dtype = *dtype;
  runtime_options.device_bytes_max = config->gpu_memory_bytes_max;
  runtime_options.batch_rows_max = config->batch_rows_max;
  runtime_options.batch_wait_us = config->batch_wait_us;
  auto runtime = ExpertRuntime::Create(runtime_options);
  if (!runtime.ok()) {
    TM_ERROR("runtime: {}", runtime.status().ToString());
    return 2;
  }
  TM_INFO("runtime on {} ({})", (*runtime)->DeviceDescription(), config->dtype);
  auto parts = EdgeNode::Build(*config, std::move(*runtime));
  if (!parts.ok()) {
    TM_ERROR("{}", parts.status().ToString());
    return 2;
  }
  MetricsRegistry metrics;
  EdgeNode node(std::move(*parts), &metrics);
  EdgeService service(&node);
  auto server = net::StartServer(config->listen, config->transport, {&service});
  if (!server.ok()) {
    TM_ERROR("{}", server.status().ToString());
    return 1;
  }
  HttpServer http(&metrics, [&node] {
    EdgeStatus s = node.status();
    return HealthReport{s.serving(), s.detail};
  });
  std::string http_host;
  int http_port = 0;
  (void)net::SplitHostPort(config->http_listen, &http_host, &http_port);
  if (Status s = http.Start(http_host, http_port); !s.ok()) {
    TM_ERROR("{}", s.ToString());
    return 1;
  }
  node.Start();
  if (!config->port_file.empty()) {
    std::string ports =
        std::to_string(server->bound_port) + " " + std::to_string(http.port()) + "\n";
    if (Status s = WriteFileAtomic(config->port_file, ports); !s.ok()) {
      TM_ERROR("{}", s.ToString());
      return 1;
    }
  }
  TM_INFO("trustmoe-edge 0.1.0 serving on port {} (http {}), edge key {}", server->bound_port,
          http.port(), node.edge_key().Hex());
  systemd::NotifyReady("serving on port " + std::to_string(server->bound_port));

  // Watchdog pings from their own thread while the process is alive and responsive.
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
  TM_INFO("signal {}: finishing calls in progress (up to {} ms)", sig, config->drain_timeout_ms);
  systemd::NotifyStopping();
  node.StopServing();
  // gRPC's Shutdown(deadline) waits for every client connection to close, not only for the
  // calls in progress: a gate's idle channel would hold each stop for all of drain_timeout_ms.
  // So the calls are waited for here, and the server then shuts down at once.
  if (!node.WaitCallsDone(config->drain_timeout_ms)) {
    TM_WARN("calls still in progress after {} ms are cancelled", config->drain_timeout_ms);
  }
  server->server->Shutdown(std::chrono::system_clock::now());
  server->server->Wait();
  // Give the delivery thread a moment; what it cannot deliver stays in the outbox.
  if (!node.WaitOutboxEmpty(std::min<int64_t>(config->drain_timeout_ms, 2000))) {
    TM_INFO("{} result(s) stay in the outbox for the next start", node.Info().outbox_depth);
  }
  stopping = true;
  watchdog.join();
  http.Stop();
  TM_INFO("stopped cleanly");
  return 0;
}

}  // namespace
}  // namespace trustmoe::edge

int main(int argc, char** argv) {
  // Activations are megabytes per call: reuse heap buffers instead of a fresh mmap (and its
  // page faults) for every copy.
  trustmoe::TuneMallocForStreaming();
  trustmoe::BlockShutdownSignals();
  CLI::App app{"trustmoe-edge: runs TrustMoE experts and commits every result"};
  std::string config_path;
  app.add_option("-c,--config", config_path, "TOML config file")->required();
  app.set_version_flag("--version", "trustmoe-edge 0.1.0");
  CLI11_PARSE(app, argc, argv);
  return trustmoe::edge::Run(config_path);
}
