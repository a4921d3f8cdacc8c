// trustmoe-store's configuration: LoadStoreConfig, and the daemon refusing bad configs and
// keys at start with a message that says what to fix.
#include "storage/store_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <cstring>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "tests/storage/store_process.h"

namespace trustmoe::storage {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::TempDir;

class StoreConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto identity = crypto::PrivateKey::Generate();
    ASSERT_TRUE(identity.ok());
    ASSERT_TRUE(identity->SavePem(identity_path()).ok());
    auto writer = crypto::PrivateKey::Generate();
    ASSERT_TRUE(writer.ok());
    writer_ = writer->public_key();
  }

  std::string identity_path() const { return dir_.Sub("identity.pem"); }
  std::string config_path() const { return dir_.Sub("store.toml"); }

  // A valid config (data_dir and identity_key set) followed by `rest`.
  std::string Minimal(const std::string& rest = "") const {
    return "data_dir = \"" + dir_.Sub("data") + "\"\nidentity_key = \"" + identity_path() +
           "\"\nlisten = \"127.0.0.1:0\"\nport_file = \"" + dir_.Sub("ports") +
           "\"\n[http]\nlisten = \"127.0.0.1:0\"\n" + rest;
  }

  Result<StoreConfig> Load(const std::string& text) {
    testing::WriteFileOrDie(config_path(), text);
    return LoadStoreConfig(config_path());
  }

  testing::ProcessResult RunDaemon(const std::string& text) {
    testing::WriteFileOrDie(config_path(), text);
    return testing::RunProcess({testing::StoreBinary(), "--config", config_path()}, dir_.path(),
                               std::chrono::seconds(30));
  }

  TempDir dir_;
  crypto::PublicKey writer_;
};

TEST_F(StoreConfigTest, MinimalConfigGetsDefaults) {
  auto config = Load(Minimal());
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->data_dir, dir_.Sub("data"));
  EXPECT_EQ(config->identity_key, identity_path());
  EXPECT_EQ(config->listen, "127.0.0.1:0");
  EXPECT_EQ(config->http_listen, "127.0.0.1:0");
  EXPECT_EQ(config->blob_bytes_max, 4ull << 30);
  EXPECT_EQ(config->store_bytes_max, 64ull << 30);
  EXPECT_EQ(config->concurrent_streams_max, 64u);
  EXPECT_TRUE(config->writers.empty());
  EXPECT_EQ(config->transport.mode, net::TlsMode::kPlaintext);
}

TEST_F(StoreConfigTest, EveryKnownKeyIsRead) {
  testing::WriteFileOrDie(dir_.Sub("writer.pub"), writer_.ToPem());
  auto other = crypto::PrivateKey::Generate();
  ASSERT_TRUE(other.ok());
  auto config = Load(Minimal(
      "[log]\nlevel = \"debug\"\nformat = \"json\"\n"
      "[limits]\nblob_bytes_max = 1000\nstore_bytes_max = 5000\nconcurrent_streams_max = 3\n"
      "[gc]\nretention_s = 60\ninterval_s = 5\n"
      "[auth]\nwriters = [\"" +
      other->public_key().Hex() +
      "\"]\n"
      "writer_key_files = [\"" +
      dir_.Sub("writer.pub") + "\"]\n"));
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->log.level, "debug");
  EXPECT_EQ(config->log.format, LogFormat::kJson);
  EXPECT_EQ(config->blob_bytes_max, 1000u);
  EXPECT_EQ(config->store_bytes_max, 5000u);
  EXPECT_EQ(config->concurrent_streams_max, 3u);
  EXPECT_EQ(config->retention_s, 60);
  EXPECT_EQ(config->gc_interval_s, 5);
  EXPECT_EQ(config->writers, (std::set<crypto::PublicKey>{writer_, other->public_key()}));
}

TEST_F(StoreConfigTest, UnknownKeyIsNamedWithItsLine) {
  auto config = Load(Minimal("[limits]\nblob_bytes_max = 10\nblob_max_byte = 10\n"));
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument);
  // Minimal() has 6 lines; [limits] is line 7, the typo line 9.
  EXPECT_THAT(config.status().message(),
              AllOf(HasSubstr("blob_max_byte"), HasSubstr("store.toml:9")));

  auto top = Load("colour = \"blue\"\n" + Minimal());
  ASSERT_FALSE(top.ok());
  EXPECT_THAT(top.status().message(), AllOf(HasSubstr("colour"), HasSubstr("store.toml:1")));

  auto section = Load(Minimal("[limitz]\nblob_bytes_max = 10\n"));
  ASSERT_FALSE(section.ok());
  EXPECT_THAT(section.status().message(), HasSubstr("limitz"));
}

TEST_F(StoreConfigTest, BadValuesAreRefusedNamingTheKey) {
  struct Case {
    std::string text;
    std::string expected;
  };
  std::vector<Case> cases = {
      {"identity_key = \"" + identity_path() + "\"\n", "data_dir"},
      {"data_dir = \"/tmp/x\"\n", "identity_key"},
      {Minimal("[limits]\nblob_bytes_max = \"big\"\n"), "blob_bytes_max"},
      {Minimal("[limits]\nstore_bytes_max = -1\n"), "store_bytes_max"},
      {Minimal("[limits]\nconcurrent_streams_max = 0\n"), "store.toml:8"},
      {Minimal("[gc]\ninterval_s = 0\n"), "interval_s"},
      {Minimal("[auth]\nwriters = [\"abcd\"]\n"), "writer key 'abcd'"},
      {Minimal("[auth]\nwriter_key_files = [\"" + dir_.Sub("missing.pub") + "\"]\n"),
       "missing.pub"},
      {Minimal("[log]\nformat = \"xml\"\n"), "'xml'"},
      {Minimal("[tls]\nmode = \"mtls\"\n"), "needs cert"},
      {Minimal("[tls]\nmode = \"ssl\"\n"), "mode"},
      {"drain_timeout_s = \"soon\"\n" + Minimal(), "drain_timeout_s"},
      {"listen = \"127.0.0.1\"\ndata_dir = \"/tmp/x\"\nidentity_key = \"/tmp/y\"\n",
       "store.toml:1"},
      {Minimal("[http]\n"), "store.toml"},
      {"data_dir = [\n", "store.toml"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    auto config = Load(c.text);
    ASSERT_FALSE(config.ok());
    EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument) << config.status().ToString();
    EXPECT_THAT(config.status().message(), HasSubstr(c.expected));
  }
}

TEST_F(StoreConfigTest, TlsNeedsCertKeyAndCaThatExist) {
  auto no_cert = Load(Minimal("[tls]\nmode = \"mtls\"\nca = \"" + identity_path() + "\"\n"));
  ASSERT_FALSE(no_cert.ok());
  EXPECT_EQ(no_cert.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(no_cert.status().message(), HasSubstr("needs cert"));

  auto missing_file = Load(Minimal("[tls]\nmode = \"tls\"\ncert = \"/nonexistent/a.crt\"\n"
                                   "key = \"" + identity_path() + "\"\nca = \"" +
                                   identity_path() + "\"\n"));
  ASSERT_FALSE(missing_file.ok());
  EXPECT_EQ(missing_file.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(missing_file.status().message(), HasSubstr("/nonexistent/a.crt"));

  auto bad_mode = Load(Minimal("[tls]\nmode = \"ssl\"\n"));
  ASSERT_FALSE(bad_mode.ok());
  EXPECT_THAT(bad_mode.status().message(), HasSubstr("plaintext, tls or mtls"));
}

TEST_F(StoreConfigTest, MissingFileIsNotFound) {
  auto config = LoadStoreConfig(dir_.Sub("absent.toml"));
  EXPECT_EQ(config.status().code(), StatusCode::kNotFound) << config.status().ToString();
}

TEST_F(StoreConfigTest, SplitHostPort) {
  std::string host;
  int port = -1;
  ASSERT_TRUE(net::SplitHostPort("127.0.0.1:7400", &host, &port).ok());
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 7400);
  ASSERT_TRUE(net::SplitHostPort("[::1]:0", &host, &port).ok());
  EXPECT_EQ(host, "::1");
  EXPECT_EQ(port, 0);
  for (const char* bad : {"127.0.0.1", "127.0.0.1:", "h:65536", "h:-1", "h:12a", "h:99999999999"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(net::SplitHostPort(bad, &host, &port).code(), StatusCode::kInvalidArgument);
  }
}

TEST_F(StoreConfigTest, PrivateKeyReadableByOthersIsRefusedWithTheFix) {
  ASSERT_EQ(::chmod(identity_path().c_str(), 0644), 0);
  auto key = crypto::PrivateKey::LoadPem(identity_path());
  EXPECT_EQ(key.status().code(), StatusCode::kPermissionDenied) << key.status().ToString();
  EXPECT_THAT(key.status().message(), AllOf(HasSubstr("chmod 600"), HasSubstr(identity_path())));
}

TEST_F(StoreConfigTest, DaemonWithAnUnknownKeyExitsNamingKeyAndLine) {
  testing::ProcessResult run = RunDaemon(Minimal("[limits]\nblob_max_byte = 10\n"));
  EXPECT_FALSE(run.timed_out);
  EXPECT_NE(run.exit_code, 0);
  EXPECT_EQ(run.signal, 0);
  EXPECT_THAT(run.err, AllOf(HasSubstr("blob_max_byte"), HasSubstr("store.toml:8")));
  EXPECT_FALSE(testing::FileExists(dir_.Sub("ports")));
  EXPECT_FALSE(testing::FileExists(dir_.Sub("data")));
}

TEST_F(StoreConfigTest, DaemonWithAGroupReadableIdentityKeyExitsSayingChmod600) {
  ASSERT_EQ(::chmod(identity_path().c_str(), 0644), 0);
  testing::ProcessResult run = RunDaemon(Minimal());
  EXPECT_FALSE(run.timed_out);
  EXPECT_NE(run.exit_code, 0);
  EXPECT_EQ(run.signal, 0);
  EXPECT_THAT(run.err, AllOf(HasSubstr("chmod 600"), HasSubstr(identity_path())));
  EXPECT_FALSE(testing::FileExists(dir_.Sub("ports")));
}

TEST_F(StoreConfigTest, DaemonWithAMissingConfigExitsNonZero) {
  testing::ProcessResult run = testing::RunProcess(
      {testing::StoreBinary(), "--config", dir_.Sub("absent.toml")}, dir_.path());
  EXPECT_NE(run.exit_code, 0);
  EXPECT_THAT(run.err, HasSubstr("absent.toml"));
}

TEST_F(StoreConfigTest, DaemonStartsAndStopsCleanlyOnSigterm) {
  auto store = testing::StoreProcess::Start();
  ASSERT_NE(store, nullptr);
  auto health = testing::HttpGet(store->http_port(), "/healthz");
  EXPECT_TRUE(health.ok()) << health.status().ToString();
  EXPECT_EQ(store->Stop(), 0) << store->Log();
  EXPECT_THAT(store->Log(), HasSubstr("stopped cleanly"));
}

// Under systemd (Type=notify) the store says READY=1 once serving, pings WATCHDOG=1 when a
// watchdog is set, and STOPPING=1 on SIGTERM. A datagram socket stands in for systemd.
TEST_F(StoreConfigTest, DaemonNotifiesSystemdReadyWatchdogAndStopping) {
  std::string socket_path = dir_.Sub("notify.sock");
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(socket_path.size(), sizeof(addr.sun_path));
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ::setenv("NOTIFY_SOCKET", socket_path.c_str(), 1);
  ::setenv("WATCHDOG_USEC", "400000", 1);
  auto store = testing::StoreProcess::Start();
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
  ASSERT_NE(store, nullptr);

  std::string received;
  auto receive_until = [&](const std::string& wanted) {
    return testing::WaitFor([&] {
      pollfd p{fd, POLLIN, 0};
      while (::poll(&p, 1, 10) > 0) {
        char buf[512];
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n > 0) received.append(buf, static_cast<size_t>(n)).push_back('\n');
      }
      return received.find(wanted) != std::string::npos;
    }, std::chrono::seconds(20));
  };
  EXPECT_TRUE(receive_until("READY=1")) << received;
  EXPECT_TRUE(receive_until("WATCHDOG=1")) << received;
  EXPECT_EQ(store->Stop(), 0) << store->Log();
  EXPECT_TRUE(receive_until("STOPPING=1")) << received;
  ::close(fd);
}

}  // namespace
}  // namespace trustmoe::storage
