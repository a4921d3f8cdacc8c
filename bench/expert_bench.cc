// expert_bench: forward throughput of the expert runtime against raw libtorch GEMMs of the same
// shapes, measured in the same run, and the device memory of an edge that holds 2 of 8
// experts against one that holds all 8.
//
//   expert_bench [--device cpu|cuda:N] [--dtype bf16|f16|f32] [--shapes small,mixtral]
//                [--rows 1,8,64,...] [--min-ms MS] [--trials N] [--sections LIST] [--quick]
//                [--rpc-rows 1,64,1024] [--rpc-calls N] [--rpc-threads N]
//                [--validator-bin PATH] [--store-bin PATH] [--edge-bin PATH] [--json FILE]
//
// Sections (--sections, default all of them, run in this order):
//   check       the runtime's swiglu path (three GEMMs, the gate computed in place) against the
//               out-of-place formula, on the CPU in f32 and on the bench's device
//   throughput  per shape and row count: (a) raw: the expert's GEMMs alone (x w1^T, x w3^T,
//               h w2^T) into preallocated outputs; (b) runtime compute: ExpertForward on
//               device-resident x, what the runtime runs per batch; (c) host to host:
//               ExpertRuntime::Forward with a host tensor (copies and input checks included).
//               The target (>= 0.90x raw at 1024 rows, Mixtral-shaped, bf16) applies to (b)/(a).
//   memory      CUDA only: peak allocated device memory of a runtime holding all 8
//               Mixtral-shaped experts and of one whose budget holds exactly 2, serving the 8
//               round robin and reloading evicted ones from their file bytes as the edge does.
//   rpc         end to end: 4 trustmoe-validator, a trustmoe-store and a trustmoe-edge (on the
//               bench's device and dtype) on loopback, the edge registered and one expert per
//               shape in the store; per shape and --rpc-rows: (a) ExpertRuntime::Forward host
//               to host in this process against (b) EdgeService.Forward (activations file in,
//               output and signed result_tx out), p50 latency of sequential calls and rows/s
//               of --rpc-threads concurrent callers; the commitment checked once per shape;
//               then how long the edge's outbox took to commit what the calls left in it
//               (expert_bench_rpc.h). Binaries: --*-bin, else TRUSTMOE_*_BIN, else the build's.
// A section is a function appending to the report (kSections below).
//
// Prints with printf only: this translation unit sees libtorch, whose bundled fmt must not meet
// spdlog's (docs/gpu.md). Exit 0 whether or not the target is met (it is a report); 1 when
// setup fails, 2 on bad flags.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "bench/expert_bench_rpc.h"
#include "edge/expert_module.h"
#include "edge/numeric.h"
#include "edge/runtime.h"
#include "bench/bench_util.h"
#include "common/malloc_tuning.h"

using namespace trustmoe;
using namespace trustmoe::edge;
using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

namespace {

using ::trustmoe::bench::Count;

constexpr double kTargetRatio = 0.90;
constexpr int64_t kTargetRows = 1024;
constexpr int64_t kItersMax = 100000;  // per timed run
constexpr int kMemoryExperts = 8;
constexpr int kMemoryHeld = 2;
constexpr int kMemoryRounds = 2;
constexpr int64_t kMemoryRows = 1024;
constexpr int64_t kCheckRows = 64;
constexpr uint64_t kSeed = 20261124;

struct Shape {
  std::string group;  // the --shapes name: "small" or "mixtral"
  std::string arch;
  int64_t d_model = 0;
  int64_t d_ff = 0;

  std::string Label() const {
    return arch + " " + std::to_string(d_model) + "->" + std::to_string(d_ff) + "->" +
           std::to_string(d_model);
  }
  // GEMM FLOPs of one row: 2 per multiply-add, three matrices for swiglu, two for gelu_mlp.
  double FlopsPerRow() const {
    return (arch == kArchSwiglu ? 3.0 : 2.0) * 2.0 * static_cast<double>(d_model * d_ff);
  }
};

const Shape kMixtral{"mixtral", std::string(kArchSwiglu), 4096, 14336};

struct Options {
  std::string device;
  DType dtype = DType::kF32;
  std::vector<std::string> shapes;
  std::vector<int64_t> rows;
  double min_ms = 100;
  int trials = 2;
  std::vector<std::string> sections;
  std::string json_path;
  std::vector<int64_t> rpc_rows;
  int rpc_calls = 50;
  int rpc_threads = 4;
  bench::DaemonBinaries binaries = bench::DefaultDaemonBinaries();
};

struct Report {
  torch::Device device{torch::kCPU};
  std::string device_text;
  json j;
  std::optional<double> target_ratio;  // (b)/(a) at kTargetRows, Mixtral-shaped
};

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "expert_bench: %s\n", what.c_str());
  std::exit(1);
}

template <typename T>
T Must(Result<T> r, const std::string& what) {
  if (!r.ok()) Die(what + ": " + r.status().ToString());
  return std::move(r).value();
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// ---- timing ----

// Times a callable: warm-up, then enough iterations per timed run to last --min-ms (at most
// kItersMax), best of --trials runs. On CUDA the device is synchronized around each timed run,
// so queued kernels are counted; the CPU needs nothing.
class Timer {
 public:
  Timer(torch::Device device, double min_ms, int trials)
      : device_(device), min_s_(min_ms / 1000.0), trials_(trials) {}

  struct Timing {
    double seconds = 0;  // per iteration
    int64_t iters = 0;   // per timed run
  };

  Timing Measure(const std::function<void()>& fn) const {
    // Warm-up: three iterations, or one when one alone outlasts the budget.
    double one = Run(fn, 1);
    for (int i = 0; i < 2 && one < min_s_; ++i) Run(fn, 1);
    int64_t iters = 1;
    double elapsed = one;
    while (elapsed < min_s_ && iters < kItersMax) {
      const double scale = std::clamp(1.2 * min_s_ / std::max(elapsed, 1e-9), 2.0, 100.0);
      iters = std::min<int64_t>(kItersMax, static_cast<int64_t>(std::ceil(iters * scale)));
      elapsed = Run(fn, iters);
    }
    double best = elapsed / static_cast<double>(iters);
    for (int t = 1; t < trials_; ++t) {
      best = std::min(best, Run(fn, iters) / static_cast<double>(iters));
    }
    return {best, iters};
  }

 private:
  void Sync() const {
    if (device_.is_cuda()) torch::cuda::synchronize(device_.index());
  }

  double Run(const std::function<void()>& fn, int64_t iters) const {
    Sync();
    const auto start = Clock::now();
    for (int64_t i = 0; i < iters; ++i) fn();
    Sync();
    return Seconds(start);
  }

  torch::Device device_;
  double min_s_;
  int trials_;
};

// ---- setup helpers ----

// The expert file of `shape` in `dtype`, made once per run (a Mixtral-shaped one takes seconds).
const Bytes& ExpertFile(const Shape& shape, DType dtype) {
  static std::map<std::string, Bytes> files;
  const std::string key = shape.Label() + " " + std::string(DTypeName(dtype));
  auto it = files.find(key);
  if (it == files.end()) {
    ExpertSpec spec{shape.arch, shape.d_model, shape.d_ff, dtype};
    it = files.emplace(key, Must(NewExpertFile(spec, kSeed), "new expert file " + key)).first;
  }
  return it->second;
}

ExpertWeights DeviceWeights(const Bytes& file, torch::Device device, DType dtype) {
  SafetensorsFile parsed = Must(ParseSafetensors(file), "parse expert file");
  ExpertSpec spec = Must(ValidateExpert(parsed), "validate expert file");
  return Must(LoadExpertWeights(parsed, spec, device, ToTorch(dtype)), "load expert weights");
}

std::unique_ptr<ExpertRuntime> NewRuntime(const Options& o, uint64_t device_bytes_max) {
  RuntimeOptions ro;
  ro.device = o.device;
  ro.compute_dtype = o.dtype;
  ro.device_bytes_max = device_bytes_max;
  ro.batch_rows_max = 16384;
  ro.batch_wait_us = 0;
  return Must(ExpertRuntime::Create(ro), "create runtime on " + o.device);
}

// `t` (2-D) as a host tensor of `dtype`.
HostTensor ToHostTensor(const torch::Tensor& t, DType dtype) {
  torch::Tensor host = t.to(torch::kCPU, ToTorch(dtype)).contiguous();
  HostTensor out{dtype, host.size(0), host.size(1), {}};
  out.data.resize(static_cast<size_t>(host.numel()) * host.element_size());
  std::memcpy(out.data.data(), host.data_ptr(), out.data.size());
  return out;
}

std::string GiB(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f GiB", static_cast<double>(bytes) / (1ull << 30));
  return buf;
}

// ---- section: check ----

// ExpertForward's swiglu (gate in place) against silu(x w1^T) * (x w3^T) w2^T
// computed out of place with copies of the weights on the same device and dtype.
json CheckFused(const Shape& shape, torch::Device device, DType dtype) {
  torch::NoGradGuard no_grad;
  const Bytes& file = ExpertFile(shape, dtype);
  const ExpertWeights w = DeviceWeights(file, device, dtype);
  const auto options = torch::TensorOptions().device(device).dtype(ToTorch(dtype));
  const torch::Tensor x = torch::randn({kCheckRows, shape.d_model}, options);
  const torch::Tensor runtime_y = ExpertForward(w, x).to(torch::kFloat32);
  const torch::Tensor w1 = w.w1.clone(), w3 = w.w3.clone(), w2 = w.w2.clone();
  const torch::Tensor unfused =
      torch::mm(torch::silu(torch::mm(x, w1.t())) * torch::mm(x, w3.t()), w2.t())
          .to(torch::kFloat32);
  const double diff = (runtime_y - unfused).abs().max().item<double>();
  const double scale = unfused.abs().max().item<double>();
  const double rel = diff / std::max(scale, 1e-30);
  // Same arithmetic in both; a different GEMM tiling may move the last bits of f32 and about
  // one ulp of bf16/f16.
  const double tolerance = dtype == DType::kF32 ? 1e-5 : 3e-2;
  const bool ok = rel <= tolerance;
  std::printf(
      "check swiglu vs reference: %-26s %-4s on %-6s %3lld rows: max |diff| %.3e "
      "(%.2e of max |y|, tolerance %.0e) %s\n",
      shape.Label().c_str(), std::string(DTypeName(dtype)).c_str(), device.str().c_str(),
      static_cast<long long>(kCheckRows), diff, rel, tolerance, ok ? "ok" : "MISMATCH");
  return {{"shape", shape.Label()}, {"device", device.str()}, {"dtype", DTypeName(dtype)},
          {"rows", kCheckRows},     {"max_abs_diff", diff},   {"max_abs_y", scale},
          {"relative", rel},        {"tolerance", tolerance}, {"ok", ok}};
}

void CheckSection(const Options& o, Report& r) {
  const Shape small{"small", std::string(kArchSwiglu), 256, 1024};
  json checks = json::array();
  checks.push_back(CheckFused(small, torch::Device(torch::kCPU), DType::kF32));
  if (!r.device.is_cpu() || o.dtype != DType::kF32) {
    checks.push_back(CheckFused(small, r.device, o.dtype));
  }
  if (std::find(o.shapes.begin(), o.shapes.end(), "mixtral") != o.shapes.end() &&
      !r.device.is_cpu()) {
    checks.push_back(CheckFused(kMixtral, r.device, o.dtype));
  }
  bool all_ok = true;
  for (const json& c : checks) all_ok = all_ok && c["ok"].get<bool>();
  if (!all_ok) std::printf("!! the runtime's swiglu path disagrees with the formula\n");
  r.j["check"] = {{"ok", all_ok}, {"runs", checks}};
}

// ---- section: throughput ----

struct RowResult {
  Timer::Timing raw, runtime, host;
};

// (a), (b) and (c) for one shape and row count.
RowResult MeasureRows(const Timer& timer, const Shape& shape, const ExpertWeights& w,
                      ExpertRuntime& runtime, int64_t rows, DType dtype) {
  torch::NoGradGuard no_grad;  // as the runtime runs (the in-place gate needs it)
  const auto options = torch::TensorOptions().device(w.device).dtype(w.dtype);
  const torch::Tensor x = torch::randn({rows, shape.d_model}, options);
  torch::Tensor a1 = torch::empty({rows, shape.d_ff}, options);
  torch::Tensor a3 = torch::empty({rows, shape.d_ff}, options);
  torch::Tensor y = torch::empty({rows, shape.d_model}, options);
  const bool swiglu = shape.arch == kArchSwiglu;
  const torch::Tensor w1t = w.w1.t(), w2t = w.w2.t();
  const torch::Tensor w3t = swiglu ? w.w3.t() : torch::Tensor();
  RowResult result;
  result.raw = timer.Measure([&] {
    torch::mm_out(a1, x, w1t);
    if (swiglu) torch::mm_out(a3, x, w3t);
    torch::mm_out(y, a1, w2t);
  });
  torch::Tensor out;
  result.runtime = timer.Measure([&] { out = ExpertForward(w, x); });
  out = torch::Tensor();
  const HostTensor host_x = ToHostTensor(x, dtype);
  result.host = timer.Measure([&] {
    Result<HostTensor> host_y = runtime.Forward("e", host_x);
    if (!host_y.ok()) Die("runtime forward: " + host_y.status().ToString());
  });
  return result;
}

void PrintThroughputHeader() {
  std::printf("\n%-26s %-4s %5s | %9s %9s %12s %7s | %9s %7s\n", "shape", "", "rows", "raw TF/s",
              "rt TF/s", "rt rows/s", "rt/raw", "h2h TF/s", "h2h/raw");
}

json ThroughputShape(const Options& o, const Timer& timer, const Shape& shape, Report& r) {
  const Bytes& file = ExpertFile(shape, o.dtype);
  const ExpertWeights w = DeviceWeights(file, r.device, o.dtype);
  std::unique_ptr<ExpertRuntime> runtime = NewRuntime(o, 64ull << 30);
  if (Status s = runtime->Load("e", file); !s.ok()) Die("runtime load: " + s.ToString());
  json rows_json = json::array();
  for (int64_t rows : o.rows) {
    const RowResult m = MeasureRows(timer, shape, w, *runtime, rows, o.dtype);
    const double flops = shape.FlopsPerRow() * static_cast<double>(rows);
    const double raw_tflops = flops / m.raw.seconds / 1e12;
    const double rt_tflops = flops / m.runtime.seconds / 1e12;
    const double host_tflops = flops / m.host.seconds / 1e12;
    const double ratio = m.raw.seconds / m.runtime.seconds;
    const double host_ratio = m.raw.seconds / m.host.seconds;
    std::printf("%-26s %-4s %5lld | %9.4g %9.4g %12s %6.2fx | %9.4g %6.2fx\n",
                shape.Label().c_str(), std::string(DTypeName(o.dtype)).c_str(),
                static_cast<long long>(rows), raw_tflops, rt_tflops,
                Count(static_cast<double>(rows) / m.runtime.seconds).c_str(), ratio, host_tflops,
                host_ratio);
    std::fflush(stdout);
    if (shape.group == "mixtral" && rows == kTargetRows) r.target_ratio = ratio;
    rows_json.push_back({{"rows", rows},
                         {"raw_s", m.raw.seconds},
                         {"runtime_s", m.runtime.seconds},
                         {"host_to_host_s", m.host.seconds},
                         {"iters", {m.raw.iters, m.runtime.iters, m.host.iters}},
                         {"raw_tflops", raw_tflops},
                         {"runtime_tflops", rt_tflops},
                         {"host_to_host_tflops", host_tflops},
                         {"runtime_rows_per_s", static_cast<double>(rows) / m.runtime.seconds},
                         {"ratio_runtime_over_raw", ratio},
                         {"ratio_host_to_host_over_raw", host_ratio}});
  }
  return {{"shape", shape.Label()},
          {"group", shape.group},
          {"arch", shape.arch},
          {"d_model", shape.d_model},
          {"d_ff", shape.d_ff},
          {"dtype", DTypeName(o.dtype)},
          {"flops_per_row", shape.FlopsPerRow()},
          {"rows", rows_json}};
}

std::vector<Shape> ShapesOf(const std::vector<std::string>& groups) {
  std::vector<Shape> shapes;
  for (const std::string& g : groups) {
    if (g == "mixtral") shapes.push_back(kMixtral);
    if (g == "small") {
      shapes.push_back({"small", std::string(kArchSwiglu), 256, 1024});
      shapes.push_back({"small", std::string(kArchGeluMlp), 256, 1024});
    }
  }
  return shapes;
}

void ThroughputSection(const Options& o, Report& r) {
  const Timer timer(r.device, o.min_ms, o.trials);
  PrintThroughputHeader();
  json shapes = json::array();
  for (const Shape& shape : ShapesOf(o.shapes)) {
    shapes.push_back(ThroughputShape(o, timer, shape, r));
  }
  std::printf(
      "(raw: the expert's GEMMs alone; rt: ExpertForward on device-resident x; h2h: "
      "ExpertRuntime::Forward host to host; TF/s counts GEMM FLOPs)\n");
  const std::string label = "ratio at " + std::to_string(kTargetRows) + " rows (mixtral " +
                            Lower(DTypeName(o.dtype)) + ")";
  if (r.target_ratio) {
    const bool met = *r.target_ratio >= kTargetRatio;
    std::printf("%s: %.2fx (target >= %.2f: %s)\n", label.c_str(), *r.target_ratio, kTargetRatio,
                met ? "met" : "NOT met");
  } else {
    std::printf("%s: n/a (not measured: needs --shapes mixtral and %lld in --rows)\n",
                label.c_str(), static_cast<long long>(kTargetRows));
  }
  r.j["throughput"] = shapes;
  r.j["target"] = {{"rows", kTargetRows},
                   {"ratio_min", kTargetRatio},
                   {"ratio", r.target_ratio ? json(*r.target_ratio) : json(nullptr)},
                   {"met", r.target_ratio ? json(*r.target_ratio >= kTargetRatio) : json(nullptr)}};
}

// ---- section: memory ----

struct EdgeMemory {
  uint64_t peak = 0;      // bytes above the baseline
  uint64_t baseline = 0;  // allocated before the first load (cuBLAS workspaces and the like)
  uint64_t loads = 0;
  uint64_t evictions = 0;
};

// Serves kMemoryExperts experts round robin on a runtime whose budget holds `held` of them,
// loading an expert again from its file whenever it was evicted, as the edge daemon does.
EdgeMemory ServeRoundRobin(const Options& o, const Bytes& file, uint64_t device_bytes_max) {
  std::unique_ptr<ExpertRuntime> runtime = NewRuntime(o, device_bytes_max);
  const HostTensor x =
      ToHostTensor(torch::randn({kMemoryRows, kMixtral.d_model}, torch::TensorOptions()), o.dtype);
  EdgeMemory m;
  m.baseline = runtime->Memory().allocated;
  runtime->ResetPeakMemory();
  for (int round = 0; round < kMemoryRounds; ++round) {
    for (int e = 0; e < kMemoryExperts; ++e) {
      // The same bytes under 8 keys: the weights' values do not change the memory.
      const std::string key = "expert-" + std::to_string(e);
      if (!runtime->Holds(key)) {
        if (Status s = runtime->Load(key, file); !s.ok()) Die("load " + key + ": " + s.ToString());
      }
      Result<HostTensor> y = runtime->Forward(key, x);
      if (!y.ok()) Die("forward " + key + ": " + y.status().ToString());
    }
  }
  const DeviceMemory memory = runtime->Memory();
  const RuntimeStats stats = runtime->Stats();
  m.peak = memory.peak > m.baseline ? memory.peak - m.baseline : 0;
  m.loads = stats.loads;
  m.evictions = stats.evictions;
  return m;
}

json EdgeMemoryJson(const EdgeMemory& m, int held) {
  return {{"experts_held", held},
          {"peak_bytes", m.peak},
          {"baseline_bytes", m.baseline},
          {"loads", m.loads},
          {"evictions", m.evictions}};
}

void MemorySection(const Options& o, Report& r) {
  if (r.device.is_cpu() || !NewRuntime(o, 1)->Memory().available) {
    const char* why = r.device.is_cpu() ? "cpu" : "no CUDA allocator statistics in this build";
    std::printf("\nmemory: n/a (%s)\nratio memory %d-of-%d/all-%d: n/a (%s)\n", why, kMemoryHeld,
                kMemoryExperts, kMemoryExperts, why);
    r.j["memory"] = {{"available", false}, {"reason", why}};
    return;
  }
  const Bytes& file = ExpertFile(kMixtral, o.dtype);
  const uint64_t expert_bytes =
      static_cast<uint64_t>(kMixtral.d_model * kMixtral.d_ff) * 3 * DTypeBytes(o.dtype);
  const EdgeMemory all = ServeRoundRobin(o, file, 64ull << 30);
  const EdgeMemory two = ServeRoundRobin(o, file, kMemoryHeld * expert_bytes);
  const double ratio = static_cast<double>(two.peak) / static_cast<double>(all.peak);
  const double weights_ratio = static_cast<double>(kMemoryHeld) / kMemoryExperts;
  std::printf("\nmemory: %d %s %s experts (%s each), %lld rows per forward, round robin x%d\n",
              kMemoryExperts, kMixtral.Label().c_str(), std::string(DTypeName(o.dtype)).c_str(),
              GiB(expert_bytes).c_str(), static_cast<long long>(kMemoryRows), kMemoryRounds);
  auto line = [&](const char* what, const EdgeMemory& m, int held) {
    std::printf("  %-22s peak %s (weights %s)  loads %llu evictions %llu\n", what,
                GiB(m.peak).c_str(), GiB(held * expert_bytes).c_str(),
                static_cast<unsigned long long>(m.loads),
                static_cast<unsigned long long>(m.evictions));
  };
  line("edge holding all 8", all, kMemoryExperts);
  line("edge holding 2 of 8", two, kMemoryHeld);
  std::printf("ratio memory %d-of-%d/all-%d: %.2f (weights alone: %.2f)\n", kMemoryHeld,
              kMemoryExperts, kMemoryExperts, ratio, weights_ratio);
  r.j["memory"] = {{"available", true},
                   {"shape", kMixtral.Label()},
                   {"dtype", DTypeName(o.dtype)},
                   {"expert_bytes", expert_bytes},
                   {"rows", kMemoryRows},
                   {"all", EdgeMemoryJson(all, kMemoryExperts)},
                   {"held", EdgeMemoryJson(two, kMemoryHeld)},
                   {"ratio", ratio},
                   {"weights_ratio", weights_ratio}};
}

// ---- section: rpc ----

void RpcSection(const Options& o, Report& r) {
  bench::RpcOptions ro;
  ro.device = o.device;
  ro.dtype = o.dtype;
  for (const Shape& shape : ShapesOf(o.shapes)) {
    ro.shapes.push_back({shape.Label(), shape.group, shape.arch, shape.d_model, shape.d_ff});
  }
  ro.rows = o.rpc_rows;
  ro.calls = o.rpc_calls;
  ro.threads = o.rpc_threads;
  ro.binaries = o.binaries;
  ro.expert_file = [&o](const bench::RpcShape& s) -> const Bytes& {
    return ExpertFile({s.group, s.arch, s.d_model, s.d_ff}, o.dtype);
  };
  // Every daemon is stopped by the time RunRpcSection returns, so Die cannot leave one behind.
  r.j["rpc"] = Must(bench::RunRpcSection(ro), "rpc section");
}

// ---- flags and main ----

struct Section {
  const char* name;
  void (*run)(const Options&, Report&);
};

const Section kSections[] = {
    {"check", CheckSection},
    {"throughput", ThroughputSection},
    {"memory", MemorySection},
    {"rpc", RpcSection},
};

void Usage() {
  std::fprintf(
      stderr,
      "usage: expert_bench [--device cpu|cuda:N] [--dtype bf16|f16|f32]\n"
      "                    [--shapes small,mixtral] [--rows 1,8,64,256,1024,4096,8192]\n"
      "                    [--min-ms MS] [--trials N]\n"
      "                    [--sections check,throughput,memory,rpc] [--quick]\n"
      "                    [--rpc-rows 1,64,1024] [--rpc-calls N] [--rpc-threads N]\n"
      "                    [--validator-bin PATH] [--store-bin PATH] [--edge-bin PATH]\n"
      "                    [--json FILE]\n"
      "defaults: cuda:0 in bf16 when a GPU is present, with both shapes and all rows;\n"
      "on the CPU f32, --shapes small --rows 1,64,256. rpc: --rpc-rows 1,64,1024,\n"
      "--rpc-calls 50 (20 on the CPU), --rpc-threads 4. --quick: small shapes, rows\n"
      "1,64,256, --min-ms 30, sections check,throughput; with --sections rpc: --rpc-rows\n"
      "1,64, --rpc-calls 10.\n"
      "Binaries: TRUSTMOE_VALIDATOR_BIN, TRUSTMOE_STORE_BIN, TRUSTMOE_EDGE_BIN override the\n"
      "build's paths; the flags override both.\n");
}

bool ParseRows(const std::string& s, std::vector<int64_t>* rows) {
  rows->clear();
  for (const std::string& item : SplitList(s)) {
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (*end != '\0' || v < 1 || v > 16384) return false;
    rows->push_back(v);
  }
  return !rows->empty();
}

bool ParseFlags(int argc, char** argv, Options* o) {
  std::optional<std::string> shapes, rows, dtype, sections, min_ms, rpc_rows, rpc_calls;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--quick") {
      quick = true;
      continue;
    }
    if (i + 1 >= argc) return false;
    const std::string value = argv[++i];
    if (arg == "--device") {
      o->device = value;
    } else if (arg == "--dtype") {
      dtype = value;
    } else if (arg == "--shapes") {
      shapes = value;
    } else if (arg == "--rows") {
      rows = value;
    } else if (arg == "--min-ms") {
      min_ms = value;
    } else if (arg == "--trials") {
      o->trials = std::atoi(value.c_str());
    } else if (arg == "--sections") {
      sections = value;
    } else if (arg == "--json") {
      o->json_path = value;
    } else if (arg == "--rpc-rows") {
      rpc_rows = value;
    } else if (arg == "--rpc-calls") {
      rpc_calls = value;
    } else if (arg == "--rpc-threads") {
      o->rpc_threads = std::atoi(value.c_str());
    } else if (arg == "--validator-bin") {
      o->binaries.validator = value;
    } else if (arg == "--store-bin") {
      o->binaries.store = value;
    } else if (arg == "--edge-bin") {
      o->binaries.edge = value;
    } else {
      return false;
    }
  }
  if (o->device.empty()) o->device = ExpertRuntime::CudaAvailable() ? "cuda:0" : "cpu";
  const bool small_run = quick || o->device == "cpu";
  std::string dtype_name = dtype ? *dtype : (o->device == "cpu" ? "F32" : "BF16");
  for (char& c : dtype_name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  Result<DType> parsed = ParseDType(dtype_name);
  if (!parsed.ok()) return false;
  o->dtype = *parsed;
  o->shapes = SplitList(shapes ? *shapes : (small_run ? "small" : "small,mixtral"));
  for (const std::string& s : o->shapes) {
    if (s != "small" && s != "mixtral") return false;
  }
  if (!ParseRows(rows ? *rows : (small_run ? "1,64,256" : "1,8,64,256,1024,4096,8192"), &o->rows)) {
    return false;
  }
  if (!ParseRows(rpc_rows ? *rpc_rows : (quick ? "1,64" : "1,64,1024"), &o->rpc_rows)) {
    return false;
  }
  o->rpc_calls = rpc_calls ? std::atoi(rpc_calls->c_str()) : (quick ? 10 : small_run ? 20 : 50);
  o->min_ms = min_ms ? std::atof(min_ms->c_str()) : (quick ? 30 : 100);
  o->sections = SplitList(sections ? *sections : (quick ? "check,throughput" : ""));
  if (o->sections.empty()) {
    for (const Section& s : kSections) o->sections.push_back(s.name);
  }
  for (const std::string& name : o->sections) {
    if (std::none_of(std::begin(kSections), std::end(kSections),
                     [&](const Section& s) { return name == s.name; })) {
      return false;
    }
  }
  return o->min_ms > 0 && o->trials >= 1 && !o->shapes.empty() && o->rpc_calls >= 1 &&
         o->rpc_calls <= 100000 && o->rpc_threads >= 1 && o->rpc_threads <= 256;
}

bool Selected(const Options& o, const char* section) {
  return std::find(o.sections.begin(), o.sections.end(), section) != o.sections.end();
}

}  // namespace

int main(int argc, char** argv) {
  // As trustmoe-edge does: the runtime-alone figures must not pay page faults the daemon avoids.
  trustmoe::TuneMallocForStreaming();
  Options o;
  if (!ParseFlags(argc, argv, &o)) {
    Usage();
    return 2;
  }
  torch::manual_seed(static_cast<uint64_t>(kSeed));
  Report r;
  r.device = Must(ParseDevice(o.device), "device");
  r.device_text = NewRuntime(o, 1)->DeviceDescription();
  std::string rows_text;
  for (int64_t rows : o.rows) rows_text += (rows_text.empty() ? "" : ",") + std::to_string(rows);
  std::printf(
      "expert_bench: %s, %s, rows %s, >= %.0f ms per measurement (best of %d), "
      "libtorch %s, %d CPU threads\n",
      r.device_text.c_str(), std::string(DTypeName(o.dtype)).c_str(), rows_text.c_str(), o.min_ms,
      o.trials, TORCH_VERSION, torch::get_num_threads());
  r.j["device"] = r.device_text;
  r.j["dtype"] = DTypeName(o.dtype);
  r.j["min_ms"] = o.min_ms;
  r.j["trials"] = o.trials;
  r.j["libtorch"] = TORCH_VERSION;
  r.j["sections"] = o.sections;
  for (const Section& section : kSections) {
    if (!Selected(o, section.name)) continue;
    try {
      section.run(o, r);
    } catch (const std::exception& e) {
      Die(std::string(section.name) + " section: " + e.what());
    }
  }
  if (!o.json_path.empty()) {
    std::ofstream out(o.json_path);
    out << r.j.dump(2) << "\n";
    if (!out) Die("cannot write " + o.json_path);
  }
  return 0;
}
