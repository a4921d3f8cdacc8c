#include "edge/expert_format.h"

#include <string>

#include <gtest/gtest.h>

namespace trustmoe::edge {
namespace {

struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  DType dtype;
};

// The tensors of `spec`'s architecture.
std::vector<Tensor> ExpertTensors(const ExpertSpec& spec) {
  const int64_t m = spec.d_model, f = spec.d_ff;
  if (spec.arch == kArchGeluMlp) {
    return {{"w1", {f, m}, spec.dtype},
            {"b1", {f}, spec.dtype},
            {"w2", {m, f}, spec.dtype},
            {"b2", {m}, spec.dtype}};
  }
  return {{"w1", {f, m}, spec.dtype}, {"w3", {f, m}, spec.dtype}, {"w2", {m, f}, spec.dtype}};
}

// A file holding `tensors` (zero bytes) under `metadata`.
Bytes Write(const Metadata& metadata, const std::vector<Tensor>& tensors) {
  std::vector<Bytes> storage;
  std::vector<TensorData> data;
  storage.reserve(tensors.size());
  for (const Tensor& t : tensors) {
    uint64_t bytes = DTypeBytes(t.dtype);
    for (int64_t d : t.shape) bytes *= static_cast<uint64_t>(d);
    storage.emplace_back(bytes, 0x3c);
    data.push_back({t.name, t.dtype, t.shape, storage.back()});
  }
  Result<Bytes> file = WriteSafetensors(metadata, data);
  TRUSTMOE_CHECK(file.ok());
  return *file;
}

Result<ExpertSpec> Validate(const Bytes& file) {
  Result<SafetensorsFile> parsed = ParseSafetensors(file);
  if (!parsed.ok()) return parsed.status();
  return ValidateExpert(*parsed);
}

void ExpectRefused(const Bytes& file, std::string_view problem) {
  Result<ExpertSpec> spec = Validate(file);
  ASSERT_FALSE(spec.ok()) << "accepted an expert that should fail with: " << problem;
  EXPECT_EQ(spec.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(spec.status().message().find(problem), std::string::npos)
      << spec.status().message() << " does not say " << problem;
}

const ExpertSpec kGelu{"gelu_mlp", 8, 32, DType::kF32};
const ExpertSpec kSwiglu{"swiglu", 8, 24, DType::kBF16};

TEST(ExpertFormatTest, RoundTripBothArchsAllDTypes) {
  for (const char* arch : {"gelu_mlp", "swiglu"}) {
    for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
      ExpertSpec spec{arch, 16, 48, dtype};
      SCOPED_TRACE(spec.arch + " " + std::string(DTypeName(dtype)));
      Bytes file = Write(ExpertMetadata(spec), ExpertTensors(spec));
      Result<ExpertSpec> got = Validate(file);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      EXPECT_EQ(*got, spec);
    }
  }
}

TEST(ExpertFormatTest, IgnoresForeignMetadata) {
  Metadata metadata = ExpertMetadata(kGelu);
  metadata["format"] = "pt";
  EXPECT_TRUE(Validate(Write(metadata, ExpertTensors(kGelu))).ok());
}

TEST(ExpertFormatTest, RefusesWrongTensorSet) {
  std::vector<Tensor> missing = ExpertTensors(kGelu);
  missing.pop_back();
  ExpectRefused(Write(ExpertMetadata(kGelu), missing), "missing tensor \"b2\" for gelu_mlp");

  std::vector<Tensor> extra = ExpertTensors(kSwiglu);
  extra.push_back({"b1", {kSwiglu.d_ff}, kSwiglu.dtype});
  ExpectRefused(Write(ExpertMetadata(kSwiglu), extra), "unexpected tensor \"b1\" for swiglu");

  // gelu_mlp tensors under a swiglu spec.
  ExpertSpec as_swiglu = kGelu;
  as_swiglu.arch = "swiglu";
  ExpectRefused(Write(ExpertMetadata(as_swiglu), ExpertTensors(kGelu)), "unexpected tensor");
}

TEST(ExpertFormatTest, RefusesWrongShapes) {
  std::vector<Tensor> transposed = ExpertTensors(kGelu);
  transposed[0].shape = {kGelu.d_model, kGelu.d_ff};
  ExpectRefused(Write(ExpertMetadata(kGelu), transposed),
                "tensor \"w1\" has shape [8, 32], gelu_mlp needs [32, 8]");

  ExpertSpec wider = kSwiglu;
  wider.d_ff = 32;
  ExpectRefused(Write(ExpertMetadata(wider), ExpertTensors(kSwiglu)), "has shape");
}

TEST(ExpertFormatTest, RefusesDTypeMismatch) {
  std::vector<Tensor> tensors = ExpertTensors(kSwiglu);
  tensors[1].dtype = DType::kF16;
  ExpectRefused(Write(ExpertMetadata(kSwiglu), tensors), "is F16 but trustmoe.dtype is BF16");

  ExpertSpec as_f32 = kSwiglu;
  as_f32.dtype = DType::kF32;
  ExpectRefused(Write(ExpertMetadata(as_f32), ExpertTensors(kSwiglu)), "but trustmoe.dtype is F32");
}

TEST(ExpertFormatTest, RefusesBadMetadata) {
  auto with = [](std::string key, std::string value) {
    Metadata metadata = ExpertMetadata(kGelu);
    metadata[key] = value;
    return Write(metadata, ExpertTensors(kGelu));
  };
  auto without = [](std::string key) {
    Metadata metadata = ExpertMetadata(kGelu);
    metadata.erase(key);
    return Write(metadata, ExpertTensors(kGelu));
  };
  ExpectRefused(with("trustmoe.d_model", "0"), "trustmoe.d_model must be an integer in 1..65536");
  ExpectRefused(with("trustmoe.d_model", "65537"), "trustmoe.d_model must be");
  ExpectRefused(with("trustmoe.d_model", "99999999999999999999999"), "trustmoe.d_model must be");
  ExpectRefused(with("trustmoe.d_ff", "-32"), "trustmoe.d_ff must be");
  ExpectRefused(with("trustmoe.d_ff", "032"), "trustmoe.d_ff must be");
  ExpectRefused(with("trustmoe.d_ff", "32 "), "trustmoe.d_ff must be");
  ExpectRefused(with("trustmoe.arch", "moe"), "unknown arch \"moe\"");
  ExpectRefused(with("trustmoe.dtype", "F64"), "trustmoe.dtype: unknown dtype");
  ExpectRefused(with("trustmoe.format", "trustmoe-expert/v2"), "trustmoe.format is");
  ExpectRefused(with("trustmoe.extra", "1"), "unknown metadata key \"trustmoe.extra\"");
  ExpectRefused(without("trustmoe.format"), "metadata lacks trustmoe.format");
  ExpectRefused(without("trustmoe.d_ff"), "metadata lacks trustmoe.d_ff");
  ExpectRefused(Write({}, ExpertTensors(kGelu)), "metadata lacks");
}

TEST(ExpertFormatTest, ValidatesActivations) {
  auto parse_and_check = [](const Bytes& file, int64_t d_model, int64_t rows_max) {
    Result<SafetensorsFile> parsed = ParseSafetensors(file);
    TRUSTMOE_CHECK(parsed.ok());
    return ValidateActivations(*parsed, d_model, rows_max);
  };
  Metadata format = {{"trustmoe.format", std::string(kActivationsFormat)}};
  Result<ActivationsSpec> ok = parse_and_check(Write(format, {{"x", {5, 8}, DType::kBF16}}), 8, 16);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->rows, 5);
  EXPECT_EQ(ok->dtype, DType::kBF16);
  EXPECT_TRUE(parse_and_check(Write({}, {{"x", {1, 8}, DType::kF32}}), 8, 1).ok());

  EXPECT_FALSE(parse_and_check(Write({}, {{"x", {5, 8}, DType::kF32}}), 8, 4).ok());
  EXPECT_FALSE(parse_and_check(Write({}, {{"x", {0, 8}, DType::kF32}}), 8, 4).ok());
  EXPECT_FALSE(parse_and_check(Write({}, {{"x", {2, 7}, DType::kF32}}), 8, 4).ok());
  EXPECT_FALSE(parse_and_check(Write({}, {{"x", {2, 8, 1}, DType::kF32}}), 8, 4).ok());
  EXPECT_FALSE(parse_and_check(Write({}, {{"y", {2, 8}, DType::kF32}}), 8, 4).ok());
  EXPECT_FALSE(
      parse_and_check(Write({}, {{"x", {2, 8}, DType::kF32}, {"y", {1}, DType::kF32}}), 8, 4).ok());
  EXPECT_FALSE(
      parse_and_check(Write(ExpertMetadata(kGelu), {{"x", {2, 8}, DType::kF32}}), 8, 4).ok());
}

}  // namespace
}  // namespace trustmoe::edge
