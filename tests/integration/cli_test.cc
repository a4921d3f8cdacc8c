// The `trustmoe` CLI (keygen, store put/get/stat/ls/pin) as a user runs it, against a real
// trustmoe-store on loopback.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <set>

#include "crypto/cid.h"
#include "tests/storage/store_process.h"

namespace trustmoe::storage {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::ProcessResult;
using testing::StoreProcess;
using testing::TempDir;

constexpr uint64_t kMiB = 1 << 20;

std::string Describe(const ProcessResult& r) {
  return "exit " + std::to_string(r.exit_code) + " signal " + std::to_string(r.signal) +
         "\nstdout: " + r.out + "\nstderr: " + r.err;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The CLI falls back to these; the tests pass everything explicitly.
    ::unsetenv("TRUSTMOE_KEY");
    ::unsetenv("TRUSTMOE_STORE");
  }

  ProcessResult Cli(std::vector<std::string> args) {
    args.insert(args.begin(), testing::CliBinary());
    return testing::RunProcess(args, dir_.path());
  }

  // `trustmoe store --store <this store> [extra flags] <args>`
  ProcessResult Store(std::vector<std::string> args, std::vector<std::string> flags = {}) {
    std::vector<std::string> all = {"store", "--store", store_->endpoint()};
    all.insert(all.end(), flags.begin(), flags.end());
    all.insert(all.end(), args.begin(), args.end());
    return Cli(all);
  }

  TempDir dir_;
  std::unique_ptr<StoreProcess> store_;
};

TEST_F(CliTest, KeygenPutGetStatLsPin) {
  const std::string key = dir_.Sub("writer.pem");
  ProcessResult keygen = Cli({"keygen", "-o", key});
  ASSERT_EQ(keygen.exit_code, 0) << Describe(keygen);
  struct stat st {};
  ASSERT_EQ(::stat(key.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_TRUE(testing::FileExists(key + ".pub"));
  auto loaded = crypto::PrivateKey::LoadPem(key);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  const std::string hex = loaded->public_key().Hex();
  EXPECT_THAT(keygen.out, HasSubstr(hex));

  // keygen refuses to overwrite.
  ProcessResult again = Cli({"keygen", "-o", key});
  EXPECT_NE(again.exit_code, 0) << Describe(again);
  EXPECT_THAT(again.err, HasSubstr("exists: use --force"));

  ProcessResult pub = Cli({"key", "pub", key + ".pub"});
  ASSERT_EQ(pub.exit_code, 0) << Describe(pub);
  EXPECT_EQ(pub.out, hex + "\n");

  testing::StoreProcessOptions options;
  options.extra_writers = {loaded->public_key()};
  store_ = StoreProcess::Start(options);
  ASSERT_NE(store_, nullptr);

  const Bytes data = testing::RandomBytes(9 * kMiB + 77, 1);
  const crypto::Cid cid = crypto::ComputeCid(data);
  const std::string file = dir_.Sub("model.bin");
  testing::WriteFileOrDie(file, data);

  ProcessResult put = Store({"put", file}, {"--key", key});
  ASSERT_EQ(put.exit_code, 0) << Describe(put);
  EXPECT_EQ(put.out, cid.ToString() + "\n");
  EXPECT_THAT(put.err, HasSubstr("put"));  // progress lines for a file over 8 MiB

  const std::string out = dir_.Sub("copy.bin");
  ProcessResult get = Store({"get", cid.ToString(), "-o", out});
  ASSERT_EQ(get.exit_code, 0) << Describe(get);
  EXPECT_EQ(testing::ReadFileBytes(out), data);
  EXPECT_FALSE(testing::FileExists(out + ".part"));
  EXPECT_THAT(get.out, HasSubstr("verified"));

  ProcessResult stat_json = Store({"stat", cid.ToString(), "--json"});
  ASSERT_EQ(stat_json.exit_code, 0) << Describe(stat_json);
  nlohmann::json info = nlohmann::json::parse(stat_json.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(info.is_discarded()) << stat_json.out;
  EXPECT_EQ(info["cid"], cid.ToString());
  EXPECT_EQ(info["size"], data.size());
  EXPECT_EQ(info["chunks"], 10);
  EXPECT_EQ(info["pinned"], false);

  ProcessResult stat_text = Store({"stat", cid.ToString()});
  ASSERT_EQ(stat_text.exit_code, 0) << Describe(stat_text);
  EXPECT_THAT(stat_text.out,
              AllOf(HasSubstr(cid.ToString()), HasSubstr(std::to_string(data.size()))));

  // A second, small blob through TRUSTMOE_KEY, pinned.
  const std::string small = dir_.Sub("small.txt");
  testing::WriteFileOrDie(small, std::string_view("hello, store\n"));
  ::setenv("TRUSTMOE_KEY", key.c_str(), 1);
  ProcessResult put_small = Store({"put", "--pin", small}, {"--json"});
  ::unsetenv("TRUSTMOE_KEY");
  ASSERT_EQ(put_small.exit_code, 0) << Describe(put_small);
  nlohmann::json small_info = nlohmann::json::parse(put_small.out, nullptr, false);
  ASSERT_FALSE(small_info.is_discarded()) << put_small.out;
  EXPECT_EQ(small_info["size"], 13);
  EXPECT_EQ(small_info["pinned"], true);
  EXPECT_EQ(small_info["already_stored"], false);
  const std::string small_cid = small_info["cid"].get<std::string>();

  ProcessResult ls = Store({"ls", "--json"});
  ASSERT_EQ(ls.exit_code, 0) << Describe(ls);
  nlohmann::json listed = nlohmann::json::parse(ls.out, nullptr, false);
  ASSERT_TRUE(listed.is_array()) << ls.out;
  ASSERT_EQ(listed.size(), 2u);
  std::set<std::string> cids = {listed[0]["cid"].get<std::string>(),
                                listed[1]["cid"].get<std::string>()};
  EXPECT_EQ(cids, (std::set<std::string>{cid.ToString(), small_cid}));

  ProcessResult ls_pinned = Store({"ls", "--pinned", "--json"});
  ASSERT_EQ(ls_pinned.exit_code, 0) << Describe(ls_pinned);
  listed = nlohmann::json::parse(ls_pinned.out, nullptr, false);
  ASSERT_TRUE(listed.is_array()) << ls_pinned.out;
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0]["cid"], small_cid);

  ProcessResult pin = Store({"pin", cid.ToString()}, {"--key", key, "--json"});
  ASSERT_EQ(pin.exit_code, 0) << Describe(pin);
  EXPECT_EQ(nlohmann::json::parse(pin.out, nullptr, false)["pinned"], true);

  ProcessResult ls_text = Store({"ls"});
  ASSERT_EQ(ls_text.exit_code, 0) << Describe(ls_text);
  EXPECT_THAT(ls_text.out,
              AllOf(HasSubstr("CID"), HasSubstr(cid.ToString()), HasSubstr(small_cid)));
}

TEST_F(CliTest, ErrorsExitNonZeroWithAClearMessage) {
  store_ = StoreProcess::Start();
  ASSERT_NE(store_, nullptr);
  const std::string file = dir_.Sub("f.bin");
  testing::WriteFileOrDie(file, testing::RandomBytes(1000, 2));

  // Unknown CID.
  const crypto::Cid unknown = crypto::ComputeCid(AsBytes("nobody stored this"));
  const std::string out = dir_.Sub("out.bin");
  ProcessResult get = Store({"get", unknown.ToString(), "-o", out});
  EXPECT_NE(get.exit_code, 0) << Describe(get);
  EXPECT_THAT(get.err, AllOf(HasSubstr("NOT_FOUND"), HasSubstr(unknown.ToString()),
                             HasSubstr("not stored")));
  EXPECT_FALSE(testing::FileExists(out));
  EXPECT_FALSE(testing::FileExists(out + ".part"));

  // Malformed CID.
  ProcessResult bad_cid = Store({"stat", "sha256-tree:nothex"});
  EXPECT_NE(bad_cid.exit_code, 0) << Describe(bad_cid);
  EXPECT_THAT(bad_cid.err, AllOf(HasSubstr("INVALID_ARGUMENT"), HasSubstr("sha256-tree:nothex")));

  // Put without a key says how to make one.
  ProcessResult no_key = Store({"put", file});
  EXPECT_NE(no_key.exit_code, 0) << Describe(no_key);
  EXPECT_THAT(no_key.err, AllOf(HasSubstr("--key"), HasSubstr("trustmoe keygen")));

  // A key the store does not accept.
  const std::string stranger = dir_.Sub("stranger.pem");
  ASSERT_EQ(Cli({"keygen", "-o", stranger}).exit_code, 0);
  ProcessResult denied = Store({"put", file}, {"--key", stranger});
  EXPECT_NE(denied.exit_code, 0) << Describe(denied);
  EXPECT_THAT(denied.err, AllOf(HasSubstr("PERMISSION_DENIED"), HasSubstr("writers")));

  // A key file others can read.
  ASSERT_EQ(::chmod(stranger.c_str(), 0644), 0);
  ProcessResult open_key = Store({"put", file}, {"--key", stranger});
  EXPECT_NE(open_key.exit_code, 0) << Describe(open_key);
  EXPECT_THAT(open_key.err, HasSubstr("chmod 600"));

  // A file that does not exist.
  ProcessResult missing =
      Store({"put", dir_.Sub("absent.bin")}, {"--key", store_->writer_key_path()});
  EXPECT_NE(missing.exit_code, 0) << Describe(missing);
  EXPECT_THAT(missing.err, HasSubstr("absent.bin"));

  // No store listening there.
  const int port = store_->grpc_port();
  store_->Stop();
  ProcessResult down =
      Cli({"store", "--store", "127.0.0.1:" + std::to_string(port), "stat", unknown.ToString()});
  EXPECT_NE(down.exit_code, 0) << Describe(down);
  EXPECT_THAT(down.err, HasSubstr("UNAVAILABLE"));

  // Nothing was stored by any of the refused commands.
  ASSERT_TRUE(store_->Restart().ok());
  ProcessResult ls = Store({"ls", "--json"});
  ASSERT_EQ(ls.exit_code, 0) << Describe(ls);
  EXPECT_EQ(nlohmann::json::parse(ls.out, nullptr, false), nlohmann::json::array());

  // Usage errors.
  ProcessResult usage = Cli({"store", "frobnicate"});
  EXPECT_NE(usage.exit_code, 0) << Describe(usage);
}

}  // namespace
}  // namespace trustmoe::storage
