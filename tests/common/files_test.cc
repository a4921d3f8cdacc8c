#include "common/files.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <filesystem>

#include "test_dir.h"

namespace trustmoe {
namespace {

uint32_t ModeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0);
  return st.st_mode & 07777;
}

std::vector<std::string> Entries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

TEST(FilesTest, WriteAtomicThenRead) {
  testutil::TempDir dir;
  const std::string path = dir.Sub("key.pem");
  ASSERT_TRUE(WriteFileAtomic(path, "secret", 0600).ok());
  EXPECT_EQ(ModeOf(path), 0600u);
  Result<std::string> back = ReadFile(path);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, "secret");
  EXPECT_EQ(Entries(dir.path()), std::vector<std::string>{"key.pem"});  // no temp file left
}

TEST(FilesTest, ModeIsExactWhateverTheUmask) {
  testutil::TempDir dir;
  const std::string path = dir.Sub("pub");
  mode_t old = ::umask(077);
  Status st = WriteFileAtomic(path, "x", 0644);
  ::umask(old);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(ModeOf(path), 0644u);
}

TEST(FilesTest, OverwriteReplacesContentAndMode) {
  testutil::TempDir dir;
  const std::string path = dir.Sub("f");
  ASSERT_TRUE(WriteFileAtomic(path, "a much longer first version", 0644).ok());
  ASSERT_TRUE(WriteFileAtomic(path, "v2", 0600).ok());
  EXPECT_EQ(*ReadFile(path), "v2");
  EXPECT_EQ(ModeOf(path), 0600u);
  EXPECT_EQ(Entries(dir.path()), std::vector<std::string>{"f"});
}

TEST(FilesTest, BinaryAndEmptyContent) {
  testutil::TempDir dir;
  const std::string path = dir.Sub("bin");
  std::string data("\0\x01\xff\n", 4);
  ASSERT_TRUE(WriteFileAtomic(path, data).ok());
  EXPECT_EQ(*ReadFile(path), data);
  ASSERT_TRUE(WriteFileAtomic(path, "").ok());
  EXPECT_EQ(*ReadFile(path), "");
}

TEST(FilesTest, WriteIntoMissingDirectoryFailsCleanly) {
  testutil::TempDir dir;
  Status st = WriteFileAtomic(dir.Sub("no/such/file"), "x");
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_NE(st.message().find(dir.Sub("no/such/file")), std::string::npos) << st.message();
  EXPECT_TRUE(Entries(dir.path()).empty());
}

TEST(FilesTest, FailedRenameRemovesTempFile) {
  testutil::TempDir dir;
  ASSERT_TRUE(MakeDirs(dir.Sub("target")).ok());
  // rename(2) of a file over a directory fails; the temp file must not stay behind.
  Status st = WriteFileAtomic(dir.Sub("target"), "x");
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("target"), std::string::npos);
  EXPECT_EQ(Entries(dir.path()), std::vector<std::string>{"target"});
}

TEST(FilesTest, ReadMissingIsNotFound) {
  testutil::TempDir dir;
  Result<std::string> r = ReadFile(dir.Sub("absent"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find(dir.Sub("absent")), std::string::npos);
  EXPECT_NE(r.status().message().find("No such file"), std::string::npos);
}

TEST(FilesTest, ReadOverLimitIsResourceExhausted) {
  testutil::TempDir dir;
  const std::string path = dir.Sub("f");
  ASSERT_TRUE(WriteFileAtomic(path, "0123456789").ok());
  EXPECT_EQ(ReadFile(path, 9).status().code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(ReadFile(path, 10).ok());
}

TEST(FilesTest, ReadDirectoryFails) {
  testutil::TempDir dir;
  Result<std::string> r = ReadFile(dir.path());
  EXPECT_FALSE(r.ok());
}

TEST(FilesTest, MakeDirsCreatesParentsAndIsIdempotent) {
  testutil::TempDir dir;
  const std::string deep = dir.Sub("a/b//c/");
  ASSERT_TRUE(MakeDirs(deep, 0700).ok());
  EXPECT_TRUE(std::filesystem::is_directory(dir.Sub("a/b/c")));
  EXPECT_EQ(ModeOf(dir.Sub("a")), 0700u);
  EXPECT_EQ(ModeOf(dir.Sub("a/b/c")), 0700u);
  EXPECT_TRUE(MakeDirs(deep).ok());
  EXPECT_EQ(ModeOf(dir.Sub("a/b/c")), 0700u);  // existing ones are left alone
}

TEST(FilesTest, MakeDirsOverAFileFails) {
  testutil::TempDir dir;
  ASSERT_TRUE(WriteFileAtomic(dir.Sub("f"), "x").ok());
  EXPECT_FALSE(MakeDirs(dir.Sub("f")).ok());
  EXPECT_FALSE(MakeDirs(dir.Sub("f/g")).ok());
  EXPECT_EQ(MakeDirs("").code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace trustmoe
