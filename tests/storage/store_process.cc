#include "tests/storage/store_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <rocksdb/db.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

namespace trustmoe::storage::testing {
namespace {

using Ms = std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

constexpr Ms kStartTimeout = std::chrono::seconds(30);
constexpr Ms kStopTimeout = std::chrono::seconds(30);

}  // namespace

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

pid_t Spawn(const std::vector<std::string>& argv, const std::string& out_path,
            const std::string& err_path) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid != 0) return pid;  // parent (or -1)
  // Child: only async-signal-safe calls until exec.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(127);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (out < 0 || err < 0) ::_exit(126);
  ::dup2(out, STDOUT_FILENO);
  ::dup2(err, STDERR_FILENO);
  int devnull = ::open("/dev/null", O_RDONLY);
  if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
  ::execv(args[0], args.data());
  ::_exit(127);
}

void DecodeWait(int status, ProcessResult* result) {
  if (WIFEXITED(status)) {
    result->exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result->signal = WTERMSIG(status);
  }
}

bool WaitPid(pid_t pid, std::chrono::milliseconds timeout, int* status) {
  bool exited = false;
  WaitFor(
      [&] {
        pid_t got = ::waitpid(pid, status, WNOHANG);
        exited = got == pid || (got < 0 && errno == ECHILD);
        return exited;
      },
      timeout);
  return exited;
}

const char* StoreBinary() { return TRUSTMOE_STORE_BIN; }
const char* CliBinary() { return TRUSTMOE_CLI_BIN; }

// ---- files, time ----

TempDir::TempDir() {
  std::string tmpl = "/tmp/trustmoe-storage-test.XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
  }
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

Bytes RandomBytes(uint64_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Bytes out(size);
  uint64_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t v = rng();
    std::memcpy(out.data() + i, &v, 8);
  }
  uint64_t v = rng();
  for (; i < size; ++i, v >>= 8) out[i] = static_cast<uint8_t>(v);
  return out;
}

void WriteFileOrDie(const std::string& path, std::string_view data, uint32_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) {
    ADD_FAILURE() << "cannot create " << path << ": " << std::strerror(errno);
    return;
  }
  ::fchmod(fd, mode);  // the umask may have narrowed it
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ADD_FAILURE() << "cannot write " << path << ": " << std::strerror(errno);
      break;
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

void WriteFileOrDie(const std::string& path, const Bytes& data, uint32_t mode) {
  WriteFileOrDie(path, std::string_view(reinterpret_cast<const char*>(data.data()), data.size()),
                 mode);
}

std::optional<Bytes> ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

bool FileExists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

Result<StartedDaemon> SpawnDaemon(const std::string& name, const std::vector<std::string>& argv,
                                  const std::string& log_path, const std::string& port_file,
                                  Ms timeout) {
  ::unlink(port_file.c_str());
  StartedDaemon d;
  d.pid = Spawn(argv, log_path, log_path);
  if (d.pid < 0) return Status::Internal(std::string("fork: ") + std::strerror(errno));
  std::string why;
  bool up = WaitFor(
      [&] {
        int status = 0;
        if (::waitpid(d.pid, &status, WNOHANG) == d.pid) {
          d.pid = -1;
          why = name + " exited during start (status " + std::to_string(status) + ")";
          return true;
        }
        std::ifstream in(port_file);
        return static_cast<bool>(in >> d.grpc_port >> d.http_port);
      },
      timeout);
  if (!up) why = name + " did not write its port file in time";
  if (!why.empty()) {
    if (d.pid > 0) {
      ::kill(d.pid, SIGKILL);
      ::waitpid(d.pid, nullptr, 0);
    }
    return Status::Unavailable(why + "; its log:\n" + ReadText(log_path));
  }
  return d;
}

bool WaitFor(const std::function<bool()>& condition, Ms timeout) {
  auto deadline = SteadyClock::now() + timeout;
  while (true) {
    if (condition()) return true;
    if (SteadyClock::now() >= deadline) return false;
    std::this_thread::sleep_for(Ms(5));  // poll interval, not a wait for an event
  }
}

// ---- processes ----

ProcessResult RunProcess(const std::vector<std::string>& argv, const std::string& work_dir,
                         Ms timeout) {
  static std::atomic<int> counter{0};
  int n = counter++;
  std::string out_path = work_dir + "/run" + std::to_string(n) + ".out";
  std::string err_path = work_dir + "/run" + std::to_string(n) + ".err";
  ProcessResult result;
  pid_t pid = Spawn(argv, out_path, err_path);
  if (pid < 0) {
    ADD_FAILURE() << "fork: " << std::strerror(errno);
    return result;
  }
  int status = 0;
  if (!WaitPid(pid, timeout, &status)) {
    result.timed_out = true;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  DecodeWait(status, &result);
  if (result.timed_out) result.exit_code = -1;
  result.out = ReadText(out_path);
  result.err = ReadText(err_path);
  return result;
}

Result<std::string> HttpGet(int port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::Unavailable(std::string("socket: ") + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return Status::Unavailable("connect to port " + std::to_string(port) + ": " +
                               std::strerror(errno));
  }
  std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    return Status::Unavailable("send failed");
  }
  std::string response;
  char buf[16384];
  while (true) {
    ssize_t got = ::recv(fd, buf, sizeof buf, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return Status::Unavailable(std::string("recv: ") + std::strerror(errno));
    if (got == 0) break;
    response.append(buf, static_cast<size_t>(got));
  }
  auto header_end = response.find("\r\n\r\n");
  bool http = response.compare(0, 9, "HTTP/1.1 ") == 0 || response.compare(0, 9, "HTTP/1.0 ") == 0;
  if (header_end == std::string::npos || !http) {
    return Status::Unavailable("malformed HTTP response");
  }
  if (response.compare(9, 3, "200") != 0) {
    return Status::Unavailable("HTTP " + response.substr(9, 3));
  }
  return response.substr(header_end + 4);
}

std::optional<double> MetricValue(const std::string& metrics_text, const std::string& name) {
  std::istringstream in(metrics_text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > name.size() && line.compare(0, name.size(), name) == 0 &&
        line[name.size()] == ' ') {
      return std::strtod(line.c_str() + name.size() + 1, nullptr);
    }
  }
  return std::nullopt;
}

// ---- StoreProcess ----

std::unique_ptr<StoreProcess> StoreProcess::Start(StoreProcessOptions options) {
  std::unique_ptr<StoreProcess> p(new StoreProcess());
  p->options_ = std::move(options);
  auto identity = crypto::PrivateKey::Generate();
  auto writer = crypto::PrivateKey::Generate();
  if (!identity.ok() || !writer.ok()) {
    ADD_FAILURE() << "key generation failed";
    return nullptr;
  }
  Status saved = identity->SavePem(p->dir_.Sub("identity.pem"));
  if (saved.ok()) saved = writer->SavePem(p->writer_key_path());
  if (!saved.ok()) {
    ADD_FAILURE() << saved.ToString();
    return nullptr;
  }
  p->writer_ = std::make_shared<const crypto::PrivateKey>(*writer);

  std::string writers = "\"" + writer->public_key().Hex() + "\"";
  for (const crypto::PublicKey& key : p->options_.extra_writers) {
    writers += ", \"" + key.Hex() + "\"";
  }
  std::ostringstream config;
  config << "listen = \"127.0.0.1:0\"\n"
         << "data_dir = \"" << p->data_dir() << "\"\n"
         << "identity_key = \"" << p->dir_.Sub("identity.pem") << "\"\n"
         << "port_file = \"" << p->dir_.Sub("ports") << "\"\n"
         << "drain_timeout_s = 10\n\n"
         << "[http]\nlisten = \"127.0.0.1:0\"\n\n"
         << "[limits]\nblob_bytes_max = " << p->options_.blob_bytes_max << "\n"
         << "store_bytes_max = " << p->options_.store_bytes_max << "\n"
         << "concurrent_streams_max = " << p->options_.concurrent_streams_max << "\n\n"
         << "[auth]\nwriters = [" << writers << "]\n\n"
         << "[tls]\nmode = \"" << p->options_.tls.mode << "\"\n";
  if (!p->options_.tls.cert.empty()) config << "cert = \"" << p->options_.tls.cert << "\"\n";
  if (!p->options_.tls.key.empty()) config << "key = \"" << p->options_.tls.key << "\"\n";
  if (!p->options_.tls.ca.empty()) config << "ca = \"" << p->options_.tls.ca << "\"\n";
  WriteFileOrDie(p->config_path(), config.str());

  Status launched = p->Launch();
  if (!launched.ok()) {
    ADD_FAILURE() << launched.ToString();
    return nullptr;
  }
  return p;
}

Status StoreProcess::Launch() {
  auto started = SpawnDaemon("trustmoe-store", {StoreBinary(), "--config", config_path()},
                             log_path(), dir_.Sub("ports"), kStartTimeout);
  if (!started.ok()) return started.status();
  pid_ = started->pid;
  grpc_port_ = started->grpc_port;
  http_port_ = started->http_port;
  return Status::Ok();
}

StoreProcess::~StoreProcess() { Stop(); }

int StoreProcess::Stop() {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  int status = 0;
  ProcessResult result;
  if (!WaitPid(pid_, kStopTimeout, &status)) {
    ADD_FAILURE() << "trustmoe-store did not stop on SIGTERM; killing it. Log:\n" << Log();
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status, 0);
  }
  pid_ = -1;
  DecodeWait(status, &result);
  return result.exit_code;
}

void StoreProcess::Kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

Status StoreProcess::Restart() {
  if (pid_ > 0) Stop();
  return Launch();
}

std::string StoreProcess::Log() const { return ReadText(log_path()); }

Result<std::string> StoreProcess::Metrics() const { return HttpGet(http_port_, "/metrics"); }

std::optional<double> StoreProcess::Metric(const std::string& name) const {
  auto text = Metrics();
  if (!text.ok()) return std::nullopt;
  return MetricValue(*text, name);
}

std::unique_ptr<StoreClient> StoreProcess::Client(int rounds_max) const {
  auto client = StoreClient::Create(ClientOptions({endpoint()}, writer_, rounds_max));
  if (!client.ok()) {
    ADD_FAILURE() << client.status().ToString();
    return nullptr;
  }
  return std::move(client).value();
}

KeyCounts CountKeys(const std::string& db_path) {
  KeyCounts counts;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::OpenForReadOnly(rocksdb::Options(), db_path, &raw);
  EXPECT_TRUE(s.ok()) << s.ToString();
  if (!s.ok()) return counts;
  std::unique_ptr<rocksdb::DB> db(raw);
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string_view key = it->key().ToStringView();
    if (key.starts_with("m/")) counts.meta += 1;
    if (key.starts_with("l/")) counts.leaves += 1;
    if (key.starts_with("d/")) counts.chunks += 1;
    if (key.starts_with("u/")) counts.uploads += 1;
  }
  EXPECT_TRUE(it->status().ok()) << it->status().ToString();
  return counts;
}

StoreClientOptions ClientOptions(std::vector<std::string> endpoints,
                                 std::shared_ptr<const crypto::PrivateKey> writer, int rounds_max) {
  StoreClientOptions options;
  options.endpoints = std::move(endpoints);
  options.writer = std::move(writer);
  options.rounds_max = rounds_max;
  return options;
}

}  // namespace trustmoe::storage::testing
