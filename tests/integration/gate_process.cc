#include "tests/integration/gate_process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sstream>

#include "net/transport.h"

namespace trustmoe::gate::testing {
namespace {

// The gate loads libtorch and opens its job table before it writes its port file.
constexpr auto kStartTimeout = std::chrono::seconds(60);
// SIGTERM lets a running job finish its step (and a checkpoint under way) first.
constexpr auto kStopTimeout = std::chrono::seconds(60);

std::string TomlList(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ", ";
    out += "\"" + items[i] + "\"";
  }
  return out + "]";
}

}  // namespace

const char* GateBinary() { return TRUSTMOE_GATE_BIN; }

std::unique_ptr<GateProcess> GateProcess::Start(GateProcessOptions options) {
  std::unique_ptr<GateProcess> p(new GateProcess());
  p->options_ = std::move(options);
  Status saved = p->options_.key.SavePem(p->dir_.Sub("gate.pem"));
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

void GateProcess::WriteConfig() const {
  const GateProcessOptions& o = options_;
  std::ostringstream config;
  config << "listen = \"127.0.0.1:0\"\n"
         << "identity_key = \"" << dir_.Sub("gate.pem") << "\"\n"
         << "data_dir = \"" << data_dir() << "\"\n"
         << "genesis = \"" << o.genesis_path << "\"\n"
         << "port_file = \"" << dir_.Sub("ports") << "\"\n"
         << "dataset_dir = \"" << o.dataset_dir << "\"\n\n"
         << "[http]\nlisten = \"127.0.0.1:0\"\n\n"
         << "[log]\nlevel = \"info\"\n\n"
         << "[store]\nendpoints = " << TomlList(o.store_endpoints) << "\n\n"
         << "[chain]\nsubmit_timeout_ms = " << o.submit_timeout_ms << "\n\n"
         << "[jobs]\ncall_timeout_ms = " << o.call_timeout_ms << "\n"
         << "verdict_timeout_ms = " << o.verdict_timeout_ms << "\n"
         << "torch_threads = " << o.torch_threads << "\n\n"
         << "[edges]\ntensor_bytes_max = " << o.edge_tensor_bytes_max << "\n";
  storage::testing::WriteFileOrDie(dir_.Sub("gate.toml"), config.str());
}

Status GateProcess::Launch() {
  WriteConfig();
  auto started = storage::testing::SpawnDaemon(
      "trustmoe-gate", {GateBinary(), "--config", dir_.Sub("gate.toml")}, dir_.Sub("gate.log"),
      dir_.Sub("ports"), kStartTimeout);
  if (!started.ok()) return started.status();
  pid_ = started->pid;
  grpc_port_ = started->grpc_port;
  http_port_ = started->http_port;
  return Status::Ok();
}

GateProcess::~GateProcess() { Stop(); }

int GateProcess::Stop() {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  int status = 0;
  if (!storage::testing::WaitPid(pid_, kStopTimeout, &status)) {
    ADD_FAILURE() << "trustmoe-gate did not stop on SIGTERM; killing it. Log:\n" << Log();
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status, 0);
  }
  pid_ = -1;
  storage::testing::ProcessResult result;
  storage::testing::DecodeWait(status, &result);
  return result.exit_code;
}

Status GateProcess::Restart() {
  if (pid_ > 0) Stop();
  return Launch();
}

std::string GateProcess::Log() const { return storage::testing::ReadText(dir_.Sub("gate.log")); }

std::unique_ptr<JobClient> GateProcess::Client(std::shared_ptr<const crypto::PrivateKey> researcher,
                                               const std::string& chain_id) const {
  JobClientOptions options;
  options.endpoint = endpoint();
  options.chain_id = chain_id;
  options.key = std::move(researcher);
  auto client = JobClient::Create(std::move(options));
  if (!client.ok()) {
    ADD_FAILURE() << client.status().ToString();
    return nullptr;
  }
  return std::move(client).value();
}

std::unique_ptr<v1::JobService::Stub> GateProcess::Stub() const {
  auto channel = net::MakeChannel(endpoint(), net::TransportConfig{});
  if (!channel.ok()) {
    ADD_FAILURE() << channel.status().ToString();
    return nullptr;
  }
  return v1::JobService::NewStub(*channel);
}

}  // namespace trustmoe::gate::testing
