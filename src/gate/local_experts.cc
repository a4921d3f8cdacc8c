// The centralised reference: a job's experts in this process (experts.h).
#include <mutex>

#include "crypto/canonical.h"
#include "crypto/cid.h"
#include "edge/runtime.h"
#include "gate/experts.h"

namespace trustmoe::gate {

Result<Bytes> InitialExpertFile(const JobSpec& spec, uint32_t index) {
  edge::ExpertSpec es;
  es.arch = spec.arch;
  es.d_model = spec.d_model;
  es.d_ff = spec.d_ff;
  es.dtype = edge::DType::kF32;
  crypto::CanonicalWriter w("trustmoe/gate/expert-seed/v1");
  w.U64(spec.seed).U32(index);
  const crypto::Digest d = w.Hash();
  uint64_t seed = 0;
  for (int i = 0; i < 8; ++i) seed = (seed << 8) | d[static_cast<size_t>(i)];
  return edge::NewExpertFile(es, seed);
}

namespace {

edge::OptimizerSpec OptimizerOf(const JobSpec& spec) {
  edge::OptimizerSpec opt;
  opt.kind = spec.optimizer == Optimizer::kAdam ? edge::OptimizerKind::kAdam
                                                 : edge::OptimizerKind::kSgd;
  opt.lr = spec.lr;
  opt.momentum = spec.momentum;
  opt.weight_decay = spec.weight_decay;
  return opt;
}

class LocalExperts final : public ExpertBackend {
 public:
  LocalExperts(JobSpec spec, std::unique_ptr<edge::ExpertRuntime> runtime, size_t count)
      : spec_(std::move(spec)), runtime_(std::move(runtime)), dirty_(count, false) {}

  static std::string Key(uint32_t index) { return "expert-" + std::to_string(index); }

  std::vector<std::optional<edge::HostTensor>> Forward(uint32_t layer, uint64_t,
                                                       const std::vector<ExpertRows>& routed) override {
    std::vector<std::optional<edge::HostTensor>> out(routed.size());
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < routed.size(); ++i) {
      auto y = runtime_->Forward(Key(layer * spec_.experts + routed[i].expert), routed[i].input);
      if (y.ok()) {
        out[i] = std::move(y).value();
        ++stats_.calls;
      } else {
        ++stats_.unanswered;
      }
    }
    return out;
  }

  std::vector<std::optional<edge::HostTensor>> Backward(
      uint32_t layer, uint64_t, const std::vector<ExpertRows>& routed,
      const std::vector<std::optional<edge::HostTensor>>& grad_outputs) override {
    std::vector<std::optional<edge::HostTensor>> out(routed.size());
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < routed.size(); ++i) {
      if (!grad_outputs[i]) continue;
      const uint32_t index = layer * spec_.experts + routed[i].expert;
      auto r = runtime_->Backward(Key(index), routed[i].input, *grad_outputs[i], false, true);
      if (r.ok()) {
        out[i] = std::move(r->grad_input);
        dirty_[index] = true;
        ++stats_.calls;
      } else {
        ++stats_.unanswered;
      }
    }
    return out;
  }

  Status Update(uint64_t) override {
    std::lock_guard lock(mu_);
    for (uint32_t i = 0; i < dirty_.size(); ++i) {
      if (!dirty_[i]) continue;
      TRUSTMOE_RETURN_IF_ERROR(runtime_->Step(Key(i), OptimizerOf(spec_)));
      dirty_[i] = false;
      ++stats_.updates;
    }
    return Status::Ok();
  }

  std::vector<std::string> ExpertCids() const override {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (uint32_t i = 0; i < dirty_.size(); ++i) {
      auto file = runtime_->Export(Key(i), edge::DType::kF32);
      out.push_back(file.ok() ? crypto::ComputeCid(*file).ToString() : "");
    }
    return out;
  }

  ExpertCallStats Stats() const override {
    std::lock_guard lock(mu_);
    return stats_;
  }

 private:
  const JobSpec spec_;
  std::unique_ptr<edge::ExpertRuntime> runtime_;
  mutable std::mutex mu_;
  std::vector<bool> dirty_;
  ExpertCallStats stats_;
};

}  // namespace

Result<std::unique_ptr<ExpertBackend>> MakeLocalExperts(const JobSpec& spec,
                                                        std::vector<Bytes> expert_files) {
  const uint32_t count = spec.experts * spec.moe_layers;
  if (!expert_files.empty() && expert_files.size() != count) {
    return Status::InvalidArgument("the model has " + std::to_string(count) + " experts, got " +
                                   std::to_string(expert_files.size()) + " files");
  }
  edge::RuntimeOptions options;
  options.device = "cpu";
  TRUSTMOE_ASSIGN_OR_RETURN(std::unique_ptr<edge::ExpertRuntime> runtime,
                            edge::ExpertRuntime::Create(options));
  for (uint32_t i = 0; i < count; ++i) {
    Bytes file;
    if (expert_files.empty()) {
      TRUSTMOE_ASSIGN_OR_RETURN(file, InitialExpertFile(spec, i));
    } else {
      file = std::move(expert_files[i]);
    }
    const std::string key = "expert-" + std::to_string(i);
    TRUSTMOE_RETURN_IF_ERROR(runtime->Load(key + "/file", file));
    TRUSTMOE_RETURN_IF_ERROR(runtime->Clone(key + "/file", key));
    TRUSTMOE_RETURN_IF_ERROR(runtime->Unload(key + "/file"));
  }
  return std::unique_ptr<ExpertBackend>(new LocalExperts(spec, std::move(runtime), count));
}

}  // namespace trustmoe::gate
