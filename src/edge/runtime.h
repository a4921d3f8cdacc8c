// The expert runtime: experts loaded onto one device (cpu or cuda:N), run on host tensors.
//
// No libtorch in this header: the edge service, the CLI and tests see bytes and shapes only
// (runtime.cc and expert_module.h hold the libtorch side). Thread-safe: concurrent Forward calls
// for one expert are batched into one run, and experts beyond the device memory budget are
// evicted least recently used first (a caller reloads an evicted expert from its cache).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "common/status.h"
#include "edge/expert_format.h"
#include "edge/numeric.h"
#include "edge/safetensors.h"

namespace trustmoe::edge {

inline constexpr std::string_view kOptimizerStateFormat = "trustmoe-optimizer-state-v1";

struct RuntimeOptions {
  std::string device = "cpu";            // "cpu", "cuda", "cuda:N"
  DType compute_dtype = DType::kF32;     // weights and arithmetic on the device
  uint64_t device_bytes_max = 8ull << 30;  // weights (and training state) held on the device
  int64_t batch_rows_max = 16384;        // rows of one batched run
  // How long a run waits for concurrent requests to join before it starts (adds that latency
  // to every call; 0 batches only requests that queued while the previous run went on).
  int64_t batch_wait_us = 0;
  int threads = 0;                       // CPU intra-op threads; 0 keeps libtorch's default
};

enum class OptimizerKind { kSgd, kAdam };

struct OptimizerSpec {
  OptimizerKind kind = OptimizerKind::kSgd;
  double lr = 1e-3;
  double momentum = 0.0;  // SGD
  double beta1 = 0.9;     // Adam
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

struct BackwardResult {
  HostTensor grad_input;  // [rows, d_model], in the input's dtype
  // Weight gradients of this call alone (f32), named as in the expert file; empty unless asked.
  std::vector<std::pair<std::string, HostTensor>> weight_grads;
};

struct RuntimeStats {
  uint64_t loads = 0;
  uint64_t evictions = 0;
  uint64_t resident_bytes = 0;  // weights and training state on the device
  uint64_t resident_experts = 0;
  uint64_t runs = 0;            // batched forward runs
  uint64_t forward_requests = 0;
  uint64_t rows = 0;            // forward rows
  uint64_t backward_requests = 0;
};

struct DeviceMemory {
  bool available = false;   // false on CPU or without CUDA allocator statistics
  uint64_t allocated = 0;   // bytes held by tensors now
  uint64_t peak = 0;        // highest `allocated` since the last ResetPeak
  uint64_t reserved = 0;    // bytes the caching allocator holds from the driver
};

class ExpertRuntime {
 public:
  // InvalidArgument for a bad option, FailedPrecondition when the device is absent or this build
  // has no CUDA.
  static Result<std::unique_ptr<ExpertRuntime>> Create(const RuntimeOptions& options);
  // Whether this build and machine can run on CUDA, and how many devices it sees.
  static bool CudaAvailable();
  static int CudaDeviceCount();

  virtual ~ExpertRuntime() = default;

  virtual const RuntimeOptions& options() const = 0;
  // "cpu" or "cuda:N (<device name>)".
  virtual std::string DeviceDescription() const = 0;

  // Parses and validates the expert file and loads it under `key` (normally its CID). Ok
  // without work when `key` is held already. InvalidArgument for a bad file; ResourceExhausted
  // when it cannot fit in the budget even after evicting every idle expert.
  virtual Status Load(const std::string& key, ByteSpan expert_file) = 0;
  virtual bool Holds(const std::string& key) const = 0;
  virtual std::vector<std::string> Held() const = 0;
  virtual Result<ExpertSpec> Spec(const std::string& key) const = 0;
  virtual Status Unload(const std::string& key) = 0;

  // y = expert(x). `x` is [rows, d_model] of any DType; y has x's dtype. NotFound when `key` is
  // not held (it may have been evicted: load it again), InvalidArgument on a width mismatch,
  // zero rows, or a NaN or infinity in x (naming the row).
  virtual Result<HostTensor> Forward(const std::string& key, const HostTensor& x) = 0;

  // Gradients of expert(x) for the output gradient `grad_output` [rows, d_model]: grad_input,
  // and the weight gradients when `want_weight_grads`. When `accumulate`, the weight gradients
  // are also added to the expert's gradient buffers for a later Step (which makes the expert a
  // training copy that is never evicted).
  virtual Result<BackwardResult> Backward(const std::string& key, const HostTensor& x,
                                          const HostTensor& grad_output, bool want_weight_grads,
                                          bool accumulate) = 0;

  // Copies the expert held under `from` into a new training copy under `to` (f32 master
  // weights on the device, whatever the compute dtype), which is never evicted. The copy has
  // the precision of `from`: a bf16 expert gives bf16-rounded master weights.
  virtual Status Clone(const std::string& from, const std::string& to) = 0;
  // A training copy under `key` straight from an expert file, in f32 whatever the compute
  // dtype: what an update must start from to be the step the file's weights give. Errors as
  // Load; AlreadyExists when `key` is held.
  virtual Status LoadTraining(const std::string& key, ByteSpan expert_file) = 0;
  // Applies the accumulated gradients with `optimizer` (its state lives with the expert) and
  // clears them. FailedPrecondition when nothing was accumulated.
  virtual Status Step(const std::string& key, const OptimizerSpec& optimizer) = 0;
  // The expert's current weights as an expert file of `dtype`.
  virtual Result<Bytes> Export(const std::string& key, DType dtype) const = 0;

  // The optimizer state of training copy `key` as an optimizer-state file
  // (docs/formats/expert.md): f32 tensors "momentum.<param>", "adam_m.<param>" and
  // "adam_v.<param>" for those that exist, and metadata trustmoe.format =
  // kOptimizerStateFormat and trustmoe.adam_steps. FailedPrecondition unless `key` is a
  // training copy.
  virtual Result<Bytes> ExportOptimizerState(const std::string& key) const = 0;
  // Replaces the optimizer state of training copy `key` with that of `file` (as
  // ExportOptimizerState writes it). InvalidArgument for a malformed file, an unknown tensor
  // name or a shape other than its parameter's; the state is unchanged then.
  virtual Status ImportOptimizerState(const std::string& key, ByteSpan file) = 0;

  virtual RuntimeStats Stats() const = 0;
  virtual DeviceMemory Memory() const = 0;
  virtual void ResetPeakMemory() = 0;
};

}  // namespace trustmoe::edge
