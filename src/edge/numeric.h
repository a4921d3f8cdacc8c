// Element conversions for the tensor dtypes of the expert format, without libtorch: what the
// CLI, the format tests and a CPU-only validator need to read and write tensors.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/bytes.h"
#include "edge/expert_format.h"
#include "edge/safetensors.h"

namespace trustmoe::edge {

// A row-major 2-D tensor in host memory, little-endian.
struct HostTensor {
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  Bytes data;

  uint64_t bytes() const { return data.size(); }
};

// The DType of a lower-case name as configs and flags spell it: "f32", "bf16", "f16".
// InvalidArgument "'x': use f32, bf16 or f16" for anything else.
Result<DType> ParseDTypeFlag(std::string_view name);

// IEEE binary16 and bfloat16 from and to float. Narrowing rounds to nearest even; NaN stays
// NaN, overflow becomes infinity (binary16) as in PyTorch.
float HalfToFloat(uint16_t h);
uint16_t FloatToHalf(float f);
float Bf16ToFloat(uint16_t b);
uint16_t FloatToBf16(float f);

// Little-endian elements of `dtype` widened to float. InvalidArgument when the byte count is not
// a multiple of the element size.
Result<std::vector<float>> ToFloats(DType dtype, ByteSpan data);
// `values` narrowed to `dtype`, little-endian.
Bytes FromFloats(DType dtype, std::span<const float> values);

// The index of the first NaN or infinity in `data`, or -1 when every element is finite.
int64_t FirstNonFinite(DType dtype, ByteSpan data);

// A new expert file of `spec` with weights drawn from a uniform distribution in
// [-1/sqrt(fan_in), 1/sqrt(fan_in)] (PyTorch's nn.Linear default bound) by a counter-based
// generator seeded with `seed`: the same (spec, seed) gives the same bytes on every machine.
// Biases start at zero. InvalidArgument when the spec is invalid.
Result<Bytes> NewExpertFile(const ExpertSpec& spec, uint64_t seed);

// An activations file: one tensor "x" [rows, cols] with trustmoe.format set.
Result<Bytes> WriteActivations(const HostTensor& tensor);
// The tensor "x" of an activations file, copied out (validated against d_model and rows_max,
// see ValidateActivations; d_model 0 accepts any width).
Result<HostTensor> ReadActivations(ByteSpan file, int64_t d_model, int64_t rows_max,
                                   const SafetensorsLimits& limits = {});

}  // namespace trustmoe::edge
