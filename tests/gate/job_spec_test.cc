// Job specs from TOML: defaults, every field read, and refusals of unknown keys, wrong types,
// out-of-range and inconsistent values, each naming the field; the canonical encoding that a
// researcher signs changes with every field.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "gate/job_spec.h"

namespace trustmoe::gate {
namespace {

using ::testing::HasSubstr;

constexpr std::string_view kFull = R"(
[job]
name = "fmnist-moe.v1"
kind = "training"
dataset = "fashion-mnist"
seed = 7
[model]
experts = 8
top_k = 2
d_model = 96
d_ff = 192
arch = "gelu_mlp"
moe_layers = 2
load_balance = 0.02
[training]
epochs = 3
batch_size = 128
optimizer = "sgd"
lr = 0.05
momentum = 0.9
weight_decay = 0.0001
train_limit = 6000
test_limit = 1000
checkpoint_every = 50
[verify]
mode = "async"
replication = 2
k_min = 1
)";

TEST(JobSpecTest, ReadsEveryField) {
  auto spec = ParseJobSpec(kFull, "spec.toml");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->name, "fmnist-moe.v1");
  EXPECT_EQ(spec->seed, 7u);
  EXPECT_EQ(spec->d_model, 96u);
  EXPECT_EQ(spec->arch, "gelu_mlp");
  EXPECT_EQ(spec->moe_layers, 2u);
  EXPECT_DOUBLE_EQ(spec->load_balance, 0.02);
  EXPECT_EQ(spec->epochs, 3u);
  EXPECT_EQ(spec->optimizer, Optimizer::kSgd);
  EXPECT_DOUBLE_EQ(spec->momentum, 0.9);
  EXPECT_EQ(spec->train_limit, 6000u);
  EXPECT_EQ(spec->checkpoint_every, 50u);
  EXPECT_EQ(spec->verify, VerifyMode::kAsync);
  EXPECT_EQ(spec->replication, 2u);
}

TEST(JobSpecTest, OnlyTheNameIsRequired) {
  auto spec = ParseJobSpec("[job]\nname = \"j\"\n", "spec.toml");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  JobSpec defaults;
  defaults.name = "j";
  EXPECT_EQ(*spec, defaults);
  auto missing = ParseJobSpec("[model]\nexperts = 4\n", "spec.toml");
  EXPECT_EQ(missing.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(missing.status().message(), HasSubstr("name"));
}

TEST(JobSpecTest, RefusesBadInputNamingTheField) {
  struct Case {
    std::string toml;
    std::string fragment;
  };
  const std::string job = "[job]\nname = \"j\"\n";
  const Case cases[] = {
      {job + "[model]\nexprts = 4\n", "exprts"},                       // unknown key
      {job + "[model]\nexperts = \"eight\"\n", "experts"},             // wrong type
      {job + "[model]\nexperts = 0\n", "model.experts"},
      {job + "[model]\nexperts = 300\n", "model.experts"},
      {job + "[model]\nexperts = 4\ntop_k = 5\n", "model.top_k"},
      {job + "[model]\nexperts = -1\n", "experts"},
      {job + "[model]\narch = \"mamba\"\n", "model.arch"},
      {job + "[model]\nload_balance = -0.1\n", "model.load_balance"},
      {job + "[training]\nlr = 0\n", "training.lr"},
      {job + "[training]\nlr = nan\n", "training.lr"},
      {job + "[training]\nmomentum = 1.0\n", "training.momentum"},
      {job + "[training]\noptimizer = \"lion\"\n", "optimizer 'lion'"},
      {job + "[training]\nbatch_size = 0\n", "training.batch_size"},
      {job + "[verify]\nmode = \"later\"\n", "mode 'later'"},
      {job + "[verify]\nreplication = 17\n", "verify.replication"},
      {job + "[verify]\nk_min = 3\n", "verify.k_min"},
      {"[job]\nname = \"has space\"\n", "job.name"},
      {"[job]\nname = \"\"\n", "job.name"},
      {"[job]\nname = \"j\"\ndataset = \"cifar\"\n", "job.dataset"},
      {"[job]\nname = \"j\"\nkind = \"inference\"\n", "model.base_model"},
      {"[job]\nname = \"j\"\nkind = \"serving\"\n", "kind 'serving'"},
      {"[job\nname = \"j\"\n", "spec.toml"},                           // not TOML
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.toml);
    auto spec = ParseJobSpec(c.toml, "spec.toml");
    ASSERT_FALSE(spec.ok());
    EXPECT_EQ(spec.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(spec.status().message(), HasSubstr(c.fragment));
  }
}

TEST(JobSpecTest, TheExampleSpecParses) {
  auto spec = LoadJobSpec(std::string(TRUSTMOE_SOURCE_DIR) + "/examples/jobs/fmnist-moe.toml");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->experts, 8u);
  EXPECT_EQ(spec->top_k, 2u);
  EXPECT_EQ(spec->verify, VerifyMode::kSync);
}

TEST(JobSpecTest, MissingFileIsNotFound) {
  EXPECT_EQ(LoadJobSpec("/nonexistent/spec.toml").status().code(), StatusCode::kNotFound);
}

TEST(JobSpecTest, CanonicalEncodingChangesWithEveryField) {
  auto base = ParseJobSpec(kFull, "spec.toml");
  ASSERT_TRUE(base.ok());
  std::set<Bytes> seen{base->Canonical()};
  auto vary = [&](auto mutate) {
    JobSpec s = *base;
    mutate(s);
    EXPECT_TRUE(seen.insert(s.Canonical()).second);
  };
  vary([](JobSpec& s) { s.name += "x"; });
  vary([](JobSpec& s) { s.kind = JobKind::kInference; });
  vary([](JobSpec& s) { s.seed += 1; });
  vary([](JobSpec& s) { s.experts += 1; });
  vary([](JobSpec& s) { s.top_k += 1; });
  vary([](JobSpec& s) { s.d_model += 1; });
  vary([](JobSpec& s) { s.d_ff += 1; });
  vary([](JobSpec& s) { s.arch = "swiglu"; });
  vary([](JobSpec& s) { s.moe_layers += 1; });
  vary([](JobSpec& s) { s.load_balance += 0.5; });
  vary([](JobSpec& s) { s.base_model = "sha256-tree:00"; });
  vary([](JobSpec& s) { s.epochs += 1; });
  vary([](JobSpec& s) { s.batch_size += 1; });
  vary([](JobSpec& s) { s.optimizer = Optimizer::kAdam; });
  vary([](JobSpec& s) { s.lr *= 2; });
  vary([](JobSpec& s) { s.momentum = 0.5; });
  vary([](JobSpec& s) { s.weight_decay = 0.5; });
  vary([](JobSpec& s) { s.train_limit += 1; });
  vary([](JobSpec& s) { s.test_limit += 1; });
  vary([](JobSpec& s) { s.checkpoint_every += 1; });
  vary([](JobSpec& s) { s.verify = VerifyMode::kOff; });
  vary([](JobSpec& s) { s.replication += 1; });
  vary([](JobSpec& s) { s.k_min += 1; });
}

}  // namespace
}  // namespace trustmoe::gate
