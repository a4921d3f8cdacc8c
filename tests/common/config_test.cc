#include "common/config.h"

#include <gtest/gtest.h>

#include <fstream>

#include "common/files.h"
#include "test_dir.h"

namespace trustmoe {
namespace {

ConfigTable MustParse(std::string_view text, std::string name = "store.toml") {
  Result<ConfigTable> r = ConfigTable::Parse(text, std::move(name));
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return std::move(r).value();
}

TEST(ConfigTest, AllGetterTypes) {
  ConfigTable cfg = MustParse(R"(
name = "store-1"
enabled = true
offset = -5
count = 42
small = 7
ratio = 0.25
whole = 3
peers = ["a:1", "b:2"]
)");
  std::string name;
  bool enabled = false;
  int64_t offset = 0;
  uint64_t count = 0;
  uint32_t small = 0;
  int small_int = 0;
  double ratio = 0, whole = 0;
  std::vector<std::string> peers;
  ASSERT_TRUE(cfg.Get("name", &name).ok());
  ASSERT_TRUE(cfg.Get("enabled", &enabled).ok());
  ASSERT_TRUE(cfg.Get("offset", &offset).ok());
  ASSERT_TRUE(cfg.Get("count", &count).ok());
  ASSERT_TRUE(cfg.Get("small", &small).ok());
  ASSERT_TRUE(cfg.Get("small", &small_int).ok());
  ASSERT_TRUE(cfg.Get("ratio", &ratio).ok());
  ASSERT_TRUE(cfg.Get("whole", &whole).ok());
  ASSERT_TRUE(cfg.Get("peers", &peers).ok());
  EXPECT_EQ(name, "store-1");
  EXPECT_TRUE(enabled);
  EXPECT_EQ(offset, -5);
  EXPECT_EQ(count, 42u);
  EXPECT_EQ(small, 7u);
  EXPECT_EQ(small_int, 7);
  EXPECT_EQ(ratio, 0.25);
  EXPECT_EQ(whole, 3.0);
  EXPECT_EQ(peers, (std::vector<std::string>{"a:1", "b:2"}));
  EXPECT_TRUE(cfg.CheckNoUnknownKeys().ok());
}

TEST(ConfigTest, AbsentKeyLeavesDefault) {
  ConfigTable cfg = MustParse("a = 1\n");
  std::string s = "default";
  uint64_t u = 9;
  EXPECT_FALSE(cfg.Has("missing"));
  EXPECT_TRUE(cfg.Get("missing", &s).ok());
  EXPECT_TRUE(cfg.Get("missing", &u).ok());
  EXPECT_EQ(s, "default");
  EXPECT_EQ(u, 9u);
}

TEST(ConfigTest, MissingRequiredKey) {
  ConfigTable cfg = MustParse("a = 1\n[limits]\nx = 1\n");
  std::string listen;
  Status st = cfg.Require("listen", &listen);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "store.toml: missing required key 'listen' at top level");
  Result<ConfigTable> limits = cfg.Table("limits");
  ASSERT_TRUE(limits.ok());
  uint64_t max = 0;
  st = limits->Require("blob_max_bytes", &max);
  EXPECT_EQ(st.message(), "store.toml: missing required key 'blob_max_bytes' in [limits]");
  int64_t a = 0;
  EXPECT_TRUE(cfg.Require("a", &a).ok());
  EXPECT_EQ(a, 1);
}

TEST(ConfigTest, UnknownKeyAtTopLevel) {
  ConfigTable cfg = MustParse("listen = \"x\"\n\nlisen = \"y\"\n");
  std::string listen;
  ASSERT_TRUE(cfg.Get("listen", &listen).ok());
  Status st = cfg.CheckNoUnknownKeys();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "store.toml:3: unknown key 'lisen' at top level");
}

TEST(ConfigTest, UnknownKeyInSubTableReportedFromRoot) {
  ConfigTable cfg = MustParse(R"(listen = "0.0.0.0:7000"

[limits]
blob_max_bytes = 10
chunk_bytes = 4

blob_max_byte = 11
)");
  std::string listen;
  ASSERT_TRUE(cfg.Get("listen", &listen).ok());
  {
    Result<ConfigTable> limits = cfg.Table("limits");
    ASSERT_TRUE(limits.ok());
    uint64_t v = 0;
    ASSERT_TRUE(limits->Get("blob_max_bytes", &v).ok());
    ASSERT_TRUE(limits->Get("chunk_bytes", &v).ok());
    EXPECT_EQ(limits->Where("chunk_bytes"), "store.toml:5");
    EXPECT_FALSE(limits->CheckNoUnknownKeys().ok());
  }  // the sub-table object is gone; what it read is still known to the root
  Status st = cfg.CheckNoUnknownKeys();
  EXPECT_EQ(st.message(), "store.toml:7: unknown key 'blob_max_byte' in [limits]");
}

TEST(ConfigTest, UntouchedSubTableIsUnknown) {
  ConfigTable cfg = MustParse("[tls]\ncert = \"c.pem\"\n");
  EXPECT_EQ(cfg.CheckNoUnknownKeys().message(), "store.toml:1: unknown key 'tls' at top level");
}

TEST(ConfigTest, FirstUnknownKeyInFileOrder) {
  ConfigTable cfg = MustParse("zeta = 1\nalpha = 2\n");
  EXPECT_EQ(cfg.CheckNoUnknownKeys().message(), "store.toml:1: unknown key 'zeta' at top level");
}

TEST(ConfigTest, NestedSubTableSectionName) {
  ConfigTable cfg = MustParse("[tls.client]\ncert = \"c.pem\"\nkye = \"k\"\n");
  Result<ConfigTable> tls = cfg.Table("tls");
  ASSERT_TRUE(tls.ok());
  Result<ConfigTable> client = tls->Table("client");
  ASSERT_TRUE(client.ok());
  std::string cert;
  ASSERT_TRUE(client->Get("cert", &cert).ok());
  EXPECT_EQ(cfg.CheckNoUnknownKeys().message(), "store.toml:3: unknown key 'kye' in [tls.client]");
}

TEST(ConfigTest, AbsentTableIsEmpty) {
  ConfigTable cfg = MustParse("a = 1\n");
  int64_t a;
  ASSERT_TRUE(cfg.Get("a", &a).ok());
  Result<ConfigTable> t = cfg.Table("limits");
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->Has("x"));
  EXPECT_TRUE(cfg.CheckNoUnknownKeys().ok());
}

TEST(ConfigTest, NotATable) {
  ConfigTable cfg = MustParse("limits = 3\n");
  Result<ConfigTable> t = cfg.Table("limits");
  EXPECT_EQ(t.status().message(), "store.toml:1: 'limits' must be a table, got integer");
}

TEST(ConfigTest, WrongTypeWithLine) {
  ConfigTable cfg = MustParse("a = 1\nb = 2\nlisten = 7000\n");
  std::string listen;
  Status st = cfg.Get("listen", &listen);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "store.toml:3: 'listen' must be a string, got integer");
  EXPECT_EQ(listen, "");
}

TEST(ConfigTest, WrongTypeInSubTableNamesSection) {
  ConfigTable cfg = MustParse("[limits]\nmax = \"big\"\n");
  Result<ConfigTable> limits = cfg.Table("limits");
  ASSERT_TRUE(limits.ok());
  uint64_t max = 0;
  EXPECT_EQ(limits->Get("max", &max).message(),
            "store.toml:2: 'limits.max' must be an integer, got string");
}

TEST(ConfigTest, OtherWrongTypes) {
  ConfigTable cfg = MustParse("b = \"yes\"\nd = \"1.5\"\nl = [\"a\", 2]\ns = \"x\"\n");
  bool b;
  double d;
  std::vector<std::string> l;
  EXPECT_EQ(cfg.Get("b", &b).message(), "store.toml:1: 'b' must be a boolean, got string");
  EXPECT_EQ(cfg.Get("d", &d).message(), "store.toml:2: 'd' must be a number, got string");
  EXPECT_EQ(cfg.Get("l", &l).message(),
            "store.toml:3: 'l' must be an array of strings, got an array containing integer");
  EXPECT_EQ(cfg.Get("s", &l).message(),
            "store.toml:4: 's' must be an array of strings, got string");
}

TEST(ConfigTest, IntegerRanges) {
  ConfigTable cfg = MustParse("neg = -1\nbig = 4294967296\nhuge = 3000000000\nok = 5\n");
  uint64_t u64 = 1;
  uint32_t u32 = 1;
  int i = 1;
  EXPECT_EQ(cfg.Get("neg", &u64).message(), "store.toml:1: 'neg' must be >= 0, got -1");
  EXPECT_EQ(u64, 1u);
  EXPECT_EQ(cfg.Get("neg", &u32).message(), "store.toml:1: 'neg' must be >= 0, got -1");
  EXPECT_EQ(cfg.Get("big", &u32).message(),
            "store.toml:2: 'big' must be <= 4294967295, got 4294967296");
  EXPECT_EQ(cfg.Get("huge", &i).message(),
            "store.toml:3: 'huge' must be <= 2147483647, got 3000000000");
  EXPECT_TRUE(cfg.Get("neg", &i).ok());
  EXPECT_EQ(i, -1);
  EXPECT_TRUE(cfg.Get("big", &u64).ok());
  EXPECT_EQ(u64, 4294967296u);
  EXPECT_TRUE(cfg.Get("ok", &u32).ok());
  EXPECT_EQ(u32, 5u);
  EXPECT_EQ(u64, 4294967296u);
}

TEST(ConfigTest, InvalidTomlReportsLineAndColumn) {
  Result<ConfigTable> r = ConfigTable::Parse("a = 1\nb = \n", "bad.toml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message().rfind("bad.toml:2:", 0), 0u) << r.status().message();
}

TEST(ConfigTest, DuplicateKeyIsAParseError) {
  Result<ConfigTable> r = ConfigTable::Parse("a = 1\na = 2\n", "dup.toml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message().rfind("dup.toml:2:", 0), 0u) << r.status().message();
}

TEST(ConfigTest, WhereNamesFileAndLine) {
  ConfigTable cfg = MustParse("\n\nport = 80\n");
  EXPECT_EQ(cfg.Where("port"), "store.toml:3");
  EXPECT_EQ(cfg.Where("absent"), "store.toml");
  EXPECT_EQ(cfg.source(), "store.toml");
}

TEST(ConfigTest, LoadFile) {
  testutil::TempDir dir;
  const std::string path = dir.Sub("store.toml");
  ASSERT_TRUE(WriteFileAtomic(path, "listen = 7\n").ok());
  Result<ConfigTable> cfg = ConfigTable::LoadFile(path);
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  std::string listen;
  EXPECT_EQ(cfg->Get("listen", &listen).message(),
            path + ":1: 'listen' must be a string, got integer");
}

TEST(ConfigTest, LoadFileMissingIsNotFound) {
  testutil::TempDir dir;
  Result<ConfigTable> cfg = ConfigTable::LoadFile(dir.Sub("nope.toml"));
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.status().code(), StatusCode::kNotFound);
  EXPECT_NE(cfg.status().message().find("nope.toml"), std::string::npos);
}

TEST(ConfigTest, OversizedFileRefused) {
  testutil::TempDir dir;
  const std::string path = dir.Sub("big.toml");
  std::string text = "# " + std::string((1 << 20), 'x') + "\n";
  ASSERT_TRUE(WriteFileAtomic(path, text).ok());
  Result<ConfigTable> cfg = ConfigTable::LoadFile(path);
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.status().code(), StatusCode::kResourceExhausted);
  EXPECT_FALSE(ConfigTable::Parse(text, "big.toml").ok());
}

TEST(ConfigTest, MoveKeepsState) {
  ConfigTable cfg = MustParse("a = 1\nb = 2\n");
  int64_t v;
  ASSERT_TRUE(cfg.Get("a", &v).ok());
  ConfigTable moved = std::move(cfg);
  ASSERT_TRUE(moved.Get("b", &v).ok());
  EXPECT_TRUE(moved.CheckNoUnknownKeys().ok());
}

}  // namespace
}  // namespace trustmoe
