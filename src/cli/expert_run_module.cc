// The module behind `trustmoe expert run` (loaded with dlopen, see expert_commands.cc): reads an
// expert file and an activations file, runs the expert on the libtorch runtime, writes the
// output activations.
#include <chrono>
#include <cstdio>
#include <cstring>

#include "common/files.h"
#include "crypto/cid.h"
#include "edge/numeric.h"
#include "edge/runtime.h"

namespace trustmoe::edge {
namespace {

constexpr uint64_t kExpertFileBytesMax = 8ull << 30;
constexpr uint64_t kActivationsBytesMax = 4ull << 30;
constexpr int64_t kRowsMax = 1 << 20;

Status Run(const std::string& expert_path, const std::string& input_path,
           const std::string& output_path, const std::string& device, std::string compute_dtype) {
  auto expert_bytes = ReadFile(expert_path, kExpertFileBytesMax);
  if (!expert_bytes.ok()) return expert_bytes.status().WithContext("expert file");
  auto input_bytes = ReadFile(input_path, kActivationsBytesMax);
  if (!input_bytes.ok()) return input_bytes.status().WithContext("--input");
  auto parsed = ParseSafetensors(AsBytes(*expert_bytes));
  if (!parsed.ok()) return parsed.status().WithContext(expert_path);
  auto spec = ValidateExpert(*parsed);
  if (!spec.ok()) return spec.status().WithContext(expert_path);
  auto x = ReadActivations(AsBytes(*input_bytes), spec->d_model, kRowsMax);
  if (!x.ok()) return x.status().WithContext(input_path);

  RuntimeOptions options;
  options.device = device;
  if (compute_dtype.empty()) compute_dtype = device == "cpu" ? "f32" : "bf16";
  auto dtype = ParseDTypeFlag(compute_dtype);
  if (!dtype.ok()) return dtype.status().WithContext("--compute-dtype");
  options.compute_dtype = *dtype;
  options.device_bytes_max = UINT64_MAX;
  TRUSTMOE_ASSIGN_OR_RETURN(std::unique_ptr<ExpertRuntime> runtime, ExpertRuntime::Create(options));
  const std::string cid = crypto::ComputeCid(AsBytes(*expert_bytes)).ToString();
  TRUSTMOE_RETURN_IF_ERROR(runtime->Load(cid, AsBytes(*expert_bytes)));
  const auto start = std::chrono::steady_clock::now();
  TRUSTMOE_ASSIGN_OR_RETURN(HostTensor y, runtime->Forward(cid, *x));
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes out, WriteActivations(y));
  TRUSTMOE_RETURN_IF_ERROR(WriteFileAtomic(
      output_path, std::string_view(reinterpret_cast<const char*>(out.data()), out.size())));
  std::printf("ran %s (%s %lld -> %lld) on %s in %s: %lld rows in %.1f ms\n", expert_path.c_str(),
              spec->arch.c_str(), static_cast<long long>(spec->d_model),
              static_cast<long long>(spec->d_ff), runtime->DeviceDescription().c_str(),
              std::string(DTypeName(options.compute_dtype)).c_str(),
              static_cast<long long>(y.rows), ms);
  std::printf("wrote %s: [%lld, %lld] %s\ncid %s\n", output_path.c_str(),
              static_cast<long long>(y.rows), static_cast<long long>(y.cols),
              std::string(DTypeName(y.dtype)).c_str(), crypto::ComputeCid(out).ToString().c_str());
  return Status::Ok();
}

}  // namespace
}  // namespace trustmoe::edge

// Returns 0 or a StatusCode, with the message in `error`.
extern "C" __attribute__((visibility("default"))) int trustmoe_expert_run(
    const char* expert, const char* input, const char* output, const char* device,
    const char* compute_dtype, char* error, size_t error_len) {
  trustmoe::Status status;
  try {
    status = trustmoe::edge::Run(expert, input, output, device, compute_dtype);
  } catch (const std::exception& e) {
    status = trustmoe::Status::Internal(e.what());
  }
  if (status.ok()) return 0;
  std::snprintf(error, error_len, "%s", status.message().c_str());
  return static_cast<int>(status.code());
}
