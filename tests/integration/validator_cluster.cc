#include "tests/integration/validator_cluster.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <rocksdb/db.h>

#include <chrono>
#include <fstream>
#include <map>

#include "storage/store_client.h"

namespace trustmoe::chain::testing {

using storage::testing::ReadText;
using storage::testing::WaitFor;
using storage::testing::WriteFileOrDie;

namespace {
constexpr auto kStartTimeout = std::chrono::seconds(30);
constexpr auto kStopTimeout = std::chrono::seconds(30);
}  // namespace

const char* ValidatorBinary() { return TRUSTMOE_VALIDATOR_BIN; }

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    socklen_t len = sizeof(addr);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

std::unique_ptr<ValidatorCluster> ValidatorCluster::Start(uint32_t f, ledger::ChainParams params,
                                                         const VerifyConfig& verify) {
  std::unique_ptr<ValidatorCluster> c(new ValidatorCluster());
  const uint32_t n = 3 * f + 1;
  c->admin_ = crypto::PrivateKey::Generate().value();
  c->genesis_.chain_id = "it-chain";
  c->genesis_.created_unix_ms = 1700000000000;
  c->genesis_.f = f;
  c->genesis_.admin_key = c->admin_.public_key();
  c->genesis_.params = params;
  c->members_.resize(n);
  for (uint32_t i = 0; i < n; ++i) {
    crypto::PrivateKey key = crypto::PrivateKey::Generate().value();
    ::mkdir(c->Sub(i, "").c_str(), 0700);
    EXPECT_TRUE(key.SavePem(c->Sub(i, "key.pem")).ok());
    c->genesis_.validators.push_back({"v" + std::to_string(i), key.public_key(),
                                      "127.0.0.1:" + std::to_string(FreePort())});
  }
  EXPECT_TRUE(c->genesis_.Validate().ok()) << c->genesis_.Validate().ToString();
  WriteFileOrDie(c->genesis_path(), c->genesis_.ToJson());
  for (uint32_t i = 0; i < n; ++i) {
    std::string config = "listen = \"" + c->endpoint(i) + "\"\n" +
                         "data_dir = \"" + c->Sub(i, "data") + "\"\n" +
                         "identity_key = \"" + c->Sub(i, "key.pem") + "\"\n" +
                         "genesis = \"" + c->genesis_path() + "\"\n" +
                         "port_file = \"" + c->Sub(i, "ports") + "\"\n" +
                         "[http]\nlisten = \"127.0.0.1:0\"\n";
    if (!verify.store.empty() && verify.off.count(i) == 0) {
      config += "[verify]\nstore = [";
      for (size_t s = 0; s < verify.store.size(); ++s) {
        config += (s > 0 ? ", \"" : "\"") + verify.store[s] + "\"";
      }
      config += "]\nthreads = " + std::to_string(verify.threads) + "\nresubmit_ms = 3000\n";
    }
    WriteFileOrDie(c->Sub(i, "validator.toml"), config);
  }
  for (uint32_t i = 0; i < n; ++i) {
    Status s = c->Launch(i);
    if (!s.ok()) {
      ADD_FAILURE() << s.ToString();
      return nullptr;
    }
  }
  return c;
}

crypto::PrivateKey ValidatorCluster::key(uint32_t i) const {
  auto key = crypto::PrivateKey::LoadPem(Sub(i, "key.pem"));
  EXPECT_TRUE(key.ok()) << key.status().ToString();
  return key.ok() ? *key : crypto::PrivateKey();
}

ValidatorCluster::~ValidatorCluster() {
  for (uint32_t i = 0; i < size(); ++i) Stop(i);
}

std::string ValidatorCluster::Sub(uint32_t i, const std::string& name) const {
  return dir_.Sub("v" + std::to_string(i) + (name.empty() ? "" : "/" + name));
}

std::vector<std::string> ValidatorCluster::endpoints() const {
  std::vector<std::string> out;
  for (uint32_t i = 0; i < size(); ++i) out.push_back(endpoint(i));
  return out;
}

std::string ValidatorCluster::data_dir(uint32_t i) const { return Sub(i, "data"); }

std::string ValidatorCluster::Log(uint32_t i) const { return ReadText(Sub(i, "log")); }

Status ValidatorCluster::Launch(uint32_t i) {
  Member& m = members_[i];
  const std::string port_file = Sub(i, "ports");
  ::unlink(port_file.c_str());
  m.pid = storage::testing::Spawn({ValidatorBinary(), "--config", Sub(i, "validator.toml")},
                                  Sub(i, "log"), Sub(i, "log"));
  if (m.pid < 0) return Status::Internal("fork failed");
  std::string why;
  int grpc_port = 0;
  bool up = WaitFor(
      [&] {
        int status = 0;
        if (::waitpid(m.pid, &status, WNOHANG) == m.pid) {
          m.pid = -1;
          why = "validator " + std::to_string(i) + " exited during start (status " +
                std::to_string(status) + ")";
          return true;
        }
        std::ifstream in(port_file);
        return static_cast<bool>(in >> grpc_port >> m.http_port);
      },
      kStartTimeout);
  if (!up) why = "validator " + std::to_string(i) + " did not write its port file in time";
  if (!why.empty()) {
    Kill9(i);
    return Status::Unavailable(why + "; its log:\n" + Log(i));
  }
  return Status::Ok();
}

void ValidatorCluster::Kill9(uint32_t i) {
  Member& m = members_[i];
  if (m.pid <= 0) return;
  ::kill(m.pid, SIGKILL);
  int status = 0;
  ::waitpid(m.pid, &status, 0);
  m.pid = -1;
}

int ValidatorCluster::Stop(uint32_t i) {
  Member& m = members_[i];
  if (m.pid <= 0) return -1;
  ::kill(m.pid, SIGTERM);
  int status = 0;
  if (!storage::testing::WaitPid(m.pid, kStopTimeout, &status)) {
    ADD_FAILURE() << "validator " << i << " did not stop on SIGTERM; killing it";
    ::kill(m.pid, SIGKILL);
    ::waitpid(m.pid, &status, 0);
  }
  m.pid = -1;
  storage::testing::ProcessResult result;
  storage::testing::DecodeWait(status, &result);
  return result.exit_code;
}

std::unique_ptr<ChainClient> ValidatorCluster::Client(std::vector<uint32_t> members,
                                                      uint32_t commit_timeout_ms) const {
  ChainClientOptions options;
  if (members.empty()) {
    options.endpoints = endpoints();
  } else {
    for (uint32_t i : members) options.endpoints.push_back(endpoint(i));
  }
  options.commit_timeout_ms = commit_timeout_ms;
  options.rpc_timeout_ms = 5000;
  auto client = ChainClient::Create(options, genesis_);
  if (!client.ok()) {
    ADD_FAILURE() << client.status().ToString();
    return nullptr;
  }
  return std::move(client).value();
}

std::optional<double> ValidatorCluster::Metric(uint32_t i, const std::string& name) const {
  auto text = storage::testing::HttpGet(members_[i].http_port, "/metrics");
  if (!text.ok()) return std::nullopt;
  return storage::testing::MetricValue(*text, name);
}

std::optional<ReportedHead> ValidatorCluster::Head(uint32_t i) const {
  auto client = Client({i});
  if (client == nullptr) return std::nullopt;
  auto head = client->GetHead();
  if (!head.ok()) return std::nullopt;
  return head.value();
}

ledger::Tx ValidatorCluster::RegisterEdge(const std::string& name) const {
  crypto::PrivateKey edge = crypto::PrivateKey::Generate().value();
  return RegisterNode(edge.public_key(), ledger::NodeRole::kEdge, name, "");
}

ledger::Tx ValidatorCluster::RegisterNode(const crypto::PublicKey& key, ledger::NodeRole role,
                                          const std::string& name,
                                          const std::string& endpoint) const {
  ledger::RegisterNode body{key, role, name, endpoint};
  return ledger::MakeTx(genesis_.chain_id, ledger::TxType::kRegisterNode, admin_,
                        ledger::FreshNonce(), body.Encode());
}

std::map<std::string, std::string> LedgerContents(const std::string& ledger_path) {
  std::map<std::string, std::string> out;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::OpenForReadOnly(rocksdb::Options(), ledger_path, &raw);
  EXPECT_TRUE(s.ok()) << ledger_path << ": " << s.ToString();
  if (!s.ok()) return out;
  std::unique_ptr<rocksdb::DB> db(raw);
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string key = it->key().ToString();
    if (key.starts_with("pbft/") || key[0] == 'c') continue;
    out[key] = it->value().ToString();
  }
  return out;
}

}  // namespace trustmoe::chain::testing
