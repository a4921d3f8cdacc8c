// trustmoe-edge's configuration: the example file, defaults, device and dtype resolution, and
// every kind of mistake named with file, line and key.
#include "edge/edge_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace trustmoe::edge {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// Lines 1-3: the required top-level keys; tests put other top-level keys after them.
const char kTop[] =
    "identity_key = \"/etc/trustmoe/edge.key\"\n"
    "data_dir = \"/var/lib/e\"\n"
    "genesis = \"/etc/trustmoe/genesis.json\"\n";
// The required [store] table; sections a test adds follow it.
const char kStore[] = "[store]\nendpoints = [\"127.0.0.1:7500\"]\n";

// A fresh directory for files a test writes, removed afterwards. (edge_test has no include path
// to tests/common/test_dir.h.)
class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "trustmoe_edge_config.XXXXXX").string();
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

Result<EdgeConfig> Parse(const std::string& text) { return ParseEdgeConfig(text, "edge.toml"); }

// kTop, then `top` (top-level keys), then kStore, then `sections`.
Result<EdgeConfig> ParseWith(const std::string& top, const std::string& sections) {
  return Parse(std::string(kTop) + top + kStore + sections);
}

// Expects InvalidArgument whose message has every one of `parts`.
void ExpectInvalid(const Result<EdgeConfig>& config, std::initializer_list<std::string> parts,
                   const std::string& case_name) {
  ASSERT_FALSE(config.ok()) << case_name;
  EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument) << case_name;
  for (const std::string& part : parts) {
    EXPECT_THAT(config.status().message(), HasSubstr(part)) << case_name;
  }
}

std::string ExampleConfigPath() {
  return (std::filesystem::path(__FILE__).parent_path() / "../../deploy/config/edge.toml")
      .lexically_normal()
      .string();
}

TEST(EdgeConfigTest, ExampleFileParses) {
  auto config = LoadEdgeConfig(ExampleConfigPath());
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->identity_key, "/etc/trustmoe/edge.key");
  EXPECT_EQ(config->data_dir, "/var/lib/trustmoe-edge");
  EXPECT_EQ(config->genesis, "/etc/trustmoe/genesis.json");
  EXPECT_EQ(config->store_endpoints, std::vector<std::string>{"127.0.0.1:7400"});
  EXPECT_EQ(config->device, "cuda:0");
  EXPECT_EQ(config->dtype, "bf16");
  EXPECT_EQ(config->cache_dir, "/var/lib/trustmoe-edge/cache");
  EXPECT_EQ(config->port_file, "");
  // The example says every other value it shows is the default.
  const EdgeConfig defaults;
  EXPECT_EQ(config->listen, defaults.listen);
  EXPECT_EQ(config->http_listen, defaults.http_listen);
  EXPECT_EQ(config->drain_timeout_ms, defaults.drain_timeout_ms);
  EXPECT_EQ(config->log.level, defaults.log.level);
  EXPECT_EQ(config->log.format, defaults.log.format);
  EXPECT_EQ(config->chain_validators, defaults.chain_validators);
  EXPECT_EQ(config->registration_check_ms, defaults.registration_check_ms);
  EXPECT_EQ(config->submit_timeout_ms, defaults.submit_timeout_ms);
  EXPECT_EQ(config->gpu_memory_bytes_max, defaults.gpu_memory_bytes_max);
  EXPECT_EQ(config->batch_rows_max, defaults.batch_rows_max);
  EXPECT_EQ(config->batch_wait_us, defaults.batch_wait_us);
  EXPECT_EQ(config->rows_per_request_max, defaults.rows_per_request_max);
  EXPECT_EQ(config->concurrent_requests_max, defaults.concurrent_requests_max);
  EXPECT_EQ(config->tensor_bytes_max, defaults.tensor_bytes_max);
  EXPECT_EQ(config->cache_bytes_max, defaults.cache_bytes_max);
  EXPECT_EQ(config->outbox_retry_min_ms, defaults.outbox_retry_min_ms);
  EXPECT_EQ(config->outbox_retry_max_ms, defaults.outbox_retry_max_ms);
  EXPECT_EQ(config->outbox_entries_max, defaults.outbox_entries_max);
  EXPECT_EQ(config->transport.mode, net::TlsMode::kPlaintext);
}

TEST(EdgeConfigTest, MinimalConfigGetsDefaults) {
  auto config = ParseWith("", "");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->listen, "127.0.0.1:7700");
  EXPECT_EQ(config->http_listen, "127.0.0.1:7701");
  EXPECT_EQ(config->drain_timeout_ms, 10000);
  EXPECT_EQ(config->log.level, "info");
  EXPECT_EQ(config->log.format, LogFormat::kText);
  EXPECT_TRUE(config->chain_validators.empty());
  EXPECT_EQ(config->registration_check_ms, 10000);
  EXPECT_EQ(config->submit_timeout_ms, 30000);
  EXPECT_EQ(config->device, "cpu");
  EXPECT_EQ(config->dtype, "f32");
  EXPECT_EQ(config->gpu_memory_bytes_max, 8ull << 30);
  EXPECT_EQ(config->batch_rows_max, 16384u);
  EXPECT_EQ(config->batch_wait_us, 0);
  EXPECT_EQ(config->rows_per_request_max, 8192u);
  EXPECT_EQ(config->concurrent_requests_max, 64u);
  EXPECT_EQ(config->tensor_bytes_max, 256ull << 20);
  EXPECT_EQ(config->cache_dir, "/var/lib/e/cache");
  EXPECT_EQ(config->cache_bytes_max, 64ull << 30);
  EXPECT_EQ(config->outbox_retry_min_ms, 500);
  EXPECT_EQ(config->outbox_retry_max_ms, 30000);
  EXPECT_EQ(config->outbox_entries_max, 1000000u);
  EXPECT_EQ(config->transport.mode, net::TlsMode::kPlaintext);
}

TEST(EdgeConfigTest, EverySectionIsRead) {
  auto config =
      Parse(std::string(kTop) +
            "listen = \"[::1]:0\"\nport_file = \"/run/e/ports\"\ndrain_timeout_ms = 0\n"
            "[http]\nlisten = \"0.0.0.0:9100\"\n"
            "[log]\nlevel = \"debug\"\nformat = \"json\"\n"
            "[store]\nendpoints = [\"127.0.0.1:7500\", \"localhost:7501\", \"[::1]:7502\"]\n"
            "[chain]\nvalidators = [\"127.0.0.1:7600\", \"127.0.0.1:7610\"]\n"
            "registration_check_ms = 250\nsubmit_timeout_ms = 5000\n"
            "[runtime]\ndevice = \"cuda:3\"\ndtype = \"f16\"\n"
            "gpu_memory_bytes_max = 1048576\nbatch_rows_max = 7\nbatch_wait_us = 50\n"
            "[limits]\nrows_per_request_max = 5\nconcurrent_requests_max = 2\n"
            "tensor_bytes_max = 1024\n"
            "[cache]\ndir = \"/srv/experts\"\nbytes_max = 2097152\n"
            "[outbox]\nretry_min_ms = 20\nretry_max_ms = 20\nentries_max = 3\n"
            "[tls]\nmode = \"plaintext\"\n");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->listen, "[::1]:0");
  EXPECT_EQ(config->port_file, "/run/e/ports");
  EXPECT_EQ(config->drain_timeout_ms, 0);
  EXPECT_EQ(config->http_listen, "0.0.0.0:9100");  // plain HTTP; only gRPC needs loopback
  EXPECT_EQ(config->log.level, "debug");
  EXPECT_EQ(config->log.format, LogFormat::kJson);
  EXPECT_EQ(config->store_endpoints,
            (std::vector<std::string>{"127.0.0.1:7500", "localhost:7501", "[::1]:7502"}));
  EXPECT_EQ(config->chain_validators,
            (std::vector<std::string>{"127.0.0.1:7600", "127.0.0.1:7610"}));
  EXPECT_EQ(config->registration_check_ms, 250);
  EXPECT_EQ(config->submit_timeout_ms, 5000);
  EXPECT_EQ(config->device, "cuda:3");
  EXPECT_EQ(config->dtype, "f16");
  EXPECT_EQ(config->gpu_memory_bytes_max, 1048576u);
  EXPECT_EQ(config->batch_rows_max, 7u);
  EXPECT_EQ(config->batch_wait_us, 50);
  EXPECT_EQ(config->rows_per_request_max, 5u);
  EXPECT_EQ(config->concurrent_requests_max, 2u);
  EXPECT_EQ(config->tensor_bytes_max, 1024u);
  EXPECT_EQ(config->cache_dir, "/srv/experts");
  EXPECT_EQ(config->cache_bytes_max, 2097152u);
  EXPECT_EQ(config->outbox_retry_min_ms, 20);
  EXPECT_EQ(config->outbox_retry_max_ms, 20);
  EXPECT_EQ(config->outbox_entries_max, 3u);
}

TEST(EdgeConfigTest, CacheDirDefaultsToDataDirCache) {
  auto config = Parse(
      "identity_key = \"/k.pem\"\ndata_dir = \"/var/lib/trustmoe-edge/\"\ngenesis = \"/g.json\"\n" +
      std::string(kStore));
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->cache_dir, "/var/lib/trustmoe-edge/cache");

  config = Parse("identity_key = \"k.pem\"\ndata_dir = \"state\"\ngenesis = \"g.json\"\n" +
                 std::string(kStore) + "[cache]\ndir = \"\"\n");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->cache_dir, "state/cache");

  config = ParseWith("", "[cache]\ndir = \"/mnt/nvme/experts\"\n");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->cache_dir, "/mnt/nvme/experts");
}

TEST(EdgeConfigTest, DeviceIsNormalized) {
  const std::pair<std::string, std::string> cases[] = {
      {"cpu", "cpu"},       {"cuda", "cuda:0"},    {"cuda:0", "cuda:0"},
      {"cuda:7", "cuda:7"}, {"cuda:05", "cuda:5"}, {"cuda:63", "cuda:63"}};
  for (const auto& [in, out] : cases) {
    auto config = ParseWith("", "[runtime]\ndevice = \"" + in + "\"\n");
    ASSERT_TRUE(config.ok()) << in << ": " << config.status().ToString();
    EXPECT_EQ(config->device, out) << in;
  }
}

TEST(EdgeConfigTest, BadDevicesAreRefused) {
  for (const std::string bad : {"cuda:x", "tpu", "cuda:64", "cuda:100", "cuda:", "cuda:-1",
                                "cuda:+1", "cuda: 1", "CUDA", "cuda0", "gpu", "", "cpu:0"}) {
    // [store] is lines 4-5, [runtime] 6, device 7.
    ExpectInvalid(ParseWith("", "[runtime]\ndevice = \"" + bad + "\"\n"),
                  {"edge.toml:7", "runtime.device", "\"" + bad + "\"", "cuda:N"}, bad);
  }
  ExpectInvalid(ParseWith("", "[runtime]\ndevice = 0\n"), {"edge.toml:7", "runtime.device"},
                "device = 0");
}

TEST(EdgeConfigTest, DtypeIsResolvedForTheDevice) {
  const std::tuple<std::string, std::string, std::string> cases[] = {
      {"cpu", "auto", "f32"},   {"cpu", "f32", "f32"},    {"cpu", "bf16", "bf16"},
      {"cuda", "auto", "bf16"}, {"cuda:1", "f32", "f32"}, {"cuda:1", "bf16", "bf16"},
      {"cuda:2", "f16", "f16"}};
  for (const auto& [device, dtype, resolved] : cases) {
    auto config =
        ParseWith("", "[runtime]\ndevice = \"" + device + "\"\ndtype = \"" + dtype + "\"\n");
    ASSERT_TRUE(config.ok()) << device << " " << dtype << ": " << config.status().ToString();
    EXPECT_EQ(config->dtype, resolved) << device << " " << dtype;
  }
}

TEST(EdgeConfigTest, F16OnCpuIsRefused) {
  ExpectInvalid(ParseWith("", "[runtime]\ndevice = \"cpu\"\ndtype = \"f16\"\n"),
                {"edge.toml:8", "runtime.dtype", "f16", "cpu", "use f32 or bf16"}, "explicit cpu");
  // cpu is the default device.
  ExpectInvalid(ParseWith("", "[runtime]\ndtype = \"f16\"\n"),
                {"edge.toml:7", "runtime.dtype", "use f32 or bf16"}, "default cpu");
  for (const std::string bad : {"fp16", "float32", "BF16", "", "f64"}) {
    ExpectInvalid(ParseWith("", "[runtime]\ndevice = \"cuda\"\ndtype = \"" + bad + "\"\n"),
                  {"edge.toml:8", "runtime.dtype", "\"" + bad + "\""}, bad);
  }
}

TEST(EdgeConfigTest, UnknownKeyIsNamedWithItsLine) {
  ExpectInvalid(ParseWith("", "[limits]\nrows_per_request_maxx = 5\n"),
                {"edge.toml:7", "unknown key 'rows_per_request_maxx' in [limits]"}, "limits");
  ExpectInvalid(ParseWith("listn = \"127.0.0.1:1\"\n", ""),
                {"edge.toml:4", "unknown key 'listn' at top level"}, "top level");
  ExpectInvalid(ParseWith("", "[gpu]\ndevice = \"cuda\"\n"), {"edge.toml:6", "'gpu'"}, "section");
  ExpectInvalid(ParseWith("", "[tls]\nmode = \"plaintext\"\ncertt = \"x\"\n"),
                {"edge.toml:8", "'certt' in [tls]"}, "tls");
}

TEST(EdgeConfigTest, MisspeltKeyIsReportedBeforeTheCombinationItsDefaultMakes) {
  // Without the unknown-key check first, this would read as f16 on the default device, cpu.
  ExpectInvalid(ParseWith("", "[runtime]\ndevce = \"cuda\"\ndtype = \"f16\"\n"),
                {"edge.toml:7", "unknown key 'devce'"}, "device");
  ExpectInvalid(ParseWith("", "[outbox]\nretry_min_ms = 60000\nretry_mx_ms = 90000\n"),
                {"edge.toml:8", "unknown key 'retry_mx_ms'"}, "outbox");
}

TEST(EdgeConfigTest, WrongTypesAreRefused) {
  const std::pair<std::string, std::string> cases[] = {
      {"listen = 7700\n", "'listen' must be a string"},
      {"drain_timeout_ms = \"10s\"\n", "'drain_timeout_ms' must be an integer"},
      {"port_file = false\n", "'port_file' must be a string"},
      {"http = 3\n", "'http' must be a table"},
      {"runtime = \"cuda\"\n", "'runtime' must be a table"},
  };
  for (const auto& [top, expected] : cases) {
    ExpectInvalid(ParseWith(top, ""), {"edge.toml:4", expected}, top);
  }
  ExpectInvalid(
      Parse("identity_key = 3\ndata_dir = \"/d\"\ngenesis = \"/g\"\n" + std::string(kStore)),
      {"edge.toml:1", "'identity_key' must be a string"}, "identity_key");
  const std::pair<std::string, std::string> section_cases[] = {
      {"[chain]\nsubmit_timeout_ms = 1.5\n", "'chain.submit_timeout_ms' must be an integer"},
      {"[chain]\nvalidators = \"127.0.0.1:7600\"\n", "'chain.validators' must be an array"},
      {"[chain]\nvalidators = [7600]\n", "'chain.validators' must be an array of strings"},
      {"[runtime]\nbatch_rows_max = true\n", "'runtime.batch_rows_max' must be an integer"},
      {"[runtime]\ngpu_memory_bytes_max = -1\n", "runtime.gpu_memory_bytes_max"},
      {"[limits]\nconcurrent_requests_max = \"64\"\n", "limits.concurrent_requests_max"},
      {"[cache]\ndir = 1\n", "'cache.dir' must be a string"},
      {"[outbox]\nentries_max = [1]\n", "'outbox.entries_max' must be an integer"},
      {"[log]\nlevel = 1\n", "'log.level' must be a string"},
      {"[tls]\nmode = true\n", "'tls.mode' must be a string"},
  };
  for (const auto& [sections, expected] : section_cases) {
    ExpectInvalid(ParseWith("", sections), {"edge.toml:7", expected}, sections);
  }
  ExpectInvalid(Parse(std::string(kTop) + "[store]\nendpoints = \"127.0.0.1:7500\"\n"),
                {"edge.toml:5", "'store.endpoints' must be an array of strings"}, "endpoints");
}

TEST(EdgeConfigTest, RequiredKeysAreNamed) {
  const std::string key = "identity_key = \"/k.pem\"\n";
  const std::string data = "data_dir = \"/d\"\n";
  const std::string genesis = "genesis = \"/g.json\"\n";
  ExpectInvalid(Parse(data + genesis + kStore), {"edge.toml", "identity_key"}, "identity_key");
  ExpectInvalid(Parse(key + genesis + kStore), {"edge.toml", "data_dir"}, "data_dir");
  ExpectInvalid(Parse(key + data + kStore), {"edge.toml", "genesis"}, "genesis");
  ExpectInvalid(Parse(key + data + genesis),
                {"edge.toml", "missing required key 'endpoints' in [store]"}, "store");
  ExpectInvalid(Parse(key + data + genesis + "[store]\n"),
                {"edge.toml", "missing required key 'endpoints' in [store]"}, "empty [store]");
  ExpectInvalid(Parse(key + "data_dir = \"\"\n" + genesis + kStore),
                {"edge.toml:2", "'data_dir' must not be empty"}, "empty data_dir");
  ExpectInvalid(Parse("identity_key = \"\"\n" + data + genesis + kStore),
                {"edge.toml:1", "'identity_key' must not be empty"}, "empty identity_key");
}

TEST(EdgeConfigTest, ValuesOutOfRangeAreRefused) {
  // Each case: the sections after [store] (its key on line 7), the key named.
  const std::pair<std::string, std::string> cases[] = {
      {"[chain]\nregistration_check_ms = 99\n", "chain.registration_check_ms"},
      {"[chain]\nregistration_check_ms = 3600001\n", "chain.registration_check_ms"},
      {"[chain]\nsubmit_timeout_ms = 0\n", "chain.submit_timeout_ms"},
      {"[runtime]\ngpu_memory_bytes_max = 1048575\n", "runtime.gpu_memory_bytes_max"},
      {"[runtime]\ngpu_memory_bytes_max = 17592186044417\n", "runtime.gpu_memory_bytes_max"},
      {"[runtime]\nbatch_rows_max = 0\n", "runtime.batch_rows_max"},
      {"[runtime]\nbatch_rows_max = 1048577\n", "runtime.batch_rows_max"},
      {"[runtime]\nbatch_wait_us = -1\n", "runtime.batch_wait_us"},
      {"[runtime]\nbatch_wait_us = 100001\n", "runtime.batch_wait_us"},
      {"[limits]\nrows_per_request_max = 0\n", "limits.rows_per_request_max"},
      {"[limits]\nrows_per_request_max = 1048577\n", "limits.rows_per_request_max"},
      {"[limits]\nconcurrent_requests_max = 0\n", "limits.concurrent_requests_max"},
      {"[limits]\nconcurrent_requests_max = 65537\n", "limits.concurrent_requests_max"},
      {"[limits]\ntensor_bytes_max = 1023\n", "limits.tensor_bytes_max"},
      {"[limits]\ntensor_bytes_max = 4294967297\n", "limits.tensor_bytes_max"},
      {"[cache]\nbytes_max = 1048575\n", "cache.bytes_max"},
      {"[cache]\nbytes_max = 1125899906842625\n", "cache.bytes_max"},
      {"[outbox]\nretry_min_ms = 0\n", "outbox.retry_min_ms"},
      {"[outbox]\nretry_max_ms = 3600001\n", "outbox.retry_max_ms"},
      {"[outbox]\nentries_max = 0\n", "outbox.entries_max"},
      {"[log]\nlevel = \"loud\"\n", "loud"},
      {"[log]\nformat = \"xml\"\n", "xml"},
      {"[tls]\nmode = \"maybe\"\n", "maybe"},
      {"[http]\nlisten = \"127.0.0.1:65536\"\n", "http.listen"},
      {"[http]\nlisten = \"nohost\"\n", "http.listen"},
  };
  for (const auto& [sections, key] : cases) {
    ExpectInvalid(ParseWith("", sections), {"edge.toml:7", key}, sections);
  }
  ExpectInvalid(ParseWith("drain_timeout_ms = 600001\n", ""),
                {"edge.toml:4", "drain_timeout_ms", "between 0 and 600000"}, "drain");
  ExpectInvalid(ParseWith("drain_timeout_ms = -1\n", ""), {"edge.toml:4", "drain_timeout_ms"},
                "drain negative");
  ExpectInvalid(ParseWith("listen = \"127.0.0.1:99999\"\n", ""), {"edge.toml:4", "'listen'"},
                "listen port");
}

TEST(EdgeConfigTest, BoundsAreInclusive) {
  auto config = ParseWith("drain_timeout_ms = 600000\n",
                          "[chain]\nregistration_check_ms = 100\n"
                          "[runtime]\ngpu_memory_bytes_max = 17592186044416\n"
                          "batch_rows_max = 1048576\nbatch_wait_us = 100000\n"
                          "[limits]\nrows_per_request_max = 1\nconcurrent_requests_max = 65536\n"
                          "tensor_bytes_max = 4294967296\n"
                          "[cache]\nbytes_max = 1125899906842624\n"
                          "[outbox]\nretry_min_ms = 1\nretry_max_ms = 3600000\n"
                          "entries_max = 1073741824\n");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->gpu_memory_bytes_max, 16ull << 40);
  EXPECT_EQ(config->tensor_bytes_max, 4ull << 30);
  EXPECT_EQ(config->cache_bytes_max, 1ull << 50);
  EXPECT_EQ(config->outbox_entries_max, 1u << 30);
}

TEST(EdgeConfigTest, StoreEndpointsMustBeANonEmptyListOfHostPort) {
  ExpectInvalid(Parse(std::string(kTop) + "[store]\nendpoints = []\n"),
                {"edge.toml:5", "'store.endpoints'", "at least one"}, "empty");
  for (const std::string bad :
       {"nohost", "127.0.0.1:", ":7500", "127.0.0.1:99999", "127.0.0.1:75x0", "127.0.0.1:0", ""}) {
    ExpectInvalid(
        Parse(std::string(kTop) + "[store]\nendpoints = [\"127.0.0.1:7500\", \"" + bad + "\"]\n"),
        {"edge.toml:5", "store.endpoints"}, bad);
    ExpectInvalid(ParseWith("", "[chain]\nvalidators = [\"" + bad + "\"]\n"),
                  {"edge.toml:7", "chain.validators"}, bad);
  }
}

TEST(EdgeConfigTest, PlaintextGrpcOffLoopbackIsRefused) {
  ExpectInvalid(
      ParseWith("listen = \"0.0.0.0:7700\"\n", ""),
      {"edge.toml:4", "'listen'", "plaintext gRPC on non-loopback 0.0.0.0:7700", "[tls] mode"},
      "listen");
  ExpectInvalid(Parse(std::string(kTop) + "[store]\nendpoints = [\"10.0.0.5:7500\"]\n"),
                {"edge.toml:5", "store.endpoints", "plaintext gRPC to non-loopback 10.0.0.5:7500"},
                "store");
  ExpectInvalid(ParseWith("", "[chain]\nvalidators = [\"127.0.0.1:7600\", \"v1.example:7600\"]\n"),
                {"edge.toml:7", "chain.validators", "v1.example:7600"}, "validators");

  // With TLS every address may be anywhere (the PEM files only need to be readable here).
  ScratchDir dir;
  for (const char* name : {"edge.crt", "edge.key", "ca.crt"}) {
    std::ofstream(dir.Sub(name)) << "PEM\n";
  }
  auto config = ParseWith("listen = \"0.0.0.0:7700\"\n",
                          "[chain]\nvalidators = [\"10.0.0.6:7600\"]\n"
                          "[tls]\nmode = \"mtls\"\ncert = \"" +
                              dir.Sub("edge.crt") + "\"\nkey = \"" + dir.Sub("edge.key") +
                              "\"\nca = \"" + dir.Sub("ca.crt") + "\"\n");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->transport.mode, net::TlsMode::kMutualTls);
  EXPECT_EQ(config->listen, "0.0.0.0:7700");
  ExpectInvalid(ParseWith("", "[tls]\nmode = \"tls\"\n"), {"edge.toml", "needs cert"}, "no cert");
}

TEST(EdgeConfigTest, RetryMinAboveMaxIsRefused) {
  ExpectInvalid(ParseWith("", "[outbox]\nretry_min_ms = 5000\nretry_max_ms = 1000\n"),
                {"edge.toml:7", "'outbox.retry_min_ms' is above 'outbox.retry_max_ms'"}, "both");
  ExpectInvalid(ParseWith("", "[outbox]\nretry_min_ms = 30001\n"),
                {"edge.toml:7", "outbox.retry_min_ms"}, "above the default max");
}

TEST(EdgeConfigTest, FilesAreReadOrNamed) {
  auto config = LoadEdgeConfig("/nonexistent/edge.toml");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), StatusCode::kNotFound);

  ScratchDir dir;
  const std::string path = dir.Sub("edge.toml");
  std::ofstream(path) << kTop << kStore << "[runtime]\ndevice = \"tpu\"\n";
  config = LoadEdgeConfig(path);
  ExpectInvalid(config, {path + ":7", "runtime.device"}, "file name in messages");

  ExpectInvalid(Parse(std::string(kTop) + "[store\n"), {"edge.toml:4"}, "not TOML");
}

TEST(EdgeConfigTest, DeviceAndDtypeHelpers) {
  EXPECT_EQ(*ParseDevice("cuda"), "cuda:0");
  EXPECT_EQ(*ParseDevice("cuda:12"), "cuda:12");
  EXPECT_FALSE(ParseDevice("cuda:64").ok());
  EXPECT_EQ(*ResolveDtype("auto", "cuda:1"), "bf16");
  EXPECT_EQ(*ResolveDtype("auto", "cpu"), "f32");
  auto f16 = ResolveDtype("f16", "cpu");
  ASSERT_FALSE(f16.ok());
  EXPECT_THAT(f16.status().message(), AllOf(HasSubstr("f16"), HasSubstr("use f32 or bf16")));
}

}  // namespace
}  // namespace trustmoe::edge
