// The training and evaluation loops of a job (docs/gate.md, "Training"): batches of
// Fashion-MNIST through the gate's model (moe_model.h) and the experts (experts.h). No libtorch
// and no gRPC here: the same loop trains over edges and, with LocalExperts, the centralised
// reference.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "common/status.h"
#include "gate/experts.h"
#include "gate/fashion_mnist.h"
#include "gate/job_spec.h"
#include "gate/moe_model.h"

namespace trustmoe::gate {

struct TrainProgress {
  uint64_t step = 0;         // optimizer steps done
  uint64_t steps_total = 0;
  uint32_t epoch = 1;
  double loss = 0;           // mean over the last kProgressWindow steps
  double train_accuracy = 0;
  double samples_per_second = 0;
  double eta_seconds = -1;
  int64_t fallback_rows = 0;  // whole job so far
  int64_t dropped_rows = 0;
  std::vector<double> expert_load;  // share of routed rows per expert, last window
};

struct EvalResult {
  int64_t rows = 0;
  int64_t correct = 0;
  double accuracy = 0;
  double loss = 0;
  int64_t fallback_rows = 0;
  int64_t dropped_rows = 0;
  std::vector<uint8_t> predictions;  // one per test item
  std::vector<double> expert_load;   // share of routed rows per expert
  // max expert share / mean share (1 = perfectly balanced), over the experts of every layer.
  double load_imbalance = 0;
};

struct TrainHooks {
  // After every step.
  std::function<void(const TrainProgress&)> progress;
  // Every spec.checkpoint_every steps and after the last step; an error stops the job.
  std::function<Status(const TrainProgress&)> checkpoint;
  // Polled before each step; true stops the loop with Cancelled.
  std::function<bool()> cancelled;
};

// Steps of one epoch and of the whole job for `train_count` items.
uint64_t StepsPerEpoch(const JobSpec& spec, int64_t train_count);

// Trains from step `start_step` (0, or a checkpoint's step when resuming) to the end. Batches
// are the training items in an order shuffled per epoch from the job's seed, so a resumed job
// sees the batches it would have seen.
Status Train(const JobSpec& spec, const Dataset& train, MoeModel* model, ExpertBackend* experts,
             uint64_t start_step, const TrainHooks& hooks);

// Runs `test` through the model (forward only), calls numbered from `step_base`.
Result<EvalResult> Evaluate(const JobSpec& spec, const Dataset& test, MoeModel* model,
                            ExpertBackend* experts, uint64_t step_base, const TrainHooks& hooks);

}  // namespace trustmoe::gate
