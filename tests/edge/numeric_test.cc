#include "edge/numeric.h"

#include <bit>
#include <cmath>
#include <limits>

#include <gtest/gtest.h>

namespace trustmoe::edge {
namespace {

TEST(Numeric, HalfKnownValues) {
  EXPECT_EQ(FloatToHalf(1.0f), 0x3c00);
  EXPECT_EQ(FloatToHalf(-2.0f), 0xc000);
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7bff);
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7c00);  // halfway to the next: rounds to infinity
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -25)), 0x0000);  // halfway to it: rounds to even (0)
  EXPECT_EQ(FloatToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie: to even
  EXPECT_EQ(FloatToHalf(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(FloatToHalf(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(HalfToFloat(0x3555), 0.333251953125f);
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(HalfToFloat(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(HalfToFloat(0x8000), -0.0f);
}

TEST(Numeric, HalfRoundTripsEveryFiniteValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00) continue;  // infinity and NaN
    ASSERT_EQ(FloatToHalf(HalfToFloat(static_cast<uint16_t>(h))), h) << std::hex << h;
  }
}

TEST(Numeric, Bf16KnownValuesAndRounding) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(Bf16ToFloat(0x3f80), 1.0f);
  EXPECT_EQ(FloatToBf16(std::bit_cast<float>(0x3f808000u)), 0x3f80);  // tie: to even
  EXPECT_EQ(FloatToBf16(std::bit_cast<float>(0x3f818000u)), 0x3f82);  // tie: to even (up)
  EXPECT_EQ(FloatToBf16(std::bit_cast<float>(0x3f808001u)), 0x3f81);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::quiet_NaN()))));
  for (uint32_t b = 0; b < 0x10000; ++b) {
    if ((b & 0x7f80) == 0x7f80) continue;
    ASSERT_EQ(FloatToBf16(Bf16ToFloat(static_cast<uint16_t>(b))), b) << std::hex << b;
  }
}

TEST(Numeric, ToAndFromFloats) {
  const std::vector<float> values{0.5f, -1.25f, 3.0f};
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    Bytes bytes = FromFloats(dtype, values);
    EXPECT_EQ(bytes.size(), values.size() * DTypeBytes(dtype));
    Result<std::vector<float>> back = ToFloats(dtype, bytes);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, values);  // exactly representable in every dtype
  }
  EXPECT_EQ(ToFloats(DType::kF32, Bytes(7)).status().code(), StatusCode::kInvalidArgument);
}

TEST(Numeric, FirstNonFinite) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    EXPECT_EQ(FirstNonFinite(dtype, FromFloats(dtype, std::vector<float>{1, 2, 3})), -1);
    EXPECT_EQ(FirstNonFinite(dtype, FromFloats(dtype, std::vector<float>{1, nan, 3})), 1);
    EXPECT_EQ(FirstNonFinite(dtype, FromFloats(dtype, std::vector<float>{1, 2, -inf})), 2);
  }
  // Overflow to infinity on narrowing is caught too.
  EXPECT_EQ(FirstNonFinite(DType::kF16, FromFloats(DType::kF16, std::vector<float>{1e6f})), 0);
}

TEST(Numeric, FirstNonFiniteFindsEveryPositionAndNoFalseHit) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    // Finite extremes: largest finite, smallest subnormal, negative zero, across 3 blocks.
    const float big = dtype == DType::kF16 ? 65504.0f : (dtype == DType::kBF16 ? 3.38e38f : 3.4e38f);
    std::vector<float> values(10007);
    for (size_t i = 0; i < values.size(); ++i) {
      values[i] = (i % 3 == 0) ? -big : (i % 3 == 1 ? std::ldexp(1.0f, -24) : -0.0f);
    }
    Bytes finite = FromFloats(dtype, values);
    ASSERT_EQ(FirstNonFinite(dtype, finite), -1) << DTypeName(dtype);
    for (size_t at : {size_t{0}, size_t{3}, size_t{4095}, size_t{4096}, size_t{8191},
                      size_t{10006}}) {
      std::vector<float> v = values;
      v[at] = (at % 2) ? nan : -inf;
      v[values.size() - 1] = at == 10006 ? v[at] : inf;  // a later one must not win
      EXPECT_EQ(FirstNonFinite(dtype, FromFloats(dtype, v)), static_cast<int64_t>(at))
          << DTypeName(dtype) << " at " << at;
    }
  }
}

TEST(Numeric, NewExpertIsDeterministicAndValid) {
  for (const char* arch : {"gelu_mlp", "swiglu"}) {
    for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
      ExpertSpec spec{arch, 16, 48, dtype};
      Result<Bytes> a = NewExpertFile(spec, 7);
      Result<Bytes> b = NewExpertFile(spec, 7);
      Result<Bytes> c = NewExpertFile(spec, 8);
      ASSERT_TRUE(a.ok()) << a.status().ToString();
      EXPECT_EQ(*a, *b);
      EXPECT_NE(*a, *c);
      Result<SafetensorsFile> parsed = ParseSafetensors(*a);
      ASSERT_TRUE(parsed.ok());
      Result<ExpertSpec> got = ValidateExpert(*parsed);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      EXPECT_EQ(*got, spec);
      // Weights lie within nn.Linear's bound and are not all equal.
      Result<std::vector<float>> w1 = ToFloats(dtype, parsed->Data(*parsed->Find("w1")));
      ASSERT_TRUE(w1.ok());
      const float bound = 1.0f / std::sqrt(16.0f);
      float lo = 1, hi = -1;
      for (float v : *w1) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
      EXPECT_GE(lo, -bound * 1.01f);
      EXPECT_LE(hi, bound * 1.01f);
      EXPECT_LT(lo, -bound / 2);
      EXPECT_GT(hi, bound / 2);
    }
  }
  EXPECT_FALSE(NewExpertFile({"relu", 4, 4, DType::kF32}, 1).ok());
  EXPECT_FALSE(NewExpertFile({"swiglu", 0, 4, DType::kF32}, 1).ok());
  EXPECT_FALSE(NewExpertFile({"swiglu", 4, kExpertDimMax + 1, DType::kF32}, 1).ok());
}

TEST(Numeric, ActivationsRoundTrip) {
  HostTensor x{DType::kBF16, 3, 4, FromFloats(DType::kBF16, std::vector<float>(12, 0.5f))};
  Result<Bytes> file = WriteActivations(x);
  ASSERT_TRUE(file.ok());
  Result<HostTensor> back = ReadActivations(*file, 4, 10);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->rows, 3);
  EXPECT_EQ(back->cols, 4);
  EXPECT_EQ(back->dtype, DType::kBF16);
  EXPECT_EQ(back->data, x.data);
  EXPECT_TRUE(ReadActivations(*file, 0, 10).ok());  // any width
  EXPECT_EQ(ReadActivations(*file, 5, 10).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadActivations(*file, 4, 2).status().code(), StatusCode::kInvalidArgument);
  Bytes truncated(file->begin(), file->end() - 1);
  EXPECT_EQ(ReadActivations(truncated, 4, 10).status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(WriteActivations(HostTensor{DType::kF32, 0, 4, {}}).ok());
}

}  // namespace
}  // namespace trustmoe::edge
