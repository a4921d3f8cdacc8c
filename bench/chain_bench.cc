// chain_bench: four trustmoe-validator processes on loopback, clients submitting signed
// transactions of a fixed size, against the bound of single-core Ed25519 verification measured
// in the same run (every replica verifies every transaction signature once).
//
//   chain_bench [--seconds S] [--submitters N] [--tx-bytes B] [--json] [--validator-bin PATH]
//               [--block-txs-max N] [--checkpoint-interval N] [--watermark-window N]
//               [--view-change-timeout-ms MS] [--window N] [--backlog-ms MS]
//               [--view-change-rate TX/S] [--log-level L] [--dir DIR] [--keep]
//
// Phases: (1) Ed25519 verify rate of tx-sized messages on one core; (2) saturation: submitters
// keep the cluster busy for S seconds (bounded backlog, see --window / --backlog-ms) and the
// committed rate is measured from a WatchBlocks stream; (3) half load: rate-limited submission at
// 50 % of that rate, commit latency = block seen on the stream - submit time; (4) kill -9 of the
// primary while submitting slowly to the others: time until a block of a later view commits;
// (5) SIGTERM to all, then ledger::VerifyChainAndState on one validator's ledger.
// Exit 0 when every phase ran (targets missed or not); 1 on errors, 2 on bad flags.
#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "chain/ledger/app.h"
#include "chain/ledger/block.h"
#include "chain/ledger/genesis.h"
#include "chain/ledger/ledger_store.h"
#include "chain/ledger/tx.h"
#include "common/log.h"
#include "crypto/ed25519.h"
#include "trustmoe/v1/chain.grpc.pb.h"
#include "bench/bench_util.h"

using namespace trustmoe;
using Clock = std::chrono::steady_clock;

namespace {

using ::trustmoe::bench::FreePort;

std::string CodeName(grpc::StatusCode code);

constexpr uint32_t kValidators = 4;  // f = 1
constexpr auto kStartTimeout = std::chrono::seconds(30);
constexpr auto kStopTimeout = std::chrono::seconds(30);
constexpr auto kDrainTimeout = std::chrono::seconds(20);
constexpr auto kNewViewTimeout = std::chrono::seconds(60);
constexpr int kRpcTimeoutMs = 5000;
constexpr double kTargetTxPerSec = 5000;
constexpr double kTargetP50Ms = 10;
constexpr double kTargetNewViewS = 2;
constexpr size_t kSaturationTxsMax = 400000;  // pre-signed pool bound (about 200 MiB at 512 B)

struct Options {
  double seconds = 10;
  uint32_t submitters = 8;
  uint32_t tx_bytes = 512;
  bool json = false;
  std::string validator_bin = TRUSTMOE_VALIDATOR_BIN;
  ledger::ChainParams params;
  uint32_t window = 0;     // outstanding txs in saturation; 0: 2 * block_txs_max
  int64_t backlog_ms = 0;  // oldest outstanding tx age in saturation; 0: timeout / 2
  double view_change_rate = 50;
  std::string log_level = "info";
  std::string dir;
  bool keep = false;
};

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

bool g_progress = true;  // progress lines on stdout (off with --json)

void Progress(const std::string& line) {
  if (!g_progress) return;
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "chain_bench: %s\n", what.c_str());
  std::exit(1);
}

void Usage() {
  std::fprintf(stderr,
               "usage: chain_bench [--seconds S] [--submitters N] [--tx-bytes B] [--json]\n"
               "  [--validator-bin PATH] [--block-txs-max N] [--checkpoint-interval N]\n"
               "  [--watermark-window N] [--view-change-timeout-ms MS] [--window N]\n"
               "  [--backlog-ms MS] [--view-change-rate TX/S] [--log-level L] [--dir DIR] "
               "[--keep]\n");
}

bool ParseFlags(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (arg == "--json") {
      o->json = true;
    } else if (arg == "--keep") {
      o->keep = true;
    } else if ((v = next()) == nullptr) {
      return false;
    } else if (arg == "--seconds") {
      o->seconds = std::strtod(v, nullptr);
    } else if (arg == "--submitters") {
      o->submitters = static_cast<uint32_t>(std::strtoul(v, nullptr, 10));
    } else if (arg == "--tx-bytes") {
      o->tx_bytes = static_cast<uint32_t>(std::strtoul(v, nullptr, 10));
    } else if (arg == "--validator-bin") {
      o->validator_bin = v;
    } else if (arg == "--block-txs-max") {
      o->params.block_txs_max = static_cast<uint32_t>(std::strtoul(v, nullptr, 10));
    } else if (arg == "--checkpoint-interval") {
      o->params.checkpoint_interval = std::strtoull(v, nullptr, 10);
    } else if (arg == "--watermark-window") {
      o->params.watermark_window = std::strtoull(v, nullptr, 10);
    } else if (arg == "--view-change-timeout-ms") {
      o->params.view_change_timeout_ms = std::strtoll(v, nullptr, 10);
    } else if (arg == "--window") {
      o->window = static_cast<uint32_t>(std::strtoul(v, nullptr, 10));
    } else if (arg == "--backlog-ms") {
      o->backlog_ms = std::strtoll(v, nullptr, 10);
    } else if (arg == "--view-change-rate") {
      o->view_change_rate = std::strtod(v, nullptr);
    } else if (arg == "--log-level") {
      o->log_level = v;
    } else if (arg == "--dir") {
      o->dir = v;
    } else {
      return false;
    }
  }
  if (o->window == 0) o->window = 2 * o->params.block_txs_max;
  if (o->backlog_ms == 0) o->backlog_ms = o->params.view_change_timeout_ms / 2;
  return o->seconds > 0 && o->submitters > 0 && o->view_change_rate > 0;
}

// ---- The cluster: keys, genesis, configs and four validator processes. ----

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  if (!out.flush()) Die("cannot write " + path);
}

// The child dies with this process (PR_SET_PDEATHSIG); stdout and stderr go to `log_path`.
pid_t Spawn(const std::vector<std::string>& argv, const std::string& log_path) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid != 0) return pid;
  // Child: only async-signal-safe calls until exec.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(127);
  int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) ::_exit(126);
  ::dup2(log, STDOUT_FILENO);
  ::dup2(log, STDERR_FILENO);
  int devnull = ::open("/dev/null", O_RDONLY);
  if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
  ::execv(args[0], args.data());
  ::_exit(127);
}

class Cluster {
 public:
  Cluster(const Options& options, std::string dir) : options_(options), dir_(std::move(dir)) {}
  ~Cluster() {
    for (uint32_t i = 0; i < pids_.size(); ++i) Kill9(i);
  }

  void Start() {
    admin_ = crypto::PrivateKey::Generate().value();
    genesis_.chain_id = "bench-chain";
    genesis_.created_unix_ms = 1700000000000;
    genesis_.f = 1;
    genesis_.admin_key = admin_.public_key();
    genesis_.params = options_.params;
    for (uint32_t i = 0; i < kValidators; ++i) {
      std::filesystem::create_directories(Sub(i, ""));
      crypto::PrivateKey key = crypto::PrivateKey::Generate().value();
      if (Status s = key.SavePem(Sub(i, "key.pem")); !s.ok()) Die(s.ToString());
      genesis_.validators.push_back(
          {"v" + std::to_string(i), key.public_key(), "127.0.0.1:" + std::to_string(FreePort())});
    }
    if (Status s = genesis_.Validate(); !s.ok()) Die("genesis: " + s.ToString());
    WriteFile(dir_ + "/genesis.json", genesis_.ToJson());
    for (uint32_t i = 0; i < kValidators; ++i) {
      WriteFile(Sub(i, "validator.toml"),
                "listen = \"" + endpoint(i) + "\"\n" + "data_dir = \"" + Sub(i, "data") + "\"\n" +
                    "identity_key = \"" + Sub(i, "key.pem") + "\"\n" + "genesis = \"" + dir_ +
                    "/genesis.json\"\n" + "port_file = \"" + Sub(i, "ports") + "\"\n" +
                    "[http]\nlisten = \"127.0.0.1:0\"\n" + "[log]\nlevel = \"" +
                    options_.log_level + "\"\n");
    }
    pids_.assign(kValidators, -1);
    for (uint32_t i = 0; i < kValidators; ++i) Launch(i);
  }

  void Kill9(uint32_t i) {
    if (pids_[i] <= 0) return;
    ::kill(pids_[i], SIGKILL);
    int status = 0;
    ::waitpid(pids_[i], &status, 0);
    pids_[i] = -1;
  }

  // SIGTERM to every running validator; the number that did not exit with code 0.
  int StopAll() {
    for (pid_t pid : pids_) {
      if (pid > 0) ::kill(pid, SIGTERM);
    }
    int failed = 0;
    for (uint32_t i = 0; i < kValidators; ++i) {
      if (pids_[i] <= 0) continue;
      int status = 0;
      auto deadline = Clock::now() + kStopTimeout;
      while (::waitpid(pids_[i], &status, WNOHANG) == 0 && Clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      if (Clock::now() >= deadline) {
        std::fprintf(stderr, "chain_bench: validator %u ignored SIGTERM; killing it\n", i);
        Kill9(i);
        ++failed;
        continue;
      }
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed;
      pids_[i] = -1;
    }
    return failed;
  }

  std::vector<pid_t> pids() const { return pids_; }
  std::string endpoint(uint32_t i) const { return genesis_.validators[i].endpoint; }
  std::string ledger_path(uint32_t i) const { return Sub(i, "data") + "/ledger"; }
  const ledger::Genesis& genesis() const { return genesis_; }
  const crypto::PrivateKey& admin() const { return admin_; }

 private:
  std::string Sub(uint32_t i, const std::string& name) const {
    return dir_ + "/v" + std::to_string(i) + (name.empty() ? "" : "/" + name);
  }

  void Launch(uint32_t i) {
    const std::string port_file = Sub(i, "ports");
    pids_[i] = Spawn({options_.validator_bin, "--config", Sub(i, "validator.toml")}, Sub(i, "log"));
    if (pids_[i] < 0) Die("fork failed");
    auto deadline = Clock::now() + kStartTimeout;
    while (Clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pids_[i], &status, WNOHANG) == pids_[i]) {
        pids_[i] = -1;
        Die("validator " + std::to_string(i) + " exited during start; see " + Sub(i, "log"));
      }
      int grpc_port = 0, http_port = 0;
      std::ifstream in(port_file);
      if (in >> grpc_port >> http_port) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    Die("validator " + std::to_string(i) + " wrote no port file in time; see " + Sub(i, "log"));
  }

  const Options& options_;
  std::string dir_;
  ledger::Genesis genesis_;
  crypto::PrivateKey admin_;
  std::vector<pid_t> pids_;
};

double CpuSecondsOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t paren = text.rfind(')');
  if (paren == std::string::npos) return 0;
  std::vector<std::string> fields;
  std::string field;
  for (char c : text.substr(paren + 2)) {
    if (c == ' ') {
      fields.push_back(field);
      field.clear();
    } else {
      field += c;
    }
  }
  // Fields after the command: state is index 0, utime 11, stime 12 (proc(5) fields 14, 15).
  if (fields.size() < 13) return 0;
  return (std::strtod(fields[11].c_str(), nullptr) + std::strtod(fields[12].c_str(), nullptr)) /
         static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double SelfCpuSeconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return s(usage.ru_utime) + s(usage.ru_stime);
}

double ClusterCpuSeconds(const Cluster& cluster) {
  double total = 0;
  for (pid_t pid : cluster.pids()) {
    if (pid > 0) total += CpuSecondsOf(pid);
  }
  return total;
}

// ---- Transactions. ----

struct PreparedTx {
  Bytes bytes;
  pbft::TxId id{};
};

// A RegisterNode of a made-up edge key (any 32 bytes: the key is recorded, not used), signed by
// the admin, padded through name and endpoint to exactly `tx_bytes`.
PreparedTx MakeBenchTx(const Cluster& cluster, uint64_t index, uint32_t tx_bytes) {
  std::array<uint8_t, 32> raw{};
  std::mt19937_64 rng(index * 0x9E3779B97F4A7C15ull + 1);
  for (size_t i = 0; i < raw.size(); i += 8) {
    uint64_t v = rng();
    std::memcpy(&raw[i], &v, 8);
  }
  ledger::RegisterNode body{crypto::PublicKey::FromBytes(raw).value(), ledger::NodeRole::kEdge, "e",
                            ""};
  const auto& admin = cluster.admin();
  const std::string& chain = cluster.genesis().chain_id;
  const uint64_t nonce = ledger::FreshNonce();
  const size_t base =
      ledger::MakeTx(chain, ledger::TxType::kRegisterNode, admin, nonce, body.Encode())
          .Encode()
          .size();
  if (tx_bytes < base || tx_bytes > base + ledger::kEndpointBytesMax + ledger::kNameBytesMax - 1) {
    Die("--tx-bytes must be within " + std::to_string(base) + ".." +
        std::to_string(base + ledger::kEndpointBytesMax + ledger::kNameBytesMax - 1));
  }
  size_t pad = tx_bytes - base;
  size_t endpoint = std::min<size_t>(pad, ledger::kEndpointBytesMax);
  body.endpoint.assign(endpoint, 'p');
  body.name.append(pad - endpoint, 'n');
  PreparedTx out;
  out.bytes =
      ledger::MakeTx(chain, ledger::TxType::kRegisterNode, admin, nonce, body.Encode()).Encode();
  if (out.bytes.size() != tx_bytes) Die("padded transaction has the wrong size");
  out.id = pbft::ComputeTxId(out.bytes);
  return out;
}

// Signs `count` transactions on every core (before any timing starts).
std::vector<PreparedTx> MakeTxs(const Cluster& cluster, size_t count, uint32_t tx_bytes) {
  static std::atomic<uint64_t> next_index{0};
  std::vector<PreparedTx> txs(count);
  const uint64_t first = next_index.fetch_add(count);
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> workers;
  for (unsigned t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (size_t i = t; i < count; i += threads)
        txs[i] = MakeBenchTx(cluster, first + i, tx_bytes);
    });
  }
  for (auto& w : workers) w.join();
  return txs;
}

// Phase 1: single-core Ed25519 verifications per second of tx-sized messages.
double VerifyRate(uint32_t tx_bytes) {
  auto key = crypto::PrivateKey::Generate().value();
  Bytes message(tx_bytes);
  std::mt19937 rng(7);
  for (auto& b : message) b = static_cast<uint8_t>(rng());
  const crypto::Signature sig = key.Sign(message);
  uint64_t verified = 0;
  auto t0 = Clock::now();
  do {
    for (int i = 0; i < 256; ++i) {
      if (!key.public_key().Verify(message, sig)) Die("Ed25519 verify failed");
    }
    verified += 256;
  } while (Clock::now() - t0 < std::chrono::seconds(1));
  return static_cast<double>(verified) / Seconds(t0, Clock::now());
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// A second bound, for latency: median time of a 4 KiB append + fdatasync in `dir` (the file
// system the ledgers use). A block commits after a few synced RocksDB writes in sequence.
double SyncWriteMs(const std::string& dir) {
  const std::string path = dir + "/sync_bound.bin";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) Die("cannot create " + path);
  std::vector<char> page(4096, 'x');
  std::vector<double> ms;
  for (int i = 0; i < 64; ++i) {
    auto t0 = Clock::now();
    if (::write(fd, page.data(), page.size()) != static_cast<ssize_t>(page.size()) ||
        ::fdatasync(fd) != 0) {
      Die("cannot write " + path);
    }
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  ::close(fd);
  ::unlink(path.c_str());
  return Percentile(ms, 0.5);
}

// ---- Tracking submissions and commits. ----

struct TxIdHash {
  size_t operator()(const pbft::TxId& d) const {
    size_t h = 0;
    for (int i = 0; i < 8; ++i) h = h << 8 | d[i];
    return h;
  }
};

struct BlockSeen {
  Clock::time_point at;
  uint64_t height = 0;
  uint64_t view = 0;
  size_t txs = 0;  // 0 for a null block
  bool null_block = false;
};

// Submit times of outstanding transactions and what the WatchBlocks stream saw.
class Tracker {
 public:
  void Submitted(const pbft::TxId& id, Clock::time_point at) {
    std::lock_guard lock(mu_);
    outstanding_.emplace(id, at);
    order_.emplace_back(at, id);
  }
  void Refused(const pbft::TxId& id, grpc::StatusCode code) {
    std::lock_guard lock(mu_);
    outstanding_.erase(id);
    ++errors_[code];
    cv_.notify_all();
  }

  void OnBlock(BlockSeen seen, const std::vector<pbft::TxId>& ids) {
    std::lock_guard lock(mu_);
    for (const auto& id : ids) {
      auto it = outstanding_.find(id);
      if (it == outstanding_.end()) continue;
      latencies_ms_.push_back(
          std::chrono::duration<double, std::milli>(seen.at - it->second).count());
      outstanding_.erase(it);
    }
    blocks_.push_back(seen);
    cv_.notify_all();
  }

  // Blocks until fewer than `window` transactions are outstanding and the oldest is younger
  // than `backlog`, or `until` passes. False when `until` passed.
  bool WaitForRoom(size_t window, std::chrono::milliseconds backlog, Clock::time_point until) {
    std::unique_lock lock(mu_);
    while (true) {
      DropCommittedFromOrder();
      bool young = order_.empty() || Clock::now() - order_.front().first < backlog;
      if (outstanding_.size() < window && young) return true;
      if (Clock::now() >= until) return false;
      cv_.wait_for(lock, std::chrono::milliseconds(5));
    }
  }

  // Waits until nothing is outstanding or `timeout` passes; returns what is left (and forgets
  // it, so the next phase starts clean).
  size_t Drain(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return outstanding_.empty(); });
    size_t left = outstanding_.size();
    outstanding_.clear();
    order_.clear();
    return left;
  }

  // Takes the phase's latencies and refusals.
  std::vector<double> TakeLatencies() {
    std::lock_guard lock(mu_);
    return std::exchange(latencies_ms_, {});
  }
  std::map<grpc::StatusCode, uint64_t> TakeErrors() {
    std::lock_guard lock(mu_);
    return std::exchange(errors_, {});
  }
  std::vector<BlockSeen> Blocks() const {
    std::lock_guard lock(mu_);
    return blocks_;
  }
  // First block of a view above `view` seen since `since`.
  std::optional<Clock::time_point> FirstBlockAbove(uint64_t view, Clock::time_point since) {
    std::lock_guard lock(mu_);
    for (const auto& b : blocks_) {
      if (!b.null_block && b.view > view && b.at >= since) return b.at;
    }
    return std::nullopt;
  }

 private:
  void DropCommittedFromOrder() {
    while (!order_.empty() && !outstanding_.count(order_.front().second)) order_.pop_front();
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<pbft::TxId, Clock::time_point, TxIdHash> outstanding_;
  std::deque<std::pair<Clock::time_point, pbft::TxId>> order_;
  std::vector<double> latencies_ms_;
  std::map<grpc::StatusCode, uint64_t> errors_;
  std::vector<BlockSeen> blocks_;
};

std::shared_ptr<grpc::Channel> Channel(const std::string& endpoint, int distinct) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(256 << 20);
  args.SetMaxSendMessageSize(256 << 20);
  // A distinct argument gives each submitter its own connection.
  args.SetInt("trustmoe.bench.channel", distinct);
  return grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args);
}

// A WatchBlocks stream from one validator, feeding the tracker.
class Watcher {
 public:
  Watcher(Tracker* tracker, const ledger::Genesis& genesis, const std::string& endpoint,
          uint64_t from_height)
      : tracker_(tracker),
        limits_(genesis.Limits()),
        stub_(v1::ChainService::NewStub(Channel(endpoint, -1))) {
    v1::WatchBlocksRequest request;
    request.set_from_height(from_height);
    reader_ = stub_->WatchBlocks(&context_, request);
    thread_ = std::thread([this] { Run(); });
  }
  ~Watcher() {
    context_.TryCancel();
    thread_.join();
  }
  bool failed() const { return failed_; }

 private:
  void Run() {
    v1::BlockInfo info;
    while (reader_->Read(&info)) {
      BlockSeen seen{Clock::now(), info.height(), 0, 0, info.block().empty()};
      std::vector<pbft::TxId> ids;
      if (!seen.null_block) {
        auto block = ledger::Block::Decode(AsBytes(info.block()), limits_);
        if (!block.ok()) {
          std::fprintf(stderr, "chain_bench: undecodable block %llu: %s\n",
                       static_cast<unsigned long long>(info.height()),
                       block.status().ToString().c_str());
          failed_ = true;
          continue;
        }
        seen.view = block->header.view;
        seen.txs = block->txs.size();
        for (const Bytes& tx : block->txs) ids.push_back(pbft::ComputeTxId(tx));
      }
      tracker_->OnBlock(seen, ids);
    }
    grpc::Status s = reader_->Finish();
    if (!s.ok() && s.error_code() != grpc::StatusCode::CANCELLED) failed_ = true;
  }
  static ByteSpan AsBytes(const std::string& s) {
    return ByteSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  }

  Tracker* tracker_;
  ledger::BlockLimits limits_;
  std::unique_ptr<v1::ChainService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::BlockInfo>> reader_;
  std::atomic<bool> failed_{false};
  std::thread thread_;
};

// ---- Load. ----

struct LoadSpec {
  std::vector<std::string> endpoints;  // spread over these
  uint32_t submitters = 1;
  double rate = 0;                       // tx/s; 0: as fast as the window allows
  size_t window = 0;                     // rate 0 only: outstanding bound
  std::chrono::milliseconds backlog{0};  // rate 0 only: oldest outstanding age bound
  Clock::time_point until;
  std::atomic<bool>* stop = nullptr;  // optional early stop
};

struct LoadResult {
  uint64_t submitted = 0;
  bool ran_out = false;  // every pre-signed transaction was used
};

LoadResult RunLoad(const LoadSpec& spec, const std::vector<PreparedTx>& txs, Tracker* tracker) {
  std::atomic<size_t> next{0};
  std::atomic<uint64_t> submitted{0};
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (uint32_t t = 0; t < spec.submitters; ++t) {
    threads.emplace_back([&, t] {
      auto stub = v1::ChainService::NewStub(
          Channel(spec.endpoints[t % spec.endpoints.size()], static_cast<int>(t)));
      v1::SubmitTxRequest request;
      request.set_no_wait(true);
      v1::SubmitTxResponse response;
      while (Clock::now() < spec.until && !(spec.stop && spec.stop->load())) {
        if (spec.rate == 0 && !tracker->WaitForRoom(spec.window, spec.backlog, spec.until)) {
          break;
        }
        size_t i = next.fetch_add(1);
        if (i >= txs.size()) break;
        if (spec.rate > 0) {
          auto due = t0 + std::chrono::duration_cast<Clock::duration>(
                              std::chrono::duration<double>(i / spec.rate));
          if (due >= spec.until) break;
          std::this_thread::sleep_until(due);
        }
        request.set_tx(txs[i].bytes.data(), txs[i].bytes.size());
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() +
                             std::chrono::milliseconds(kRpcTimeoutMs));
        tracker->Submitted(txs[i].id, Clock::now());
        grpc::Status s = stub->SubmitTx(&context, request, &response);
        if (!s.ok()) {
          static std::atomic<bool> told{false};
          if (!told.exchange(true)) {
            std::fprintf(stderr, "    first refusal (validator %s): %s %s\n",
                         spec.endpoints[t % spec.endpoints.size()].c_str(),
                         CodeName(s.error_code()).c_str(), s.error_message().c_str());
          }
          tracker->Refused(txs[i].id, s.error_code());
        }
        submitted.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  return {submitted.load(), next.load() >= txs.size()};
}

// Committed transactions per second from blocks seen in [from, to).
struct Committed {
  double tx_per_s = 0;
  size_t txs = 0;
  size_t blocks = 0;  // null blocks included
  uint64_t max_view = 0;
};

// What the stream saw committed in [from, to).
Committed CommittedIn(const std::vector<BlockSeen>& blocks, Clock::time_point from,
                      Clock::time_point to) {
  Committed out;
  for (const auto& b : blocks) {
    if (b.at < from || b.at >= to) continue;
    out.txs += b.txs;
    ++out.blocks;
    out.max_view = std::max(out.max_view, b.view);
  }
  out.tx_per_s = static_cast<double>(out.txs) / Seconds(from, to);
  return out;
}

std::string CodeName(grpc::StatusCode code) {
  static const char* kNames[] = {"OK",
                                 "CANCELLED",
                                 "UNKNOWN",
                                 "INVALID_ARGUMENT",
                                 "DEADLINE_EXCEEDED",
                                 "NOT_FOUND",
                                 "ALREADY_EXISTS",
                                 "PERMISSION_DENIED",
                                 "RESOURCE_EXHAUSTED",
                                 "FAILED_PRECONDITION",
                                 "ABORTED",
                                 "OUT_OF_RANGE",
                                 "UNIMPLEMENTED",
                                 "INTERNAL",
                                 "UNAVAILABLE",
                                 "DATA_LOSS",
                                 "UNAUTHENTICATED"};
  int c = static_cast<int>(code);
  return c >= 0 && c <= 16 ? kNames[c] : std::to_string(c);
}

nlohmann::json ErrorsJson(const std::map<grpc::StatusCode, uint64_t>& errors) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [code, n] : errors) out[CodeName(code)] = n;
  return out;
}

std::optional<v1::HeadInfo> Head(const std::string& endpoint) {
  auto stub = v1::ChainService::NewStub(Channel(endpoint, -2));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(kRpcTimeoutMs));
  v1::HeadInfo head;
  if (!stub->GetHead(&context, v1::GetHeadRequest(), &head).ok()) return std::nullopt;
  return head;
}

std::vector<std::string> Endpoints(const Cluster& cluster, int except) {
  std::vector<std::string> out;
  for (uint32_t i = 0; i < kValidators; ++i) {
    if (static_cast<int>(i) != except) out.push_back(cluster.endpoint(i));
  }
  return out;
}

}  // namespace

// ---- Phases. ----

namespace {

struct Results {
  double verify_per_s = 0;  // the bound: the better of the two measurements
  double verify_start_per_s = 0;
  double verify_end_per_s = 0;
  double sync_write_ms = 0;
  double saturation_tx_per_s = 0;
  double saturation_blocks_per_s = 0;
  uint64_t saturation_submitted = 0;
  uint64_t saturation_max_view = 0;
  bool saturation_ran_out = false;
  double cpu_us_per_tx = 0;         // all four validators together
  double client_cpu_us_per_tx = 0;  // this process: submitters and the WatchBlocks reader
  double cores_used = 0;            // validators and this process, during saturation
  size_t saturation_left = 0;
  std::map<grpc::StatusCode, uint64_t> saturation_errors;
  double half_rate = 0;
  double half_tx_per_s = 0;
  double half_blocks_per_s = 0;
  size_t half_committed = 0;
  size_t half_left = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  std::map<grpc::StatusCode, uint64_t> half_errors;
  uint64_t old_view = 0;
  uint32_t killed = 0;
  double new_view_s = -1;  // -1: none within the timeout
  std::map<grpc::StatusCode, uint64_t> view_change_errors;
  int stop_failures = 0;
  uint64_t ledger_blocks = 0;
  uint64_t ledger_txs = 0;
  double verify_chain_s = 0;
  bool verify_chain_ok = false;
  std::string verify_chain_reason;
};

void Saturation(const Options& o, Cluster& cluster, Tracker& tracker, Results& r) {
  // Every replica verifies every signature, so the cluster commits at most verify_per_s per
  // core it has, divided by four; half as much again in reserve.
  const double cores = std::min<double>(kValidators, std::thread::hardware_concurrency());
  size_t count = std::min<size_t>(
      kSaturationTxsMax,
      static_cast<size_t>(r.verify_per_s * cores / kValidators * o.seconds * 1.5) + o.window);
  Progress("    signing " + std::to_string(count) + " transactions");
  std::vector<PreparedTx> txs = MakeTxs(cluster, count, o.tx_bytes);
  Progress("    submitting");
  double cpu0 = ClusterCpuSeconds(cluster);
  double self0 = SelfCpuSeconds();
  LoadSpec spec;
  spec.endpoints = Endpoints(cluster, -1);
  spec.submitters = o.submitters;
  spec.window = o.window;
  spec.backlog = std::chrono::milliseconds(o.backlog_ms);
  const auto t0 = Clock::now();
  spec.until =
      t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.seconds));
  LoadResult load = RunLoad(spec, txs, &tracker);
  const auto t1 = std::min(Clock::now(), spec.until);
  double cpu1 = ClusterCpuSeconds(cluster);
  double self1 = SelfCpuSeconds();
  r.cores_used = (cpu1 - cpu0 + self1 - self0) / Seconds(t0, t1);
  r.saturation_submitted = load.submitted;
  r.saturation_ran_out = load.ran_out;
  Committed committed = CommittedIn(tracker.Blocks(), t0, t1);
  r.saturation_tx_per_s = committed.tx_per_s;
  r.saturation_max_view = committed.max_view;
  r.saturation_blocks_per_s = static_cast<double>(committed.blocks) / Seconds(t0, t1);
  if (committed.txs > 0) {
    r.cpu_us_per_tx = (cpu1 - cpu0) * 1e6 / committed.txs;
    r.client_cpu_us_per_tx = (self1 - self0) * 1e6 / committed.txs;
  }
  r.saturation_left = tracker.Drain(kDrainTimeout);
  tracker.TakeLatencies();
  r.saturation_errors = tracker.TakeErrors();
}

void HalfLoad(const Options& o, Cluster& cluster, Tracker& tracker, Results& r) {
  r.half_rate = std::max(1.0, r.saturation_tx_per_s / 2);
  size_t count = static_cast<size_t>(r.half_rate * o.seconds) + 16;
  Progress("    signing " + std::to_string(count) + " transactions");
  std::vector<PreparedTx> txs = MakeTxs(cluster, count, o.tx_bytes);
  Progress("    submitting");
  LoadSpec spec;
  spec.endpoints = Endpoints(cluster, -1);
  spec.submitters = o.submitters;
  spec.rate = r.half_rate;
  const auto t0 = Clock::now();
  spec.until =
      t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.seconds));
  RunLoad(spec, txs, &tracker);
  Committed committed = CommittedIn(tracker.Blocks(), t0, spec.until);
  r.half_tx_per_s = committed.tx_per_s;
  r.half_blocks_per_s = static_cast<double>(committed.blocks) / o.seconds;
  r.half_left = tracker.Drain(kDrainTimeout);
  std::vector<double> latencies = tracker.TakeLatencies();
  r.half_committed = latencies.size();
  r.p50_ms = Percentile(latencies, 0.50);
  r.p99_ms = Percentile(latencies, 0.99);
  r.half_errors = tracker.TakeErrors();
}

// Kills the primary, keeps submitting to the others, and times the first block of a later
// view. Returns the validator to read the ledger from (one that stayed up).
uint32_t ViewChange(const Options& o, Cluster& cluster, Tracker& tracker,
                    std::unique_ptr<Watcher>& watcher, Results& r) {
  auto head = Head(cluster.endpoint(0));
  for (uint32_t i = 1; !head && i < kValidators; ++i) head = Head(cluster.endpoint(i));
  if (!head) Die("no validator answers GetHead");
  r.old_view = head->view();
  r.killed = static_cast<uint32_t>(r.old_view % kValidators);
  const uint32_t watch = (r.killed + 1) % kValidators;
  // Watch a validator that stays up.
  watcher.reset();
  watcher = std::make_unique<Watcher>(&tracker, cluster.genesis(), cluster.endpoint(watch),
                                      head->height() + 1);
  size_t count = static_cast<size_t>(o.view_change_rate *
                                     std::chrono::duration<double>(kNewViewTimeout).count()) +
                 16;
  std::vector<PreparedTx> txs = MakeTxs(cluster, count, o.tx_bytes);
  std::atomic<bool> stop{false};
  LoadSpec spec;
  spec.endpoints = Endpoints(cluster, static_cast<int>(r.killed));
  spec.submitters = std::min<uint32_t>(o.submitters, 3);
  spec.rate = o.view_change_rate;
  spec.until = Clock::now() + kNewViewTimeout;
  spec.stop = &stop;
  const auto killed_at = Clock::now();
  cluster.Kill9(r.killed);
  std::thread load([&] { RunLoad(spec, txs, &tracker); });
  std::optional<Clock::time_point> seen;
  while (!(seen = tracker.FirstBlockAbove(r.old_view, killed_at)) && Clock::now() < spec.until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  stop = true;
  load.join();
  if (seen) r.new_view_s = Seconds(killed_at, *seen);
  tracker.Drain(std::chrono::seconds(5));
  tracker.TakeLatencies();
  r.view_change_errors = tracker.TakeErrors();
  return watch;
}

void VerifyLedger(Cluster& cluster, uint32_t which, Results& r) {
  const ledger::Genesis& genesis = cluster.genesis();
  ledger::LedgerOptions options;
  options.path = cluster.ledger_path(which);
  options.read_only = true;
  options.validators = genesis.Validators();
  options.limits = genesis.Limits();
  options.genesis_digest = genesis.Hash();
  auto store = ledger::LedgerStore::Open(options);
  if (!store.ok()) Die("open ledger " + options.path + ": " + store.status().ToString());
  const auto t0 = Clock::now();
  ledger::ChainCheck check =
      ledger::VerifyChainAndState(**store, genesis, ledger::TxRegistry::Default());
  r.verify_chain_s = Seconds(t0, Clock::now());
  r.verify_chain_ok = check.ok;
  r.verify_chain_reason = check.reason;
  r.ledger_blocks = (*store)->Head().height;
  for (uint64_t h = 1; h <= r.ledger_blocks; ++h) {
    auto raw = (*store)->RawBlock(h);
    if (!raw.ok() || raw->empty()) continue;
    auto block = ledger::Block::Decode(*raw, options.limits);
    if (block.ok()) r.ledger_txs += block->txs.size();
  }
}

std::string ErrorsText(const std::map<grpc::StatusCode, uint64_t>& errors) {
  std::string out;
  for (const auto& [code, n] : errors) {
    out += (out.empty() ? "" : ", ") + CodeName(code) + " " + std::to_string(n);
  }
  return out.empty() ? "none" : out;
}

void PrintTable(const Options& o, const Results& r) {
  const double bound = r.verify_per_s / kValidators;
  const double chain_blocks_per_s = r.ledger_blocks / std::max(r.verify_chain_s, 1e-9);
  const double chain_txs_per_s = r.ledger_txs / std::max(r.verify_chain_s, 1e-9);
  std::printf("  %-34s %10.0f /s    (bound, one core; %.0f at start, %.0f at end)\n",
              "ed25519 verify", r.verify_per_s, r.verify_start_per_s, r.verify_end_per_s);
  std::printf("  %-34s %10.0f /s    (bound: 4 replicas on one core)\n", "  verify rate / 4", bound);
  std::printf("  %-34s %10.2f ms    (bound for latency, median)\n", "4 KiB write + fdatasync",
              r.sync_write_ms);
  std::printf("  %-34s %10.0f tx/s  %5.2fx bound  %5.2fx target 5000\n", "committed, saturated",
              r.saturation_tx_per_s, r.saturation_tx_per_s / bound,
              r.saturation_tx_per_s / kTargetTxPerSec);
  std::printf("  %-34s %10.1f /s    (%.0f txs per block)\n", "  blocks", r.saturation_blocks_per_s,
              r.saturation_tx_per_s / std::max(r.saturation_blocks_per_s, 1e-9));
  std::printf("  %-34s %10.0f us    (CPU of 4 validators per committed tx; client %.0f us)\n",
              "  cpu per tx", r.cpu_us_per_tx, r.client_cpu_us_per_tx);
  std::printf("  %-34s %10.2f       (of %u; validators and this process)\n", "  cores busy",
              r.cores_used, std::thread::hardware_concurrency());
  std::printf("  %-34s %10.0f tx/s  (offered %.0f tx/s; %.1f blocks/s, %.0f txs per block)\n",
              "committed, half load", r.half_tx_per_s, r.half_rate, r.half_blocks_per_s,
              r.half_tx_per_s / std::max(r.half_blocks_per_s, 1e-9));
  std::printf("  %-34s %10.2f ms    %5.2fx target 10 ms  %5.1fx fdatasync\n",
              "  commit latency p50", r.p50_ms, r.p50_ms / kTargetP50Ms,
              r.p50_ms / std::max(r.sync_write_ms, 1e-9));
  std::printf("  %-34s %10.2f ms\n", "  commit latency p99", r.p99_ms);
  if (r.new_view_s >= 0) {
    std::printf("  %-34s %10.2f s     %5.2fx target 2 s (view-change timeout %lld ms)\n",
                "new view after killing primary", r.new_view_s, r.new_view_s / kTargetNewViewS,
                static_cast<long long>(o.params.view_change_timeout_ms));
  } else {
    std::printf("  %-34s %10s       (no block of a later view within %lld s)\n",
                "new view after killing primary", "none",
                static_cast<long long>(kNewViewTimeout.count()));
  }
  std::printf("  %-34s %10.0f blocks/s %.0f tx/s  %5.2fx verify rate (%s)\n",
              "ledger verify (chain + state)", chain_blocks_per_s, chain_txs_per_s,
              chain_txs_per_s / r.verify_per_s, r.verify_chain_ok ? "ok" : "FAILED");
  std::printf("refusals: saturation %s; half load %s; view change %s\n",
              ErrorsText(r.saturation_errors).c_str(), ErrorsText(r.half_errors).c_str(),
              ErrorsText(r.view_change_errors).c_str());
  std::printf(
      "saturation: %llu submitted, highest view %llu%s; uncommitted after the phase: "
      "saturation %zu, half load %zu\n",
      static_cast<unsigned long long>(r.saturation_submitted),
      static_cast<unsigned long long>(r.saturation_max_view),
      r.saturation_ran_out ? ", ran out of pre-signed txs" : "", r.saturation_left, r.half_left);
  std::printf(
      "ratio committed/bound %.2f committed/target %.2f p50/target %.2f "
      "new-view/target %.2f ledger-verify %.0f blocks/s\n",
      r.saturation_tx_per_s / bound, r.saturation_tx_per_s / kTargetTxPerSec,
      r.p50_ms / kTargetP50Ms, r.new_view_s >= 0 ? r.new_view_s / kTargetNewViewS : -1,
      chain_blocks_per_s);
}

void PrintJson(const Options& o, const Results& r) {
  nlohmann::json j;
  j["seconds"] = o.seconds;
  j["submitters"] = o.submitters;
  j["tx_bytes"] = o.tx_bytes;
  j["block_txs_max"] = o.params.block_txs_max;
  j["verify_per_s"] = r.verify_per_s;
  j["verify_start_per_s"] = r.verify_start_per_s;
  j["verify_end_per_s"] = r.verify_end_per_s;
  j["bound_tx_per_s"] = r.verify_per_s / kValidators;
  j["sync_write_ms"] = r.sync_write_ms;
  j["saturation"] = {{"committed_tx_per_s", r.saturation_tx_per_s},
                     {"submitted", r.saturation_submitted},
                     {"blocks_per_s", r.saturation_blocks_per_s},
                     {"highest_view", r.saturation_max_view},
                     {"ran_out", r.saturation_ran_out},
                     {"cpu_us_per_tx", r.cpu_us_per_tx},
                     {"client_cpu_us_per_tx", r.client_cpu_us_per_tx},
                     {"cores_busy", r.cores_used},
                     {"uncommitted", r.saturation_left},
                     {"refused", ErrorsJson(r.saturation_errors)}};
  j["half_load"] = {{"offered_tx_per_s", r.half_rate},
                    {"committed_tx_per_s", r.half_tx_per_s},
                    {"blocks_per_s", r.half_blocks_per_s},
                    {"committed", r.half_committed},
                    {"uncommitted", r.half_left},
                    {"p50_ms", r.p50_ms},
                    {"p99_ms", r.p99_ms},
                    {"refused", ErrorsJson(r.half_errors)}};
  j["view_change"] = {
      {"old_view", r.old_view},
      {"killed", r.killed},
      {"new_view_s", r.new_view_s >= 0 ? nlohmann::json(r.new_view_s) : nlohmann::json(nullptr)},
      {"refused", ErrorsJson(r.view_change_errors)}};
  j["ledger_verify"] = {{"ok", r.verify_chain_ok},
                        {"reason", r.verify_chain_reason},
                        {"blocks", r.ledger_blocks},
                        {"txs", r.ledger_txs},
                        {"seconds", r.verify_chain_s},
                        {"blocks_per_s", r.ledger_blocks / std::max(r.verify_chain_s, 1e-9)},
                        {"txs_per_s", r.ledger_txs / std::max(r.verify_chain_s, 1e-9)}};
  j["ratios"] = {
      {"committed_over_bound", r.saturation_tx_per_s / (r.verify_per_s / 4)},
      {"committed_over_target", r.saturation_tx_per_s / kTargetTxPerSec},
      {"p50_over_target", r.p50_ms / kTargetP50Ms},
      {"new_view_over_target", r.new_view_s >= 0 ? nlohmann::json(r.new_view_s / kTargetNewViewS)
                                                 : nlohmann::json(nullptr)}};
  std::printf("%s\n", j.dump(2).c_str());
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!ParseFlags(argc, argv, &o)) {
    Usage();
    return 2;
  }
  (void)InitLogging({.level = "warn", .format = LogFormat::kText, .process = "chain_bench"});
  ::signal(SIGPIPE, SIG_IGN);
  bool own_dir = o.dir.empty();
  if (own_dir) {
    char tmpl[] = "/tmp/chain_bench.XXXXXX";
    if (!::mkdtemp(tmpl)) Die("mkdtemp failed");
    o.dir = tmpl;
  } else {
    std::error_code ec;
    std::filesystem::create_directories(o.dir, ec);
    if (ec) Die("cannot create " + o.dir + ": " + ec.message());
  }
  g_progress = !o.json;
  auto say = [&](const char* fmt, auto... args) {
    if (g_progress) {
      std::printf(fmt, args...);
      std::fflush(stdout);
    }
  };
  say("chain_bench: 4 validators on loopback, %u-byte txs, %u submitters, %.0f s per phase, "
      "block_txs_max %u, logs in %s\n",
      o.tx_bytes, o.submitters, o.seconds, o.params.block_txs_max, o.dir.c_str());
  Results r;
  r.verify_start_per_s = VerifyRate(o.tx_bytes);
  r.verify_per_s = r.verify_start_per_s;
  r.sync_write_ms = SyncWriteMs(o.dir);
  Cluster cluster(o, o.dir);
  cluster.Start();
  Tracker tracker;
  auto watcher = std::make_unique<Watcher>(&tracker, cluster.genesis(), cluster.endpoint(1), 1);
  say("==> saturation (window %u txs, backlog %lld ms)\n", o.window,
      static_cast<long long>(o.backlog_ms));
  Saturation(o, cluster, tracker, r);
  say("==> half load (%.0f tx/s)\n", r.saturation_tx_per_s / 2);
  HalfLoad(o, cluster, tracker, r);
  say("==> view change (kill -9 of the primary)\n");
  uint32_t survivor = ViewChange(o, cluster, tracker, watcher, r);
  bool watch_failed = watcher->failed();
  watcher.reset();
  say("==> stopping (SIGTERM), verifying validator %u's ledger\n", survivor);
  r.stop_failures = cluster.StopAll();
  // Again now that the cluster is down: on a shared machine the rate moves with its load.
  r.verify_end_per_s = VerifyRate(o.tx_bytes);
  r.verify_per_s = std::max(r.verify_start_per_s, r.verify_end_per_s);
  VerifyLedger(cluster, survivor, r);
  if (o.json) {
    PrintJson(o, r);
  } else {
    PrintTable(o, r);
  }
  if (watch_failed) std::fprintf(stderr, "chain_bench: the WatchBlocks stream failed\n");
  if (r.stop_failures > 0) {
    std::fprintf(stderr, "chain_bench: %d validators did not stop cleanly (logs in %s)\n",
                 r.stop_failures, o.dir.c_str());
  }
  const bool error = watch_failed || r.stop_failures > 0 || !r.verify_chain_ok;
  if (own_dir && !o.keep && !error) std::filesystem::remove_all(o.dir);
  return error ? 1 : 0;
}
