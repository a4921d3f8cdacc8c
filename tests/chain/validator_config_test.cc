// trustmoe-validator's configuration: defaults, and every kind of mistake named with file and
// line.
#include "chain/validator/validator_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "chain/validator/validator.h"
#include "tests/common/test_dir.h"

namespace trustmoe::validator {
namespace {

using ::testing::HasSubstr;

const char kMinimal[] =
    "data_dir = \"/tmp/v\"\n"
    "identity_key = \"/tmp/v/key.pem\"\n"
    "genesis = \"/tmp/v/genesis.json\"\n";

Result<ValidatorConfig> Parse(const std::string& text) {
  return ParseValidatorConfig(text, "validator.toml");
}

TEST(ValidatorConfigTest, MinimalConfigGetsDefaults) {
  auto config = Parse(kMinimal);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->listen, "127.0.0.1:7600");
  EXPECT_EQ(config->http_listen, "127.0.0.1:7601");
  EXPECT_EQ(config->genesis, "/tmp/v/genesis.json");
  EXPECT_EQ(config->submit_timeout_ms, 30000);
  EXPECT_EQ(config->peer_queue_max, 4096u);
  EXPECT_EQ(config->transport.mode, net::TlsMode::kPlaintext);
}

TEST(ValidatorConfigTest, EverySectionIsRead) {
  auto config = Parse(std::string(kMinimal) +
                      "listen = \"127.0.0.1:0\"\nport_file = \"/tmp/v/ports\"\n"
                      "[http]\nlisten = \"127.0.0.1:0\"\n"
                      "[log]\nlevel = \"debug\"\nformat = \"json\"\n"
                      "[submit]\ntimeout_ms = 1000\ntimeout_max_ms = 2000\nwaiters_max = 7\n"
                      "[node]\nevent_queue_max = 100\nstep_events_max = 10\n"
                      "[peers]\nqueue_max = 64\nreconnect_min_ms = 5\nreconnect_max_ms = 50\n"
                      "[pool]\ntxs_max = 10\npending_max_ms = 5000\n"
                      "[watch]\nstreams_max = 3\n[query]\nlist_limit_max = 5\n"
                      "[tls]\nmode = \"plaintext\"\n");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->submit_timeout_max_ms, 2000);
  EXPECT_EQ(config->submit_waiters_max, 7u);
  EXPECT_EQ(config->event_queue_max, 100u);
  EXPECT_EQ(config->peer_reconnect_max_ms, 50);
  EXPECT_EQ(config->pool_txs_max, 10u);
  EXPECT_EQ(config->watch_streams_max, 3u);
  EXPECT_EQ(config->list_limit_max, 5u);
  EXPECT_EQ(config->log.format, LogFormat::kJson);
}

TEST(ValidatorConfigTest, UnknownKeyIsNamedWithItsLine) {
  auto config = Parse(std::string(kMinimal) + "[peers]\nqueue_maxx = 5\n");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(), HasSubstr("validator.toml:5"));
  EXPECT_THAT(config.status().message(), HasSubstr("queue_maxx"));
}

TEST(ValidatorConfigTest, WrongTypesAreRefused) {
  for (const std::string& bad :
       {std::string("listen = 7600\n"), std::string("[submit]\ntimeout_ms = \"soon\"\n"),
        std::string("[pool]\ntxs_max = -1\n"), std::string("[node]\nevent_queue_max = 1.5\n"),
        std::string("http = 3\n")}) {
    auto config = Parse(std::string(kMinimal) + bad);
    ASSERT_FALSE(config.ok()) << bad;
    EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(config.status().message(), HasSubstr("validator.toml")) << bad;
  }
}

TEST(ValidatorConfigTest, ValuesOutOfRangeAreRefused) {
  for (const std::string& bad :
       {std::string("[peers]\nqueue_max = 0\n"), std::string("[submit]\ntimeout_ms = 0\n"),
        std::string("[submit]\ntimeout_ms = 5000\ntimeout_max_ms = 1000\n"),
        std::string("[peers]\nreconnect_min_ms = 900\nreconnect_max_ms = 100\n"),
        std::string("listen = \"127.0.0.1:99999\"\n"), std::string("listen = \"nohost\"\n"),
        std::string("[log]\nlevel = \"loud\"\n"), std::string("[tls]\nmode = \"maybe\"\n"),
        std::string("listen = \"0.0.0.0:7600\"\n")}) {
    auto config = Parse(std::string(kMinimal) + bad);
    ASSERT_FALSE(config.ok()) << bad;
    EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(config.status().message(), HasSubstr("validator.toml:")) << bad;
  }
}

TEST(ValidatorConfigTest, RequiredKeysAreNamed) {
  auto config = Parse("data_dir = \"/tmp/v\"\nidentity_key = \"/tmp/k.pem\"\n");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("genesis"));
  config = Parse("genesis = \"/tmp/g.json\"\nidentity_key = \"/tmp/k.pem\"\n");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("data_dir"));
  config = Parse(std::string(kMinimal) + "genesis = \"\"\n");
  EXPECT_FALSE(config.ok());
}

TEST(ValidatorConfigTest, MissingFilesAreNamed) {
  auto config = LoadValidatorConfig("/nonexistent/validator.toml");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), StatusCode::kNotFound);

  testutil::TempDir dir;
  auto key = crypto::PrivateKey::Generate();
  ASSERT_TRUE(key.ok());
  ASSERT_TRUE(key->SavePem(dir.Sub("key.pem")).ok());
  std::ofstream(dir.Sub("validator.toml"))
      << "data_dir = \"" << dir.Sub("data") << "\"\nidentity_key = \"" << dir.Sub("key.pem")
      << "\"\ngenesis = \"" << dir.Sub("missing-genesis.json") << "\"\nlisten = \"127.0.0.1:0\"\n"
      << "[http]\nlisten = \"127.0.0.1:0\"\n";
  config = LoadValidatorConfig(dir.Sub("validator.toml"));
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto validator = Validator::Start(*config);
  ASSERT_FALSE(validator.ok());
  EXPECT_EQ(validator.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(validator.status().message(), HasSubstr("missing-genesis.json"));
}

}  // namespace
}  // namespace trustmoe::validator
