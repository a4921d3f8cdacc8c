// The centralised reference of the robustness experiment (docs/results/robustness.md): the same
// model as a job spec describes, trained and evaluated in one process with the experts in
// process (gate::MakeLocalExperts), on the same Fashion-MNIST items in the same order. Prints one
// JSON line: test accuracy, loss, load imbalance (max expert share x experts) and time.
//
//   centralised_reference SPEC.toml [DATASET_DIR]
#include <chrono>
#include <cstdio>
#include <string>

#include "gate/experts.h"
#include "gate/fashion_mnist.h"
#include "gate/job_spec.h"
#include "gate/moe_model.h"
#include "gate/trainer.h"

using namespace trustmoe;
using namespace trustmoe::gate;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: centralised_reference SPEC.toml [DATASET_DIR]\n");
    return 2;
  }
  const std::string dir = argc > 2 ? argv[2] : std::string(kFashionMnistDir);
  auto spec = LoadJobSpec(argv[1]);
  if (!spec.ok()) {
    std::fprintf(stderr, "%s\n", spec.status().ToString().c_str());
    return 2;
  }
  auto train = LoadFashionMnist(dir, Split::kTrain, spec->train_limit);
  auto test = LoadFashionMnist(dir, Split::kTest, spec->test_limit);
  if (!train.ok() || !test.ok()) {
    std::fprintf(stderr, "%s\n", (train.ok() ? test.status() : train.status()).ToString().c_str());
    return 2;
  }
  auto model = MoeModel::Create(*spec, 0);
  auto experts = MakeLocalExperts(*spec, {});
  if (!model.ok() || !experts.ok()) {
    std::fprintf(stderr, "%s\n", (model.ok() ? experts.status() : model.status()).ToString().c_str());
    return 1;
  }
  const auto start = std::chrono::steady_clock::now();
  TrainHooks hooks;
  Status s = Train(*spec, *train, model->get(), experts->get(), 0, hooks);
  if (!s.ok()) {
    std::fprintf(stderr, "training: %s\n", s.ToString().c_str());
    return 1;
  }
  const double train_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  auto eval = Evaluate(*spec, *test, model->get(), experts->get(), 0, hooks);
  if (!eval.ok()) {
    std::fprintf(stderr, "evaluation: %s\n", eval.status().ToString().c_str());
    return 1;
  }
  std::printf(
      "{\"test_accuracy\": %.6f, \"test_loss\": %.6f, \"load_imbalance\": %.4f, "
      "\"train_seconds\": %.2f, \"samples_per_second\": %.1f}\n",
      eval->accuracy, eval->loss, eval->load_imbalance, train_s,
      static_cast<double>(StepsPerEpoch(*spec, train->count) * spec->epochs * spec->batch_size) /
          train_s);
  return 0;
}
