// trustmoe expert new | input | run: make and run expert files by hand (docs/researcher.md).
// `run` loads the libtorch runtime module (expert_run_module.cc); a build without it says so.
#include <dlfcn.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "cli/cli.h"
#include "common/files.h"
#include "crypto/cid.h"
#include "edge/expert_format.h"
#include "edge/numeric.h"

namespace trustmoe::cli {
namespace {

struct ExpertFileArgs {
  // new
  std::string arch;
  int64_t d_model = 0;
  int64_t d_ff = 0;
  uint64_t seed = 1;
  std::string dtype = "f32";
  std::string out;
  // input
  int64_t rows = 0;
  // run
  std::string expert;
  std::string input;
  std::string device = "cpu";
  std::string compute_dtype;  // "" = f32 on cpu, bf16 on cuda
};

ExpertFileArgs& Args() {
  static ExpertFileArgs args;
  return args;
}

// f32, bf16, f16, or the safetensors names F32, BF16, F16.
Result<edge::DType> ParseDTypeArg(const std::string& text, const char* flag) {
  if (auto upper = edge::ParseDType(text); upper.ok()) return upper;
  auto lower = edge::ParseDTypeFlag(text);
  if (!lower.ok()) return lower.status().WithContext(flag);
  return lower;
}

Status WriteOut(const std::string& path, const Bytes& bytes) {
  return WriteFileAtomic(path, std::string_view(reinterpret_cast<const char*>(bytes.data()),
                                                bytes.size()));
}

Status ExpertNew() {
  ExpertFileArgs& a = Args();
  TRUSTMOE_ASSIGN_OR_RETURN(edge::DType dtype, ParseDTypeArg(a.dtype, "--dtype"));
  edge::ExpertSpec spec{a.arch, a.d_model, a.d_ff, dtype};
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes file, edge::NewExpertFile(spec, a.seed));
  TRUSTMOE_RETURN_IF_ERROR(WriteOut(a.out, file));
  std::printf("wrote %s: %s %lld -> %lld -> %lld, %s, seed %llu, %s\ncid %s\n", a.out.c_str(),
              a.arch.c_str(), static_cast<long long>(a.d_model), static_cast<long long>(a.d_ff),
              static_cast<long long>(a.d_model), std::string(edge::DTypeName(dtype)).c_str(),
              static_cast<unsigned long long>(a.seed), HumanBytes(file.size()).c_str(),
              crypto::ComputeCid(file).ToString().c_str());
  return Status::Ok();
}

// Random activations for trying an expert: normal-ish values from a seeded generator.
Status ExpertInput() {
  ExpertFileArgs& a = Args();
  TRUSTMOE_ASSIGN_OR_RETURN(edge::DType dtype, ParseDTypeArg(a.dtype, "--dtype"));
  if (a.rows < 1 || a.rows > (1 << 20) || a.d_model < 1 || a.d_model > edge::kExpertDimMax) {
    return Status::InvalidArgument("--rows must be in 1..1048576 and --d-model in 1.." +
                                   std::to_string(edge::kExpertDimMax));
  }
  // The expert initializer's generator with bound 1 gives uniform values in [-1, 1].
  TRUSTMOE_ASSIGN_OR_RETURN(
      Bytes weights, edge::NewExpertFile({std::string(edge::kArchSwiglu), a.d_model, a.rows,
                                          edge::DType::kF32},
                                         a.seed));
  TRUSTMOE_ASSIGN_OR_RETURN(edge::SafetensorsFile parsed, edge::ParseSafetensors(weights));
  // w1 is [rows, d_model] uniform in +-1/sqrt(d_model): scale to +-1.
  TRUSTMOE_ASSIGN_OR_RETURN(std::vector<float> values,
                            edge::ToFloats(edge::DType::kF32, parsed.Data(*parsed.Find("w1"))));
  const float scale = std::sqrt(static_cast<float>(a.d_model));
  for (float& v : values) v *= scale;
  edge::HostTensor x{dtype, a.rows, a.d_model, edge::FromFloats(dtype, values)};
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes file, edge::WriteActivations(x));
  TRUSTMOE_RETURN_IF_ERROR(WriteOut(a.out, file));
  std::printf("wrote %s: x [%lld, %lld] %s, seed %llu\n", a.out.c_str(),
              static_cast<long long>(a.rows), static_cast<long long>(a.d_model),
              std::string(edge::DTypeName(dtype)).c_str(), static_cast<unsigned long long>(a.seed));
  return Status::Ok();
}

// The libtorch runtime is loaded only for `expert run`: linking it into the CLI would add over
// a second of start-up to every other command. The module lies next to the binary (build tree)
// or in <prefix>/lib/trustmoe (installed).
using ExpertRunFn = int (*)(const char* expert, const char* input, const char* output,
                            const char* device, const char* compute_dtype, char* error,
                            size_t error_len);

Result<ExpertRunFn> LoadRunModule() {
  constexpr const char* kModule = "trustmoe-expert-run.so";
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  std::vector<std::filesystem::path> candidates;
  if (const char* env = std::getenv("TRUSTMOE_EXPERT_RUN_MODULE")) candidates.emplace_back(env);
  if (!ec) {
    candidates.push_back(self.parent_path() / kModule);
    candidates.push_back(self.parent_path().parent_path() / "lib" / "trustmoe" / kModule);
  }
  std::string tried;
  for (const auto& path : candidates) {
    if (!std::filesystem::exists(path, ec)) {
      tried += " " + path.string();
      continue;
    }
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      return Status::FailedPrecondition("cannot load the expert runtime " + path.string() + ": " +
                                        dlerror());
    }
    void* fn = dlsym(handle, "trustmoe_expert_run");
    if (fn == nullptr) {
      return Status::FailedPrecondition(path.string() + " has no trustmoe_expert_run");
    }
    return reinterpret_cast<ExpertRunFn>(fn);
  }
  return Status::FailedPrecondition(
      "expert run needs the libtorch runtime module " + std::string(kModule) +
      ", not found (looked at" + tried +
      "); builds configured with TRUSTMOE_WITH_TORCH=OFF have none");
}

Status ExpertRun() {
  ExpertFileArgs& a = Args();
  TRUSTMOE_ASSIGN_OR_RETURN(ExpertRunFn run, LoadRunModule());
  char error[1024] = {0};
  const int code = run(a.expert.c_str(), a.input.c_str(), a.out.c_str(), a.device.c_str(),
                       a.compute_dtype.c_str(), error, sizeof(error));
  if (code == 0) return Status::Ok();
  return Status(static_cast<StatusCode>(code), error);
}

void Bind(CLI::App* cmd, Action* run, Status (*action)()) {
  cmd->callback([run, action] { *run = action; });
}

}  // namespace

void AddExpertFileCommands(CLI::App* expert, Action* run) {
  ExpertFileArgs& a = Args();
  auto* make = expert->add_subcommand("new", "Write a new expert file with seeded random weights");
  make->add_option("--arch", a.arch, "gelu_mlp or swiglu")->required();
  make->add_option("--d-model", a.d_model, "Model width")->required();
  make->add_option("--d-ff", a.d_ff, "Hidden width")->required();
  make->add_option("--seed", a.seed, "Seed: the same seed gives the same file everywhere");
  make->add_option("--dtype", a.dtype, "f32 (default), bf16 or f16");
  make->add_option("-o,--output", a.out, "Expert file to write")->required();
  Bind(make, run, ExpertNew);

  auto* input = expert->add_subcommand("input", "Write an activations file of seeded random rows");
  input->add_option("--rows", a.rows, "Rows")->required();
  input->add_option("--d-model", a.d_model, "Width")->required();
  input->add_option("--seed", a.seed, "Seed");
  input->add_option("--dtype", a.dtype, "f32 (default), bf16 or f16");
  input->add_option("-o,--output", a.out, "Activations file to write")->required();
  Bind(input, run, ExpertInput);

  auto* run_cmd = expert->add_subcommand("run", "Run an expert file on an activations file");
  run_cmd->add_option("EXPERT", a.expert, "Expert file (.safetensors)")->required();
  run_cmd->add_option("--input", a.input, "Activations file: tensor x [rows, d_model]")->required();
  run_cmd->add_option("-o,--output", a.out, "Where to write y [rows, d_model]")->required();
  run_cmd->add_option("--device", a.device, "cpu (default), cuda or cuda:N");
  run_cmd->add_option("--compute-dtype", a.compute_dtype, "f32 (cpu default), bf16 (cuda default)");
  Bind(run_cmd, run, ExpertRun);
}

}  // namespace trustmoe::cli
