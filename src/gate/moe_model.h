// The part of the Mixture-of-Experts model that stays on the gate (docs/gate.md, "Model"): the
// backbone, one gating network per MoE layer and the head, on libtorch (CPU). The experts are
// not here: each MoE layer hands the gate's caller the rows routed to each expert, and takes the
// experts' outputs back (from edges, or from a local runtime for the centralised reference).
//
//   h0      = relu(W_b x + b_b)                       x: 784 pixels in [0, 1]
//   layer l: p = softmax(W_g,l h_l); top-k of p, renormalised over the k (and over the experts
//            that answered, when some did not)
//            h_{l+1} = h_l + sum_k p_k E_k(h_l)      (residual)
//   logits  = W_h layernorm(h_L) + b_h
//   loss    = cross-entropy + load_balance * sum_l E * sum_e f_e P_e   (Switch Transformer)
//
// One step is a sequence of calls: Begin, then per layer Route and Combine, then Finish; in
// training, then per layer from the last BackwardLayer and SetGradInputs, then Step. No libtorch
// in this header. Not thread-safe: one step at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "common/status.h"
#include "edge/numeric.h"
#include "gate/job_spec.h"

namespace trustmoe::gate {

// The rows of one batch routed to one expert of a layer.
struct ExpertRows {
  uint32_t expert = 0;         // 0..experts-1 within the layer
  std::vector<int64_t> rows;   // batch rows, ascending
  edge::HostTensor input;      // f32 [rows.size(), d_model]: h_l of those rows
};

struct StepStats {
  double loss = 0;          // cross-entropy over the rows that count
  double balance_loss = 0;  // the load-balancing term (before its weight)
  int64_t rows = 0;         // rows that count (enough experts answered)
  int64_t correct = 0;
  int64_t fallback_rows = 0;  // rows combined from fewer than top_k experts
  int64_t dropped_rows = 0;   // rows with fewer than k_min experts: left out of loss and accuracy
  std::vector<uint8_t> predictions;  // argmax per batch row (dropped rows included)
  std::vector<int64_t> expert_rows;  // rows routed to each expert, layer-major
};

class MoeModel {
 public:
  // A model for `spec` (d_model, experts, top_k, moe_layers, load_balance, k_min, optimizer,
  // lr, momentum, weight_decay, seed: the same seed gives the same initial weights).
  // `threads` > 0 sets libtorch's intra-op threads for the process.
  static Result<std::unique_ptr<MoeModel>> Create(const JobSpec& spec, int threads);
  virtual ~MoeModel() = default;

  // Starts a step on `batch` images (f32 [batch, 784]) and their labels (0..9). `train` keeps
  // what the backward pass needs.
  virtual Status Begin(const std::vector<float>& images, const std::vector<uint8_t>& labels,
                       bool train) = 0;
  // The routing of layer `layer` (called in order 0..moe_layers-1): one entry per expert with
  // at least one row.
  virtual Result<std::vector<ExpertRows>> Route(uint32_t layer) = 0;
  // The outputs for Route's entries, in the same order: f32 [rows, d_model], or nullopt for an
  // expert that did not answer (its weight is renormalised away; a row left with fewer than
  // k_min experts is dropped).
  virtual Status Combine(uint32_t layer, const std::vector<std::optional<edge::HostTensor>>& outputs) = 0;
  // After the last layer: loss and accuracy; in training also runs the backward pass through
  // the head.
  virtual Result<StepStats> Finish() = 0;

  // Training, after Finish, for layer from moe_layers-1 down to 0: dL/dy for each expert that
  // answered in Route's order (nullopt for one that did not).
  virtual Result<std::vector<std::optional<edge::HostTensor>>> BackwardLayer(uint32_t layer) = 0;
  // The experts' grad_input for those rows (nullopt: not available; it contributes nothing).
  virtual Status SetGradInputs(uint32_t layer,
                               const std::vector<std::optional<edge::HostTensor>>& grad_inputs) = 0;
  // After SetGradInputs of layer 0: back-propagates into the backbone and applies the optimizer
  // to the gate's parameters.
  virtual Status Step() = 0;

  // The gate's parameters as a safetensors file (f32, names "backbone.weight", ...), and back.
  virtual Result<Bytes> ExportWeights() const = 0;
  virtual Status ImportWeights(ByteSpan file) = 0;
};

}  // namespace trustmoe::gate
