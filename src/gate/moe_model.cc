// The gate's libtorch model (moe_model.h). The only translation unit of the gate that includes
// libtorch.
#include "gate/moe_model.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "edge/safetensors.h"

namespace trustmoe::gate {
namespace {

constexpr int64_t kPixels = 784;
constexpr int64_t kClasses = 10;
constexpr std::string_view kWeightsFormat = "trustmoe-gate-weights/v1";

Status TorchError(const std::exception& e, std::string_view what) {
  std::string message = e.what();
  if (auto nl = message.find('\n'); nl != std::string::npos) message.resize(nl);
  return Status::Internal(std::string(what) + ": " + message);
}

torch::Tensor ViewF32(const edge::HostTensor& t) {
  return torch::from_blob(const_cast<uint8_t*>(t.data.data()), {t.rows, t.cols},
                          torch::TensorOptions().dtype(torch::kFloat32));
}

edge::HostTensor ToHost(const torch::Tensor& t) {
  torch::Tensor c = t.detach().to(torch::kFloat32).contiguous();
  edge::HostTensor out;
  out.dtype = edge::DType::kF32;
  out.rows = c.size(0);
  out.cols = c.size(1);
  out.data.resize(static_cast<size_t>(c.numel()) * sizeof(float));
  std::memcpy(out.data.data(), c.data_ptr<float>(), out.data.size());
  return out;
}

struct Net : torch::nn::Module {
  Net(int64_t d_model, int64_t experts, uint32_t layers) {
    backbone = register_module("backbone", torch::nn::Linear(kPixels, d_model));
    for (uint32_t l = 0; l < layers; ++l) {
      gating.push_back(register_module(
          "gating" + std::to_string(l),
          torch::nn::Linear(torch::nn::LinearOptions(d_model, experts).bias(false))));
    }
    norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d_model})));
    head = register_module("head", torch::nn::Linear(d_model, kClasses));
  }
  torch::nn::Linear backbone{nullptr};
  std::vector<torch::nn::Linear> gating;
  torch::nn::LayerNorm norm{nullptr};
  torch::nn::Linear head{nullptr};
};

// What one layer of the current step keeps between its calls.
struct LayerState {
  torch::Tensor h;        // input: a leaf requiring grad in training (h0 itself for layer 0 in eval)
  torch::Tensor probs;    // [B, E] softmax of the gating logits
  torch::Tensor top_idx;  // [B, k] int64
  torch::Tensor top_w;    // [B, k] renormalised over the k
  std::vector<ExpertRows> routed;          // without inputs after Route returns them
  std::vector<torch::Tensor> slots;        // per routed expert: the top-k slot of each row
  std::vector<torch::Tensor> y;            // per routed expert: output leaf (undefined: none)
  torch::Tensor out;      // h_{l+1}
  torch::Tensor balance;  // the layer's load-balancing term
};

class TorchMoeModel final : public MoeModel {
 public:
  TorchMoeModel(const JobSpec& spec) : spec_(spec) {
    torch::manual_seed(spec.seed);
    net_ = std::make_shared<Net>(spec.d_model, spec.experts, spec.moe_layers);
    if (spec.optimizer == Optimizer::kAdam) {
      optimizer_ = std::make_unique<torch::optim::Adam>(
          net_->parameters(), torch::optim::AdamOptions(spec.lr).weight_decay(spec.weight_decay));
    } else {
      optimizer_ = std::make_unique<torch::optim::SGD>(
          net_->parameters(),
          torch::optim::SGDOptions(spec.lr).momentum(spec.momentum).weight_decay(spec.weight_decay));
    }
  }

  Status Begin(const std::vector<float>& images, const std::vector<uint8_t>& labels,
               bool train) override {
    const int64_t batch = static_cast<int64_t>(labels.size());
    if (batch == 0 || images.size() != static_cast<size_t>(batch * kPixels)) {
      return Status::InvalidArgument("a batch needs 784 pixels per label");
    }
    try {
      train_ = train;
      layers_.assign(spec_.moe_layers, LayerState{});
      dropped_ = torch::zeros({batch}, torch::kBool);
      fallback_ = torch::zeros({batch}, torch::kBool);
      labels_ = torch::empty({batch}, torch::kInt64);
      for (int64_t i = 0; i < batch; ++i) labels_[i] = static_cast<int64_t>(labels[i]);
      torch::Tensor x = torch::from_blob(const_cast<float*>(images.data()), {batch, kPixels},
                                         torch::kFloat32)
                            .clone();
      optimizer_->zero_grad();
      if (train) {
        h0_ = torch::relu(net_->backbone->forward(x));
      } else {
        torch::NoGradGuard no_grad;
        h0_ = torch::relu(net_->backbone->forward(x));
      }
      return Status::Ok();
    } catch (const std::exception& e) {
      return TorchError(e, "backbone");
    }
  }

  Result<std::vector<ExpertRows>> Route(uint32_t layer) override {
    if (layer >= layers_.size()) return Status::InvalidArgument("no such layer");
    try {
      std::optional<torch::NoGradGuard> no_grad;
      if (!train_) no_grad.emplace();
      LayerState& L = layers_[layer];
      torch::Tensor prev = layer == 0 ? h0_ : layers_[layer - 1].out;
      L.h = train_ ? prev.detach().requires_grad_(true) : prev;
      L.probs = torch::softmax(net_->gating[layer]->forward(L.h), 1);
      auto [w, idx] = torch::topk(L.probs, spec_.top_k, 1);
      L.top_idx = idx;
      L.top_w = w / w.sum(1, true);
      // Rows per expert, with the slot each row has the expert in.
      torch::Tensor idx_cpu = idx.contiguous();
      const int64_t batch = idx.size(0);
      const auto* p = idx_cpu.data_ptr<int64_t>();
      std::map<uint32_t, std::pair<std::vector<int64_t>, std::vector<int64_t>>> by_expert;
      for (int64_t r = 0; r < batch; ++r) {
        for (int64_t s = 0; s < spec_.top_k; ++s) {
          auto& entry = by_expert[static_cast<uint32_t>(p[r * spec_.top_k + s])];
          entry.first.push_back(r);
          entry.second.push_back(s);
        }
      }
      std::vector<ExpertRows> out;
      L.routed.clear();
      L.slots.clear();
      for (auto& [expert, rows_slots] : by_expert) {
        ExpertRows er;
        er.expert = expert;
        er.rows = rows_slots.first;
        torch::Tensor rows_t = torch::tensor(er.rows, torch::kInt64);
        er.input = ToHost(L.h.detach().index_select(0, rows_t));
        ExpertRows kept;
        kept.expert = expert;
        kept.rows = er.rows;
        L.routed.push_back(std::move(kept));
        L.slots.push_back(torch::tensor(rows_slots.second, torch::kInt64));
        out.push_back(std::move(er));
      }
      return out;
    } catch (const std::exception& e) {
      return TorchError(e, "routing");
    }
  }

  Status Combine(uint32_t layer,
                 const std::vector<std::optional<edge::HostTensor>>& outputs) override {
    if (layer >= layers_.size()) return Status::InvalidArgument("no such layer");
    LayerState& L = layers_[layer];
    if (outputs.size() != L.routed.size()) {
      return Status::InvalidArgument("Combine needs one output per routed expert");
    }
    try {
      std::optional<torch::NoGradGuard> no_grad;
      if (!train_) no_grad.emplace();
      const int64_t batch = L.h.size(0);
      // Which (row, slot) pairs answered.
      torch::Tensor answered = torch::zeros({batch, spec_.top_k}, torch::kFloat32);
      L.y.assign(L.routed.size(), torch::Tensor());
      for (size_t i = 0; i < L.routed.size(); ++i) {
        if (!outputs[i]) continue;
        const edge::HostTensor& o = *outputs[i];
        if (o.dtype != edge::DType::kF32 || o.rows != static_cast<int64_t>(L.routed[i].rows.size()) ||
            o.cols != spec_.d_model) {
          return Status::InvalidArgument("expert " + std::to_string(L.routed[i].expert) +
                                         " answered a tensor of the wrong shape");
        }
        torch::Tensor rows_t = torch::tensor(L.routed[i].rows, torch::kInt64);
        answered.index_put_({rows_t, L.slots[i]}, 1.0f);
        torch::Tensor y = ViewF32(o).clone();
        if (train_) y.requires_grad_(true);
        L.y[i] = y;
      }
      torch::Tensor count = answered.sum(1);
      torch::Tensor drop = count < static_cast<double>(spec_.k_min);
      dropped_ = dropped_.logical_or(drop);
      fallback_ = fallback_.logical_or(count < static_cast<double>(spec_.top_k));
      // Weights renormalised over the experts that answered; zero for dropped rows.
      torch::Tensor w = L.top_w * answered;
      torch::Tensor denom = w.sum(1, true).clamp_min(1e-12);
      w = w / denom * drop.logical_not().unsqueeze(1).to(torch::kFloat32);
      torch::Tensor mix = torch::zeros_like(L.h);
      for (size_t i = 0; i < L.routed.size(); ++i) {
        if (!L.y[i].defined()) continue;
        torch::Tensor rows_t = torch::tensor(L.routed[i].rows, torch::kInt64);
        torch::Tensor wi = w.index({rows_t, L.slots[i]}).unsqueeze(1);
        mix = mix.index_add(0, rows_t, wi * L.y[i]);
      }
      L.out = L.h + mix;
      // Switch Transformer balance: E * sum_e f_e * P_e, f_e the share of (row, slot)
      // assignments of expert e (no gradient), P_e its mean gating probability.
      torch::Tensor f = torch::zeros({static_cast<int64_t>(spec_.experts)}, torch::kFloat32);
      f.index_add_(0, L.top_idx.reshape({-1}),
                   torch::ones({L.top_idx.numel()}, torch::kFloat32));
      f = f / static_cast<double>(L.top_idx.numel());
      L.balance = static_cast<double>(spec_.experts) * (f * L.probs.mean(0)).sum();
      return Status::Ok();
    } catch (const std::exception& e) {
      return TorchError(e, "combining expert outputs");
    }
  }

  Result<StepStats> Finish() override {
    if (layers_.empty() || !layers_.back().out.defined()) {
      return Status::FailedPrecondition("Finish before every layer was combined");
    }
    try {
      std::optional<torch::NoGradGuard> no_grad;
      if (!train_) no_grad.emplace();
      torch::Tensor logits = net_->head->forward(net_->norm->forward(layers_.back().out));
      torch::Tensor keep = dropped_.logical_not();
      StepStats stats;
      stats.dropped_rows = dropped_.sum().item<int64_t>();
      stats.fallback_rows = fallback_.sum().item<int64_t>();
      torch::Tensor pred = logits.argmax(1);
      stats.predictions.resize(static_cast<size_t>(pred.size(0)));
      for (int64_t i = 0; i < pred.size(0); ++i) {
        stats.predictions[static_cast<size_t>(i)] = static_cast<uint8_t>(pred[i].item<int64_t>());
      }
      torch::Tensor balance = torch::zeros({}, torch::kFloat32);
      for (const LayerState& L : layers_) balance = balance + L.balance;
      stats.balance_loss = balance.item<double>();
      for (const LayerState& L : layers_) {
        torch::Tensor counts = torch::zeros({static_cast<int64_t>(spec_.experts)}, torch::kInt64);
        counts.index_add_(0, L.top_idx.reshape({-1}), torch::ones({L.top_idx.numel()}, torch::kInt64));
        for (int64_t e = 0; e < counts.size(0); ++e) stats.expert_rows.push_back(counts[e].item<int64_t>());
      }
      if (train_) {
        stats.rows = keep.sum().item<int64_t>();
        stats.correct = (pred.eq(labels_).logical_and(keep)).sum().item<int64_t>();
        if (stats.rows == 0) {
          stats.loss = 0;
          return stats;  // nothing to learn from; BackwardLayer gives no gradients
        }
        torch::Tensor ce = torch::nn::functional::cross_entropy(
            logits.index({keep}), labels_.index({keep}));
        torch::Tensor loss = ce + spec_.load_balance * balance;
        stats.loss = ce.item<double>();
        loss.backward();
        have_grads_ = true;
      } else {
        stats.rows = pred.size(0);
        stats.correct = pred.eq(labels_).sum().item<int64_t>();
        stats.loss = torch::nn::functional::cross_entropy(logits, labels_).item<double>();
      }
      return stats;
    } catch (const std::exception& e) {
      return TorchError(e, "loss");
    }
  }

  Result<std::vector<std::optional<edge::HostTensor>>> BackwardLayer(uint32_t layer) override {
    if (!train_ || layer >= layers_.size()) return Status::FailedPrecondition("not training");
    std::vector<std::optional<edge::HostTensor>> out(layers_[layer].routed.size());
    if (!have_grads_) return out;
    try {
      const LayerState& L = layers_[layer];
      for (size_t i = 0; i < L.routed.size(); ++i) {
        if (!L.y[i].defined()) continue;
        torch::Tensor g = L.y[i].grad();
        if (!g.defined()) g = torch::zeros_like(L.y[i]);
        out[i] = ToHost(g);
      }
      return out;
    } catch (const std::exception& e) {
      return TorchError(e, "expert gradients");
    }
  }

  Status SetGradInputs(uint32_t layer,
                       const std::vector<std::optional<edge::HostTensor>>& grad_inputs) override {
    if (!train_ || layer >= layers_.size()) return Status::FailedPrecondition("not training");
    LayerState& L = layers_[layer];
    if (grad_inputs.size() != L.routed.size()) {
      return Status::InvalidArgument("SetGradInputs needs one entry per routed expert");
    }
    if (!have_grads_) return Status::Ok();
    try {
      torch::Tensor g = L.h.grad().defined() ? L.h.grad().clone() : torch::zeros_like(L.h);
      for (size_t i = 0; i < L.routed.size(); ++i) {
        if (!grad_inputs[i]) continue;
        const edge::HostTensor& gi = *grad_inputs[i];
        if (gi.dtype != edge::DType::kF32 || gi.rows != static_cast<int64_t>(L.routed[i].rows.size()) ||
            gi.cols != spec_.d_model) {
          return Status::InvalidArgument("expert " + std::to_string(L.routed[i].expert) +
                                         " answered a gradient of the wrong shape");
        }
        torch::Tensor rows_t = torch::tensor(L.routed[i].rows, torch::kInt64);
        g.index_add_(0, rows_t, ViewF32(gi));
      }
      if (layer == 0) {
        grad_h0_ = g;
      } else {
        torch::autograd::backward({layers_[layer - 1].out}, {g});
      }
      return Status::Ok();
    } catch (const std::exception& e) {
      return TorchError(e, "back-propagating expert gradients");
    }
  }

  Status Step() override {
    if (!train_) return Status::FailedPrecondition("not training");
    if (!have_grads_) return Status::Ok();
    try {
      if (grad_h0_.defined()) torch::autograd::backward({h0_}, {grad_h0_});
      optimizer_->step();
      have_grads_ = false;
      grad_h0_ = torch::Tensor();
      return Status::Ok();
    } catch (const std::exception& e) {
      return TorchError(e, "optimizer step");
    }
  }

  Result<Bytes> ExportWeights() const override {
    try {
      std::vector<torch::Tensor> keep;
      std::vector<edge::TensorData> tensors;
      for (const auto& item : net_->named_parameters()) {
        torch::Tensor t = item.value().detach().to(torch::kFloat32).contiguous();
        keep.push_back(t);
        edge::TensorData d;
        d.name = item.key();
        d.dtype = edge::DType::kF32;
        d.shape = t.sizes().vec();
        d.data = ByteSpan(reinterpret_cast<const uint8_t*>(t.data_ptr<float>()),
                          static_cast<size_t>(t.numel()) * sizeof(float));
        tensors.push_back(std::move(d));
      }
      edge::Metadata meta{{"trustmoe.format", std::string(kWeightsFormat)}};
      return edge::WriteSafetensors(meta, std::move(tensors));
    } catch (const std::exception& e) {
      return TorchError(e, "exporting the gate's weights");
    }
  }

  Status ImportWeights(ByteSpan file) override {
    TRUSTMOE_ASSIGN_OR_RETURN(edge::SafetensorsFile parsed, edge::ParseSafetensors(file));
    auto fmt = parsed.metadata().find("trustmoe.format");
    if (fmt == parsed.metadata().end() || fmt->second != kWeightsFormat) {
      return Status::InvalidArgument("not a gate weights file (trustmoe.format is not " +
                                     std::string(kWeightsFormat) + ")");
    }
    try {
      torch::NoGradGuard no_grad;
      auto params = net_->named_parameters();
      if (parsed.tensors().size() != params.size()) {
        return Status::InvalidArgument("the weights file holds " +
                                       std::to_string(parsed.tensors().size()) +
                                       " tensors, the model has " + std::to_string(params.size()));
      }
      for (auto& item : params) {
        const edge::TensorInfo* t = parsed.Find(item.key());
        if (t == nullptr) return Status::InvalidArgument("the weights file lacks " + item.key());
        if (t->dtype != edge::DType::kF32 || t->shape != item.value().sizes().vec()) {
          return Status::InvalidArgument(item.key() + " has the wrong dtype or shape");
        }
        ByteSpan data = parsed.Data(*t);
        torch::Tensor src = torch::from_blob(const_cast<uint8_t*>(data.data()), item.value().sizes(),
                                             torch::kFloat32);
        item.value().copy_(src);
      }
      return Status::Ok();
    } catch (const std::exception& e) {
      return TorchError(e, "importing the gate's weights");
    }
  }

 private:
  JobSpec spec_;
  std::shared_ptr<Net> net_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  bool train_ = false;
  bool have_grads_ = false;
  torch::Tensor h0_, grad_h0_, labels_, dropped_, fallback_;
  std::vector<LayerState> layers_;
};

}  // namespace

Result<std::unique_ptr<MoeModel>> MoeModel::Create(const JobSpec& spec, int threads) {
  TRUSTMOE_RETURN_IF_ERROR(spec.Validate());
  try {
    if (threads > 0) torch::set_num_threads(threads);
    return std::unique_ptr<MoeModel>(new TorchMoeModel(spec));
  } catch (const std::exception& e) {
    return TorchError(e, "building the model");
  }
}

}  // namespace trustmoe::gate
