// Test harness for the storage and integration tests: a temporary directory, child processes
// with a deadline, a real `trustmoe-store` daemon on loopback port 0, and small helpers.
//
// Every wait polls a condition until a deadline; nothing sleeps for a fixed time hoping that
// something happened meanwhile. Children get PR_SET_PDEATHSIG so that a crashing test does not
// leave daemons behind, and every destructor stops what it started.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "common/status.h"
#include "crypto/ed25519.h"
#include "storage/store_client.h"

namespace trustmoe::storage::testing {

// The binaries under test (set by CMake).
const char* StoreBinary();
const char* CliBinary();

// A fresh directory under /tmp (mkdtemp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// `size` pseudo-random bytes from a fixed seed (reproducible).
Bytes RandomBytes(uint64_t size, uint64_t seed);

// Whole-file helpers; they fail the calling test (ADD_FAILURE) on an I/O error.
void WriteFileOrDie(const std::string& path, std::string_view data, uint32_t mode = 0644);
void WriteFileOrDie(const std::string& path, const Bytes& data, uint32_t mode = 0644);
std::optional<Bytes> ReadFileBytes(const std::string& path);
bool FileExists(const std::string& path);

// Polls `condition` every few milliseconds until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& condition,
             std::chrono::milliseconds timeout = std::chrono::seconds(30));

// One finished child process.
struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal or timed out
  int signal = 0;
  bool timed_out = false;
  std::string out;
  std::string err;
};

// Runs `argv` (argv[0] is the binary path) with stdout and stderr captured into files of
// `work_dir`, killing it after `timeout`.
ProcessResult RunProcess(const std::vector<std::string>& argv, const std::string& work_dir,
                         std::chrono::milliseconds timeout = std::chrono::seconds(60));

// Forks and execs `argv` with stdout and stderr going to `out_path` and `err_path` (appended).
// The child dies with the parent (PR_SET_PDEATHSIG) and starts with no blocked signals.
// -1 when fork fails.
pid_t Spawn(const std::vector<std::string>& argv, const std::string& out_path,
            const std::string& err_path);
// Spawns a daemon whose config names `port_file` ("<grpc port> <http port>\n", removed first)
// and waits until it writes it: its pid and ports. Unavailable with the daemon's log when it
// exits or does not write the file within `timeout` (it is then killed).
struct StartedDaemon {
  pid_t pid = -1;
  int grpc_port = 0;
  int http_port = 0;
};
Result<StartedDaemon> SpawnDaemon(const std::string& name, const std::vector<std::string>& argv,
                                  const std::string& log_path, const std::string& port_file,
                                  std::chrono::milliseconds timeout);
// Waits for `pid` until `timeout`; true and `*status` when it exited.
bool WaitPid(pid_t pid, std::chrono::milliseconds timeout, int* status);
// Decodes a waitpid status into `result`.
void DecodeWait(int status, ProcessResult* result);
// The whole file as text ("" when unreadable).
std::string ReadText(const std::string& path);

// GET http://127.0.0.1:<port><path>; the body, or Unavailable.
Result<std::string> HttpGet(int port, const std::string& path);

// Value of an unlabelled metric in Prometheus text, or nullopt when absent.
std::optional<double> MetricValue(const std::string& metrics_text, const std::string& name);

struct TlsFiles {
  std::string mode = "plaintext";  // plaintext, tls, mtls
  std::string cert;
  std::string key;
  std::string ca;
};

struct StoreProcessOptions {
  uint64_t blob_bytes_max = 1ull << 30;
  uint64_t store_bytes_max = 4ull << 30;
  uint32_t concurrent_streams_max = 64;
  // Accepted writers besides the harness's own writer key.
  std::vector<crypto::PublicKey> extra_writers;
  TlsFiles tls;
};

// A `trustmoe-store` process with its own temp dir: identity key, writer key, config, data.
class StoreProcess {
 public:
  // Writes the files and starts the daemon; fails the test (and returns nullptr) when it does
  // not come up within the deadline.
  static std::unique_ptr<StoreProcess> Start(StoreProcessOptions options = {});
  ~StoreProcess();  // Stop(), then removes the directory
  StoreProcess(const StoreProcess&) = delete;
  StoreProcess& operator=(const StoreProcess&) = delete;

  // SIGTERM and wait (SIGKILL after a deadline). Returns the exit code (-1 if it was killed
  // or was not running).
  int Stop();
  // SIGKILL and reap.
  void Kill9();
  // Starts again on the same data directory (after Stop or Kill9); ports change.
  Status Restart();
  bool running() const { return pid_ > 0; }

  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(grpc_port_); }
  const std::string& dir() const { return dir_.path(); }
  std::string data_dir() const { return dir_.Sub("data"); }
  std::string config_path() const { return dir_.Sub("store.toml"); }
  std::string log_path() const { return dir_.Sub("store.log"); }
  std::string writer_key_path() const { return dir_.Sub("writer.pem"); }
  std::shared_ptr<const crypto::PrivateKey> writer() const { return writer_; }
  // The daemon's log (stdout and stderr) so far.
  std::string Log() const;

  // /metrics of the running daemon, and one unlabelled value of it.
  Result<std::string> Metrics() const;
  std::optional<double> Metric(const std::string& name) const;

  // A client for this daemon, signing with the harness's writer key.
  std::unique_ptr<StoreClient> Client(int rounds_max = 1) const;

 private:
  StoreProcess() = default;
  Status Launch();

  StoreProcessOptions options_;
  TempDir dir_;
  std::shared_ptr<const crypto::PrivateKey> writer_;
  pid_t pid_ = -1;
  int grpc_port_ = 0;
  int http_port_ = 0;
};

// Keys of each kind in a closed store's RocksDB directory (layout in storage/blob_store.h).
struct KeyCounts {
  uint64_t meta = 0;     // m/
  uint64_t leaves = 0;   // l/
  uint64_t chunks = 0;   // d/
  uint64_t uploads = 0;  // u/
};
// Opens the database read-only; fails the test when it cannot be opened.
KeyCounts CountKeys(const std::string& db_path);

// StoreClientOptions for `endpoints` (plaintext), signing with `writer` (may be null).
StoreClientOptions ClientOptions(std::vector<std::string> endpoints,
                                 std::shared_ptr<const crypto::PrivateKey> writer,
                                 int rounds_max = 1);

}  // namespace trustmoe::storage::testing
