// trustmoe-gate's configuration: the example file, defaults, and every kind of mistake named
// with file, line and key.
#include "gate/gate_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace trustmoe::gate {
namespace {

using ::testing::HasSubstr;

// Lines 1-3: the required top-level keys; tests put other top-level keys after them.
const char kTop[] =
    "identity_key = \"/etc/trustmoe/gate.key\"\n"
    "data_dir = \"/var/lib/g\"\n"
    "genesis = \"/etc/trustmoe/genesis.json\"\n";
// The required [store] table; sections a test adds follow it (their first key on line 7).
const char kStore[] = "[store]\nendpoints = [\"127.0.0.1:7400\"]\n";

// A fresh directory for files a test writes, removed afterwards.
class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "trustmoe_gate_config.XXXXXX").string();
    EXPECT_NE(::mkdtemp(pattern.data()), nullptr);
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

Result<GateConfig> Parse(const std::string& text) { return ParseGateConfig(text, "gate.toml"); }

// kTop, then `top` (top-level keys), then kStore, then `sections`.
Result<GateConfig> ParseWith(const std::string& top, const std::string& sections) {
  return Parse(std::string(kTop) + top + kStore + sections);
}

// Expects InvalidArgument whose message has every one of `parts`.
void ExpectInvalid(const Result<GateConfig>& config, std::initializer_list<std::string> parts,
                   const std::string& case_name) {
  ASSERT_FALSE(config.ok()) << case_name;
  EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument) << case_name;
  for (const std::string& part : parts) {
    EXPECT_THAT(config.status().message(), HasSubstr(part)) << case_name;
  }
}

std::string ExampleConfigPath() {
  return (std::filesystem::path(TRUSTMOE_SOURCE_DIR) / "deploy/config/gate.toml").string();
}

void ExpectDefaultsBeyondTheRequiredKeys(const GateConfig& config) {
  const GateConfig defaults;
  EXPECT_EQ(config.listen, defaults.listen);
  EXPECT_EQ(config.http_listen, defaults.http_listen);
  EXPECT_EQ(config.port_file, defaults.port_file);
  EXPECT_EQ(config.dataset_dir, defaults.dataset_dir);
  EXPECT_EQ(config.log.level, defaults.log.level);
  EXPECT_EQ(config.log.format, defaults.log.format);
  EXPECT_EQ(config.chain_validators, defaults.chain_validators);
  EXPECT_EQ(config.submit_timeout_ms, defaults.submit_timeout_ms);
  EXPECT_EQ(config.jobs_concurrent_max, defaults.jobs_concurrent_max);
  EXPECT_EQ(config.call_timeout_ms, defaults.call_timeout_ms);
  EXPECT_EQ(config.verdict_timeout_ms, defaults.verdict_timeout_ms);
  EXPECT_EQ(config.torch_threads, defaults.torch_threads);
  EXPECT_EQ(config.request_bytes_max, defaults.request_bytes_max);
  EXPECT_EQ(config.watchers_max, defaults.watchers_max);
  EXPECT_EQ(config.edge_tensor_bytes_max, defaults.edge_tensor_bytes_max);
  EXPECT_EQ(config.transport.mode, net::TlsMode::kPlaintext);
}

TEST(GateConfigTest, ExampleFileParsesAndShowsTheDefaults) {
  auto config = LoadGateConfig(ExampleConfigPath());
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->identity_key, "/etc/trustmoe/gate.key");
  EXPECT_EQ(config->data_dir, "/var/lib/trustmoe-gate");
  EXPECT_EQ(config->genesis, "/etc/trustmoe/genesis.json");
  EXPECT_EQ(config->store_endpoints, std::vector<std::string>{"127.0.0.1:7400"});
  // The example says every other value it shows is the default.
  ExpectDefaultsBeyondTheRequiredKeys(*config);
}

TEST(GateConfigTest, MinimalConfigGetsDefaults) {
  auto config = ParseWith("", "");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  ExpectDefaultsBeyondTheRequiredKeys(*config);
  EXPECT_EQ(config->listen, "127.0.0.1:7800");
  EXPECT_EQ(config->http_listen, "127.0.0.1:7801");
  EXPECT_EQ(config->port_file, "");
  EXPECT_EQ(config->dataset_dir, "/usr/share/datasets/fashion-mnist");
  EXPECT_EQ(config->log.level, "info");
  EXPECT_EQ(config->log.format, LogFormat::kText);
  EXPECT_TRUE(config->chain_validators.empty());
  EXPECT_EQ(config->submit_timeout_ms, 30000);
  EXPECT_EQ(config->jobs_concurrent_max, 1u);
  EXPECT_EQ(config->call_timeout_ms, 10000);
  EXPECT_EQ(config->verdict_timeout_ms, 30000);
  EXPECT_EQ(config->torch_threads, 0);
  EXPECT_EQ(config->request_bytes_max, 1u << 20);
  EXPECT_EQ(config->watchers_max, 64u);
  EXPECT_EQ(config->edge_tensor_bytes_max, 256ull << 20);
}

TEST(GateConfigTest, EverySectionIsRead) {
  auto config = Parse(
      std::string(kTop) +
      "listen = \"[::1]:0\"\nport_file = \"/run/g/ports\"\ndataset_dir = \"/srv/fmnist\"\n"
      "[http]\nlisten = \"0.0.0.0:9100\"\n"
      "[log]\nlevel = \"debug\"\nformat = \"json\"\n"
      "[store]\nendpoints = [\"127.0.0.1:7500\", \"localhost:7501\", \"[::1]:7502\"]\n"
      "[chain]\nvalidators = [\"127.0.0.1:7600\", \"127.0.0.1:7610\"]\nsubmit_timeout_ms = 5000\n"
      "[jobs]\nconcurrent_max = 4\ncall_timeout_ms = 2500\nverdict_timeout_ms = 9000\n"
      "torch_threads = 8\nrequest_bytes_max = 65536\nwatchers_max = 16\n"
      "[edges]\ntensor_bytes_max = 1048576\n"
      "[tls]\nmode = \"plaintext\"\n");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->listen, "[::1]:0");
  EXPECT_EQ(config->port_file, "/run/g/ports");
  EXPECT_EQ(config->dataset_dir, "/srv/fmnist");
  EXPECT_EQ(config->http_listen, "0.0.0.0:9100");  // plain HTTP; only gRPC needs loopback
  EXPECT_EQ(config->log.level, "debug");
  EXPECT_EQ(config->log.format, LogFormat::kJson);
  EXPECT_EQ(config->store_endpoints,
            (std::vector<std::string>{"127.0.0.1:7500", "localhost:7501", "[::1]:7502"}));
  EXPECT_EQ(config->chain_validators,
            (std::vector<std::string>{"127.0.0.1:7600", "127.0.0.1:7610"}));
  EXPECT_EQ(config->submit_timeout_ms, 5000);
  EXPECT_EQ(config->jobs_concurrent_max, 4u);
  EXPECT_EQ(config->call_timeout_ms, 2500);
  EXPECT_EQ(config->verdict_timeout_ms, 9000);
  EXPECT_EQ(config->torch_threads, 8);
  EXPECT_EQ(config->request_bytes_max, 65536u);
  EXPECT_EQ(config->watchers_max, 16u);
  EXPECT_EQ(config->edge_tensor_bytes_max, 1048576u);
}

TEST(GateConfigTest, UnknownKeyIsNamedWithItsLine) {
  ExpectInvalid(ParseWith("", "[jobs]\nconcurrent_maxx = 2\n"),
                {"gate.toml:7", "unknown key 'concurrent_maxx' in [jobs]"}, "jobs");
  ExpectInvalid(ParseWith("listn = \"127.0.0.1:1\"\n", ""),
                {"gate.toml:4", "unknown key 'listn' at top level"}, "top level");
  ExpectInvalid(ParseWith("", "[runtime]\ndevice = \"cuda\"\n"), {"gate.toml:6", "'runtime'"},
                "section");
  ExpectInvalid(ParseWith("", "[edges]\ntensor_bytes = 1024\n"),
                {"gate.toml:7", "'tensor_bytes' in [edges]"}, "edges");
  ExpectInvalid(ParseWith("", "[tls]\nmode = \"plaintext\"\ncertt = \"x\"\n"),
                {"gate.toml:8", "'certt' in [tls]"}, "tls");
}

TEST(GateConfigTest, MisspeltKeyIsReportedBeforeThePlaintextCheck) {
  // Without the unknown-key check first, this would read as plaintext on a public address.
  ExpectInvalid(ParseWith("listen = \"0.0.0.0:7800\"\n", "[tls]\nmdoe = \"tls\"\n"),
                {"gate.toml:8", "unknown key 'mdoe'"}, "tls mode");
}

TEST(GateConfigTest, WrongTypesAreRefused) {
  const std::pair<std::string, std::string> cases[] = {
      {"listen = 7800\n", "'listen' must be a string"},
      {"port_file = false\n", "'port_file' must be a string"},
      {"dataset_dir = [\"/a\"]\n", "'dataset_dir' must be a string"},
      {"http = 3\n", "'http' must be a table"},
      {"jobs = \"many\"\n", "'jobs' must be a table"},
  };
  for (const auto& [top, expected] : cases) {
    ExpectInvalid(ParseWith(top, ""), {"gate.toml:4", expected}, top);
  }
  ExpectInvalid(
      Parse("identity_key = 3\ndata_dir = \"/d\"\ngenesis = \"/g\"\n" + std::string(kStore)),
      {"gate.toml:1", "'identity_key' must be a string"}, "identity_key");
  const std::pair<std::string, std::string> section_cases[] = {
      {"[chain]\nsubmit_timeout_ms = 1.5\n", "'chain.submit_timeout_ms' must be an integer"},
      {"[chain]\nvalidators = \"127.0.0.1:7600\"\n", "'chain.validators' must be an array"},
      {"[chain]\nvalidators = [7600]\n", "'chain.validators' must be an array of strings"},
      {"[jobs]\nconcurrent_max = true\n", "'jobs.concurrent_max' must be an integer"},
      {"[jobs]\ncall_timeout_ms = \"10s\"\n", "'jobs.call_timeout_ms' must be an integer"},
      {"[jobs]\nverdict_timeout_ms = 3e4\n", "'jobs.verdict_timeout_ms' must be an integer"},
      {"[jobs]\ntorch_threads = \"4\"\n", "jobs.torch_threads"},
      {"[jobs]\nrequest_bytes_max = -1\n", "jobs.request_bytes_max"},
      {"[jobs]\nwatchers_max = [1]\n", "'jobs.watchers_max' must be an integer"},
      {"[edges]\ntensor_bytes_max = 1.0\n", "'edges.tensor_bytes_max' must be an integer"},
      {"[log]\nlevel = 1\n", "'log.level' must be a string"},
      {"[tls]\nmode = true\n", "'tls.mode' must be a string"},
  };
  for (const auto& [sections, expected] : section_cases) {
    ExpectInvalid(ParseWith("", sections), {"gate.toml:7", expected}, sections);
  }
  ExpectInvalid(Parse(std::string(kTop) + "[store]\nendpoints = \"127.0.0.1:7400\"\n"),
                {"gate.toml:5", "'store.endpoints' must be an array of strings"}, "endpoints");
}

TEST(GateConfigTest, RequiredKeysAreNamed) {
  const std::string key = "identity_key = \"/k.pem\"\n";
  const std::string data = "data_dir = \"/d\"\n";
  const std::string genesis = "genesis = \"/g.json\"\n";
  ExpectInvalid(Parse(data + genesis + kStore), {"gate.toml", "identity_key"}, "identity_key");
  ExpectInvalid(Parse(key + genesis + kStore), {"gate.toml", "data_dir"}, "data_dir");
  ExpectInvalid(Parse(key + data + kStore), {"gate.toml", "genesis"}, "genesis");
  ExpectInvalid(Parse(key + data + genesis),
                {"gate.toml", "missing required key 'endpoints' in [store]"}, "store");
  ExpectInvalid(Parse(key + data + genesis + "[store]\n"),
                {"gate.toml", "missing required key 'endpoints' in [store]"}, "empty [store]");
}

TEST(GateConfigTest, EmptyPathsAreRefused) {
  const std::string key = "identity_key = \"/k.pem\"\n";
  const std::string data = "data_dir = \"/d\"\n";
  const std::string genesis = "genesis = \"/g.json\"\n";
  ExpectInvalid(Parse("identity_key = \"\"\n" + data + genesis + kStore),
                {"gate.toml:1", "'identity_key' must not be empty"}, "identity_key");
  ExpectInvalid(Parse(key + "data_dir = \"\"\n" + genesis + kStore),
                {"gate.toml:2", "'data_dir' must not be empty"}, "data_dir");
  ExpectInvalid(Parse(key + data + "genesis = \"\"\n" + kStore),
                {"gate.toml:3", "'genesis' must not be empty"}, "genesis");
  ExpectInvalid(ParseWith("dataset_dir = \"\"\n", ""),
                {"gate.toml:4", "'dataset_dir' must not be empty"}, "dataset_dir");
  // port_file is optional: empty means none.
  auto config = ParseWith("port_file = \"\"\n", "");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->port_file, "");
}

TEST(GateConfigTest, ValuesOutOfRangeAreRefused) {
  // Each case: the sections after [store] (its key on line 7), the key and the bounds named.
  const std::tuple<std::string, std::string, std::string> cases[] = {
      {"[chain]\nsubmit_timeout_ms = 0\n", "chain.submit_timeout_ms", "between 1 and 3600000"},
      {"[chain]\nsubmit_timeout_ms = 3600001\n", "chain.submit_timeout_ms", "3600000"},
      {"[jobs]\nconcurrent_max = 0\n", "jobs.concurrent_max", "between 1 and 64, got 0"},
      {"[jobs]\nconcurrent_max = 65\n", "jobs.concurrent_max", "got 65"},
      {"[jobs]\ncall_timeout_ms = 99\n", "jobs.call_timeout_ms", "between 100 and 600000"},
      {"[jobs]\ncall_timeout_ms = 600001\n", "jobs.call_timeout_ms", "got 600001"},
      {"[jobs]\nverdict_timeout_ms = 99\n", "jobs.verdict_timeout_ms", "between 100 and 600000"},
      {"[jobs]\nverdict_timeout_ms = 600001\n", "jobs.verdict_timeout_ms", "got 600001"},
      {"[jobs]\ntorch_threads = -1\n", "jobs.torch_threads", "between 0 and 256"},
      {"[jobs]\ntorch_threads = 257\n", "jobs.torch_threads", "got 257"},
      {"[jobs]\nrequest_bytes_max = 1023\n", "jobs.request_bytes_max", "between 1024 and"},
      {"[jobs]\nrequest_bytes_max = 67108865\n", "jobs.request_bytes_max", "67108864"},
      {"[jobs]\nwatchers_max = 0\n", "jobs.watchers_max", "between 1 and 4096"},
      {"[jobs]\nwatchers_max = 4097\n", "jobs.watchers_max", "got 4097"},
      {"[edges]\ntensor_bytes_max = 1023\n", "edges.tensor_bytes_max", "between 1024 and"},
      {"[edges]\ntensor_bytes_max = 4294967297\n", "edges.tensor_bytes_max", "4294967296"},
      {"[log]\nlevel = \"loud\"\n", "loud", ""},
      {"[log]\nformat = \"xml\"\n", "xml", ""},
      {"[tls]\nmode = \"maybe\"\n", "maybe", ""},
      {"[http]\nlisten = \"127.0.0.1:65536\"\n", "http.listen", ""},
      {"[http]\nlisten = \"nohost\"\n", "http.listen", ""},
  };
  for (const auto& [sections, key, bounds] : cases) {
    ExpectInvalid(ParseWith("", sections), {"gate.toml:7", key, bounds}, sections);
  }
  ExpectInvalid(ParseWith("listen = \"127.0.0.1:99999\"\n", ""), {"gate.toml:4", "'listen'"},
                "listen port");
}

TEST(GateConfigTest, BoundsAreInclusive) {
  for (const std::string& sections :
       {std::string("[chain]\nsubmit_timeout_ms = 1\n"
                    "[jobs]\nconcurrent_max = 1\ncall_timeout_ms = 100\nverdict_timeout_ms = 100\n"
                    "torch_threads = 0\nrequest_bytes_max = 1024\nwatchers_max = 1\n"
                    "[edges]\ntensor_bytes_max = 1024\n"),
        std::string("[chain]\nsubmit_timeout_ms = 3600000\n"
                    "[jobs]\nconcurrent_max = 64\ncall_timeout_ms = 600000\n"
                    "verdict_timeout_ms = 600000\ntorch_threads = 256\n"
                    "request_bytes_max = 67108864\nwatchers_max = 4096\n"
                    "[edges]\ntensor_bytes_max = 4294967296\n")}) {
    auto config = ParseWith("", sections);
    ASSERT_TRUE(config.ok()) << sections << ": " << config.status().ToString();
  }
  auto config = ParseWith("",
                          "[jobs]\nconcurrent_max = 64\nrequest_bytes_max = 67108864\n"
                          "[edges]\ntensor_bytes_max = 4294967296\n");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->jobs_concurrent_max, 64u);
  EXPECT_EQ(config->request_bytes_max, 64ull << 20);
  EXPECT_EQ(config->edge_tensor_bytes_max, 4ull << 30);
}

TEST(GateConfigTest, StoreEndpointsMustBeANonEmptyListOfHostPort) {
  ExpectInvalid(Parse(std::string(kTop) + "[store]\nendpoints = []\n"),
                {"gate.toml:5", "'store.endpoints'", "at least one"}, "empty");
  for (const std::string bad :
       {"nohost", "127.0.0.1:", ":7400", "127.0.0.1:99999", "127.0.0.1:74x0", "127.0.0.1:0", ""}) {
    ExpectInvalid(
        Parse(std::string(kTop) + "[store]\nendpoints = [\"127.0.0.1:7400\", \"" + bad + "\"]\n"),
        {"gate.toml:5", "store.endpoints"}, bad);
    ExpectInvalid(ParseWith("", "[chain]\nvalidators = [\"" + bad + "\"]\n"),
                  {"gate.toml:7", "chain.validators"}, bad);
  }
}

TEST(GateConfigTest, PlaintextGrpcOffLoopbackIsRefused) {
  ExpectInvalid(
      ParseWith("listen = \"0.0.0.0:7800\"\n", ""),
      {"gate.toml:4", "'listen'", "plaintext gRPC on non-loopback 0.0.0.0:7800", "[tls] mode"},
      "listen");
  ExpectInvalid(Parse(std::string(kTop) + "[store]\nendpoints = [\"10.0.0.5:7400\"]\n"),
                {"gate.toml:5", "store.endpoints", "plaintext gRPC to non-loopback 10.0.0.5:7400"},
                "store");
  ExpectInvalid(ParseWith("", "[chain]\nvalidators = [\"127.0.0.1:7600\", \"v1.example:7600\"]\n"),
                {"gate.toml:7", "chain.validators", "v1.example:7600"}, "validators");

  // With TLS every address may be anywhere (the PEM files only need to be readable here).
  ScratchDir dir;
  for (const char* name : {"gate.crt", "gate.key", "ca.crt"}) {
    std::ofstream(dir.Sub(name)) << "PEM\n";
  }
  auto config = Parse(std::string(kTop) + "listen = \"0.0.0.0:7800\"\n" +
                      "[store]\nendpoints = [\"10.0.0.5:7400\"]\n"
                      "[chain]\nvalidators = [\"10.0.0.6:7600\"]\n"
                      "[tls]\nmode = \"mtls\"\ncert = \"" +
                      dir.Sub("gate.crt") + "\"\nkey = \"" + dir.Sub("gate.key") + "\"\nca = \"" +
                      dir.Sub("ca.crt") + "\"\n");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->transport.mode, net::TlsMode::kMutualTls);
  EXPECT_EQ(config->listen, "0.0.0.0:7800");
  ExpectInvalid(ParseWith("", "[tls]\nmode = \"tls\"\n"), {"gate.toml", "needs cert"}, "no cert");
}

TEST(GateConfigTest, FilesAreReadOrNamed) {
  auto config = LoadGateConfig("/nonexistent/gate.toml");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), StatusCode::kNotFound);

  ScratchDir dir;
  const std::string path = dir.Sub("gate.toml");
  std::ofstream(path) << kTop << kStore << "[jobs]\nwatchers_max = 0\n";
  config = LoadGateConfig(path);
  ExpectInvalid(config, {path + ":7", "jobs.watchers_max"}, "file name in messages");

  ExpectInvalid(Parse(std::string(kTop) + "[store\n"), {"gate.toml:4"}, "not TOML");
}

}  // namespace
}  // namespace trustmoe::gate
