// A job's specification (docs/gate.md, "Jobs"): what a researcher submits to a gate, from a
// TOML file (`trustmoe job submit spec.toml`) or over gRPC (JobService.SubmitJob). Its
// canonical encoding is what the researcher signs and what the job id hashes, so a job means
// the same thing to the gate, the chain and an auditor.
//
//   [job]       name, kind ("training" | "inference"), dataset ("fashion-mnist"), seed
//   [model]     experts, top_k, d_model, d_ff, arch ("swiglu" | "gelu_mlp"), moe_layers,
//               load_balance (loss weight), base_model (manifest CID; inference, or a start)
//   [training]  epochs, batch_size, optimizer ("sgd" | "adam"), lr, momentum, weight_decay,
//               train_limit, test_limit (items of each split; 0 = all), checkpoint_every
//   [verify]    mode ("sync" | "async" | "off"), replication (R edges per expert), k_min
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/bytes.h"
#include "common/status.h"

namespace trustmoe::gate {

enum class JobKind : uint8_t { kTraining = 1, kInference = 2 };
enum class VerifyMode : uint8_t { kSync = 1, kAsync = 2, kOff = 3 };
enum class Optimizer : uint8_t { kSgd = 1, kAdam = 2 };

std::string_view JobKindName(JobKind kind);        // "training", "inference"
std::string_view VerifyModeName(VerifyMode mode);  // "sync", "async", "off"
std::string_view OptimizerName(Optimizer opt);     // "sgd", "adam"

struct JobSpec {
  // [job]
  std::string name;  // 1..128 of [A-Za-z0-9._-]
  JobKind kind = JobKind::kTraining;
  std::string dataset = "fashion-mnist";
  uint64_t seed = 1;
  // [model]
  uint32_t experts = 8;     // 1..256
  uint32_t top_k = 2;       // 1..experts
  uint32_t d_model = 64;    // 1..16384
  uint32_t d_ff = 128;      // 1..65536
  std::string arch = "swiglu";
  uint32_t moe_layers = 1;  // 1..8
  double load_balance = 0.01;  // 0..10
  std::string base_model;   // manifest CID; required for inference
  // [training]
  uint32_t epochs = 1;         // 1..1000
  uint32_t batch_size = 64;    // 1..65536
  Optimizer optimizer = Optimizer::kAdam;
  double lr = 1e-3;            // (0, 10]
  double momentum = 0;         // [0, 1)
  double weight_decay = 0;     // [0, 1]
  uint32_t train_limit = 0;    // 0: the whole split
  uint32_t test_limit = 0;
  uint32_t checkpoint_every = 100;  // steps between checkpoints (expert updates); 1..1e6
  // [verify]
  VerifyMode verify = VerifyMode::kSync;
  uint32_t replication = 1;  // edges holding each expert, 1..16
  uint32_t k_min = 1;        // experts that must answer for a row, 1..top_k

  // InvalidArgument naming the first field out of range or inconsistent.
  Status Validate() const;
  // canonical("trustmoe/gate/job-spec/v1", every field above in order; doubles as u64 bits).
  Bytes Canonical() const;
  bool operator==(const JobSpec&) const = default;
};

// Reads a spec from TOML. Unknown keys, wrong types and out-of-range values are
// InvalidArgument naming `source_name`, line and key.
Result<JobSpec> ParseJobSpec(std::string_view text, std::string source_name);
Result<JobSpec> LoadJobSpec(const std::string& path);

}  // namespace trustmoe::gate
