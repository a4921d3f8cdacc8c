// The libtorch side of ExpertRuntime.
#include "edge/runtime.h"

#include <condition_variable>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

#include "edge/expert_module.h"

#if defined(TRUSTMOE_TORCH_CUDA)
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace trustmoe::edge {
namespace {

// A host tensor viewed as a CPU torch tensor (no copy; `t` must outlive the result).
torch::Tensor View(const HostTensor& t) {
  return torch::from_blob(const_cast<uint8_t*>(t.data.data()), {t.rows, t.cols},
                          torch::TensorOptions().dtype(ToTorch(t.dtype)));
}

// `t` (2-D) copied to the host as `dtype`.
HostTensor ToHost(const torch::Tensor& t, DType dtype) {
  HostTensor out{dtype, t.size(0), t.dim() > 1 ? t.size(1) : 1, {}};
  out.data.resize(static_cast<size_t>(out.rows * out.cols) * DTypeBytes(dtype));
  if (!out.data.empty()) {
    // Straight into the result's bytes: one device-to-host copy, converting on the way.
    torch::from_blob(out.data.data(), {out.rows, out.cols},
                     torch::TensorOptions().dtype(ToTorch(dtype)))
        .copy_(t.detach().reshape({out.rows, out.cols}));
  }
  return out;
}

Status CheckInput(const HostTensor& x, int64_t d_model, std::string_view what) {
  if (x.rows < 1) return Status::InvalidArgument(std::string(what) + " has no rows");
  if (x.cols != d_model) {
    return Status::InvalidArgument(std::string(what) + " has width " + std::to_string(x.cols) +
                                   ", the expert's d_model is " + std::to_string(d_model));
  }
  if (x.data.size() != static_cast<uint64_t>(x.rows * x.cols) * DTypeBytes(x.dtype)) {
    return Status::InvalidArgument(std::string(what) + ": " + std::to_string(x.data.size()) +
                                   " bytes do not match its shape");
  }
  if (int64_t bad = FirstNonFinite(x.dtype, x.data); bad >= 0) {
    return Status::InvalidArgument(std::string(what) + " holds a NaN or infinity at row " +
                                   std::to_string(bad / x.cols) + ", column " +
                                   std::to_string(bad % x.cols));
  }
  return Status::Ok();
}

struct Pending {
  const HostTensor* x = nullptr;
  Result<HostTensor> out = Status::Internal("not run");
  bool done = false;
};

struct Entry {
  std::string key;
  ExpertWeights weights;
  uint64_t bytes = 0;
  bool training = false;  // never evicted
  std::list<std::string>::iterator lru;

  // Batching: callers queue; one of them runs the queue while the others wait.
  std::mutex batch_mu;
  std::condition_variable batch_cv;
  std::deque<Pending*> queue;
  bool running = false;

  // Runs and Backward read the weights shared; Step and Export take it exclusively.
  std::shared_mutex weights_mu;
  // Training state, under train_mu.
  std::mutex train_mu;
  std::map<std::string, torch::Tensor> grads, momentum, adam_m, adam_v;
  int64_t adam_steps = 0;
};

class TorchRuntime final : public ExpertRuntime {
 public:
  TorchRuntime(RuntimeOptions options, torch::Device device)
      : options_(std::move(options)), device_(device) {}

  const RuntimeOptions& options() const override { return options_; }

  std::string DeviceDescription() const override {
    if (device_.is_cpu()) return "cpu";
    std::string name = "cuda:" + std::to_string(device_.index());
#if defined(TRUSTMOE_TORCH_CUDA)
    try {
      name += std::string(" (") + at::cuda::getDeviceProperties(device_.index())->name + ")";
    } catch (const std::exception&) {
    }
#endif
    return name;
  }

  Status Load(const std::string& key, ByteSpan file) override {
    if (Holds(key)) return Status::Ok();
    TRUSTMOE_ASSIGN_OR_RETURN(SafetensorsFile parsed, ParseSafetensors(file));
    TRUSTMOE_ASSIGN_OR_RETURN(ExpertSpec spec, ValidateExpert(parsed));
    const uint64_t bytes = static_cast<uint64_t>(spec.d_model) * spec.d_ff *
                           (spec.arch == kArchGeluMlp ? 2 : 3) *
                           DTypeBytes(options_.compute_dtype);
    TRUSTMOE_RETURN_IF_ERROR(MakeRoom(bytes, key));
    torch::NoGradGuard no_grad;
    TRUSTMOE_ASSIGN_OR_RETURN(
        ExpertWeights weights,
        LoadExpertWeights(parsed, spec, device_, ToTorch(options_.compute_dtype)));
    auto entry = std::make_shared<Entry>();
    entry->key = key;
    entry->bytes = weights.bytes();
    entry->weights = std::move(weights);
    Insert(entry);
    return Status::Ok();
  }

  bool Holds(const std::string& key) const override {
    std::lock_guard lock(mu_);
    return entries_.count(key) != 0;
  }

  std::vector<std::string> Held() const override {
    std::lock_guard lock(mu_);
    return {lru_.begin(), lru_.end()};
  }

  Result<ExpertSpec> Spec(const std::string& key) const override {
    std::lock_guard lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return NotHeld(key);
    return it->second->weights.spec;
  }

  Status Unload(const std::string& key) override {
    std::lock_guard lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return NotHeld(key);
    RemoveLocked(it);
    return Status::Ok();
  }

  Result<HostTensor> Forward(const std::string& key, const HostTensor& x) override {
    TRUSTMOE_ASSIGN_OR_RETURN(std::shared_ptr<Entry> entry, Acquire(key));
    TRUSTMOE_RETURN_IF_ERROR(CheckInput(x, entry->weights.spec.d_model, "input"));
    Pending pending;
    pending.x = &x;
    std::unique_lock lock(entry->batch_mu);
    entry->queue.push_back(&pending);
    entry->batch_cv.notify_all();
    while (!pending.done) {
      if (entry->running) {
        entry->batch_cv.wait(lock);
        continue;
      }
      entry->running = true;
      if (options_.batch_wait_us > 0) {
        const auto deadline = std::chrono::steady_clock::now() +
                              std::chrono::microseconds(options_.batch_wait_us);
        auto queued_rows = [&] {
          int64_t total = 0;
          for (const Pending* p : entry->queue) total += p->x->rows;
          return total;
        };
        while (queued_rows() < options_.batch_rows_max &&
               entry->batch_cv.wait_until(lock, deadline) != std::cv_status::timeout) {
        }
      }
      std::vector<Pending*> batch;
      int64_t rows = 0;
      while (!entry->queue.empty() &&
             (batch.empty() || rows + entry->queue.front()->x->rows <= options_.batch_rows_max)) {
        batch.push_back(entry->queue.front());
        rows += entry->queue.front()->x->rows;
        entry->queue.pop_front();
      }
      lock.unlock();
      RunBatch(*entry, batch, rows);
      lock.lock();
      for (Pending* p : batch) p->done = true;
      entry->running = false;
      entry->batch_cv.notify_all();
    }
    return std::move(pending.out);
  }

  Result<BackwardResult> Backward(const std::string& key, const HostTensor& x,
                                  const HostTensor& grad_output, bool want_weight_grads,
                                  bool accumulate) override {
    TRUSTMOE_ASSIGN_OR_RETURN(std::shared_ptr<Entry> entry, Acquire(key));
    const int64_t d_model = entry->weights.spec.d_model;
    TRUSTMOE_RETURN_IF_ERROR(CheckInput(x, d_model, "input"));
    TRUSTMOE_RETURN_IF_ERROR(CheckInput(grad_output, d_model, "grad_output"));
    if (grad_output.rows != x.rows) {
      return Status::InvalidArgument("grad_output has " + std::to_string(grad_output.rows) +
                                     " rows, the input " + std::to_string(x.rows));
    }
    if (accumulate) {
      std::lock_guard lock(mu_);
      if (!entry->training) {
        return Status::FailedPrecondition("expert " + key +
                                          " is not a training copy: Clone it first");
      }
    }
    {
      std::lock_guard lock(mu_);
      ++stats_.backward_requests;
    }
    try {
      torch::AutoGradMode grad_mode(true);
      std::shared_lock weights_lock(entry->weights_mu);
      const ExpertWeights& w = entry->weights;
      torch::Tensor xin = View(x).to(device_, w.dtype).detach().requires_grad_(true);
      torch::Tensor gout = View(grad_output).to(device_, w.dtype);
      const bool need_weights = want_weight_grads || accumulate;
      ExpertWeights leaf = w;
      std::vector<std::string> names;
      std::vector<torch::Tensor> inputs{xin};
      if (need_weights) {
        for (auto& [name, tensor] : leaf.Parameters()) names.push_back(name);
        for (const std::string& name : names) {
          torch::Tensor& p = ParamRef(leaf, name);
          p = p.detach().requires_grad_(true);
          inputs.push_back(p);
        }
      }
      torch::Tensor y = ExpertForward(leaf, xin);
      std::vector<torch::Tensor> grads = torch::autograd::grad({y}, inputs, {gout});
      BackwardResult result;
      result.grad_input = ToHost(grads[0], x.dtype);
      if (need_weights) {
        torch::NoGradGuard no_grad;
        std::lock_guard train_lock(entry->train_mu);
        for (size_t i = 0; i < names.size(); ++i) {
          torch::Tensor g = grads[i + 1].to(torch::kFloat32);
          if (accumulate) {
            auto [it, inserted] = entry->grads.try_emplace(names[i], g.clone());
            if (!inserted) it->second.add_(g);
          }
          if (want_weight_grads) {
            torch::Tensor g2 = g.dim() == 1 ? g.unsqueeze(0) : g;
            result.weight_grads.emplace_back(names[i], ToHost(g2, DType::kF32));
          }
        }
      }
      return result;
    } catch (const std::exception& e) {
      return TorchErrorStatus(e, "backward of expert " + key);
    }
  }

  Status Clone(const std::string& from, const std::string& to) override {
    TRUSTMOE_ASSIGN_OR_RETURN(std::shared_ptr<Entry> source, Acquire(from));
    if (Holds(to)) return Status::AlreadyExists("expert " + to + " is held already");
    try {
      torch::NoGradGuard no_grad;
      ExpertWeights w = source->weights;
      w.dtype = torch::kFloat32;
      for (auto& [name, tensor] : source->weights.Parameters()) {
        ParamRef(w, name) = tensor.to(torch::kFloat32).clone().contiguous();
      }
      auto entry = std::make_shared<Entry>();
      entry->key = to;
      entry->training = true;
      // Weights, gradients and Adam's two moments.
      entry->bytes = w.bytes() * 4;
      entry->weights = std::move(w);
      TRUSTMOE_RETURN_IF_ERROR(MakeRoom(entry->bytes, to));
      Insert(entry);
      return Status::Ok();
    } catch (const std::exception& e) {
      return TorchErrorStatus(e, "cloning expert " + from);
    }
  }

  Status LoadTraining(const std::string& key, ByteSpan file) override {
    if (Holds(key)) return Status::AlreadyExists("expert " + key + " is held already");
    TRUSTMOE_ASSIGN_OR_RETURN(SafetensorsFile parsed, ParseSafetensors(file));
    TRUSTMOE_ASSIGN_OR_RETURN(ExpertSpec spec, ValidateExpert(parsed));
    torch::NoGradGuard no_grad;
    TRUSTMOE_ASSIGN_OR_RETURN(ExpertWeights weights,
                              LoadExpertWeights(parsed, spec, device_, torch::kFloat32));
    auto entry = std::make_shared<Entry>();
    entry->key = key;
    entry->training = true;
    entry->bytes = weights.bytes() * 4;  // weights, gradients and Adam's two moments
    entry->weights = std::move(weights);
    TRUSTMOE_RETURN_IF_ERROR(MakeRoom(entry->bytes, key));
    Insert(entry);
    return Status::Ok();
  }

  Status Step(const std::string& key, const OptimizerSpec& opt) override {
    TRUSTMOE_ASSIGN_OR_RETURN(std::shared_ptr<Entry> entry, Acquire(key));
    if (!(opt.lr > 0) || opt.momentum < 0 || opt.momentum >= 1 || opt.beta1 < 0 ||
        opt.beta1 >= 1 || opt.beta2 < 0 || opt.beta2 >= 1 || !(opt.eps > 0) ||
        opt.weight_decay < 0) {
      return Status::InvalidArgument(
          "optimizer: lr and eps must be > 0, momentum, beta1 and beta2 in [0, 1), "
          "weight_decay >= 0");
    }
    std::unique_lock weights_lock(entry->weights_mu);
    std::lock_guard lock(entry->train_mu);
    if (entry->grads.empty()) {
      return Status::FailedPrecondition("expert " + key +
                                        " has no accumulated gradients: run Backward first");
    }
    try {
      torch::NoGradGuard no_grad;
      if (opt.kind == OptimizerKind::kAdam) ++entry->adam_steps;
      for (auto& [name, param] : entry->weights.Parameters()) {
        torch::Tensor& p = ParamRef(entry->weights, name);
        torch::Tensor g = entry->grads.at(name);
        if (opt.weight_decay > 0) g = g.add(p, opt.weight_decay);
        if (opt.kind == OptimizerKind::kSgd) {
          if (opt.momentum > 0) {
            auto [it, inserted] = entry->momentum.try_emplace(name, g.clone());
            if (!inserted) it->second.mul_(opt.momentum).add_(g);
            g = it->second;
          }
          p.add_(g, -opt.lr);
        } else {
          auto [m, m_new] = entry->adam_m.try_emplace(name, torch::zeros_like(p));
          auto [v, v_new] = entry->adam_v.try_emplace(name, torch::zeros_like(p));
          m->second.mul_(opt.beta1).add_(g, 1 - opt.beta1);
          v->second.mul_(opt.beta2).addcmul_(g, g, 1 - opt.beta2);
          const double t = static_cast<double>(entry->adam_steps);
          const double bias1 = 1 - std::pow(opt.beta1, t);
          const double bias2 = 1 - std::pow(opt.beta2, t);
          torch::Tensor denom = (v->second / bias2).sqrt_().add_(opt.eps);
          p.addcdiv_(m->second, denom, -opt.lr / bias1);
        }
      }
      entry->grads.clear();
      return Status::Ok();
    } catch (const std::exception& e) {
      return TorchErrorStatus(e, "optimizer step of expert " + key);
    }
  }

  Result<Bytes> Export(const std::string& key, DType dtype) const override {
    std::shared_ptr<Entry> entry;
    {
      std::lock_guard lock(mu_);
      auto it = entries_.find(key);
      if (it == entries_.end()) return NotHeld(key);
      entry = it->second;
    }
    std::shared_lock weights_lock(entry->weights_mu);
    return ExportExpertFile(entry->weights, dtype);
  }

  Result<Bytes> ExportOptimizerState(const std::string& key) const override {
    std::shared_ptr<Entry> entry;
    {
      std::lock_guard lock(mu_);
      auto it = entries_.find(key);
      if (it == entries_.end()) return NotHeld(key);
      entry = it->second;
      if (!entry->training) {
        return Status::FailedPrecondition("expert " + key + " is not a training copy");
      }
    }
    std::shared_lock weights_lock(entry->weights_mu);
    std::lock_guard lock(entry->train_mu);
    try {
      std::vector<torch::Tensor> host;
      std::vector<TensorData> tensors;
      host.reserve(3 * entry->weights.Parameters().size());
      auto add = [&](const std::string& prefix,
                     const std::map<std::string, torch::Tensor>& state) {
        for (const auto& [name, tensor] : state) {
          host.push_back(tensor.detach().to(torch::kCPU, torch::kFloat32).contiguous());
          const torch::Tensor& t = host.back();
          tensors.push_back({prefix + name, DType::kF32,
                             std::vector<int64_t>(t.sizes().begin(), t.sizes().end()),
                             ByteSpan(static_cast<const uint8_t*>(t.data_ptr()),
                                      static_cast<size_t>(t.numel()) * t.element_size())});
        }
      };
      add("momentum.", entry->momentum);
      add("adam_m.", entry->adam_m);
      add("adam_v.", entry->adam_v);
      Metadata metadata{{"trustmoe.format", std::string(kOptimizerStateFormat)},
                        {"trustmoe.adam_steps", std::to_string(entry->adam_steps)}};
      if (tensors.empty()) {
        // safetensors needs no tensor, but an empty data section reads as a truncated file to
        // some tools: a one-element marker keeps the file well-formed everywhere.
        static const float kZero = 0;
        tensors.push_back({"empty", DType::kF32, {1},
                           ByteSpan(reinterpret_cast<const uint8_t*>(&kZero), sizeof(kZero))});
      }
      return WriteSafetensors(metadata, std::move(tensors));
    } catch (const std::exception& e) {
      return TorchErrorStatus(e, "exporting the optimizer state of " + key);
    }
  }

  Status ImportOptimizerState(const std::string& key, ByteSpan file) override {
    TRUSTMOE_ASSIGN_OR_RETURN(std::shared_ptr<Entry> entry, Acquire(key));
    {
      std::lock_guard lock(mu_);
      if (!entry->training) {
        return Status::FailedPrecondition("expert " + key + " is not a training copy");
      }
    }
    TRUSTMOE_ASSIGN_OR_RETURN(SafetensorsFile parsed, ParseSafetensors(file));
    auto format = parsed.metadata().find("trustmoe.format");
    if (format == parsed.metadata().end() || format->second != kOptimizerStateFormat) {
      return Status::InvalidArgument("optimizer state: trustmoe.format must be " +
                                     std::string(kOptimizerStateFormat));
    }
    auto steps_it = parsed.metadata().find("trustmoe.adam_steps");
    int64_t adam_steps = -1;
    if (steps_it != parsed.metadata().end() && !steps_it->second.empty() &&
        steps_it->second.size() <= 12 &&
        steps_it->second.find_first_not_of("0123456789") == std::string::npos) {
      adam_steps = std::stoll(steps_it->second);
    }
    if (adam_steps < 0) {
      return Status::InvalidArgument("optimizer state: trustmoe.adam_steps must be a decimal count");
    }
    std::unique_lock weights_lock(entry->weights_mu);
    std::map<std::string, torch::Tensor> params;
    for (auto& [name, tensor] : entry->weights.Parameters()) params[name] = tensor;
    std::map<std::string, torch::Tensor> momentum, adam_m, adam_v;
    try {
      for (const TensorInfo& info : parsed.tensors()) {
        if (info.name == "empty") continue;
        std::map<std::string, torch::Tensor>* target = nullptr;
        std::string param;
        for (auto [prefix, map] : {std::pair{std::string("momentum."), &momentum},
                                   std::pair{std::string("adam_m."), &adam_m},
                                   std::pair{std::string("adam_v."), &adam_v}}) {
          if (info.name.starts_with(prefix)) {
            target = map;
            param = info.name.substr(prefix.size());
          }
        }
        auto p = params.find(param);
        if (target == nullptr || p == params.end()) {
          return Status::InvalidArgument("optimizer state: unknown tensor '" + info.name + "'");
        }
        if (info.dtype != DType::kF32 ||
            std::vector<int64_t>(p->second.sizes().begin(), p->second.sizes().end()) != info.shape) {
          return Status::InvalidArgument("optimizer state: tensor '" + info.name +
                                         "' is not f32 of its parameter's shape");
        }
        ByteSpan data = parsed.Data(info);
        torch::Tensor host = torch::empty(info.shape, torch::kFloat32);
        std::memcpy(host.data_ptr(), data.data(), data.size());
        (*target)[param] = host.to(p->second.device());
      }
    } catch (const std::exception& e) {
      return TorchErrorStatus(e, "importing the optimizer state of " + key);
    }
    std::lock_guard lock(entry->train_mu);
    entry->momentum = std::move(momentum);
    entry->adam_m = std::move(adam_m);
    entry->adam_v = std::move(adam_v);
    entry->adam_steps = adam_steps;
    return Status::Ok();
  }

  RuntimeStats Stats() const override {
    std::lock_guard lock(mu_);
    RuntimeStats stats = stats_;
    stats.resident_bytes = resident_bytes_;
    stats.resident_experts = entries_.size();
    return stats;
  }

  DeviceMemory Memory() const override {
    DeviceMemory memory;
#if defined(TRUSTMOE_TORCH_CUDA)
    if (device_.is_cuda()) {
      try {
        auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device_.index());
        memory.available = true;
        memory.allocated = static_cast<uint64_t>(stats.allocated_bytes[0].current);
        memory.peak = static_cast<uint64_t>(stats.allocated_bytes[0].peak);
        memory.reserved = static_cast<uint64_t>(stats.reserved_bytes[0].current);
      } catch (const std::exception&) {
        memory.available = false;
      }
    }
#endif
    return memory;
  }

  void ResetPeakMemory() override {
#if defined(TRUSTMOE_TORCH_CUDA)
    if (device_.is_cuda()) {
      try {
        c10::cuda::CUDACachingAllocator::resetPeakStats(device_.index());
      } catch (const std::exception&) {
      }
    }
#endif
  }

 private:
  static Status NotHeld(const std::string& key) {
    return Status::NotFound("expert " + key + " is not loaded on this runtime");
  }

  static torch::Tensor& ParamRef(ExpertWeights& w, const std::string& name) {
    if (name == "w1") return w.w1;
    if (name == "w2") return w.w2;
    if (name == "w3") return w.w3;
    if (name == "b1") return w.b1;
    return w.b2;
  }

  // The entry for `key`, marked most recently used.
  Result<std::shared_ptr<Entry>> Acquire(const std::string& key) {
    std::lock_guard lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return NotHeld(key);
    lru_.splice(lru_.begin(), lru_, it->second->lru);
    return it->second;
  }

  // Evicts least recently used idle inference experts until `bytes` more fit.
  Status MakeRoom(uint64_t bytes, const std::string& key) {
    std::lock_guard lock(mu_);
    if (bytes > options_.device_bytes_max) {
      return Status::ResourceExhausted("expert " + key + " needs " + std::to_string(bytes) +
                                       " bytes on the device, above the budget of " +
                                       std::to_string(options_.device_bytes_max));
    }
    std::vector<std::string> victims;
    uint64_t freed = 0;
    for (auto it = lru_.rbegin();
         it != lru_.rend() && resident_bytes_ - freed + bytes > options_.device_bytes_max; ++it) {
      const Entry& entry = *entries_.at(*it);
      if (entry.training) continue;
      victims.push_back(*it);
      freed += entry.bytes;
    }
    if (resident_bytes_ - freed + bytes <= options_.device_bytes_max) {
      for (const std::string& victim : victims) {
        RemoveLocked(entries_.find(victim));
        ++stats_.evictions;
      }
    }
    if (resident_bytes_ + bytes > options_.device_bytes_max) {
      return Status::ResourceExhausted(
          "expert " + key + " does not fit in the device budget of " +
          std::to_string(options_.device_bytes_max) + " bytes: training copies hold " +
          std::to_string(resident_bytes_) + " bytes");
    }
    return Status::Ok();
  }

  void Insert(std::shared_ptr<Entry> entry) {
    std::lock_guard lock(mu_);
    if (entries_.count(entry->key) != 0) return;  // a concurrent Load won
    lru_.push_front(entry->key);
    entry->lru = lru_.begin();
    resident_bytes_ += entry->bytes;
    ++stats_.loads;
    entries_.emplace(entry->key, std::move(entry));
  }

  void RemoveLocked(std::unordered_map<std::string, std::shared_ptr<Entry>>::iterator it) {
    resident_bytes_ -= it->second->bytes;
    lru_.erase(it->second->lru);
    entries_.erase(it);  // runs in flight keep their shared_ptr until they finish
  }

  void RunBatch(Entry& entry, const std::vector<Pending*>& batch, int64_t rows) {
    {
      std::lock_guard lock(mu_);
      ++stats_.runs;
      stats_.forward_requests += batch.size();
      stats_.rows += static_cast<uint64_t>(rows);
    }
    try {
      torch::NoGradGuard no_grad;
      std::shared_lock weights_lock(entry.weights_mu);
      const ExpertWeights& w = entry.weights;
      torch::Tensor x;
      if (batch.size() == 1) {
        x = View(*batch[0]->x).to(device_, w.dtype);
      } else {
        std::vector<torch::Tensor> parts;
        parts.reserve(batch.size());
        for (Pending* p : batch) parts.push_back(View(*p->x).to(w.dtype));
        x = torch::cat(parts, 0).to(device_);
      }
      torch::Tensor y = ExpertForward(w, x);
      int64_t offset = 0;
      for (Pending* p : batch) {
        p->out = ToHost(y.narrow(0, offset, p->x->rows), p->x->dtype);
        offset += p->x->rows;
      }
    } catch (const std::exception& e) {
      Status status = TorchErrorStatus(e, "forward of expert " + entry.key);
      for (Pending* p : batch) p->out = status;
    }
  }

  const RuntimeOptions options_;
  const torch::Device device_;

  mutable std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<Entry>> entries_;
  std::list<std::string> lru_;  // most recently used first
  uint64_t resident_bytes_ = 0;
  RuntimeStats stats_;
};

}  // namespace

bool ExpertRuntime::CudaAvailable() { return torch::cuda::is_available(); }

int ExpertRuntime::CudaDeviceCount() {
  return torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0;
}

Result<std::unique_ptr<ExpertRuntime>> ExpertRuntime::Create(const RuntimeOptions& options) {
  if (options.batch_rows_max < 1) return Status::InvalidArgument("batch_rows_max must be >= 1");
  if (options.batch_wait_us < 0) return Status::InvalidArgument("batch_wait_us must be >= 0");
  if (options.device_bytes_max == 0) {
    return Status::InvalidArgument("device_bytes_max must be > 0");
  }
  TRUSTMOE_ASSIGN_OR_RETURN(torch::Device device, ParseDevice(options.device));
  if (device.is_cpu() && options.compute_dtype == DType::kF16) {
    return Status::InvalidArgument("f16 is not supported on the CPU: use f32 or bf16");
  }
  if (options.threads > 0) torch::set_num_threads(options.threads);
  return std::unique_ptr<ExpertRuntime>(new TorchRuntime(options, device));
}

}  // namespace trustmoe::edge
