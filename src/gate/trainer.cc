#include "gate/trainer.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <numeric>
#include <random>

#include "common/log.h"

namespace trustmoe::gate {
namespace {

constexpr size_t kProgressWindow = 20;
constexpr int64_t kPixels = kFashionMnistRows * kFashionMnistCols;
constexpr int64_t kEvalBatch = 256;
// Runs of one step before its rejected results fail the job (each run drops the edges at fault).
constexpr int kStepAttempts = 5;

void FillBatch(const Dataset& data, const std::vector<int64_t>& order, size_t begin, size_t end,
               std::vector<float>* images, std::vector<uint8_t>* labels) {
  images->resize((end - begin) * kPixels);
  labels->resize(end - begin);
  for (size_t i = begin; i < end; ++i) {
    const int64_t item = order[i];
    const uint8_t* px = data.pixels.data() + item * kPixels;
    float* out = images->data() + (i - begin) * kPixels;
    for (int64_t p = 0; p < kPixels; ++p) out[p] = static_cast<float>(px[p]) / 255.0f;
    (*labels)[i - begin] = data.labels[static_cast<size_t>(item)];
  }
}

std::vector<int64_t> EpochOrder(const JobSpec& spec, int64_t count, uint32_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(count));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(spec.seed * 1000003ull + epoch);
  std::shuffle(order.begin(), order.end(), rng);
  return order;
}

// One batch through every layer; the experts' answers combined. Fills `routed` per layer.
Result<StepStats> ForwardBatch(const JobSpec& spec, MoeModel* model, ExpertBackend* experts,
                               uint64_t step, const std::vector<float>& images,
                               const std::vector<uint8_t>& labels, bool train,
                               std::vector<std::vector<ExpertRows>>* routed) {
  TRUSTMOE_RETURN_IF_ERROR(model->Begin(images, labels, train));
  routed->assign(spec.moe_layers, {});
  for (uint32_t l = 0; l < spec.moe_layers; ++l) {
    TRUSTMOE_ASSIGN_OR_RETURN((*routed)[l], model->Route(l));
    auto outputs = experts->Forward(l, step, (*routed)[l]);
    TRUSTMOE_RETURN_IF_ERROR(model->Combine(l, outputs));
  }
  return model->Finish();
}

std::vector<double> Shares(const std::vector<int64_t>& counts, uint32_t experts) {
  std::vector<double> out(counts.size(), 0.0);
  // Shares within each layer.
  for (size_t base = 0; base + experts <= counts.size(); base += experts) {
    int64_t total = 0;
    for (uint32_t e = 0; e < experts; ++e) total += counts[base + e];
    for (uint32_t e = 0; e < experts; ++e) {
      out[base + e] = total > 0 ? static_cast<double>(counts[base + e]) / total : 0.0;
    }
  }
  return out;
}

}  // namespace

uint64_t StepsPerEpoch(const JobSpec& spec, int64_t train_count) {
  return (static_cast<uint64_t>(train_count) + spec.batch_size - 1) / spec.batch_size;
}

Status Train(const JobSpec& spec, const Dataset& train, MoeModel* model, ExpertBackend* experts,
             uint64_t start_step, const TrainHooks& hooks) {
  const uint64_t per_epoch = StepsPerEpoch(spec, train.count);
  const uint64_t total = per_epoch * spec.epochs;
  TrainProgress progress;
  progress.steps_total = total;
  progress.step = start_step;
  std::deque<StepStats> window;
  std::vector<float> images;
  std::vector<uint8_t> labels;
  std::vector<std::vector<ExpertRows>> routed;
  std::vector<int64_t> order;
  uint32_t order_epoch = 0;
  const auto started = std::chrono::steady_clock::now();
  uint64_t steps_here = 0;
  for (uint64_t step = start_step; step < total; ++step) {
    if (hooks.cancelled && hooks.cancelled()) return Status::Cancelled("the job was cancelled");
    const uint32_t epoch = static_cast<uint32_t>(step / per_epoch) + 1;
    if (epoch != order_epoch) {
      order = EpochOrder(spec, train.count, epoch);
      order_epoch = epoch;
    }
    const size_t begin = static_cast<size_t>((step % per_epoch) * spec.batch_size);
    const size_t end = std::min(order.size(), begin + spec.batch_size);
    FillBatch(train, order, begin, end, &images, &labels);

    // With verify = sync the step's results are settled (every verdict ACCEPTED) before
    // anything of it is applied; a step with a rejected result runs again, re-routed.
    StepStats stats;
    for (int attempt = 1;; ++attempt) {
      TRUSTMOE_ASSIGN_OR_RETURN(stats, ForwardBatch(spec, model, experts, step, images, labels,
                                                    /*train=*/true, &routed));
      for (uint32_t l = spec.moe_layers; l-- > 0;) {
        TRUSTMOE_ASSIGN_OR_RETURN(auto grad_outputs, model->BackwardLayer(l));
        auto grad_inputs = experts->Backward(l, step, routed[l], grad_outputs);
        TRUSTMOE_RETURN_IF_ERROR(model->SetGradInputs(l, grad_inputs));
      }
      Status settled = experts->Settle();
      if (settled.ok()) break;
      if (settled.code() != StatusCode::kAborted || attempt == kStepAttempts) {
        return settled.WithContext("step " + std::to_string(step + 1));
      }
      TM_WARN("step {}: {}; running it again", step + 1, settled.message());
    }
    TRUSTMOE_RETURN_IF_ERROR(model->Step());
    TRUSTMOE_RETURN_IF_ERROR(experts->Update(step));

    ++steps_here;
    progress.step = step + 1;
    progress.epoch = epoch;
    progress.fallback_rows += stats.fallback_rows;
    progress.dropped_rows += stats.dropped_rows;
    window.push_back(std::move(stats));
    if (window.size() > kProgressWindow) window.pop_front();
    double loss = 0;
    int64_t rows = 0, correct = 0;
    std::vector<int64_t> load;
    for (const StepStats& s : window) {
      loss += s.loss * static_cast<double>(s.rows);
      rows += s.rows;
      correct += s.correct;
      if (load.size() < s.expert_rows.size()) load.resize(s.expert_rows.size(), 0);
      for (size_t i = 0; i < s.expert_rows.size(); ++i) load[i] += s.expert_rows[i];
    }
    progress.loss = rows > 0 ? loss / static_cast<double>(rows) : 0;
    progress.train_accuracy = rows > 0 ? static_cast<double>(correct) / rows : 0;
    progress.expert_load = Shares(load, spec.experts);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    progress.samples_per_second =
        seconds > 0 ? static_cast<double>(steps_here * spec.batch_size) / seconds : 0;
    progress.eta_seconds =
        seconds > 0 ? seconds / static_cast<double>(steps_here) * static_cast<double>(total - step - 1)
                    : -1;
    if (hooks.progress) hooks.progress(progress);
    if (hooks.checkpoint &&
        ((step + 1) % spec.checkpoint_every == 0 || step + 1 == total)) {
      TRUSTMOE_RETURN_IF_ERROR(hooks.checkpoint(progress));
    }
  }
  return Status::Ok();
}

Result<EvalResult> Evaluate(const JobSpec& spec, const Dataset& test, MoeModel* model,
                            ExpertBackend* experts, uint64_t step_base, const TrainHooks& hooks) {
  EvalResult result;
  std::vector<int64_t> order(static_cast<size_t>(test.count));
  std::iota(order.begin(), order.end(), 0);
  std::vector<float> images;
  std::vector<uint8_t> labels;
  std::vector<std::vector<ExpertRows>> routed;
  std::vector<int64_t> load;
  double loss = 0;
  uint64_t step = step_base;
  for (size_t begin = 0; begin < order.size(); begin += kEvalBatch, ++step) {
    if (hooks.cancelled && hooks.cancelled()) return Status::Cancelled("the job was cancelled");
    const size_t end = std::min(order.size(), begin + kEvalBatch);
    FillBatch(test, order, begin, end, &images, &labels);
    StepStats stats;
    for (int attempt = 1;; ++attempt) {
      TRUSTMOE_ASSIGN_OR_RETURN(stats, ForwardBatch(spec, model, experts, step, images, labels,
                                                    /*train=*/false, &routed));
      Status settled = experts->Settle();
      if (settled.ok()) break;
      if (settled.code() != StatusCode::kAborted || attempt == kStepAttempts) {
        return settled.WithContext("evaluation batch " + std::to_string(step - step_base + 1));
      }
      TM_WARN("evaluation batch {}: {}; running it again", step - step_base + 1, settled.message());
    }
    result.rows += stats.rows;
    result.correct += stats.correct;
    loss += stats.loss * static_cast<double>(stats.rows);
    result.fallback_rows += stats.fallback_rows;
    result.dropped_rows += stats.dropped_rows;
    result.predictions.insert(result.predictions.end(), stats.predictions.begin(),
                              stats.predictions.end());
    if (load.size() < stats.expert_rows.size()) load.resize(stats.expert_rows.size(), 0);
    for (size_t i = 0; i < stats.expert_rows.size(); ++i) load[i] += stats.expert_rows[i];
  }
  result.accuracy = result.rows > 0 ? static_cast<double>(result.correct) / result.rows : 0;
  result.loss = result.rows > 0 ? loss / static_cast<double>(result.rows) : 0;
  result.expert_load = Shares(load, spec.experts);
  double max_share = 0;
  for (double s : result.expert_load) max_share = std::max(max_share, s);
  result.load_imbalance = max_share * spec.experts;
  return result;
}

}  // namespace trustmoe::gate
