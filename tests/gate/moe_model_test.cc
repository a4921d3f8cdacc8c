// The gate's model and training loop with in-process experts (moe_model.h, trainer.h).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "gate/experts.h"
#include "gate/fashion_mnist.h"
#include "gate/moe_model.h"
#include "gate/trainer.h"

namespace trustmoe::gate {
namespace {

JobSpec SmallSpec() {
  JobSpec spec;
  spec.name = "t";
  spec.experts = 4;
  spec.top_k = 2;
  spec.d_model = 16;
  spec.d_ff = 32;
  spec.batch_size = 32;
  spec.lr = 3e-3;
  return spec;
}

std::vector<float> Images(int64_t batch, float value) {
  return std::vector<float>(static_cast<size_t>(batch * 784), value);
}

TEST(MoeModelTest, RoutesEveryRowToTopKExpertsAndCombines) {
  JobSpec spec = SmallSpec();
  auto model = MoeModel::Create(spec, 1);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  std::vector<float> images(8 * 784);
  for (size_t i = 0; i < images.size(); ++i) images[i] = static_cast<float>(i % 97) / 97.0f;
  ASSERT_TRUE((*model)->Begin(images, std::vector<uint8_t>(8, 3), false).ok());
  auto routed = (*model)->Route(0);
  ASSERT_TRUE(routed.ok());
  int64_t assignments = 0;
  std::vector<std::optional<edge::HostTensor>> outputs;
  for (const ExpertRows& r : *routed) {
    EXPECT_LT(r.expert, spec.experts);
    EXPECT_EQ(r.input.rows, static_cast<int64_t>(r.rows.size()));
    EXPECT_EQ(r.input.cols, spec.d_model);
    assignments += static_cast<int64_t>(r.rows.size());
    outputs.push_back(r.input);  // identity experts
  }
  EXPECT_EQ(assignments, 8 * spec.top_k);
  ASSERT_TRUE((*model)->Combine(0, outputs).ok());
  auto stats = (*model)->Finish();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->rows, 8);
  EXPECT_EQ(stats->predictions.size(), 8u);
  EXPECT_EQ(stats->fallback_rows, 0);
  EXPECT_TRUE(std::isfinite(stats->loss));
}

TEST(MoeModelTest, MissingExpertsFallBackAndRowsBelowKMinAreDropped) {
  JobSpec spec = SmallSpec();
  spec.k_min = 2;
  auto model = MoeModel::Create(spec, 1);
  ASSERT_TRUE(model.ok());
  ASSERT_TRUE((*model)->Begin(Images(8, 0.5f), std::vector<uint8_t>(8, 1), true).ok());
  auto routed = (*model)->Route(0);
  ASSERT_TRUE(routed.ok());
  std::vector<std::optional<edge::HostTensor>> outputs;
  for (const ExpertRows& r : *routed) outputs.push_back(r.input);
  outputs[0] = std::nullopt;  // the first expert did not answer
  ASSERT_TRUE((*model)->Combine(0, outputs).ok());
  auto stats = (*model)->Finish();
  ASSERT_TRUE(stats.ok());
  const int64_t missing = static_cast<int64_t>((*routed)[0].rows.size());
  EXPECT_EQ(stats->dropped_rows, missing);  // k_min = top_k = 2: one missing expert drops a row
  EXPECT_EQ(stats->fallback_rows, missing);
  EXPECT_EQ(stats->rows, 8 - missing);
}

TEST(MoeModelTest, WrongShapedExpertOutputIsRefused) {
  JobSpec spec = SmallSpec();
  auto model = MoeModel::Create(spec, 1);
  ASSERT_TRUE(model.ok());
  ASSERT_TRUE((*model)->Begin(Images(4, 0.2f), std::vector<uint8_t>(4, 1), false).ok());
  auto routed = (*model)->Route(0);
  ASSERT_TRUE(routed.ok());
  std::vector<std::optional<edge::HostTensor>> outputs;
  for (const ExpertRows& r : *routed) outputs.push_back(r.input);
  outputs[0]->cols = spec.d_model - 1;
  EXPECT_EQ((*model)->Combine(0, outputs).code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE((*model)->Begin(Images(4, 0.2f), std::vector<uint8_t>(3, 1), false).ok());
}

TEST(MoeModelTest, WeightsRoundTripAndForeignFilesAreRefused) {
  JobSpec spec = SmallSpec();
  auto a = MoeModel::Create(spec, 1);
  spec.seed = 2;
  auto b = MoeModel::Create(spec, 1);
  ASSERT_TRUE(a.ok() && b.ok());
  auto wa = (*a)->ExportWeights();
  auto wb = (*b)->ExportWeights();
  ASSERT_TRUE(wa.ok() && wb.ok());
  EXPECT_NE(*wa, *wb);
  ASSERT_TRUE((*b)->ImportWeights(*wa).ok());
  EXPECT_EQ(*(*b)->ExportWeights(), *wa);
  auto expert = InitialExpertFile(spec, 0);
  ASSERT_TRUE(expert.ok());
  EXPECT_EQ((*b)->ImportWeights(*expert).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*b)->ImportWeights(Bytes{1, 2, 3}).code(), StatusCode::kInvalidArgument);
}

// The centralised reference learns Fashion-MNIST: 2 epochs of 2000 items reach well above chance.
TEST(TrainerTest, CentralisedReferenceLearnsFashionMnist) {
  if (!std::filesystem::exists(std::string(kFashionMnistDir))) {
    GTEST_SKIP() << kFashionMnistInstallHint;
  }
  auto train = LoadFashionMnist(std::string(kFashionMnistDir), Split::kTrain, 2000);
  auto test = LoadFashionMnist(std::string(kFashionMnistDir), Split::kTest, 500);
  ASSERT_TRUE(train.ok() && test.ok());
  JobSpec spec = SmallSpec();
  spec.epochs = 2;
  spec.checkpoint_every = 25;
  auto model = MoeModel::Create(spec, 2);
  auto experts = MakeLocalExperts(spec, {});
  ASSERT_TRUE(model.ok() && experts.ok()) << experts.status().ToString();
  const auto before = (*experts)->ExpertCids();
  std::vector<uint64_t> checkpoints;
  TrainHooks hooks;
  hooks.checkpoint = [&](const TrainProgress& p) {
    checkpoints.push_back(p.step);
    return Status::Ok();
  };
  ASSERT_TRUE(Train(spec, *train, model->get(), experts->get(), 0, hooks).ok());
  EXPECT_EQ(StepsPerEpoch(spec, 2000), 63u);
  EXPECT_EQ(checkpoints, (std::vector<uint64_t>{25, 50, 75, 100, 125, 126}));
  const auto after = (*experts)->ExpertCids();
  EXPECT_NE(before, after);  // the experts were trained too
  auto eval = Evaluate(spec, *test, model->get(), experts->get(), 1000, hooks);
  ASSERT_TRUE(eval.ok());
  EXPECT_EQ(eval->rows, 500);
  EXPECT_EQ(eval->predictions.size(), 500u);
  EXPECT_GT(eval->accuracy, 0.6) << "loss " << eval->loss;
  EXPECT_GE(eval->load_imbalance, 1.0);
}

TEST(TrainerTest, CancelStopsBeforeTheNextStep) {
  auto train = LoadFashionMnist(std::string(kFashionMnistDir), Split::kTrain, 200);
  if (!train.ok()) GTEST_SKIP() << train.status().ToString();
  JobSpec spec = SmallSpec();
  auto model = MoeModel::Create(spec, 1);
  auto experts = MakeLocalExperts(spec, {});
  ASSERT_TRUE(model.ok() && experts.ok());
  int steps = 0;
  TrainHooks hooks;
  hooks.progress = [&](const TrainProgress&) { ++steps; };
  hooks.cancelled = [&] { return steps >= 2; };
  EXPECT_EQ(Train(spec, *train, model->get(), experts->get(), 0, hooks).code(),
            StatusCode::kCancelled);
  EXPECT_EQ(steps, 2);
}

}  // namespace
}  // namespace trustmoe::gate
