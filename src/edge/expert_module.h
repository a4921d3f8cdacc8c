// The expert math on libtorch tensors: what the runtime runs, what validators re-run and what
// the benchmark measures. This header includes libtorch; include it only from translation units
// that need tensors (runtime.cc, the verifier, bench/expert_bench.cc).
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "common/status.h"
#include "edge/expert_format.h"
#include "edge/safetensors.h"

namespace trustmoe::edge {

// The weights of one expert on one device, in one dtype.
struct ExpertWeights {
  ExpertSpec spec;  // spec.dtype is the file's dtype
  torch::Device device{torch::kCPU};
  torch::ScalarType dtype = torch::kFloat32;  // the compute dtype of the tensors below
  // In the file's layout (nn.Linear: [out, in]).
  torch::Tensor w1, b1, w2, b2, w3;

  // The named parameters, in file order (w1, b1, w2, b2 or w1, w3, w2).
  std::vector<std::pair<std::string, torch::Tensor>> Parameters() const;
  uint64_t bytes() const;
};

torch::ScalarType ToTorch(DType dtype);
Result<DType> FromTorch(torch::ScalarType dtype);
// "cpu", "cuda", "cuda:N": InvalidArgument for anything else, FailedPrecondition when CUDA is
// asked for but absent or N is past the device count.
Result<torch::Device> ParseDevice(const std::string& device);

// A libtorch exception (c10::Error, or std::bad_alloc) as a Status: ResourceExhausted for a
// device out of memory, Internal otherwise; the message's first line, prefixed with `what`.
Status TorchErrorStatus(const std::exception& e, std::string_view what);

// The parsed and validated expert file's weights on `device` in `dtype`. Never throws.
Result<ExpertWeights> LoadExpertWeights(const SafetensorsFile& file, const ExpertSpec& spec,
                                        torch::Device device, torch::ScalarType dtype);

// y = expert(x) for x [rows, d_model] on the weights' device and dtype. Throws c10::Error on a
// shape mismatch (callers check shapes first).
//   gelu_mlp: y = gelu(x w1^T + b1) w2^T + b2   (exact erf gelu)
//   swiglu:   y = (silu(x w1^T) * (x w3^T)) w2^T
torch::Tensor ExpertForward(const ExpertWeights& weights, const torch::Tensor& x);

// The weights as an expert file of `dtype` (tensors copied to the CPU).
Result<Bytes> ExportExpertFile(const ExpertWeights& weights, DType dtype);

}  // namespace trustmoe::edge
