#include "edge/numeric.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <string>

namespace trustmoe::edge {

Result<DType> ParseDTypeFlag(std::string_view name) {
  if (name == "f32") return DType::kF32;
  if (name == "bf16") return DType::kBF16;
  if (name == "f16") return DType::kF16;
  return Status::InvalidArgument("'" + std::string(name) + "': use f32, bf16 or f16");
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits = 0;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);  // infinity or NaN
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa != 0) {
    // Subnormal: normalize.
    int e = -1;
    do {
      ++e;
      mantissa <<= 1;
    } while ((mantissa & 0x400u) == 0);
    bits = sign | static_cast<uint32_t>(112 - e) << 23 | ((mantissa & 0x3ffu) << 13);
  } else {
    bits = sign;
  }
  return std::bit_cast<float>(bits);
}

uint16_t FloatToHalf(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // infinity or NaN
    return sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u);
  }
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // rounds past 65504: infinity
  if (abs < 0x38800000u) {
    // Result is subnormal or zero: value * 2^24 rounded to nearest even.
    if (abs < 0x33000000u) return sign;  // below half the smallest subnormal
    const uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    const int shift = 126 - static_cast<int>(abs >> 23);  // 14..24
    const uint32_t halfway = 1u << (shift - 1);
    uint32_t result = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1);
    if (rest > halfway || (rest == halfway && (result & 1u))) ++result;
    return sign | static_cast<uint16_t>(result);
  }
  uint32_t result = ((abs >> 23) - 112) << 10 | ((abs >> 13) & 0x3ffu);
  const uint32_t rest = abs & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (result & 1u))) ++result;
  return sign | static_cast<uint16_t>(result);
}

float Bf16ToFloat(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

uint16_t FloatToBf16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // NaN
  const uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>((x + rounding) >> 16);
}

namespace {

uint16_t Load16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

float LoadElement(DType dtype, const uint8_t* p) {
  switch (dtype) {
    case DType::kF32: {
      uint32_t bits = static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
                      static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
      return std::bit_cast<float>(bits);
    }
    case DType::kF16:
      return HalfToFloat(Load16(p));
    case DType::kBF16:
      return Bf16ToFloat(Load16(p));
  }
  return 0;
}

// splitmix64: a counter-based generator, so element i depends only on (seed, i).
uint64_t Mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform in [-bound, bound] from 24 random bits.
float UniformAt(uint64_t seed, uint64_t stream, uint64_t index, float bound) {
  const uint64_t r = Mix(Mix(seed ^ (stream * 0xd1b54a32d192ed03ull)) + index);
  const float unit = static_cast<float>(r >> 40) / static_cast<float>(1u << 24);  // [0, 1)
  return (2.0f * unit - 1.0f) * bound;
}

}  // namespace

Result<std::vector<float>> ToFloats(DType dtype, ByteSpan data) {
  const uint64_t size = DTypeBytes(dtype);
  if (data.size() % size != 0) {
    return Status::InvalidArgument(std::to_string(data.size()) + " bytes is not a whole number of " +
                                   std::string(DTypeName(dtype)) + " elements");
  }
  std::vector<float> out(data.size() / size);
  if (dtype == DType::kF32) {
    if (!out.empty()) std::memcpy(out.data(), data.data(), data.size());  // little-endian host
    return out;
  }
  for (size_t i = 0; i < out.size(); ++i) out[i] = LoadElement(dtype, data.data() + i * size);
  return out;
}

Bytes FromFloats(DType dtype, std::span<const float> values) {
  Bytes out(values.size() * DTypeBytes(dtype));
  if (dtype == DType::kF32) {
    if (!values.empty()) std::memcpy(out.data(), values.data(), out.size());
    return out;
  }
  for (size_t i = 0; i < values.size(); ++i) {
    const uint16_t v = dtype == DType::kF16 ? FloatToHalf(values[i]) : FloatToBf16(values[i]);
    out[2 * i] = static_cast<uint8_t>(v & 0xff);
    out[2 * i + 1] = static_cast<uint8_t>(v >> 8);
  }
  return out;
}

namespace {

// Elements whose exponent bits are all ones (infinity or NaN). Eight bytes at a time: each
// lane's exponent bits are masked and compared with all ones by the exact "has a zero lane"
// test ((t - ones) & ~t & highs); only a block with a hit is searched element by element.
// This runs on every request's input, so it must not cost more than the copies around it.
template <typename U, U kExponent>
int64_t ScanNonFinite(const uint8_t* p, uint64_t count) {
  constexpr int kLanes = 8 / sizeof(U);
  constexpr uint64_t kMask = kLanes == 2 ? (uint64_t{kExponent} << 32 | kExponent)
                                         : 0x0001000100010001ull * kExponent;
  constexpr uint64_t kOnes = kLanes == 2 ? 0x0000000100000001ull : 0x0001000100010001ull;
  constexpr uint64_t kHighs = kOnes << (8 * sizeof(U) - 1);
  constexpr uint64_t kBlock = 4096;  // elements
  auto is_bad = [p](uint64_t i) {
    U v;
    std::memcpy(&v, p + i * sizeof(U), sizeof(U));
    return (v & kExponent) == kExponent;
  };
  for (uint64_t start = 0; start < count; start += kBlock) {
    const uint64_t end = std::min(count, start + kBlock);
    uint64_t hits = 0;
    uint64_t i = start;
    for (; i + kLanes <= end; i += kLanes) {
      uint64_t w;
      std::memcpy(&w, p + i * sizeof(U), 8);
      const uint64_t t = (w & kMask) ^ kMask;  // a zero lane: exponent all ones
      hits |= (t - kOnes) & ~t & kHighs;
    }
    for (; i < end; ++i) hits |= is_bad(i);
    if (hits == 0) continue;
    for (uint64_t j = start; j < end; ++j) {
      if (is_bad(j)) return static_cast<int64_t>(j);
    }
  }
  return -1;
}

}  // namespace

int64_t FirstNonFinite(DType dtype, ByteSpan data) {
  const uint64_t count = data.size() / DTypeBytes(dtype);
  switch (dtype) {
    case DType::kF32:
      return ScanNonFinite<uint32_t, 0x7f800000u>(data.data(), count);
    case DType::kF16:
      return ScanNonFinite<uint16_t, 0x7c00u>(data.data(), count);
    case DType::kBF16:
      return ScanNonFinite<uint16_t, 0x7f80u>(data.data(), count);
  }
  return -1;
}

Result<Bytes> NewExpertFile(const ExpertSpec& spec, uint64_t seed) {
  if (spec.arch != kArchGeluMlp && spec.arch != kArchSwiglu) {
    return Status::InvalidArgument("unknown expert architecture '" + spec.arch +
                                   "': use gelu_mlp or swiglu");
  }
  if (spec.d_model < 1 || spec.d_model > kExpertDimMax || spec.d_ff < 1 ||
      spec.d_ff > kExpertDimMax) {
    return Status::InvalidArgument("d_model and d_ff must be between 1 and " +
                                   std::to_string(kExpertDimMax));
  }
  struct Weight {
    std::string name;
    std::vector<int64_t> shape;
    int64_t fan_in;  // 0: a bias, zero-initialized
  };
  std::vector<Weight> weights;
  const int64_t m = spec.d_model;
  const int64_t f = spec.d_ff;
  if (spec.arch == kArchGeluMlp) {
    weights = {{"w1", {f, m}, m}, {"b1", {f}, 0}, {"w2", {m, f}, f}, {"b2", {m}, 0}};
  } else {
    weights = {{"w1", {f, m}, m}, {"w3", {f, m}, m}, {"w2", {m, f}, f}};
  }
  std::vector<Bytes> storage;
  std::vector<TensorData> tensors;
  storage.reserve(weights.size());
  uint64_t stream = 0;
  for (const Weight& w : weights) {
    ++stream;
    int64_t count = 1;
    for (int64_t d : w.shape) count *= d;
    std::vector<float> values(static_cast<size_t>(count), 0.0f);
    if (w.fan_in > 0) {
      const float bound = 1.0f / std::sqrt(static_cast<float>(w.fan_in));
      for (int64_t i = 0; i < count; ++i) {
        values[i] = UniformAt(seed, stream, static_cast<uint64_t>(i), bound);
      }
    }
    storage.push_back(FromFloats(spec.dtype, values));
    tensors.push_back({w.name, spec.dtype, w.shape, storage.back()});
  }
  return WriteSafetensors(ExpertMetadata(spec), std::move(tensors));
}

Result<Bytes> WriteActivations(const HostTensor& tensor) {
  if (tensor.rows < 1 || tensor.cols < 1) {
    return Status::InvalidArgument("activations need at least one row and one column");
  }
  Metadata metadata{{"trustmoe.format", std::string(kActivationsFormat)}};
  return WriteSafetensors(metadata, {{"x", tensor.dtype, {tensor.rows, tensor.cols}, tensor.data}});
}

Result<HostTensor> ReadActivations(ByteSpan file, int64_t d_model, int64_t rows_max,
                                   const SafetensorsLimits& limits) {
  TRUSTMOE_ASSIGN_OR_RETURN(SafetensorsFile parsed, ParseSafetensors(file, limits));
  if (d_model == 0) {
    const TensorInfo* x = parsed.Find("x");
    if (x != nullptr && x->shape.size() == 2) d_model = x->shape[1];
  }
  TRUSTMOE_ASSIGN_OR_RETURN(ActivationsSpec spec, ValidateActivations(parsed, d_model, rows_max));
  const TensorInfo& x = *parsed.Find("x");
  ByteSpan data = parsed.Data(x);
  return HostTensor{spec.dtype, spec.rows, d_model, Bytes(data.begin(), data.end())};
}

}  // namespace trustmoe::edge
