#include "common/http_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "common/check.h"

namespace trustmoe {

namespace {

// Limits for a port that only answers small GETs: an idle or slow client cannot hold a worker
// for long, and Stop() waits at most about this long for a kept-alive connection.
constexpr time_t kKeepAliveTimeoutSec = 2;
constexpr time_t kReadTimeoutSec = 5;
constexpr time_t kWriteTimeoutSec = 5;
constexpr size_t kPayloadBytesMax = 64 * 1024;

}  // namespace

struct HttpServer::Impl {
  httplib::Server server;
  std::thread thread;
  std::atomic<bool> listen_returned{false};
};

HttpServer::HttpServer(MetricsRegistry* metrics, std::function<HealthReport()> health)
    : impl_(std::make_unique<Impl>()) {
  httplib::Server& server = impl_->server;
  server.set_keep_alive_timeout(kKeepAliveTimeoutSec);
  server.set_read_timeout(kReadTimeoutSec, 0);
  server.set_write_timeout(kWriteTimeoutSec, 0);
  server.set_payload_max_length(kPayloadBytesMax);
  // httplib's default sets SO_REUSEPORT, which lets a second daemon configured with the same port
  // bind it too and take half the scrapes; SO_REUSEADDR alone still allows a quick restart.
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server.Get("/metrics", [metrics](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics != nullptr ? metrics->Render() : std::string(),
                    "text/plain; version=0.0.4");
  });
  server.Get("/healthz",
             [health = std::move(health)](const httplib::Request&, httplib::Response& res) {
               HealthReport report = health ? health() : HealthReport{};
               if (report.healthy) {
                 res.set_content("ok\n", "text/plain");
                 return;
               }
               res.status = 503;
               res.set_content(report.detail + "\n", "text/plain");
             });
}

HttpServer::~HttpServer() { Stop(); }

Status HttpServer::Start(const std::string& host, int port) {
  if (impl_->thread.joinable()) {
    return Status::FailedPrecondition("HTTP server already started on port " +
                                      std::to_string(port_));
  }
  httplib::Server& server = impl_->server;
  const std::string address = host + ":" + std::to_string(port);
  int bound = -1;
  if (port == 0) {
    bound = server.bind_to_any_port(host);
  } else if (server.bind_to_port(host, port)) {
    bound = port;
  }
  if (bound < 0) return Status::Unavailable("cannot bind HTTP server to " + address);
  port_ = bound;
  impl_->listen_returned = false;
  impl_->thread = std::thread([impl = impl_.get()] {
    impl->server.listen_after_bind();
    impl->listen_returned = true;
  });
  // httplib's stop() does nothing until the listening loop has started, so a Stop() right after
  // Start() would hang; wait here until it runs (or has already given up).
  while (!server.is_running() && !impl_->listen_returned) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (impl_->listen_returned) {
    impl_->thread.join();
    return Status::Unavailable("HTTP server on " + address + " stopped as it started");
  }
  return Status::Ok();
}

void HttpServer::Stop() {
  if (!impl_->thread.joinable()) return;
  // stop() is a no-op before the loop runs and must be called only once while it runs (a second
  // call asserts in httplib), so wait for the loop and then call it once.
  while (!impl_->server.is_running() && !impl_->listen_returned) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!impl_->listen_returned) impl_->server.stop();
  impl_->thread.join();
}

}  // namespace trustmoe
