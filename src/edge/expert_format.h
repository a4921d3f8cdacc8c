// The expert file format (docs/formats/expert.md): a safetensors file whose "__metadata__"
// names the architecture and whose tensors are exactly that architecture's weights.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "edge/safetensors.h"

namespace trustmoe::edge {

inline constexpr std::string_view kExpertFormat = "trustmoe-expert/v1";
inline constexpr std::string_view kActivationsFormat = "trustmoe-activations/v1";
inline constexpr std::string_view kArchGeluMlp = "gelu_mlp";
inline constexpr std::string_view kArchSwiglu = "swiglu";
inline constexpr int64_t kExpertDimMax = 65536;

struct ExpertSpec {
  std::string arch;  // kArchGeluMlp or kArchSwiglu
  int64_t d_model = 0;
  int64_t d_ff = 0;
  DType dtype = DType::kF32;

  bool operator==(const ExpertSpec&) const = default;
};

// The "__metadata__" of an expert file with `spec`: trustmoe.format, trustmoe.arch,
// trustmoe.d_model, trustmoe.d_ff (decimal) and trustmoe.dtype ("F32", "F16", "BF16").
Metadata ExpertMetadata(const ExpertSpec& spec);

// The spec of a parsed expert file. InvalidArgument, naming the key or tensor and the problem,
// unless: trustmoe.format is kExpertFormat; trustmoe.arch is gelu_mlp or swiglu; trustmoe.d_model
// and trustmoe.d_ff are canonical decimals in 1..kExpertDimMax; trustmoe.dtype names a DType; no
// other "trustmoe." key is present; and the tensors are exactly
//   gelu_mlp: w1 [d_ff, d_model], b1 [d_ff], w2 [d_model, d_ff], b2 [d_model]
//   swiglu:   w1 [d_ff, d_model], w3 [d_ff, d_model], w2 [d_model, d_ff]
// all of trustmoe.dtype. Metadata keys outside "trustmoe." (e.g. "format": "pt") are ignored.
Result<ExpertSpec> ValidateExpert(const SafetensorsFile& file);

struct ActivationsSpec {
  int64_t rows = 0;
  DType dtype = DType::kF32;
};

// An activations file (input or output of an expert) holds one tensor "x" [rows, d_model].
// InvalidArgument unless that is the only tensor, d_model matches, rows is in 1..rows_max and,
// if present, trustmoe.format is kActivationsFormat.
Result<ActivationsSpec> ValidateActivations(const SafetensorsFile& file, int64_t d_model,
                                            int64_t rows_max);

}  // namespace trustmoe::edge
