#include "edge/expert_format.h"

#include <charconv>
#include <map>
#include <vector>

namespace trustmoe::edge {

namespace {

constexpr std::string_view kKeyPrefix = "trustmoe.";
constexpr std::string_view kKeyFormat = "trustmoe.format";
constexpr std::string_view kKeyArch = "trustmoe.arch";
constexpr std::string_view kKeyDModel = "trustmoe.d_model";
constexpr std::string_view kKeyDff = "trustmoe.d_ff";
constexpr std::string_view kKeyDtype = "trustmoe.dtype";

Status ExpertError(std::string_view problem) {
  return Status::InvalidArgument("expert: " + std::string(problem));
}

Result<std::string> Required(const Metadata& metadata, std::string_view key) {
  auto it = metadata.find(std::string(key));
  if (it == metadata.end()) return ExpertError("metadata lacks " + std::string(key));
  return it->second;
}

// A canonical decimal (no sign, no leading zero, no spaces) in 1..kExpertDimMax.
Result<int64_t> ParseDim(const Metadata& metadata, std::string_view key) {
  TRUSTMOE_ASSIGN_OR_RETURN(std::string text, Required(metadata, key));
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  bool canonical =
      !text.empty() && text[0] != '0' && ec == std::errc() && end == text.data() + text.size();
  if (!canonical || value < 1 || value > kExpertDimMax) {
    return ExpertError(std::string(key) + " must be an integer in 1.." +
                       std::to_string(kExpertDimMax) + ", got \"" + text.substr(0, 32) + "\"");
  }
  return value;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

Status CheckTensors(const SafetensorsFile& file, const ExpertSpec& spec) {
  const int64_t m = spec.d_model;
  const int64_t f = spec.d_ff;
  std::map<std::string, std::vector<int64_t>> expected;
  if (spec.arch == kArchGeluMlp) {
    expected = {{"w1", {f, m}}, {"b1", {f}}, {"w2", {m, f}}, {"b2", {m}}};
  } else {
    expected = {{"w1", {f, m}}, {"w3", {f, m}}, {"w2", {m, f}}};
  }
  for (const TensorInfo& t : file.tensors()) {
    if (!expected.contains(t.name)) {
      return ExpertError("unexpected tensor \"" + t.name.substr(0, 64) + "\" for " + spec.arch);
    }
  }
  for (const auto& [name, shape] : expected) {
    const TensorInfo* t = file.Find(name);
    if (t == nullptr) return ExpertError("missing tensor \"" + name + "\" for " + spec.arch);
    if (t->shape != shape) {
      return ExpertError("tensor \"" + name + "\" has shape " + ShapeString(t->shape) + ", " +
                         spec.arch + " needs " + ShapeString(shape));
    }
    if (t->dtype != spec.dtype) {
      return ExpertError("tensor \"" + name + "\" is " + std::string(DTypeName(t->dtype)) +
                         " but trustmoe.dtype is " + std::string(DTypeName(spec.dtype)));
    }
  }
  return Status::Ok();
}

}  // namespace

Metadata ExpertMetadata(const ExpertSpec& spec) {
  return {{std::string(kKeyFormat), std::string(kExpertFormat)},
          {std::string(kKeyArch), spec.arch},
          {std::string(kKeyDModel), std::to_string(spec.d_model)},
          {std::string(kKeyDff), std::to_string(spec.d_ff)},
          {std::string(kKeyDtype), std::string(DTypeName(spec.dtype))}};
}

Result<ExpertSpec> ValidateExpert(const SafetensorsFile& file) {
  const Metadata& metadata = file.metadata();
  for (const auto& [key, unused] : metadata) {
    if (key.starts_with(kKeyPrefix) && key != kKeyFormat && key != kKeyArch && key != kKeyDModel &&
        key != kKeyDff && key != kKeyDtype) {
      return ExpertError("unknown metadata key \"" + key.substr(0, 64) + "\"");
    }
  }
  TRUSTMOE_ASSIGN_OR_RETURN(std::string format, Required(metadata, kKeyFormat));
  if (format != kExpertFormat) {
    return ExpertError("trustmoe.format is \"" + format.substr(0, 64) + "\", expected " +
                       std::string(kExpertFormat));
  }
  ExpertSpec spec;
  TRUSTMOE_ASSIGN_OR_RETURN(spec.arch, Required(metadata, kKeyArch));
  if (spec.arch != kArchGeluMlp && spec.arch != kArchSwiglu) {
    return ExpertError("unknown arch \"" + spec.arch.substr(0, 64) + "\" (gelu_mlp or swiglu)");
  }
  TRUSTMOE_ASSIGN_OR_RETURN(spec.d_model, ParseDim(metadata, kKeyDModel));
  TRUSTMOE_ASSIGN_OR_RETURN(spec.d_ff, ParseDim(metadata, kKeyDff));
  TRUSTMOE_ASSIGN_OR_RETURN(std::string dtype, Required(metadata, kKeyDtype));
  Result<DType> parsed = ParseDType(dtype);
  if (!parsed.ok()) return ExpertError("trustmoe.dtype: " + parsed.status().message());
  spec.dtype = *parsed;
  TRUSTMOE_RETURN_IF_ERROR(CheckTensors(file, spec));
  return spec;
}

Result<ActivationsSpec> ValidateActivations(const SafetensorsFile& file, int64_t d_model,
                                            int64_t rows_max) {
  auto format = file.metadata().find(std::string(kKeyFormat));
  if (format != file.metadata().end() && format->second != kActivationsFormat) {
    return Status::InvalidArgument("activations: trustmoe.format is \"" +
                                   format->second.substr(0, 64) + "\", expected " +
                                   std::string(kActivationsFormat));
  }
  const TensorInfo* x = file.Find("x");
  if (x == nullptr || file.tensors().size() != 1) {
    return Status::InvalidArgument(
        "activations: the file must hold exactly one tensor \"x\", it holds " +
        std::to_string(file.tensors().size()));
  }
  if (x->shape.size() != 2 || x->shape[1] != d_model) {
    return Status::InvalidArgument("activations: x has shape " + ShapeString(x->shape) +
                                   ", expected [rows, " + std::to_string(d_model) + "]");
  }
  if (x->shape[0] < 1 || x->shape[0] > rows_max) {
    return Status::InvalidArgument("activations: " + std::to_string(x->shape[0]) +
                                   " rows, expected 1.." + std::to_string(rows_max));
  }
  return ActivationsSpec{x->shape[0], x->dtype};
}

}  // namespace trustmoe::edge
