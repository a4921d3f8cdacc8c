#include "edge/expert_module.h"

#include "common/check.h"

#include <charconv>
#include <cstring>

namespace trustmoe::edge {

std::vector<std::pair<std::string, torch::Tensor>> ExpertWeights::Parameters() const {
  if (spec.arch == kArchGeluMlp) return {{"w1", w1}, {"b1", b1}, {"w2", w2}, {"b2", b2}};
  return {{"w1", w1}, {"w3", w3}, {"w2", w2}};
}

uint64_t ExpertWeights::bytes() const {
  uint64_t total = 0;
  for (const auto& [name, tensor] : Parameters()) {
    total += static_cast<uint64_t>(tensor.numel()) * tensor.element_size();
  }
  return total;
}

torch::ScalarType ToTorch(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return torch::kFloat32;
    case DType::kF16:
      return torch::kFloat16;
    case DType::kBF16:
      return torch::kBFloat16;
  }
  return torch::kFloat32;
}

Result<DType> FromTorch(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat32:
      return DType::kF32;
    case torch::kFloat16:
      return DType::kF16;
    case torch::kBFloat16:
      return DType::kBF16;
    default:
      return Status::InvalidArgument(std::string("unsupported tensor dtype ") +
                                     c10::toString(dtype));
  }
}

Result<torch::Device> ParseDevice(const std::string& device) {
  if (device == "cpu") return torch::Device(torch::kCPU);
  int index = 0;
  if (device != "cuda") {
    constexpr std::string_view kPrefix = "cuda:";
    if (device.size() <= kPrefix.size() || device.compare(0, kPrefix.size(), kPrefix) != 0) {
      return Status::InvalidArgument("device '" + device + "': expected cpu, cuda or cuda:N");
    }
    const char* begin = device.data() + kPrefix.size();
    const char* end = device.data() + device.size();
    auto [ptr, ec] = std::from_chars(begin, end, index);
    if (ec != std::errc() || ptr != end || index < 0 || index > 63) {
      return Status::InvalidArgument("device '" + device + "': expected cpu, cuda or cuda:N");
    }
  }
  if (!torch::cuda::is_available()) {
    return Status::FailedPrecondition("device '" + device +
                                      "': CUDA is not available (this libtorch has no CUDA or "
                                      "the machine has no GPU); use device = \"cpu\"");
  }
  const int count = static_cast<int>(torch::cuda::device_count());
  if (index >= count) {
    return Status::FailedPrecondition("device '" + device + "': this machine has " +
                                      std::to_string(count) + " CUDA device(s)");
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

Status TorchErrorStatus(const std::exception& e, std::string_view what) {
  std::string message = e.what();
  if (const size_t eol = message.find('\n'); eol != std::string::npos) message.resize(eol);
  if (message.find("out of memory") != std::string::npos) {
    return Status::ResourceExhausted(std::string(what) + ": device out of memory: " + message);
  }
  return Status::Internal(std::string(what) + ": " + message);
}

namespace {

// A tensor of `info` copied out of the file (the file's bytes need not be aligned).
torch::Tensor CopyOut(const SafetensorsFile& file, const TensorInfo& info) {
  torch::Tensor t = torch::empty(info.shape, torch::TensorOptions().dtype(ToTorch(info.dtype)));
  ByteSpan data = file.Data(info);
  if (!data.empty()) std::memcpy(t.data_ptr(), data.data(), data.size());
  return t;
}

}  // namespace

Result<ExpertWeights> LoadExpertWeights(const SafetensorsFile& file, const ExpertSpec& spec,
                                        torch::Device device, torch::ScalarType dtype) {
  try {
    ExpertWeights w;
    w.spec = spec;
    w.device = device;
    w.dtype = dtype;
    auto load = [&](const char* name) {
      const TensorInfo* info = file.Find(name);
      TRUSTMOE_CHECK(info != nullptr);  // ValidateExpert ran
      return CopyOut(file, *info).to(device, dtype).contiguous();
    };
    w.w2 = load("w2");
    if (spec.arch == kArchGeluMlp) {
      w.w1 = load("w1");
      w.b1 = load("b1");
      w.b2 = load("b2");
    } else {
      w.w1 = load("w1");
      w.w3 = load("w3");
    }
    return w;
  } catch (const std::exception& e) {
    return TorchErrorStatus(e, "loading expert weights");
  }
}

torch::Tensor ExpertForward(const ExpertWeights& w, const torch::Tensor& x) {
  if (w.spec.arch == kArchGeluMlp) {
    torch::Tensor h = torch::linear(x, w.w1, w.b1);
    return torch::linear(torch::gelu(h), w.w2, w.b2);
  }
  if (!torch::GradMode::is_enabled()) {
    // Three GEMMs into contiguous outputs and the gate in place. Measured on an H100
    // (docs/results/expert_bench.md): faster than one stacked w1|w3 GEMM with a strided gate,
    // than a TorchScript-fused gate, and than splitting d_ff into L2-sized column blocks.
    torch::Tensor a = torch::linear(x, w.w1);
    torch::Tensor b = torch::linear(x, w.w3);
    torch::silu_(a);
    a.mul_(b);
    return torch::linear(a, w.w2);
  }
  return torch::linear(torch::silu(torch::linear(x, w.w1)) * torch::linear(x, w.w3), w.w2);
}

Result<Bytes> ExportExpertFile(const ExpertWeights& weights, DType dtype) {
  try {
    std::vector<torch::Tensor> host;
    std::vector<TensorData> tensors;
    for (const auto& [name, tensor] : weights.Parameters()) {
      host.push_back(tensor.detach().to(torch::kCPU, ToTorch(dtype)).contiguous());
      const torch::Tensor& t = host.back();
      tensors.push_back({name, dtype, std::vector<int64_t>(t.sizes().begin(), t.sizes().end()),
                         ByteSpan(static_cast<const uint8_t*>(t.data_ptr()),
                                  static_cast<size_t>(t.numel()) * t.element_size())});
    }
    ExpertSpec spec = weights.spec;
    spec.dtype = dtype;
    return WriteSafetensors(ExpertMetadata(spec), std::move(tensors));
  } catch (const std::exception& e) {
    return TorchErrorStatus(e, "exporting expert weights");
  }
}

}  // namespace trustmoe::edge
