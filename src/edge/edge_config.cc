#include "edge/edge_config.h"

#include <filesystem>

#include "common/config.h"

namespace trustmoe::edge {

namespace {

constexpr int64_t kHourMs = 3600 * 1000;

using net::AddressUse;

Status ReadTopLevel(ConfigTable& root, EdgeConfig* c) {
  TRUSTMOE_RETURN_IF_ERROR(root.Require("identity_key", &c->identity_key));
  TRUSTMOE_RETURN_IF_ERROR(root.Require("data_dir", &c->data_dir));
  TRUSTMOE_RETURN_IF_ERROR(root.Require("genesis", &c->genesis));
  for (const char* key : {"identity_key", "data_dir", "genesis"}) {
    std::string value;
    TRUSTMOE_RETURN_IF_ERROR(root.Get(key, &value));
    if (value.empty()) return Status::InvalidArgument(ConfigAt(root, "", key) + " must not be empty");
  }
  TRUSTMOE_RETURN_IF_ERROR(root.Get("port_file", &c->port_file));
  TRUSTMOE_RETURN_IF_ERROR(
      GetBounded<int64_t>(root, "", "drain_timeout_ms", 0, 600000, &c->drain_timeout_ms));
  TRUSTMOE_RETURN_IF_ERROR(root.Get("listen", &c->listen));
  TRUSTMOE_RETURN_IF_ERROR(net::CheckConfigAddress(root, "", "listen", c->listen, AddressUse::kBind));
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable http, root.Table("http"));
  TRUSTMOE_RETURN_IF_ERROR(http.Get("listen", &c->http_listen));
  return net::CheckConfigAddress(http, "http", "listen", c->http_listen, AddressUse::kBind);
}

Status ReadStoreAndChain(ConfigTable& root, EdgeConfig* c) {
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable store, root.Table("store"));
  TRUSTMOE_RETURN_IF_ERROR(store.Require("endpoints", &c->store_endpoints));
  if (c->store_endpoints.empty()) {
    return Status::InvalidArgument(ConfigAt(store, "store", "endpoints") +
                                   " must name at least one trustmoe-store \"host:port\"");
  }
  for (const std::string& endpoint : c->store_endpoints) {
    TRUSTMOE_RETURN_IF_ERROR(
        net::CheckConfigAddress(store, "store", "endpoints", endpoint, AddressUse::kDial));
  }
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable chain, root.Table("chain"));
  TRUSTMOE_RETURN_IF_ERROR(chain.Get("validators", &c->chain_validators));
  for (const std::string& endpoint : c->chain_validators) {
    TRUSTMOE_RETURN_IF_ERROR(
        net::CheckConfigAddress(chain, "chain", "validators", endpoint, AddressUse::kDial));
  }
  TRUSTMOE_RETURN_IF_ERROR(GetBounded<int64_t>(chain, "chain", "registration_check_ms", 100,
                                               kHourMs, &c->registration_check_ms));
  return GetBounded<int64_t>(chain, "chain", "submit_timeout_ms", 1, kHourMs,
                             &c->submit_timeout_ms);
}

Status ReadRuntime(ConfigTable& root, EdgeConfig* c) {
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable runtime, root.Table("runtime"));
  TRUSTMOE_RETURN_IF_ERROR(runtime.Get("device", &c->device));
  auto device = ParseDevice(c->device);
  if (!device.ok()) return device.status().WithContext(ConfigAt(runtime, "runtime", "device"));
  c->device = *device;
  // Resolved against the device once the whole file is read (CheckCombinations).
  c->dtype = "auto";
  TRUSTMOE_RETURN_IF_ERROR(runtime.Get("dtype", &c->dtype));
  TRUSTMOE_RETURN_IF_ERROR(GetBounded<uint64_t>(runtime, "runtime", "gpu_memory_bytes_max",
                                                1ull << 20, 16ull << 40, &c->gpu_memory_bytes_max));
  TRUSTMOE_RETURN_IF_ERROR(
      GetBounded<uint32_t>(runtime, "runtime", "batch_rows_max", 1, 1u << 20, &c->batch_rows_max));
  return GetBounded<int64_t>(runtime, "runtime", "batch_wait_us", 0, 100000, &c->batch_wait_us);
}

Status ReadLimits(ConfigTable& root, EdgeConfig* c) {
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable limits, root.Table("limits"));
  TRUSTMOE_RETURN_IF_ERROR(GetBounded<uint32_t>(limits, "limits", "rows_per_request_max", 1,
                                                1u << 20, &c->rows_per_request_max));
  TRUSTMOE_RETURN_IF_ERROR(GetBounded<uint32_t>(limits, "limits", "concurrent_requests_max", 1,
                                                65536, &c->concurrent_requests_max));
  TRUSTMOE_RETURN_IF_ERROR(GetBounded<uint64_t>(limits, "limits", "tensor_bytes_max", 1ull << 10,
                                                4ull << 30, &c->tensor_bytes_max));

  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable cache, root.Table("cache"));
  TRUSTMOE_RETURN_IF_ERROR(cache.Get("dir", &c->cache_dir));
  TRUSTMOE_RETURN_IF_ERROR(GetBounded<uint64_t>(cache, "cache", "bytes_max", 1ull << 20, 1ull << 50,
                                                &c->cache_bytes_max));

  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable outbox, root.Table("outbox"));
  TRUSTMOE_RETURN_IF_ERROR(
      GetBounded<int64_t>(outbox, "outbox", "retry_min_ms", 1, kHourMs, &c->outbox_retry_min_ms));
  TRUSTMOE_RETURN_IF_ERROR(
      GetBounded<int64_t>(outbox, "outbox", "retry_max_ms", 1, kHourMs, &c->outbox_retry_max_ms));
  return GetBounded<uint32_t>(outbox, "outbox", "entries_max", 1, 1u << 30, &c->outbox_entries_max);
}

// Checks that involve more than one key. They run after CheckNoUnknownKeys, so a misspelt key
// is reported as such rather than as the combination its default made.
Status CheckCombinations(ConfigTable& root, EdgeConfig* c) {
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable runtime, root.Table("runtime"));
  auto dtype = ResolveDtype(c->dtype, c->device);
  if (!dtype.ok()) return dtype.status().WithContext(ConfigAt(runtime, "runtime", "dtype"));
  c->dtype = *dtype;

  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable outbox, root.Table("outbox"));
  if (c->outbox_retry_min_ms > c->outbox_retry_max_ms) {
    return Status::InvalidArgument(ConfigAt(outbox, "outbox", "retry_min_ms") +
                                   " is above 'outbox.retry_max_ms'");
  }

  const net::TlsMode mode = c->transport.mode;
  TRUSTMOE_RETURN_IF_ERROR(
      net::CheckLoopbackIfPlaintext(root, "", "listen", c->listen, mode, AddressUse::kBind));
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable store, root.Table("store"));
  for (const std::string& endpoint : c->store_endpoints) {
    TRUSTMOE_RETURN_IF_ERROR(
        net::CheckLoopbackIfPlaintext(store, "store", "endpoints", endpoint, mode, AddressUse::kDial));
  }
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable chain, root.Table("chain"));
  for (const std::string& endpoint : c->chain_validators) {
    TRUSTMOE_RETURN_IF_ERROR(
        net::CheckLoopbackIfPlaintext(chain, "chain", "validators", endpoint, mode, AddressUse::kDial));
  }
  return Status::Ok();
}

Result<EdgeConfig> Read(ConfigTable root) {
  EdgeConfig config;
  TRUSTMOE_RETURN_IF_ERROR(ReadTopLevel(root, &config));
  TRUSTMOE_RETURN_IF_ERROR(ReadLogSection(root, &config.log));
  TRUSTMOE_RETURN_IF_ERROR(ReadStoreAndChain(root, &config));
  TRUSTMOE_RETURN_IF_ERROR(ReadRuntime(root, &config));
  TRUSTMOE_RETURN_IF_ERROR(ReadLimits(root, &config));
  {
    TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable attack, root.Table("attack"));
    TRUSTMOE_RETURN_IF_ERROR(attack.Get("mode", &config.attack.mode));
    TRUSTMOE_RETURN_IF_ERROR(attack.Get("kinds", &config.attack.kinds));
    TRUSTMOE_RETURN_IF_ERROR(attack.Get("honest_calls", &config.attack.honest_calls));
    TRUSTMOE_RETURN_IF_ERROR(attack.Get("fraction", &config.attack.fraction));
    TRUSTMOE_RETURN_IF_ERROR(attack.Get("seed", &config.attack.seed));
    if (Status s = config.attack.Validate(); !s.ok()) {
      return s.WithContext(attack.Where("mode"));
    }
  }
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable tls, root.Table("tls"));
  TRUSTMOE_RETURN_IF_ERROR(net::ParseTransportConfig(tls, &config.transport));
  TRUSTMOE_RETURN_IF_ERROR(root.CheckNoUnknownKeys());
  TRUSTMOE_RETURN_IF_ERROR(CheckCombinations(root, &config));
  if (config.cache_dir.empty()) {
    config.cache_dir = (std::filesystem::path(config.data_dir) / "cache").string();
  }
  return config;
}

}  // namespace

Result<std::string> ParseDevice(std::string_view device) {
  if (device == "cpu") return std::string("cpu");
  if (device == "cuda") return std::string("cuda:0");
  constexpr std::string_view kCuda = "cuda:";
  const auto bad = [&] {
    return Status::InvalidArgument("device must be \"cpu\", \"cuda\" or \"cuda:N\" with N in 0.." +
                                   std::to_string(kCudaDevicesMax - 1) + ", got \"" +
                                   std::string(device) + "\"");
  };
  if (!device.starts_with(kCuda)) return bad();
  const std::string_view digits = device.substr(kCuda.size());
  if (digits.empty() || digits.size() > 2) return bad();
  int index = 0;
  for (char digit : digits) {
    if (digit < '0' || digit > '9') return bad();
    index = index * 10 + (digit - '0');
  }
  if (index >= kCudaDevicesMax) return bad();
  return "cuda:" + std::to_string(index);
}

Result<std::string> ResolveDtype(std::string_view dtype, std::string_view device) {
  const bool cuda = device.starts_with("cuda");
  if (dtype == "auto") return std::string(cuda ? "bf16" : "f32");
  if (dtype == "f32" || dtype == "bf16") return std::string(dtype);
  if (dtype == "f16") {
    if (cuda) return std::string(dtype);
    return Status::InvalidArgument("dtype f16 is not supported on cpu: use f32 or bf16");
  }
  return Status::InvalidArgument("dtype must be \"auto\", \"f32\", \"bf16\" or \"f16\", got \"" +
                                 std::string(dtype) + "\"");
}

Result<EdgeConfig> LoadEdgeConfig(const std::string& path) {
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable root, ConfigTable::LoadFile(path));
  return Read(std::move(root));
}

Result<EdgeConfig> ParseEdgeConfig(std::string_view text, std::string source_name) {
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable root, ConfigTable::Parse(text, std::move(source_name)));
  return Read(std::move(root));
}

}  // namespace trustmoe::edge
