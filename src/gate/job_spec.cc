#include "gate/job_spec.h"

#include <bit>
#include <cmath>

#include "common/config.h"
#include "crypto/canonical.h"

namespace trustmoe::gate {
namespace {

constexpr std::string_view kSpecDomain = "trustmoe/gate/job-spec/v1";
constexpr size_t kNameBytesMax = 128;
constexpr size_t kCidBytesMax = 128;

Status OutOfRange(std::string_view field, std::string_view range) {
  return Status::InvalidArgument("job spec: " + std::string(field) + " must be " +
                                 std::string(range));
}

template <typename T>
Status InRange(std::string_view field, T value, T min, T max) {
  if (value < min || value > max) {
    return OutOfRange(field, std::to_string(min) + " .. " + std::to_string(max) + ", got " +
                                 std::to_string(value));
  }
  return Status::Ok();
}

// Reads `key` of `table` into `out` through `parse` (a name -> enum mapping), naming the
// accepted names when the value is not one.
template <typename E>
Status GetEnum(ConfigTable& table, std::string_view key, E* out,
               Result<E> (*parse)(std::string_view)) {
  if (!table.Has(key)) return Status::Ok();
  std::string text;
  TRUSTMOE_RETURN_IF_ERROR(table.Get(key, &text));
  auto parsed = parse(text);
  if (!parsed.ok()) return parsed.status().WithContext(table.Where(key));
  *out = *parsed;
  return Status::Ok();
}

Result<JobKind> ParseKind(std::string_view s) {
  if (s == "training") return JobKind::kTraining;
  if (s == "inference") return JobKind::kInference;
  return Status::InvalidArgument("kind '" + std::string(s) + "': use training or inference");
}
Result<VerifyMode> ParseVerify(std::string_view s) {
  if (s == "sync") return VerifyMode::kSync;
  if (s == "async") return VerifyMode::kAsync;
  if (s == "off") return VerifyMode::kOff;
  return Status::InvalidArgument("mode '" + std::string(s) + "': use sync, async or off");
}
Result<Optimizer> ParseOptimizer(std::string_view s) {
  if (s == "sgd") return Optimizer::kSgd;
  if (s == "adam") return Optimizer::kAdam;
  return Status::InvalidArgument("optimizer '" + std::string(s) + "': use sgd or adam");
}

// Every value check of Validate, with the TOML location when `table` is given.
Result<JobSpec> Read(ConfigTable root) {
  JobSpec spec;
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable job, root.Table("job"));
  TRUSTMOE_RETURN_IF_ERROR(job.Require("name", &spec.name));
  TRUSTMOE_RETURN_IF_ERROR(GetEnum(job, "kind", &spec.kind, &ParseKind));
  TRUSTMOE_RETURN_IF_ERROR(job.Get("dataset", &spec.dataset));
  TRUSTMOE_RETURN_IF_ERROR(job.Get("seed", &spec.seed));

  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable model, root.Table("model"));
  TRUSTMOE_RETURN_IF_ERROR(model.Get("experts", &spec.experts));
  TRUSTMOE_RETURN_IF_ERROR(model.Get("top_k", &spec.top_k));
  TRUSTMOE_RETURN_IF_ERROR(model.Get("d_model", &spec.d_model));
  TRUSTMOE_RETURN_IF_ERROR(model.Get("d_ff", &spec.d_ff));
  TRUSTMOE_RETURN_IF_ERROR(model.Get("arch", &spec.arch));
  TRUSTMOE_RETURN_IF_ERROR(model.Get("moe_layers", &spec.moe_layers));
  TRUSTMOE_RETURN_IF_ERROR(model.Get("load_balance", &spec.load_balance));
  TRUSTMOE_RETURN_IF_ERROR(model.Get("base_model", &spec.base_model));

  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable training, root.Table("training"));
  TRUSTMOE_RETURN_IF_ERROR(training.Get("epochs", &spec.epochs));
  TRUSTMOE_RETURN_IF_ERROR(training.Get("batch_size", &spec.batch_size));
  TRUSTMOE_RETURN_IF_ERROR(GetEnum(training, "optimizer", &spec.optimizer, &ParseOptimizer));
  TRUSTMOE_RETURN_IF_ERROR(training.Get("lr", &spec.lr));
  TRUSTMOE_RETURN_IF_ERROR(training.Get("momentum", &spec.momentum));
  TRUSTMOE_RETURN_IF_ERROR(training.Get("weight_decay", &spec.weight_decay));
  TRUSTMOE_RETURN_IF_ERROR(training.Get("train_limit", &spec.train_limit));
  TRUSTMOE_RETURN_IF_ERROR(training.Get("test_limit", &spec.test_limit));
  TRUSTMOE_RETURN_IF_ERROR(training.Get("checkpoint_every", &spec.checkpoint_every));

  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable verify, root.Table("verify"));
  TRUSTMOE_RETURN_IF_ERROR(GetEnum(verify, "mode", &spec.verify, &ParseVerify));
  TRUSTMOE_RETURN_IF_ERROR(verify.Get("replication", &spec.replication));
  TRUSTMOE_RETURN_IF_ERROR(verify.Get("k_min", &spec.k_min));
  TRUSTMOE_RETURN_IF_ERROR(root.CheckNoUnknownKeys());
  TRUSTMOE_RETURN_IF_ERROR(spec.Validate().WithContext(root.source()));
  return spec;
}

}  // namespace

std::string_view JobKindName(JobKind kind) {
  return kind == JobKind::kTraining ? "training" : "inference";
}

std::string_view VerifyModeName(VerifyMode mode) {
  switch (mode) {
    case VerifyMode::kSync:
      return "sync";
    case VerifyMode::kAsync:
      return "async";
    case VerifyMode::kOff:
      return "off";
  }
  return "unknown";
}

std::string_view OptimizerName(Optimizer opt) { return opt == Optimizer::kSgd ? "sgd" : "adam"; }

Status JobSpec::Validate() const {
  if (name.empty() || name.size() > kNameBytesMax ||
      name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") !=
          std::string::npos) {
    return OutOfRange("job.name", "1..128 of [A-Za-z0-9._-]");
  }
  if (dataset != "fashion-mnist") {
    return OutOfRange("job.dataset", "\"fashion-mnist\" (the one dataset of this release)");
  }
  TRUSTMOE_RETURN_IF_ERROR(InRange<uint32_t>("model.experts", experts, 1, 256));
  TRUSTMOE_RETURN_IF_ERROR(InRange<uint32_t>("model.top_k", top_k, 1, experts));
  TRUSTMOE_RETURN_IF_ERROR(InRange<uint32_t>("model.d_model", d_model, 1, 16384));
  TRUSTMOE_RETURN_IF_ERROR(InRange<uint32_t>("model.d_ff", d_ff, 1, 65536));
  if (arch != "swiglu" && arch != "gelu_mlp") return OutOfRange("model.arch", "swiglu or gelu_mlp");
  TRUSTMOE_RETURN_IF_ERROR(InRange<uint32_t>("model.moe_layers", moe_layers, 1, 8));
  if (!(load_balance >= 0 && load_balance <= 10)) return OutOfRange("model.load_balance", "0 .. 10");
  if (base_model.size() > kCidBytesMax) return OutOfRange("model.base_model", "a CID");
  if (kind == JobKind::kInference && base_model.empty()) {
    return OutOfRange("model.base_model", "set for an inference job (the model to run)");
  }
  TRUSTMOE_RETURN_IF_ERROR(InRange<uint32_t>("training.epochs", epochs, 1, 1000));
  TRUSTMOE_RETURN_IF_ERROR(InRange<uint32_t>("training.batch_size", batch_size, 1, 65536));
  if (!(lr > 0 && lr <= 10)) return OutOfRange("training.lr", "in (0, 10]");
  if (!(momentum >= 0 && momentum < 1)) return OutOfRange("training.momentum", "in [0, 1)");
  if (!(weight_decay >= 0 && weight_decay <= 1)) {
    return OutOfRange("training.weight_decay", "in [0, 1]");
  }
  TRUSTMOE_RETURN_IF_ERROR(
      InRange<uint32_t>("training.checkpoint_every", checkpoint_every, 1, 1000000));
  TRUSTMOE_RETURN_IF_ERROR(InRange<uint32_t>("verify.replication", replication, 1, 16));
  TRUSTMOE_RETURN_IF_ERROR(InRange<uint32_t>("verify.k_min", k_min, 1, top_k));
  return Status::Ok();
}

Bytes JobSpec::Canonical() const {
  crypto::CanonicalWriter w(kSpecDomain);
  w.Str(name).U8(static_cast<uint8_t>(kind)).Str(dataset).U64(seed);
  w.U32(experts).U32(top_k).U32(d_model).U32(d_ff).Str(arch).U32(moe_layers);
  w.U64(std::bit_cast<uint64_t>(load_balance)).Str(base_model);
  w.U32(epochs).U32(batch_size).U8(static_cast<uint8_t>(optimizer));
  w.U64(std::bit_cast<uint64_t>(lr))
      .U64(std::bit_cast<uint64_t>(momentum))
      .U64(std::bit_cast<uint64_t>(weight_decay));
  w.U32(train_limit).U32(test_limit).U32(checkpoint_every);
  w.U8(static_cast<uint8_t>(verify)).U32(replication).U32(k_min);
  return w.Take();
}

Result<JobSpec> ParseJobSpec(std::string_view text, std::string source_name) {
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable root, ConfigTable::Parse(text, std::move(source_name)));
  return Read(std::move(root));
}

Result<JobSpec> LoadJobSpec(const std::string& path) {
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable root, ConfigTable::LoadFile(path));
  return Read(std::move(root));
}

}  // namespace trustmoe::gate
