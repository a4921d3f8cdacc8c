#include "edge/safetensors.h"

#include <algorithm>
#include <cstring>
#include <random>
#include <string>

#include <gtest/gtest.h>

namespace trustmoe::edge {
namespace {

// A file from a raw header and data, with the header length set to `header_bytes`.
Bytes RawFile(std::string_view header, const Bytes& data, uint64_t header_bytes) {
  Bytes out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(header_bytes >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

Bytes RawFile(std::string_view header, const Bytes& data) {
  return RawFile(header, data, header.size());
}

void ExpectRefused(const Bytes& file, std::string_view problem,
                   const SafetensorsLimits& limits = {}) {
  Result<SafetensorsFile> parsed = ParseSafetensors(file, limits);
  ASSERT_FALSE(parsed.ok()) << "accepted a file that should fail with: " << problem;
  EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(parsed.status().message().find(problem), std::string::npos)
      << parsed.status().message() << " does not say " << problem;
}

// Two F32 tensors, a [0,8) and b [8,16), 16 bytes of data.
const Bytes kData16(16, 0x11);

TEST(SafetensorsTest, ParsesTheReferenceLayout) {
  // What Python's safetensors writes for save_file({"x": torch.tensor([1.0, 2.0])},
  // metadata={"format": "pt"}): compact JSON, metadata first, padded with spaces to 8 bytes.
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})"
      "   ";
  ASSERT_EQ(header.size(), 88u);
  const Bytes data = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40};
  Bytes file = {88, 0, 0, 0, 0, 0, 0, 0};
  file.insert(file.end(), header.begin(), header.end());
  file.insert(file.end(), data.begin(), data.end());

  Result<SafetensorsFile> parsed = ParseSafetensors(file);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  ASSERT_EQ(parsed->tensors().size(), 1u);
  const TensorInfo* x = parsed->Find("x");
  ASSERT_NE(x, nullptr);
  EXPECT_EQ(x->dtype, DType::kF32);
  EXPECT_EQ(x->shape, std::vector<int64_t>({2}));
  EXPECT_EQ(x->begin, 0u);
  EXPECT_EQ(x->end, 8u);
  ByteSpan bytes = parsed->Data(*x);
  EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), data.begin(), data.end()));
  EXPECT_EQ(parsed->metadata(), Metadata({{"format", "pt"}}));
  EXPECT_EQ(parsed->Find("y"), nullptr);

  // Our writer produces exactly the same bytes.
  Result<Bytes> written = WriteSafetensors({{"format", "pt"}}, {{"x", DType::kF32, {2}, data}});
  ASSERT_TRUE(written.ok()) << written.status().ToString();
  EXPECT_EQ(*written, file);
}

TEST(SafetensorsTest, RoundTripAllDTypes) {
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    SCOPED_TRACE(std::string(DTypeName(dtype)));
    Bytes a(3 * 5 * DTypeBytes(dtype)), b(7 * DTypeBytes(dtype));
    for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<uint8_t>(i);
    for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(200 - i);
    // Given out of order: the writer sorts by name.
    Result<Bytes> file = WriteSafetensors({{"k", "v \"quoted\""}},
                                          {{"zeta", dtype, {7}, b}, {"alpha", dtype, {3, 5}, a}});
    ASSERT_TRUE(file.ok()) << file.status().ToString();
    uint64_t header_bytes = 0;
    std::memcpy(&header_bytes, file->data(), 8);
    EXPECT_EQ(header_bytes % 8, 0u);
    Result<SafetensorsFile> parsed = ParseSafetensors(*file);
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    ASSERT_EQ(parsed->tensors().size(), 2u);
    EXPECT_EQ(parsed->tensors()[0].name, "alpha");
    EXPECT_EQ(parsed->tensors()[0].begin, 0u);
    EXPECT_EQ(parsed->tensors()[1].begin, a.size());
    EXPECT_EQ(parsed->tensors()[0].dtype, dtype);
    EXPECT_EQ(parsed->tensors()[0].shape, std::vector<int64_t>({3, 5}));
    ByteSpan got_a = parsed->Data(*parsed->Find("alpha"));
    ByteSpan got_b = parsed->Data(*parsed->Find("zeta"));
    EXPECT_TRUE(std::equal(got_a.begin(), got_a.end(), a.begin(), a.end()));
    EXPECT_TRUE(std::equal(got_b.begin(), got_b.end(), b.begin(), b.end()));
    EXPECT_EQ(parsed->metadata().at("k"), "v \"quoted\"");
  }
}

TEST(SafetensorsTest, WriterRefusesInconsistentTensors) {
  Bytes four(4);
  EXPECT_FALSE(WriteSafetensors({}, {{"a", DType::kF32, {2}, four}}).ok());
  EXPECT_FALSE(
      WriteSafetensors({}, {{"a", DType::kF32, {1}, four}, {"a", DType::kF32, {1}, four}}).ok());
  EXPECT_FALSE(WriteSafetensors({}, {{"", DType::kF32, {1}, four}}).ok());
  EXPECT_FALSE(WriteSafetensors({}, {{"a", DType::kF32, {}, four}}).ok());
  EXPECT_FALSE(WriteSafetensors({}, {{"a", DType::kF32, {-1}, four}}).ok());
  EXPECT_FALSE(WriteSafetensors({{"k", "\xff"}}, {{"a", DType::kF32, {1}, four}}).ok());
}

TEST(SafetensorsTest, RefusesBadFraming) {
  ExpectRefused({}, "shorter than the 8-byte header length");
  ExpectRefused({1, 2, 3}, "shorter than the 8-byte header length");
  ExpectRefused(RawFile("{}", {}, 100), "runs past the end");
  ExpectRefused(RawFile("{}", {}, ~0ull), "exceeds the limit");
  ExpectRefused(RawFile("{}", {}, (1ull << 20) + 1), "exceeds the limit");
  SafetensorsLimits small;
  small.file_bytes_max = 9;
  ExpectRefused(RawFile("{}", {}), "exceeds the limit", small);
  EXPECT_TRUE(ParseSafetensors(RawFile("{}  ", {})).ok());
}

TEST(SafetensorsTest, RefusesBadJson) {
  ExpectRefused(RawFile("", {}), "not valid JSON");
  ExpectRefused(RawFile("{\"a\":", {}), "not valid JSON");
  ExpectRefused(RawFile("{} x", {}), "not valid JSON");
  ExpectRefused(RawFile(std::string_view("{}\0 ", 4), {}), "not valid JSON");
  ExpectRefused(RawFile("{/*c*/}", {}), "not valid JSON");
  ExpectRefused(RawFile("{\"\xff\":1}", {}), "not valid JSON");
  ExpectRefused(RawFile("[1,2]", {}), "not a JSON object");
  ExpectRefused(RawFile("\"str\"", {}), "not a JSON object");
  ExpectRefused(RawFile(R"({"__metadata__":[1]})", {}), "__metadata__ is not a JSON object");
  ExpectRefused(RawFile(R"({"__metadata__":{"a":1}})", {}), "is not a string");
  ExpectRefused(RawFile(R"({"__metadata__":{"a":{"b":{}}}})", {}), "nested too deep");
}

TEST(SafetensorsTest, RefusesBadTensorEntries) {
  auto one = [](std::string_view entry, const Bytes& data = Bytes(8)) {
    return RawFile("{\"t\":" + std::string(entry) + "}", data);
  };
  ExpectRefused(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,16]})"),
                "tensor \"t\": data_offsets end 16 is out of range");
  ExpectRefused(one(R"({"dtype":"F32","shape":[2],"data_offsets":[8,0]})"), "begin 8 > end 0");
  ExpectRefused(one(R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})"),
                "tensor \"t\": data_offsets span 8 bytes but dtype and shape need 12");
  ExpectRefused(one(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})"),
                "tensor \"t\": negative dim -2");
  ExpectRefused(one(R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})"), "not an integer");
  ExpectRefused(one(R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]})"),
                "tensor \"t\": element count overflows");
  ExpectRefused(one(R"({"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,8]})"),
                "too large");
  ExpectRefused(one(R"({"dtype":"F32","shape":[],"data_offsets":[0,0]})", {}), "rank 0");
  ExpectRefused(one(R"({"dtype":"F32","shape":[1,1,1,1,2],"data_offsets":[0,8]})"), "rank 5");
  ExpectRefused(one(R"({"dtype":"F64","shape":[1],"data_offsets":[0,8]})"),
                "tensor \"t\": unknown dtype \"F64\"");
  ExpectRefused(one(R"({"dtype":"f32","shape":[2],"data_offsets":[0,8]})"), "unknown dtype");
  ExpectRefused(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1})"),
                "tensor \"t\": unknown key \"x\"");
  ExpectRefused(one(R"({"dtype":"F32","shape":[2]})"), "tensor \"t\": missing data_offsets");
  ExpectRefused(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,-8]})"),
                "not a pair of non-negative integers");
  ExpectRefused(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8,8]})"),
                "not a pair of non-negative integers");
  ExpectRefused(one("[1]"), "entry is not a JSON object");
  ExpectRefused(one(R"({"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]})"),
                "duplicate key \"dtype\"");
}

TEST(SafetensorsTest, RefusesDuplicateTensorNames) {
  // nlohmann would keep only the second entry, which on its own tiles the data; the duplicate
  // is caught while parsing.
  ExpectRefused(RawFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                        R"("a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
                        kData16),
                "duplicate key \"a\"");
}

TEST(SafetensorsTest, RefusesRangesThatDoNotTile) {
  auto two = [](std::string_view a, std::string_view b, const Bytes& data) {
    return RawFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":)" + std::string(a) +
                       R"(},"b":{"dtype":"F32","shape":[2],"data_offsets":)" + std::string(b) +
                       "}}",
                   data);
  };
  EXPECT_TRUE(ParseSafetensors(two("[0,8]", "[8,16]", kData16)).ok());
  EXPECT_TRUE(ParseSafetensors(two("[8,16]", "[0,8]", kData16)).ok());
  ExpectRefused(two("[0,8]", "[4,12]", Bytes(12)), "tensor \"b\": overlaps tensor \"a\"");
  ExpectRefused(two("[0,8]", "[0,8]", Bytes(8)), "overlaps tensor \"a\"");
  ExpectRefused(two("[0,8]", "[12,20]", Bytes(20)), "tensor \"b\": gap of 4 bytes");
  ExpectRefused(two("[4,12]", "[12,20]", Bytes(20)), "tensor \"a\": gap of 4 bytes");
  ExpectRefused(two("[0,8]", "[8,16]", Bytes(20)), "4 trailing bytes");
  ExpectRefused(RawFile("{}", Bytes(1)), "1 trailing bytes");
}

TEST(SafetensorsTest, RefusesTooManyTensors) {
  std::string header = "{";
  for (int i = 0; i < 65; ++i) {
    if (i) header += ",";
    header += "\"t" + std::to_string(i) + R"(":{"dtype":"F32","shape":[1],"data_offsets":[)" +
              std::to_string(4 * i) + "," + std::to_string(4 * i + 4) + "]}";
  }
  header += "}";
  ExpectRefused(RawFile(header, Bytes(65 * 4)), "65 tensors exceed the limit of 64");
  SafetensorsLimits more;
  more.tensors_max = 65;
  EXPECT_TRUE(ParseSafetensors(RawFile(header, Bytes(65 * 4)), more).ok());
}

// Random corruption never crashes the parser, and whatever it accepts is consistent.
TEST(SafetensorsTest, MutatedFilesNeverCrashOrMisTile) {
  const uint32_t seed = 20240611;
  std::mt19937 rng(seed);
  Bytes w(6 * 4 * 2), b(6 * 2), x(3 * 4 * 4);
  Result<Bytes> valid = WriteSafetensors(
      {{"trustmoe.arch", "swiglu"}},
      {{"w", DType::kBF16, {6, 4}, w}, {"b", DType::kF16, {6}, b}, {"x", DType::kF32, {3, 4}, x}});
  ASSERT_TRUE(valid.ok());
  int accepted = 0;
  for (int iteration = 0; iteration < 2000; ++iteration) {
    SCOPED_TRACE("seed " + std::to_string(seed) + " iteration " + std::to_string(iteration));
    Bytes file = *valid;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < flips; ++i) {
      size_t pos = rng() % file.size();
      // Mostly the header, where the structure is.
      if (rng() % 4 != 0) pos = rng() % std::min<size_t>(file.size(), 8 + 160);
      file[pos] = rng() % 2 ? static_cast<uint8_t>(rng()) : file[pos] ^ (1u << (rng() % 8));
    }
    if (rng() % 4 == 0) file.resize(rng() % (file.size() + 1));
    Result<SafetensorsFile> parsed = ParseSafetensors(file);
    if (!parsed.ok()) {
      EXPECT_FALSE(parsed.status().message().empty());
      continue;
    }
    ++accepted;
    std::vector<TensorInfo> tensors = parsed->tensors();
    std::sort(tensors.begin(), tensors.end(),
              [](const TensorInfo& l, const TensorInfo& r) { return l.begin < r.begin; });
    uint64_t covered = 0;
    for (const TensorInfo& t : tensors) {
      ASSERT_EQ(t.begin, covered);
      ASSERT_LE(t.begin, t.end);
      uint64_t count = DTypeBytes(t.dtype);
      for (int64_t d : t.shape) count *= static_cast<uint64_t>(d);
      ASSERT_EQ(t.end - t.begin, count);
      covered = t.end;
    }
    ASSERT_EQ(covered, parsed->data_section().size());
    ASSERT_LE(parsed->data_section().size(), file.size());
    ASSERT_EQ(parsed->data_section().data() + parsed->data_section().size(),
              file.data() + file.size());
  }
  // Flips in the data section leave a valid file; the loop did exercise acceptance.
  EXPECT_GT(accepted, 0);
}

}  // namespace
}  // namespace trustmoe::edge
