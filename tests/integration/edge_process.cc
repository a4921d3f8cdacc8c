#include "tests/integration/edge_process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "net/transport.h"

namespace trustmoe::edge::testing {
namespace {

using storage::testing::WaitFor;

constexpr auto kStartTimeout = std::chrono::seconds(60);
constexpr auto kStopTimeout = std::chrono::seconds(30);
constexpr int64_t kRpcTimeoutMs = 10000;

std::string TomlList(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ", ";
    out += "\"" + items[i] + "\"";
  }
  return out + "]";
}

void SetDeadline(grpc::ClientContext* ctx) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(kRpcTimeoutMs));
}

}  // namespace

const char* EdgeBinary() { return TRUSTMOE_EDGE_BIN; }

std::unique_ptr<EdgeProcess> EdgeProcess::Start(EdgeProcessOptions options) {
  std::unique_ptr<EdgeProcess> p(new EdgeProcess());
  p->options_ = std::move(options);
  Status saved = p->options_.key.SavePem(p->dir_.Sub("edge.pem"));
  if (!saved.ok()) {
    ADD_FAILURE() << saved.ToString();
    return nullptr;
  }
  Status launched = p->Launch();
  if (!launched.ok()) {
    ADD_FAILURE() << launched.ToString();
    return nullptr;
  }
  return p;
}

void EdgeProcess::WriteConfig() const {
  const EdgeProcessOptions& o = options_;
  std::ostringstream config;
  config << "listen = \"127.0.0.1:0\"\n"
         << "identity_key = \"" << dir_.Sub("edge.pem") << "\"\n"
         << "data_dir = \"" << data_dir() << "\"\n"
         << "genesis = \"" << o.genesis_path << "\"\n"
         << "port_file = \"" << dir_.Sub("ports") << "\"\n"
         << "drain_timeout_ms = " << o.drain_timeout_ms << "\n\n"
         << "[http]\nlisten = \"127.0.0.1:0\"\n\n"
         << "[log]\nlevel = \"info\"\n\n"
         << "[store]\nendpoints = " << TomlList(o.store_endpoints) << "\n\n"
         << "[chain]\nvalidators = " << TomlList(o.validators) << "\n"
         << "registration_check_ms = " << o.registration_check_ms << "\n"
         << "submit_timeout_ms = " << o.submit_timeout_ms << "\n\n"
         << "[runtime]\ndevice = \"cpu\"\ndtype = \"f32\"\nbatch_wait_us = 0\n\n"
         << "[limits]\nrows_per_request_max = " << o.rows_per_request_max << "\n"
         << "tensor_bytes_max = " << o.tensor_bytes_max << "\n\n"
         << "[outbox]\nretry_min_ms = " << o.outbox_retry_min_ms << "\n"
         << "retry_max_ms = " << o.outbox_retry_max_ms << "\n";
  storage::testing::WriteFileOrDie(dir_.Sub("edge.toml"), config.str());
}

Status EdgeProcess::Launch() {
  WriteConfig();
  auto started = storage::testing::SpawnDaemon(
      "trustmoe-edge", {EdgeBinary(), "--config", dir_.Sub("edge.toml")}, dir_.Sub("edge.log"),
      dir_.Sub("ports"), kStartTimeout);
  if (!started.ok()) return started.status();
  pid_ = started->pid;
  grpc_port_ = started->grpc_port;
  http_port_ = started->http_port;
  return Status::Ok();
}

EdgeProcess::~EdgeProcess() { Stop(); }

int EdgeProcess::Stop() {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  int status = 0;
  if (!storage::testing::WaitPid(pid_, kStopTimeout, &status)) {
    ADD_FAILURE() << "trustmoe-edge did not stop on SIGTERM; killing it. Log:\n" << Log();
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status, 0);
  }
  pid_ = -1;
  storage::testing::ProcessResult result;
  storage::testing::DecodeWait(status, &result);
  return result.exit_code;
}

void EdgeProcess::Kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

Status EdgeProcess::Restart() {
  if (pid_ > 0) Stop();
  return Launch();
}

std::string EdgeProcess::Log() const { return storage::testing::ReadText(dir_.Sub("edge.log")); }

std::unique_ptr<v1::EdgeService::Stub> EdgeProcess::Stub() const {
  net::TransportConfig transport;
  transport.message_bytes_max = 64 << 20;  // room for the oversized requests of the tests
  auto channel = net::MakeChannel(endpoint(), transport);
  if (!channel.ok()) {
    ADD_FAILURE() << channel.status().ToString();
    return nullptr;
  }
  return v1::EdgeService::NewStub(*channel);
}

v1::HealthResponse EdgeProcess::Health() const {
  v1::HealthResponse response;
  auto stub = Stub();
  if (stub == nullptr) return response;
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  grpc::Status s = stub->Health(&ctx, v1::HealthRequest(), &response);
  EXPECT_TRUE(s.ok()) << "Health: " << s.error_message();
  return response;
}

v1::InfoResponse EdgeProcess::Info() const {
  v1::InfoResponse response;
  auto stub = Stub();
  if (stub == nullptr) return response;
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  grpc::Status s = stub->Info(&ctx, v1::InfoRequest(), &response);
  EXPECT_TRUE(s.ok()) << "Info: " << s.error_message();
  return response;
}

}  // namespace trustmoe::edge::testing
