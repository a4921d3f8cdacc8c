#include "bench/loopback_daemons.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "chain/ledger/tx.h"
#include "net/transport.h"
#include "bench/bench_util.h"

namespace trustmoe::bench {
namespace {

using ::trustmoe::bench::FreePort;

using Clock = std::chrono::steady_clock;

constexpr uint32_t kValidators = 4;  // f = 1
constexpr auto kValidatorStartTimeout = std::chrono::seconds(30);
constexpr auto kStoreStartTimeout = std::chrono::seconds(30);
// The edge creates its runtime (CUDA context, cuBLAS) before it serves.
constexpr auto kEdgeStartTimeout = std::chrono::seconds(120);
constexpr auto kStopTimeout = std::chrono::seconds(30);
constexpr auto kPollInterval = std::chrono::milliseconds(10);
constexpr int64_t kRpcTimeoutMs = 10000;
constexpr uint32_t kCommitTimeoutMs = 30000;

const char* EnvOr(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

Status WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  if (!out.flush()) return Status::Internal("cannot write " + path);
  return Status::Ok();
}

std::string TomlList(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i > 0 ? ", \"" : "\"") + items[i] + "\"";
  return out + "]";
}

// The child dies with this process (SIGTERM, so that it shuts down cleanly); stdout and stderr
// are appended to `log_path`. -1 when fork fails.
pid_t Spawn(const std::vector<std::string>& argv, const std::string& log_path) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  // Child: only async-signal-safe calls until exec.
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != parent) ::_exit(127);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) ::_exit(126);
  ::dup2(log, STDOUT_FILENO);
  ::dup2(log, STDERR_FILENO);
  const int devnull = ::open("/dev/null", O_RDONLY);
  if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
  ::execv(args[0], args.data());
  ::_exit(127);
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace

DaemonBinaries DefaultDaemonBinaries() {
  return {EnvOr("TRUSTMOE_VALIDATOR_BIN", TRUSTMOE_VALIDATOR_BIN),
          EnvOr("TRUSTMOE_STORE_BIN", TRUSTMOE_STORE_BIN),
          EnvOr("TRUSTMOE_EDGE_BIN", TRUSTMOE_EDGE_BIN)};
}

Status CheckDaemonBinaries(const DaemonBinaries& binaries) {
  const std::pair<const char*, const std::string*> named[] = {
      {"trustmoe-validator", &binaries.validator},
      {"trustmoe-store", &binaries.store},
      {"trustmoe-edge", &binaries.edge}};
  for (const auto& [name, path] : named) {
    if (!path->empty() && ::access(path->c_str(), X_OK) == 0) continue;
    const std::string flag = std::string(name).substr(std::string_view("trustmoe-").size());
    std::string env = "TRUSTMOE_" + flag + "_BIN";
    for (char& c : env) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return Status::FailedPrecondition(std::string(name) + " not found or not executable at '" +
                                      *path + "': build it (ninja " + name + ") or pass --" + flag +
                                      "-bin PATH (or set " + env + ")");
  }
  return Status::Ok();
}

// ---- TempDir ----

Result<std::unique_ptr<TempDir>> TempDir::Create(const std::string& prefix) {
  std::string pattern = std::string(EnvOr("TMPDIR", "/tmp")) + "/" + prefix + "-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    return Status::Internal("mkdtemp " + pattern + ": " + std::strerror(errno));
  }
  return std::unique_ptr<TempDir>(new TempDir(pattern));
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

// ---- Daemon ----

Result<std::unique_ptr<Daemon>> Daemon::Start(std::string name, const std::string& binary,
                                              const std::string& config, std::string log,
                                              const std::string& port_file,
                                              std::chrono::milliseconds start_timeout) {
  std::unique_ptr<Daemon> d(new Daemon());
  d->name_ = std::move(name);
  d->log_ = std::move(log);
  ::unlink(port_file.c_str());
  d->pid_ = Spawn({binary, "--config", config}, d->log_);
  if (d->pid_ < 0) return Status::Internal("fork " + d->name_ + ": " + std::strerror(errno));
  const auto deadline = Clock::now() + start_timeout;
  while (Clock::now() < deadline) {
    int status = 0;
    if (::waitpid(d->pid_, &status, WNOHANG) == d->pid_) {
      d->pid_ = -1;
      const std::string how = WIFEXITED(status) ? "with code " + std::to_string(WEXITSTATUS(status))
                                                : "on signal " + std::to_string(WTERMSIG(status));
      return Status::Unavailable(d->name_ + " exited during start (" + how + "); its log:\n" +
                                 d->LogTail());
    }
    std::ifstream in(port_file);
    if (in >> d->grpc_port_ >> d->http_port_) return d;
    std::this_thread::sleep_for(kPollInterval);
  }
  d->Stop();
  return Status::Unavailable(d->name_ + " wrote no port file within " +
                             std::to_string(start_timeout.count()) + " ms; its log:\n" +
                             d->LogTail());
}

Daemon::~Daemon() { Stop(); }

void Daemon::Terminate() {
  if (pid_ > 0) ::kill(pid_, SIGTERM);
}

int Daemon::Stop() {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  int status = 0;
  bool exited = false;
  const auto deadline = Clock::now() + kStopTimeout;
  while (!(exited = ::waitpid(pid_, &status, WNOHANG) == pid_) && Clock::now() < deadline) {
    std::this_thread::sleep_for(kPollInterval);
  }
  if (!exited) {
    std::fprintf(stderr, "%s did not stop within %lld s of SIGTERM; killing it\n", name_.c_str(),
                 static_cast<long long>(kStopTimeout.count()));
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status, 0);
  }
  pid_ = -1;
  return exited && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string Daemon::LogTail(size_t bytes_max) const {
  const std::string text = ReadText(log_);
  return text.size() <= bytes_max ? text : "..." + text.substr(text.size() - bytes_max);
}

// ---- LoopbackDaemons ----

Result<std::unique_ptr<LoopbackDaemons>> LoopbackDaemons::Start(
    const DaemonBinaries& binaries, std::vector<crypto::PublicKey> store_writers, bool verify) {
  TRUSTMOE_RETURN_IF_ERROR(CheckDaemonBinaries(binaries));
  std::unique_ptr<LoopbackDaemons> d(new LoopbackDaemons());
  d->binaries_ = binaries;
  TRUSTMOE_ASSIGN_OR_RETURN(d->dir_, TempDir::Create("trustmoe-bench"));
  if (verify) {
    TRUSTMOE_RETURN_IF_ERROR(d->StartStore(store_writers));
    TRUSTMOE_RETURN_IF_ERROR(d->StartValidators(d->store_->endpoint()));
  } else {
    TRUSTMOE_RETURN_IF_ERROR(d->StartValidators(""));
    TRUSTMOE_RETURN_IF_ERROR(d->StartStore(store_writers));
  }
  return d;
}

Status LoopbackDaemons::StartValidators(const std::string& verify_store) {
  TRUSTMOE_ASSIGN_OR_RETURN(admin_, crypto::PrivateKey::Generate());
  genesis_.chain_id = "bench-chain";
  genesis_.created_unix_ms = 1700000000000;
  genesis_.f = 1;
  genesis_.admin_key = admin_.public_key();
  for (uint32_t i = 0; i < kValidators; ++i) {
    const std::string dir = dir_->Sub("v" + std::to_string(i));
    if (::mkdir(dir.c_str(), 0700) != 0) return Status::Internal("mkdir " + dir);
    TRUSTMOE_ASSIGN_OR_RETURN(crypto::PrivateKey key, crypto::PrivateKey::Generate());
    TRUSTMOE_RETURN_IF_ERROR(key.SavePem(dir + "/key.pem"));
    genesis_.validators.push_back(
        {"v" + std::to_string(i), key.public_key(), "127.0.0.1:" + std::to_string(FreePort())});
  }
  TRUSTMOE_RETURN_IF_ERROR(genesis_.Validate());
  TRUSTMOE_RETURN_IF_ERROR(WriteText(dir_->Sub("genesis.json"), genesis_.ToJson()));
  for (uint32_t i = 0; i < kValidators; ++i) {
    const std::string dir = dir_->Sub("v" + std::to_string(i));
    TRUSTMOE_RETURN_IF_ERROR(
        WriteText(dir + "/validator.toml",
                  "listen = \"" + genesis_.validators[i].endpoint + "\"\ndata_dir = \"" + dir +
                      "/data\"\nidentity_key = \"" + dir + "/key.pem\"\ngenesis = \"" +
                      dir_->Sub("genesis.json") + "\"\nport_file = \"" + dir +
                      "/ports\"\n[http]\nlisten = \"127.0.0.1:0\"\n[log]\nlevel = \"warn\"\n" +
                      (verify_store.empty() ? std::string()
                                            : "[verify]\nstore = [\"" + verify_store + "\"]\n")));
  }
  for (uint32_t i = 0; i < kValidators; ++i) {
    const std::string dir = dir_->Sub("v" + std::to_string(i));
    TRUSTMOE_ASSIGN_OR_RETURN(auto validator,
                              Daemon::Start("validator " + std::to_string(i), binaries_.validator,
                                            dir + "/validator.toml", dir + "/log", dir + "/ports",
                                            kValidatorStartTimeout));
    validators_.push_back(std::move(validator));
  }
  return Status::Ok();
}

Status LoopbackDaemons::StartStore(const std::vector<crypto::PublicKey>& store_writers) {
  const std::string dir = dir_->Sub("store");
  if (::mkdir(dir.c_str(), 0700) != 0) return Status::Internal("mkdir " + dir);
  TRUSTMOE_ASSIGN_OR_RETURN(crypto::PrivateKey identity, crypto::PrivateKey::Generate());
  TRUSTMOE_ASSIGN_OR_RETURN(crypto::PrivateKey writer, crypto::PrivateKey::Generate());
  TRUSTMOE_RETURN_IF_ERROR(identity.SavePem(dir + "/identity.pem"));
  writer_ = std::make_shared<const crypto::PrivateKey>(writer);
  std::vector<std::string> writers = {writer.public_key().Hex()};
  for (const crypto::PublicKey& key : store_writers) writers.push_back(key.Hex());
  std::ostringstream config;
  config << "listen = \"127.0.0.1:0\"\n"
         << "data_dir = \"" << dir << "/data\"\n"
         << "identity_key = \"" << dir << "/identity.pem\"\n"
         << "port_file = \"" << dir << "/ports\"\n"
         << "drain_timeout_s = 10\n\n"
         << "[http]\nlisten = \"127.0.0.1:0\"\n\n"
         << "[log]\nlevel = \"warn\"\n\n"
         // Expert files (a Mixtral-shaped f32 one is 0.7 GiB) and every result's tensors.
         << "[limits]\nblob_bytes_max = " << (2ull << 30) << "\n"
         << "store_bytes_max = " << (256ull << 30) << "\n"
         << "concurrent_streams_max = 64\n\n"
         << "[auth]\nwriters = " << TomlList(writers) << "\n";
  TRUSTMOE_RETURN_IF_ERROR(WriteText(dir + "/store.toml", config.str()));
  TRUSTMOE_ASSIGN_OR_RETURN(
      store_, Daemon::Start("trustmoe-store", binaries_.store, dir + "/store.toml", dir + "/log",
                            dir + "/ports", kStoreStartTimeout));
  return Status::Ok();
}

Status LoopbackDaemons::StartEdge(const EdgeDaemonOptions& o) {
  if (edge_ != nullptr) return Status::FailedPrecondition("an edge is running already");
  const std::string dir = dir_->Sub("edge");
  if (::mkdir(dir.c_str(), 0700) != 0) return Status::Internal("mkdir " + dir);
  TRUSTMOE_RETURN_IF_ERROR(o.key.SavePem(dir + "/edge.pem"));
  std::ostringstream config;
  config << "listen = \"127.0.0.1:0\"\n"
         << "identity_key = \"" << dir << "/edge.pem\"\n"
         << "data_dir = \"" << dir << "/data\"\n"
         << "genesis = \"" << dir_->Sub("genesis.json") << "\"\n"
         << "port_file = \"" << dir << "/ports\"\n\n"
         << "[http]\nlisten = \"127.0.0.1:0\"\n\n"
         << "[log]\nlevel = \"" << o.log_level << "\"\n\n"
         << "[store]\nendpoints = " << TomlList({store_->endpoint()}) << "\n\n"
         << "[chain]\nregistration_check_ms = " << o.registration_check_ms << "\n\n"
         << "[runtime]\ndevice = \"" << o.device << "\"\ndtype = \"" << o.dtype << "\"\n"
         << "gpu_memory_bytes_max = " << o.gpu_memory_bytes_max << "\n"
         << "batch_rows_max = " << o.batch_rows_max << "\n"
         << "batch_wait_us = " << o.batch_wait_us << "\n\n"
         << "[limits]\nrows_per_request_max = " << o.rows_per_request_max << "\n"
         << "tensor_bytes_max = " << o.tensor_bytes_max << "\n";
  TRUSTMOE_RETURN_IF_ERROR(WriteText(dir + "/edge.toml", config.str()));
  TRUSTMOE_ASSIGN_OR_RETURN(
      edge_, Daemon::Start("trustmoe-edge", binaries_.edge, dir + "/edge.toml", dir + "/log",
                           dir + "/ports", kEdgeStartTimeout));
  return Status::Ok();
}

LoopbackDaemons::~LoopbackDaemons() { Stop(); }

int LoopbackDaemons::Stop() {
  int failed = 0;
  auto stop = [&](std::unique_ptr<Daemon>& d) {
    if (d != nullptr && d->running() && d->Stop() != 0) {
      std::fprintf(stderr, "%s did not exit cleanly; the end of its log:\n%s\n", d->name().c_str(),
                   d->LogTail(2000).c_str());
      ++failed;
    }
  };
  stop(edge_);
  stop(store_);
  // SIGTERM to every validator first, so that they stop together rather than one by one
  // watching the others go.
  for (auto& v : validators_) {
    if (v != nullptr) v->Terminate();
  }
  for (auto& v : validators_) stop(v);
  return failed;
}

Result<std::unique_ptr<chain::ChainClient>> LoopbackDaemons::ChainClient() const {
  chain::ChainClientOptions options;
  for (const auto& v : genesis_.validators) options.endpoints.push_back(v.endpoint);
  options.commit_timeout_ms = kCommitTimeoutMs;
  options.rpc_timeout_ms = kRpcTimeoutMs;
  return chain::ChainClient::Create(options, genesis_);
}

Result<std::unique_ptr<storage::StoreClient>> LoopbackDaemons::StoreClient() const {
  storage::StoreClientOptions options;
  options.endpoints = {store_->endpoint()};
  options.writer = writer_;
  return storage::StoreClient::Create(options);
}

Result<std::unique_ptr<v1::EdgeService::Stub>> LoopbackDaemons::EdgeStub(
    int message_bytes_max) const {
  if (edge_ == nullptr) return Status::FailedPrecondition("no edge is running");
  net::TransportConfig transport;
  transport.message_bytes_max = message_bytes_max;
  TRUSTMOE_ASSIGN_OR_RETURN(auto channel, net::MakeChannel(edge_->endpoint(), transport));
  return v1::EdgeService::NewStub(channel);
}

Status LoopbackDaemons::RegisterEdge(const crypto::PublicKey& key, const std::string& name,
                                     const std::string& endpoint) const {
  TRUSTMOE_ASSIGN_OR_RETURN(auto chain, ChainClient());
  ledger::RegisterNode body{key, ledger::NodeRole::kEdge, name, endpoint};
  ledger::Tx tx = ledger::MakeTx(genesis_.chain_id, ledger::TxType::kRegisterNode, admin_,
                                 ledger::FreshNonce(), body.Encode());
  return chain->Submit(tx.Encode(), /*wait=*/true).status().WithContext("registering the edge");
}

Status LoopbackDaemons::PublishExpert(const std::string& cid, const std::string& arch,
                                      uint64_t size) const {
  TRUSTMOE_ASSIGN_OR_RETURN(auto chain, ChainClient());
  ledger::PublishExpert body{cid, "bench/" + cid.substr(12, 12), arch, size};
  ledger::Tx tx = ledger::MakeTx(genesis_.chain_id, ledger::TxType::kPublishExpert, admin_,
                                 ledger::FreshNonce(), body.Encode());
  auto done = chain->Submit(tx.Encode(), /*wait=*/true);
  if (!done.ok() && done.status().code() != StatusCode::kAlreadyExists) {
    return done.status().WithContext("publishing expert " + cid);
  }
  return Status::Ok();
}

}  // namespace trustmoe::bench
