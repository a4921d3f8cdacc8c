// trustmoe-store: the content-addressed blob service.
#include <CLI/CLI.hpp>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "common/malloc_tuning.h"
#include "common/files.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/signals.h"
#include "common/systemd.h"
#include "crypto/ed25519.h"
#include "net/transport.h"
#include "storage/blob_store.h"
#include "storage/store_config.h"
#include "storage/store_service.h"

namespace trustmoe::storage {
namespace {

// Runs garbage collection, metric updates and watchdog pings until stopped.
class Housekeeper {
 public:
  Housekeeper(BlobStore* store, const StoreConfig& config, MetricsRegistry* metrics)
      : store_(store), config_(config) {
    stored_bytes_ = metrics->GetGauge("trustmoe_store_stored_bytes", "Bytes of stored blobs");
    blobs_ = metrics->GetGauge("trustmoe_store_blobs", "Number of stored blobs");
    reserved_ = metrics->GetGauge("trustmoe_store_reserved_bytes",
                                  "Bytes reserved by uploads in progress");
    gc_removed_ = metrics->GetCounter("trustmoe_store_gc_removed_blobs_total",
                                      "Unpinned blobs removed by garbage collection");
    capacity_ = metrics->GetGauge("trustmoe_store_capacity_bytes", "store_bytes_max");
    capacity_->Set(static_cast<double>(config.store_bytes_max));
    thread_ = std::thread([this] { Run(); });
  }
  ~Housekeeper() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  void Run() {
    int64_t watchdog_ms = systemd::WatchdogIntervalMs();
    int64_t tick_ms = watchdog_ms > 0 ? std::min<int64_t>(watchdog_ms / 2, 1000) : 1000;
    auto next_gc = std::chrono::steady_clock::now() + std::chrono::seconds(config_.gc_interval_s);
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      cv_.wait_for(lock, std::chrono::milliseconds(tick_ms));
      if (stop_) break;
      if (watchdog_ms > 0) systemd::NotifyWatchdog();
      if (std::chrono::steady_clock::now() >= next_gc) {
        auto report = store_->CollectGarbage();
        if (report.ok() && report->blobs_removed > 0) {
          TM_INFO("garbage collection removed {} blob(s), {} bytes", report->blobs_removed,
                  report->bytes_removed);
          gc_removed_->Inc(static_cast<double>(report->blobs_removed));
        } else if (!report.ok()) {
          TM_ERROR("garbage collection failed: {}", report.status().ToString());
        }
        next_gc = std::chrono::steady_clock::now() + std::chrono::seconds(config_.gc_interval_s);
      }
      stored_bytes_->Set(static_cast<double>(store_->stored_bytes()));
      blobs_->Set(static_cast<double>(store_->blob_count()));
      reserved_->Set(static_cast<double>(store_->reserved_bytes()));
    }
  }

  BlobStore* store_;
  const StoreConfig& config_;
  Gauge* stored_bytes_;
  Gauge* blobs_;
  Gauge* reserved_;
  Gauge* capacity_;
  Counter* gc_removed_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

int Run(const std::string& config_path) {
  auto config = LoadStoreConfig(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "trustmoe-store: bad config: %s\n", config.status().ToString().c_str());
    return 2;
  }
  config->log.process = "trustmoe-store";
  if (Status s = InitLogging(config->log); !s.ok()) {
    std::fprintf(stderr, "trustmoe-store: %s\n", s.ToString().c_str());
    return 2;
  }
  auto identity = crypto::PrivateKey::LoadPem(config->identity_key);
  if (!identity.ok()) {
    TM_ERROR("identity key: {}", identity.status().ToString());
    return 2;
  }
  if (config->writers.empty()) {
    TM_WARN("no writer keys in [auth]: this store accepts no uploads");
  }
  BlobStoreOptions store_options;
  store_options.path = config->data_dir;
  store_options.blob_bytes_max = config->blob_bytes_max;
  store_options.store_bytes_max = config->store_bytes_max;
  store_options.retention_ms = config->retention_s * 1000;
  if (Status s = MakeDirs(config->data_dir, 0700); !s.ok()) {
    TM_ERROR("{}", s.ToString());
    return 1;
  }
  auto store = BlobStore::Open(store_options);
  if (!store.ok()) {
    TM_ERROR("{}", store.status().ToString());
    return 1;
  }

  MetricsRegistry metrics;
  StoreServiceOptions service_options;
  service_options.writers = config->writers;
  service_options.concurrent_streams_max = config->concurrent_streams_max;
  StoreService service(store->get(), service_options, &metrics);
  auto server = net::StartServer(config->listen, config->transport, {&service});
  if (!server.ok()) {
    TM_ERROR("{}", server.status().ToString());
    return 1;
  }
  HttpServer http(&metrics, [] { return HealthReport{true, "ok"}; });
  std::string http_host;
  int http_port = 0;
  net::SplitHostPort(config->http_listen, &http_host, &http_port).ok();
  if (Status s = http.Start(http_host, http_port); !s.ok()) {
    TM_ERROR("{}", s.ToString());
    return 1;
  }
  if (!config->port_file.empty()) {
    std::string ports = std::to_string(server->bound_port) + " " + std::to_string(http.port()) + "\n";
    if (Status s = WriteFileAtomic(config->port_file, ports); !s.ok()) {
      TM_ERROR("{}", s.ToString());
      return 1;
    }
  }
  Housekeeper housekeeper(store->get(), *config, &metrics);
  TM_INFO("trustmoe-store {} serving {} blob(s) on port {} (http {}), identity {}",
          "0.1.0", (*store)->blob_count(), server->bound_port, http.port(),
          identity->public_key().Hex());
  systemd::NotifyReady("serving on port " + std::to_string(server->bound_port));

  int sig = WaitForShutdownSignal();
  TM_INFO("signal {}: finishing in-flight streams (up to {} s)", sig, config->drain_timeout_s);
  systemd::NotifyStopping();
  server->server->Shutdown(std::chrono::system_clock::now() +
                           std::chrono::seconds(config->drain_timeout_s));
  server->server->Wait();
  http.Stop();
  TM_INFO("stopped cleanly");
  return 0;
}

}  // namespace
}  // namespace trustmoe::storage

int main(int argc, char** argv) {
  trustmoe::TuneMallocForStreaming();
  trustmoe::BlockShutdownSignals();
  CLI::App app{"trustmoe-store: content-addressed blob service of TrustMoE"};
  std::string config_path;
  app.add_option("-c,--config", config_path, "TOML config file")->required();
  app.set_version_flag("--version", "trustmoe-store 0.1.0");
  CLI11_PARSE(app, argc, argv);
  return trustmoe::storage::Run(config_path);
}
