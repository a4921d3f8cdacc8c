// The small HTTP server each daemon runs for /metrics and /healthz (cpp-httplib).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "common/metrics.h"
#include "common/status.h"

namespace trustmoe {

struct HealthReport {
  bool healthy = true;
  std::string detail;  // one line: "ok", "not registered on the chain", ...
};

class HttpServer {
 public:
  // GET /metrics renders `metrics`; GET /healthz answers 200 "ok\n" or 503 with the detail
  // from `health` (called per request). Other paths are 404.
  HttpServer(MetricsRegistry* metrics, std::function<HealthReport()> health);
  ~HttpServer();  // stops

  // Binds `host:port` (port 0 picks a free one) and serves on a background thread.
  // Unavailable naming the address when the bind fails.
  Status Start(const std::string& host, int port);
  int port() const { return port_; }
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace trustmoe
