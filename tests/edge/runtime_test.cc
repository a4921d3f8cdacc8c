// ExpertRuntime on libtorch against a plain C++ reference of the expert math (double
// precision), on the CPU; and CUDA against the CPU where a GPU is present.
#include "edge/runtime.h"

#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <thread>

#include <gtest/gtest.h>

#include "edge/numeric.h"

namespace trustmoe::edge {
namespace {

// Deterministic standard-normal-ish values (Box-Muller over splitmix64).
std::vector<float> Normal(size_t n, uint64_t seed, float scale = 1.0f) {
  std::vector<float> out(n);
  uint64_t state = seed * 0x9e3779b97f4a7c15ull + 1;
  auto next = [&] {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (static_cast<double>(z >> 11) + 0.5) / 9007199254740992.0;
  };
  for (size_t i = 0; i < n; ++i) {
    out[i] = scale * static_cast<float>(std::sqrt(-2 * std::log(next())) *
                                        std::cos(6.283185307179586 * next()));
  }
  return out;
}

HostTensor MakeInput(DType dtype, int64_t rows, int64_t cols, uint64_t seed) {
  return {dtype, rows, cols, FromFloats(dtype, Normal(static_cast<size_t>(rows * cols), seed))};
}

std::vector<float> Floats(const HostTensor& t) {
  Result<std::vector<float>> v = ToFloats(t.dtype, t.data);
  TRUSTMOE_CHECK(v.ok());
  return *v;
}

// The weights of an expert file, as floats.
struct RefExpert {
  ExpertSpec spec;
  std::map<std::string, std::vector<float>> w;
};

RefExpert ReadRef(const Bytes& file) {
  Result<SafetensorsFile> parsed = ParseSafetensors(file);
  TRUSTMOE_CHECK(parsed.ok());
  Result<ExpertSpec> spec = ValidateExpert(*parsed);
  TRUSTMOE_CHECK(spec.ok());
  RefExpert ref{*spec, {}};
  for (const TensorInfo& t : parsed->tensors()) {
    ref.w[t.name] = *ToFloats(t.dtype, parsed->Data(t));
  }
  return ref;
}

double Gelu(double h) { return 0.5 * h * (1 + std::erf(h / std::sqrt(2.0))); }
double Silu(double h) { return h / (1 + std::exp(-h)); }

// out[r] = expert(x[r]) in double precision.
std::vector<double> RefForward(const RefExpert& e, const std::vector<float>& x, int64_t rows) {
  const int64_t m = e.spec.d_model, f = e.spec.d_ff;
  const auto& w1 = e.w.at("w1");
  const auto& w2 = e.w.at("w2");
  std::vector<double> y(static_cast<size_t>(rows * m));
  std::vector<double> a(static_cast<size_t>(f));
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = &x[static_cast<size_t>(r * m)];
    for (int64_t j = 0; j < f; ++j) {
      double h = 0;
      for (int64_t k = 0; k < m; ++k) h += static_cast<double>(w1[j * m + k]) * xr[k];
      if (e.spec.arch == kArchGeluMlp) {
        a[j] = Gelu(h + e.w.at("b1")[j]);
      } else {
        double g = 0;
        const auto& w3 = e.w.at("w3");
        for (int64_t k = 0; k < m; ++k) g += static_cast<double>(w3[j * m + k]) * xr[k];
        a[j] = Silu(h) * g;
      }
    }
    for (int64_t i = 0; i < m; ++i) {
      double s = e.spec.arch == kArchGeluMlp ? e.w.at("b2")[i] : 0.0;
      for (int64_t j = 0; j < f; ++j) s += static_cast<double>(w2[i * f + j]) * a[j];
      y[static_cast<size_t>(r * m + i)] = s;
    }
  }
  return y;
}

// Per-row relative L2 error of `got` against `want`.
std::vector<double> RowErrors(const std::vector<float>& got, const std::vector<double>& want,
                              int64_t rows, int64_t cols) {
  std::vector<double> errors;
  for (int64_t r = 0; r < rows; ++r) {
    double diff = 0, norm = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const size_t i = static_cast<size_t>(r * cols + c);
      diff += (got[i] - want[i]) * (got[i] - want[i]);
      norm += want[i] * want[i];
    }
    errors.push_back(std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30));
  }
  return errors;
}

std::vector<double> ToDouble(const std::vector<float>& v) { return {v.begin(), v.end()}; }

double Max(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }

std::unique_ptr<ExpertRuntime> Cpu(RuntimeOptions options = {}) {
  Result<std::unique_ptr<ExpertRuntime>> rt = ExpertRuntime::Create(options);
  TRUSTMOE_CHECK(rt.ok());
  return std::move(*rt);
}

Bytes Expert(const char* arch, int64_t m, int64_t f, DType dtype = DType::kF32, uint64_t seed = 1) {
  Result<Bytes> file = NewExpertFile({arch, m, f, dtype}, seed);
  TRUSTMOE_CHECK(file.ok());
  return *file;
}

class RuntimeArch : public ::testing::TestWithParam<const char*> {};

TEST_P(RuntimeArch, ForwardMatchesReference) {
  auto rt = Cpu();
  const Bytes file = Expert(GetParam(), 24, 40);
  ASSERT_TRUE(rt->Load("e", file).ok());
  const HostTensor x = MakeInput(DType::kF32, 9, 24, 3);
  Result<HostTensor> y = rt->Forward("e", x);
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  EXPECT_EQ(y->rows, 9);
  EXPECT_EQ(y->cols, 24);
  EXPECT_EQ(y->dtype, DType::kF32);
  std::vector<double> errors = RowErrors(Floats(*y), RefForward(ReadRef(file), Floats(x), 9), 9, 24);
  EXPECT_LT(Max(errors), 1e-5);
}

TEST_P(RuntimeArch, RowsAreIndependent) {
  // Row r of a batch equals the expert applied to row r alone: what lets validators re-compute
  // a sample of rows.
  auto rt = Cpu();
  ASSERT_TRUE(rt->Load("e", Expert(GetParam(), 16, 32)).ok());
  const HostTensor x = MakeInput(DType::kF32, 8, 16, 4);
  Result<HostTensor> all = rt->Forward("e", x);
  ASSERT_TRUE(all.ok());
  HostTensor row{DType::kF32, 1, 16,
                 Bytes(x.data.begin() + 5 * 16 * 4, x.data.begin() + 6 * 16 * 4)};
  Result<HostTensor> one = rt->Forward("e", row);
  ASSERT_TRUE(one.ok());
  std::vector<float> a = Floats(*all), b = Floats(*one);
  for (int c = 0; c < 16; ++c) EXPECT_NEAR(a[5 * 16 + c], b[c], 1e-5);
}

TEST_P(RuntimeArch, BackwardMatchesFiniteDifferences) {
  auto rt = Cpu();
  const int64_t m = 6, f = 10, rows = 3;
  const Bytes file = Expert(GetParam(), m, f);
  ASSERT_TRUE(rt->Load("e", file).ok());
  const HostTensor x = MakeInput(DType::kF32, rows, m, 5);
  const HostTensor gout = MakeInput(DType::kF32, rows, m, 6);
  Result<BackwardResult> back = rt->Backward("e", x, gout, true, false);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->grad_input.rows, rows);
  EXPECT_EQ(back->grad_input.cols, m);
  // d<gout, f(x)>/dx by central differences on the reference.
  const RefExpert ref = ReadRef(file);
  const std::vector<float> xs = Floats(x), gs = Floats(gout), gin = Floats(back->grad_input);
  auto objective = [&](const std::vector<float>& xv) {
    std::vector<double> y = RefForward(ref, xv, rows);
    double s = 0;
    for (size_t i = 0; i < y.size(); ++i) s += y[i] * gs[i];
    return s;
  };
  for (size_t i = 0; i < xs.size(); ++i) {
    std::vector<float> plus = xs, minus = xs;
    plus[i] += 1e-2f;
    minus[i] -= 1e-2f;
    const double numeric = (objective(plus) - objective(minus)) / (plus[i] - minus[i]);
    EXPECT_NEAR(gin[i], numeric, 2e-3 * std::max(1.0, std::abs(numeric))) << "element " << i;
  }
  // Weight gradients: named as in the file, with the weights' shapes.
  std::map<std::string, HostTensor> grads(back->weight_grads.begin(), back->weight_grads.end());
  EXPECT_EQ(grads.size(), std::string(GetParam()) == "gelu_mlp" ? 4u : 3u);
  EXPECT_EQ(grads.at("w1").rows, f);
  EXPECT_EQ(grads.at("w1").cols, m);
  EXPECT_EQ(grads.at("w2").rows, m);
  EXPECT_EQ(grads.at("w2").cols, f);
  if (grads.count("b2")) {
    // d/db2 = sum of grad_output over rows, exactly.
    std::vector<float> b2 = Floats(grads.at("b2"));
    for (int64_t c = 0; c < m; ++c) {
      double s = 0;
      for (int64_t r = 0; r < rows; ++r) s += gs[r * m + c];
      EXPECT_NEAR(b2[c], s, 1e-5);
    }
  }
}

TEST_P(RuntimeArch, SgdAndAdamSteps) {
  auto rt = Cpu();
  const int64_t m = 8, f = 12;
  const Bytes file = Expert(GetParam(), m, f);
  ASSERT_TRUE(rt->Load("parent", file).ok());
  ASSERT_TRUE(rt->Clone("parent", "child").ok());
  EXPECT_EQ(rt->Step("child", {}).code(), StatusCode::kFailedPrecondition);  // nothing yet
  EXPECT_EQ(rt->Backward("parent", MakeInput(DType::kF32, 2, m, 1), MakeInput(DType::kF32, 2, m, 2),
                         false, true)
                .status()
                .code(),
            StatusCode::kFailedPrecondition);  // only training copies accumulate

  // Two Backward calls accumulate: the SGD step moves w by -lr * (g1 + g2).
  const HostTensor x1 = MakeInput(DType::kF32, 3, m, 7), g1 = MakeInput(DType::kF32, 3, m, 8);
  const HostTensor x2 = MakeInput(DType::kF32, 2, m, 9), g2 = MakeInput(DType::kF32, 2, m, 10);
  Result<BackwardResult> b1 = rt->Backward("child", x1, g1, true, true);
  Result<BackwardResult> b2 = rt->Backward("child", x2, g2, true, true);
  ASSERT_TRUE(b1.ok() && b2.ok());
  OptimizerSpec sgd;
  sgd.lr = 0.1;
  ASSERT_TRUE(rt->Step("child", sgd).ok());
  Result<Bytes> stepped = rt->Export("child", DType::kF32);
  ASSERT_TRUE(stepped.ok());
  RefExpert before = ReadRef(file), after = ReadRef(*stepped);
  std::map<std::string, HostTensor> ga(b1->weight_grads.begin(), b1->weight_grads.end());
  std::map<std::string, HostTensor> gb(b2->weight_grads.begin(), b2->weight_grads.end());
  for (const auto& [name, w] : before.w) {
    std::vector<float> sa = Floats(ga.at(name)), sb = Floats(gb.at(name));
    for (size_t i = 0; i < w.size(); ++i) {
      ASSERT_NEAR(after.w.at(name)[i], w[i] - 0.1 * (sa[i] + sb[i]), 1e-5) << name << " " << i;
    }
  }
  // The parent is untouched.
  Result<Bytes> parent = rt->Export("parent", DType::kF32);
  ASSERT_TRUE(parent.ok());
  EXPECT_EQ(*parent, file);

  // Adam's first step moves each weight by lr * sign(g) (up to eps).
  ASSERT_TRUE(rt->Clone("parent", "adam").ok());
  Result<BackwardResult> b3 = rt->Backward("adam", x1, g1, true, true);
  ASSERT_TRUE(b3.ok());
  OptimizerSpec adam;
  adam.kind = OptimizerKind::kAdam;
  adam.lr = 0.01;
  ASSERT_TRUE(rt->Step("adam", adam).ok());
  RefExpert adam_after = ReadRef(*rt->Export("adam", DType::kF32));
  std::map<std::string, HostTensor> gc(b3->weight_grads.begin(), b3->weight_grads.end());
  for (const auto& [name, w] : before.w) {
    std::vector<float> g = Floats(gc.at(name));
    for (size_t i = 0; i < w.size(); ++i) {
      if (std::abs(g[i]) < 1e-4) continue;
      ASSERT_NEAR(adam_after.w.at(name)[i], w[i] - 0.01 * (g[i] > 0 ? 1 : -1), 1e-5) << name;
    }
  }
  OptimizerSpec bad;
  bad.lr = -1;
  EXPECT_EQ(rt->Step("adam", bad).code(), StatusCode::kInvalidArgument);
}

// The tensors of a safetensors file as floats, with its metadata.
struct StateFile {
  Metadata metadata;
  std::map<std::string, std::vector<float>> tensors;
};

StateFile ReadState(const Bytes& file) {
  Result<SafetensorsFile> parsed = ParseSafetensors(file);
  TRUSTMOE_CHECK(parsed.ok());
  StateFile out{parsed->metadata(), {}};
  for (const TensorInfo& t : parsed->tensors()) {
    out.tensors[t.name] = *ToFloats(t.dtype, parsed->Data(t));
  }
  return out;
}

// Largest absolute difference between the weights of two expert files of one architecture.
double MaxWeightDiff(const Bytes& a, const Bytes& b) {
  RefExpert ra = ReadRef(a), rb = ReadRef(b);
  double worst = 0;
  for (const auto& [name, w] : ra.w) {
    const std::vector<float>& other = rb.w.at(name);
    TRUSTMOE_CHECK(other.size() == w.size());
    for (size_t i = 0; i < w.size(); ++i) {
      worst = std::max(worst, std::abs(static_cast<double>(w[i]) - other[i]));
    }
  }
  return worst;
}

// One step with `opt` on training copy `key` from the gradients of (x, g).
void StepOn(ExpertRuntime* rt, const std::string& key, const HostTensor& x, const HostTensor& g,
            const OptimizerSpec& opt) {
  ASSERT_TRUE(rt->Backward(key, x, g, false, true).ok());
  ASSERT_TRUE(rt->Step(key, opt).ok());
}

// Two steps on one training copy (weights W2), against the second step alone on a copy of the
// weights after the first step (W1) with the optimizer state exported then: equal weights and
// states. The same second step from a fresh state differs, so the state did carry over.
void ExpectStateCarriesTheStep(const char* arch, const OptimizerSpec& opt,
                               const std::vector<std::string>& prefixes) {
  auto rt = Cpu();
  const int64_t m = 8, f = 12;
  ASSERT_TRUE(rt->Load("parent", Expert(arch, m, f)).ok());
  ASSERT_TRUE(rt->Clone("parent", "a").ok());
  const HostTensor x1 = MakeInput(DType::kF32, 4, m, 21), g1 = MakeInput(DType::kF32, 4, m, 22);
  const HostTensor x2 = MakeInput(DType::kF32, 3, m, 23), g2 = MakeInput(DType::kF32, 3, m, 24);
  ASSERT_NO_FATAL_FAILURE(StepOn(rt.get(), "a", x1, g1, opt));
  Result<Bytes> w1 = rt->Export("a", DType::kF32);
  Result<Bytes> s1 = rt->ExportOptimizerState("a");
  ASSERT_TRUE(w1.ok() && s1.ok()) << s1.status().ToString();
  ASSERT_NO_FATAL_FAILURE(StepOn(rt.get(), "a", x2, g2, opt));
  Result<Bytes> w2 = rt->Export("a", DType::kF32);
  Result<Bytes> s2 = rt->ExportOptimizerState("a");
  ASSERT_TRUE(w2.ok() && s2.ok());

  // The state file: one f32 tensor per parameter and prefix, and the format metadata.
  const StateFile state = ReadState(*s1);
  EXPECT_EQ(state.metadata.at("trustmoe.format"), kOptimizerStateFormat);
  EXPECT_EQ(state.metadata.at("trustmoe.adam_steps"), opt.kind == OptimizerKind::kAdam ? "1" : "0");
  const RefExpert ref = ReadRef(*w1);
  EXPECT_EQ(state.tensors.size(), prefixes.size() * ref.w.size());
  for (const std::string& prefix : prefixes) {
    for (const auto& [name, w] : ref.w) {
      auto it = state.tensors.find(prefix + name);
      ASSERT_NE(it, state.tensors.end()) << prefix << name;
      EXPECT_EQ(it->second.size(), w.size()) << prefix << name;
    }
  }

  ASSERT_TRUE(rt->Load("w1", *w1).ok());
  ASSERT_TRUE(rt->Clone("w1", "b").ok());
  ASSERT_TRUE(rt->ImportOptimizerState("b", *s1).ok());
  Result<Bytes> imported = rt->ExportOptimizerState("b");
  ASSERT_TRUE(imported.ok());
  EXPECT_EQ(*imported, *s1);
  ASSERT_NO_FATAL_FAILURE(StepOn(rt.get(), "b", x2, g2, opt));
  Result<Bytes> w2b = rt->Export("b", DType::kF32);
  ASSERT_TRUE(w2b.ok());
  EXPECT_LE(MaxWeightDiff(*w2, *w2b), 1e-6);
  const StateFile sa = ReadState(*s2), sb = ReadState(*rt->ExportOptimizerState("b"));
  EXPECT_EQ(sa.metadata, sb.metadata);
  ASSERT_EQ(sa.tensors.size(), sb.tensors.size());
  for (const auto& [name, v] : sa.tensors) {
    const std::vector<float>& other = sb.tensors.at(name);
    for (size_t i = 0; i < v.size(); ++i) ASSERT_NEAR(v[i], other[i], 1e-6) << name << " " << i;
  }

  ASSERT_TRUE(rt->Clone("w1", "fresh").ok());
  ASSERT_NO_FATAL_FAILURE(StepOn(rt.get(), "fresh", x2, g2, opt));
  EXPECT_GT(MaxWeightDiff(*w2, *rt->Export("fresh", DType::kF32)), 1e-4);
}

TEST_P(RuntimeArch, AdamStateExportedAndImportedResumesTheSameStep) {
  OptimizerSpec adam;
  adam.kind = OptimizerKind::kAdam;
  adam.lr = 0.01;
  adam.weight_decay = 0.01;
  ExpectStateCarriesTheStep(GetParam(), adam, {"adam_m.", "adam_v."});
}

TEST_P(RuntimeArch, SgdMomentumStateExportedAndImportedResumesTheSameStep) {
  OptimizerSpec sgd;
  sgd.lr = 0.05;
  sgd.momentum = 0.9;
  ExpectStateCarriesTheStep(GetParam(), sgd, {"momentum."});
}

INSTANTIATE_TEST_SUITE_P(Archs, RuntimeArch, ::testing::Values("gelu_mlp", "swiglu"));

TEST(Runtime, Bf16ComputeOnCpuIsClose) {
  RuntimeOptions options;
  options.compute_dtype = DType::kBF16;
  auto rt = Cpu(options);
  const Bytes file = Expert("swiglu", 32, 64, DType::kBF16);
  ASSERT_TRUE(rt->Load("e", file).ok());
  const HostTensor x = MakeInput(DType::kBF16, 16, 32, 11);
  Result<HostTensor> y = rt->Forward("e", x);
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  EXPECT_EQ(y->dtype, DType::kBF16);
  std::vector<double> errors = RowErrors(Floats(*y), RefForward(ReadRef(file), Floats(x), 16), 16, 32);
  EXPECT_LT(Max(errors), 3e-2);
  EXPECT_GT(Max(errors), 0.0);  // it did compute in bf16
}

// An update must start from the parent file's f32 weights even on a bf16 edge: a clone of the
// device's bf16 copy is rounded (and an honest GPU edge's updates were rejected for it).
TEST(Runtime, TrainingCopyFromTheFileKeepsF32OnABf16Runtime) {
  RuntimeOptions options;
  options.compute_dtype = DType::kBF16;
  auto rt = Cpu(options);
  const Bytes file = Expert("swiglu", 32, 64, DType::kF32, 5);
  ASSERT_TRUE(rt->Load("e", file).ok());
  ASSERT_TRUE(rt->Clone("e", "cloned").ok());
  ASSERT_TRUE(rt->LoadTraining("exact", file).ok());
  Result<Bytes> cloned = rt->Export("cloned", DType::kF32);
  Result<Bytes> exact = rt->Export("exact", DType::kF32);
  ASSERT_TRUE(cloned.ok() && exact.ok());
  EXPECT_EQ(*exact, file);
  EXPECT_NE(*cloned, file);  // rounded through bf16
  EXPECT_EQ(rt->LoadTraining("exact", file).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(rt->LoadTraining("bad", Bytes{1, 2, 3}).code(), StatusCode::kInvalidArgument);
}

TEST(Runtime, ConcurrentRequestsAreBatchedAndCorrect) {
  RuntimeOptions options;
  options.batch_wait_us = 300'000;  // long enough that all threads join one run
  auto rt = Cpu(options);
  const Bytes file = Expert("gelu_mlp", 16, 32);
  ASSERT_TRUE(rt->Load("e", file).ok());
  const RefExpert ref = ReadRef(file);
  constexpr int kThreads = 6;
  std::vector<HostTensor> inputs;
  for (int i = 0; i < kThreads; ++i) inputs.push_back(MakeInput(DType::kF32, 1 + i, 16, 100 + i));
  std::vector<Result<HostTensor>> outputs(kThreads, Status::Internal("not run"));
  std::barrier start(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      outputs[i] = rt->Forward("e", inputs[i]);
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kThreads; ++i) {
    ASSERT_TRUE(outputs[i].ok());
    ASSERT_EQ(outputs[i]->rows, 1 + i);
    std::vector<double> errors =
        RowErrors(Floats(*outputs[i]), RefForward(ref, Floats(inputs[i]), 1 + i), 1 + i, 16);
    EXPECT_LT(Max(errors), 1e-5) << "request " << i;
  }
  RuntimeStats stats = rt->Stats();
  EXPECT_EQ(stats.forward_requests, static_cast<uint64_t>(kThreads));
  EXPECT_EQ(stats.rows, 21u);
  EXPECT_LT(stats.runs, static_cast<uint64_t>(kThreads));
}

TEST(Runtime, BatchRowsMaxSplitsRuns) {
  RuntimeOptions options;
  options.batch_rows_max = 4;
  options.batch_wait_us = 200'000;
  auto rt = Cpu(options);
  ASSERT_TRUE(rt->Load("e", Expert("swiglu", 8, 8)).ok());
  std::vector<std::thread> threads;
  std::barrier start(4);
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      EXPECT_TRUE(rt->Forward("e", MakeInput(DType::kF32, 3, 8, i)).ok());
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(rt->Stats().runs, 4u);  // 3 + 3 > 4: every request runs alone
}

TEST(Runtime, LeastRecentlyUsedExpertIsEvicted) {
  RuntimeOptions options;
  const uint64_t one = 2 * 16 * 32 * 4 + (32 + 16) * 4;  // gelu_mlp 16 -> 32, f32
  options.device_bytes_max = 2 * one + 10;
  auto rt = Cpu(options);
  ASSERT_TRUE(rt->Load("a", Expert("gelu_mlp", 16, 32, DType::kF32, 1)).ok());
  ASSERT_TRUE(rt->Load("b", Expert("gelu_mlp", 16, 32, DType::kF32, 2)).ok());
  ASSERT_TRUE(rt->Forward("a", MakeInput(DType::kF32, 1, 16, 1)).ok());  // b is now the oldest
  ASSERT_TRUE(rt->Load("c", Expert("gelu_mlp", 16, 32, DType::kF32, 3)).ok());
  EXPECT_TRUE(rt->Holds("a"));
  EXPECT_FALSE(rt->Holds("b"));
  EXPECT_TRUE(rt->Holds("c"));
  EXPECT_EQ(rt->Stats().evictions, 1u);
  EXPECT_EQ(rt->Stats().resident_bytes, 2 * one);
  EXPECT_EQ(rt->Forward("b", MakeInput(DType::kF32, 1, 16, 1)).status().code(),
            StatusCode::kNotFound);
  // Larger than the whole budget.
  EXPECT_EQ(rt->Load("big", Expert("gelu_mlp", 64, 256)).code(), StatusCode::kResourceExhausted);
  // Training copies are never evicted: with one in place, a second expert still fits, a third
  // not, and the training copy survives.
  RuntimeOptions small;
  small.device_bytes_max = one * 4 + one;
  auto rt2 = Cpu(small);
  ASSERT_TRUE(rt2->Load("p", Expert("gelu_mlp", 16, 32)).ok());
  ASSERT_TRUE(rt2->Clone("p", "t").ok());  // 4x: weights, gradients, two moments
  EXPECT_TRUE(rt2->Holds("p"));
  EXPECT_EQ(rt2->Load("q", Expert("gelu_mlp", 16, 32, DType::kF32, 5)).code(), StatusCode::kOk);
  EXPECT_FALSE(rt2->Holds("p"));  // the only idle expert: evicted for q
  EXPECT_EQ(rt2->Load("r", Expert("gelu_mlp", 16, 32, DType::kF32, 6)).code(), StatusCode::kOk);
  EXPECT_TRUE(rt2->Holds("t"));
  EXPECT_FALSE(rt2->Holds("q"));
  // A second training copy cannot evict the first.
  EXPECT_EQ(rt2->Clone("r", "t2").code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(rt2->Holds("t"));
}

TEST(Runtime, BadInputsAreRefusedClearly) {
  auto rt = Cpu();
  ASSERT_TRUE(rt->Load("e", Expert("swiglu", 8, 16)).ok());
  Status width = rt->Forward("e", MakeInput(DType::kF32, 2, 9, 1)).status();
  EXPECT_EQ(width.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(width.message().find("width 9"), std::string::npos) << width.ToString();
  EXPECT_EQ(rt->Forward("e", HostTensor{DType::kF32, 0, 8, {}}).status().code(),
            StatusCode::kInvalidArgument);
  HostTensor nan = MakeInput(DType::kF32, 3, 8, 2);
  std::vector<float> v = Floats(nan);
  v[2 * 8 + 5] = std::nanf("");
  nan.data = FromFloats(DType::kF32, v);
  Status nan_status = rt->Forward("e", nan).status();
  EXPECT_EQ(nan_status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(nan_status.message().find("row 2"), std::string::npos) << nan_status.ToString();
  HostTensor short_data = MakeInput(DType::kF32, 2, 8, 3);
  short_data.data.pop_back();
  EXPECT_EQ(rt->Forward("e", short_data).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(rt->Forward("missing", MakeInput(DType::kF32, 1, 8, 1)).status().code(),
            StatusCode::kNotFound);
  // Hostile expert files.
  Bytes file = Expert("swiglu", 8, 16);
  EXPECT_EQ(rt->Load("t", Bytes(file.begin(), file.begin() + 20)).code(),
            StatusCode::kInvalidArgument);
  Bytes huge_header = file;
  huge_header[0] = 0xff;
  huge_header[5] = 0x7f;
  EXPECT_EQ(rt->Load("t", huge_header).code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(rt->Holds("t"));
  // The runtime still serves.
  EXPECT_TRUE(rt->Forward("e", MakeInput(DType::kF32, 1, 8, 1)).ok());
}

// An optimizer-state file written field by field.
Bytes StateBytes(const Metadata& metadata,
                 const std::vector<std::pair<std::string, std::vector<int64_t>>>& shapes,
                 DType dtype = DType::kF32) {
  std::vector<Bytes> data;
  std::vector<TensorData> tensors;
  data.reserve(shapes.size());
  for (const auto& [name, shape] : shapes) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    data.push_back(FromFloats(dtype, std::vector<float>(static_cast<size_t>(n), 0.5f)));
    tensors.push_back({name, dtype, shape, data.back()});
  }
  Result<Bytes> file = WriteSafetensors(metadata, std::move(tensors));
  TRUSTMOE_CHECK(file.ok());
  return *file;
}

TEST(Runtime, HostileOptimizerStatesAreRefusedAndLeaveTheStateAsItWas) {
  auto rt = Cpu();
  const int64_t m = 8, f = 12;  // swiglu: w1 [f, m], w2 [m, f], w3 [f, m]
  ASSERT_TRUE(rt->Load("parent", Expert("swiglu", m, f)).ok());
  ASSERT_TRUE(rt->Clone("parent", "t").ok());
  OptimizerSpec adam;
  adam.kind = OptimizerKind::kAdam;
  ASSERT_NO_FATAL_FAILURE(StepOn(rt.get(), "t", MakeInput(DType::kF32, 2, m, 1),
                                 MakeInput(DType::kF32, 2, m, 2), adam));
  Result<Bytes> before = rt->ExportOptimizerState("t");
  ASSERT_TRUE(before.ok());

  const Metadata good{{"trustmoe.format", std::string(kOptimizerStateFormat)},
                      {"trustmoe.adam_steps", "3"}};
  auto with = [&](const std::string& key, const std::string& value) {
    Metadata md = good;
    md[key] = value;
    return md;
  };
  Metadata no_steps = good;
  no_steps.erase("trustmoe.adam_steps");
  Metadata no_format = good;
  no_format.erase("trustmoe.format");
  const std::vector<std::pair<std::string, std::vector<int64_t>>> valid = {{"adam_m.w1", {f, m}},
                                                                           {"adam_v.w1", {f, m}}};
  // A valid file, to show the cases below fail for their one fault.
  ASSERT_TRUE(rt->Clone("parent", "probe").ok());
  ASSERT_TRUE(rt->ImportOptimizerState("probe", StateBytes(good, valid)).ok());

  const Bytes garbage = {'n', 'o', 't', ' ', 's', 'a', 'f', 'e',
                         't', 'e', 'n', 's', 'o', 'r', 's', '!'};
  struct Case {
    const char* what;
    Bytes file;
  };
  const std::vector<Case> cases = {
      {"not safetensors", garbage},
      {"no format", StateBytes(no_format, valid)},
      {"an expert's format",
       StateBytes(with("trustmoe.format", std::string(kExpertFormat)), valid)},
      {"format v2", StateBytes(with("trustmoe.format", "trustmoe-optimizer-state-v2"), valid)},
      {"no adam_steps", StateBytes(no_steps, valid)},
      {"negative adam_steps", StateBytes(with("trustmoe.adam_steps", "-1"), valid)},
      {"empty adam_steps", StateBytes(with("trustmoe.adam_steps", ""), valid)},
      {"hex adam_steps", StateBytes(with("trustmoe.adam_steps", "0x10"), valid)},
      {"adam_steps 1e3", StateBytes(with("trustmoe.adam_steps", "1e3"), valid)},
      {"13-digit adam_steps", StateBytes(with("trustmoe.adam_steps", "1234567890123"), valid)},
      {"unknown prefix", StateBytes(good, {{"adam_m.w1", {f, m}}, {"adam_x.w1", {f, m}}})},
      {"unknown parameter", StateBytes(good, {{"adam_m.w1", {f, m}}, {"adam_m.w9", {f, m}}})},
      {"bare parameter name", StateBytes(good, {{"adam_m.w1", {f, m}}, {"w1", {f, m}}})},
      {"transposed shape", StateBytes(good, {{"adam_m.w1", {f, m}}, {"adam_v.w1", {m, f}}})},
      {"flat shape", StateBytes(good, {{"adam_m.w1", {f * m}}})},
      {"one row more", StateBytes(good, {{"momentum.w2", {m + 1, f}}})},
      {"bf16", StateBytes(good, {{"adam_m.w1", {f, m}}}, DType::kBF16)},
      {"f16", StateBytes(good, {{"momentum.w3", {f, m}}}, DType::kF16)},
  };
  for (const Case& c : cases) {
    Status s = rt->ImportOptimizerState("t", c.file);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.what << ": " << s.ToString();
    Result<Bytes> after = rt->ExportOptimizerState("t");
    ASSERT_TRUE(after.ok());
    EXPECT_EQ(*after, *before) << c.what << " changed the state";
  }

  // Only training copies hold optimizer state.
  EXPECT_EQ(rt->ExportOptimizerState("parent").status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(rt->ImportOptimizerState("parent", *before).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(rt->ExportOptimizerState("missing").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(rt->ImportOptimizerState("missing", *before).code(), StatusCode::kNotFound);

  // A fresh training copy exports an empty state that imports again.
  ASSERT_TRUE(rt->Clone("parent", "fresh").ok());
  Result<Bytes> empty = rt->ExportOptimizerState("fresh");
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  const StateFile parsed = ReadState(*empty);
  EXPECT_EQ(parsed.metadata.at("trustmoe.adam_steps"), "0");
  for (const auto& [name, v] : parsed.tensors) {
    EXPECT_FALSE(name.starts_with("adam_") || name.starts_with("momentum.")) << name;
  }
  EXPECT_TRUE(rt->ImportOptimizerState("t", *empty).ok());
  EXPECT_EQ(*rt->ExportOptimizerState("t"), *empty);
}

TEST(Runtime, OptionsAreChecked) {
  RuntimeOptions f16;
  f16.compute_dtype = DType::kF16;
  EXPECT_EQ(ExpertRuntime::Create(f16).status().code(), StatusCode::kInvalidArgument);
  RuntimeOptions tpu;
  tpu.device = "tpu";
  EXPECT_EQ(ExpertRuntime::Create(tpu).status().code(), StatusCode::kInvalidArgument);
  RuntimeOptions cuda_x;
  cuda_x.device = "cuda:x";
  EXPECT_EQ(ExpertRuntime::Create(cuda_x).status().code(), StatusCode::kInvalidArgument);
  if (!ExpertRuntime::CudaAvailable()) {
    RuntimeOptions cuda;
    cuda.device = "cuda:0";
    Status status = ExpertRuntime::Create(cuda).status();
    EXPECT_EQ(status.code(), StatusCode::kFailedPrecondition);
    EXPECT_NE(status.message().find("cpu"), std::string::npos);
  }
}

// ---- CUDA (skipped without a GPU) ----

double Quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

// CUDA in `dtype` against the CPU in f32 for one shape: forward and grad_input per-row relative
// L2 errors. Appends a JSON line to $TRUSTMOE_GPU_ERRORS_OUT when set.
void CompareCudaWithCpu(const char* arch, int64_t m, int64_t f, int64_t rows, DType dtype,
                        double tolerance) {
  RuntimeOptions gpu_options;
  gpu_options.device = "cuda:0";
  gpu_options.compute_dtype = dtype;
  auto gpu = ExpertRuntime::Create(gpu_options);
  ASSERT_TRUE(gpu.ok()) << gpu.status().ToString();
  RuntimeOptions cpu_options;
  auto cpu = Cpu(cpu_options);
  // The file holds the weights in `dtype`, so both sides compute with identical weights.
  const Bytes file = Expert(arch, m, f, dtype, 42);
  ASSERT_TRUE((*gpu)->Load("e", file).ok());
  ASSERT_TRUE(cpu->Load("e", file).ok());
  const HostTensor x = MakeInput(dtype, rows, m, 77);
  HostTensor x32{DType::kF32, rows, m, FromFloats(DType::kF32, Floats(x))};
  Result<HostTensor> y_gpu = (*gpu)->Forward("e", x);
  Result<HostTensor> y_cpu = cpu->Forward("e", x32);
  ASSERT_TRUE(y_gpu.ok() && y_cpu.ok()) << y_gpu.status().ToString();
  std::vector<double> fwd = RowErrors(Floats(*y_gpu), ToDouble(Floats(*y_cpu)), rows, m);

  const HostTensor gout = MakeInput(dtype, rows, m, 78);
  HostTensor gout32{DType::kF32, rows, m, FromFloats(DType::kF32, Floats(gout))};
  Result<BackwardResult> b_gpu = (*gpu)->Backward("e", x, gout, false, false);
  Result<BackwardResult> b_cpu = cpu->Backward("e", x32, gout32, false, false);
  ASSERT_TRUE(b_gpu.ok() && b_cpu.ok()) << b_gpu.status().ToString();
  std::vector<double> bwd =
      RowErrors(Floats(b_gpu->grad_input), ToDouble(Floats(b_cpu->grad_input)), rows, m);

  const std::string name = std::string(arch) + " " + std::to_string(m) + "->" +
                           std::to_string(f) + "->" + std::to_string(m) + " " +
                           std::string(DTypeName(dtype));
  std::printf("gpu-vs-cpu %-28s rows %5lld  forward max %.3e p99.9 %.3e  grad_input max %.3e "
              "p99.9 %.3e\n",
              name.c_str(), static_cast<long long>(rows), Max(fwd), Quantile(fwd, 0.999),
              Max(bwd), Quantile(bwd, 0.999));
  if (const char* out = std::getenv("TRUSTMOE_GPU_ERRORS_OUT")) {
    std::ofstream file_out(out, std::ios::app);
    file_out << "{\"arch\":\"" << arch << "\",\"d_model\":" << m << ",\"d_ff\":" << f
             << ",\"dtype\":\"" << DTypeName(dtype) << "\",\"rows\":" << rows
             << ",\"device\":\"" << (*gpu)->DeviceDescription() << "\""
             << ",\"forward_max\":" << Max(fwd) << ",\"forward_p999\":" << Quantile(fwd, 0.999)
             << ",\"forward_p50\":" << Quantile(fwd, 0.5) << ",\"grad_input_max\":" << Max(bwd)
             << ",\"grad_input_p999\":" << Quantile(bwd, 0.999) << "}\n";
  }
  EXPECT_LT(Max(fwd), tolerance) << name;
  EXPECT_LT(Max(bwd), tolerance) << name;
}

// Documented in docs/edge.md (GPU tolerance): f32 within 1e-4, bf16 within 3e-2 per row.
constexpr double kF32Tolerance = 1e-4;
constexpr double kBf16Tolerance = 3e-2;

TEST(RuntimeCuda, SmallExpertsAgreeWithCpu) {
  if (!ExpertRuntime::CudaAvailable()) GTEST_SKIP() << "no CUDA device";
  for (const char* arch : {"gelu_mlp", "swiglu"}) {
    CompareCudaWithCpu(arch, 256, 1024, 4096, DType::kF32, kF32Tolerance);
    CompareCudaWithCpu(arch, 256, 1024, 4096, DType::kBF16, kBf16Tolerance);
  }
}

TEST(RuntimeCuda, MixtralShapedExpertsAgreeWithCpu) {
  if (!ExpertRuntime::CudaAvailable()) GTEST_SKIP() << "no CUDA device";
  for (const char* arch : {"swiglu", "gelu_mlp"}) {
    CompareCudaWithCpu(arch, 4096, 14336, 512, DType::kF32, kF32Tolerance);
    CompareCudaWithCpu(arch, 4096, 14336, 512, DType::kBF16, kBf16Tolerance);
  }
}

TEST(RuntimeCuda, WeightGradientsAndStepAgreeWithCpu) {
  if (!ExpertRuntime::CudaAvailable()) GTEST_SKIP() << "no CUDA device";
  RuntimeOptions gpu_options;
  gpu_options.device = "cuda:0";
  gpu_options.compute_dtype = DType::kF32;
  auto gpu = ExpertRuntime::Create(gpu_options);
  ASSERT_TRUE(gpu.ok());
  auto cpu = Cpu();
  const Bytes file = Expert("swiglu", 64, 128);
  for (ExpertRuntime* rt : {gpu->get(), cpu.get()}) {
    ASSERT_TRUE(rt->Load("p", file).ok());
    ASSERT_TRUE(rt->Clone("p", "t").ok());
    ASSERT_TRUE(rt->Backward("t", MakeInput(DType::kF32, 32, 64, 1),
                             MakeInput(DType::kF32, 32, 64, 2), false, true)
                    .ok());
    OptimizerSpec adam;
    adam.kind = OptimizerKind::kAdam;
    ASSERT_TRUE(rt->Step("t", adam).ok());
  }
  RefExpert a = ReadRef(*(*gpu)->Export("t", DType::kF32));
  RefExpert b = ReadRef(*cpu->Export("t", DType::kF32));
  for (const auto& [name, w] : a.w) {
    for (size_t i = 0; i < w.size(); ++i) ASSERT_NEAR(w[i], b.w.at(name)[i], 1e-5) << name;
  }
  DeviceMemory memory = (*gpu)->Memory();
  EXPECT_TRUE(memory.available);
  EXPECT_GT(memory.peak, 0u);
}

}  // namespace
}  // namespace trustmoe::edge
