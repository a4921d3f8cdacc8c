#include "chain/validator/validator_config.h"

#include "common/config.h"

namespace trustmoe::validator {

namespace {

// InvalidArgument "file:line: [section] key must be ..." unless min <= value <= max.
template <typename T>
Status GetBounded(ConfigTable& table, std::string_view key, T min, T max, T* out) {
  TRUSTMOE_RETURN_IF_ERROR(table.Get(key, out));
  if (*out < min || *out > max) {
    return Status::InvalidArgument(table.Where(key) + ": '" + std::string(key) +
                                   "' must be between " + std::to_string(min) + " and " +
                                   std::to_string(max) + ", got " + std::to_string(*out));
  }
  return Status::Ok();
}

Status ReadAddresses(ConfigTable& root, ValidatorConfig* config) {
  TRUSTMOE_RETURN_IF_ERROR(root.Get("listen", &config->listen));
  std::string host;
  int port = 0;
  TRUSTMOE_RETURN_IF_ERROR(
      net::SplitHostPort(config->listen, &host, &port).WithContext(root.Where("listen")));
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable http, root.Table("http"));
  TRUSTMOE_RETURN_IF_ERROR(http.Get("listen", &config->http_listen));
  TRUSTMOE_RETURN_IF_ERROR(
      net::SplitHostPort(config->http_listen, &host, &port).WithContext(http.Where("listen")));
  return Status::Ok();
}

constexpr int64_t kHourMs = 3600 * 1000;

Status ReadLimits(ConfigTable& root, ValidatorConfig* c) {
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable submit, root.Table("submit"));
  TRUSTMOE_RETURN_IF_ERROR(
      GetBounded<int64_t>(submit, "timeout_ms", 1, kHourMs, &c->submit_timeout_ms));
  TRUSTMOE_RETURN_IF_ERROR(
      GetBounded<int64_t>(submit, "timeout_max_ms", 1, kHourMs, &c->submit_timeout_max_ms));
  if (c->submit_timeout_ms > c->submit_timeout_max_ms) {
    return Status::InvalidArgument(submit.Where("timeout_ms") +
                                   ": [submit] timeout_ms is above timeout_max_ms");
  }
  TRUSTMOE_RETURN_IF_ERROR(
      GetBounded<uint32_t>(submit, "waiters_max", 1, 1u << 24, &c->submit_waiters_max));

  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable node, root.Table("node"));
  TRUSTMOE_RETURN_IF_ERROR(
      GetBounded<uint32_t>(node, "event_queue_max", 16, 1u << 24, &c->event_queue_max));
  TRUSTMOE_RETURN_IF_ERROR(GetBounded<uint64_t>(node, "event_queue_bytes_max", 1 << 20, 64ull << 30,
                                                &c->event_queue_bytes_max));
  TRUSTMOE_RETURN_IF_ERROR(
      GetBounded<uint32_t>(node, "step_events_max", 1, 1u << 20, &c->step_events_max));

  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable peers, root.Table("peers"));
  TRUSTMOE_RETURN_IF_ERROR(
      GetBounded<uint32_t>(peers, "queue_max", 16, 1u << 24, &c->peer_queue_max));
  TRUSTMOE_RETURN_IF_ERROR(GetBounded<uint64_t>(peers, "queue_bytes_max", 1 << 20, 64ull << 30,
                                                &c->peer_queue_bytes_max));
  TRUSTMOE_RETURN_IF_ERROR(
      GetBounded<int64_t>(peers, "reconnect_min_ms", 1, 60000, &c->peer_reconnect_min_ms));
  TRUSTMOE_RETURN_IF_ERROR(
      GetBounded<int64_t>(peers, "reconnect_max_ms", 1, 600000, &c->peer_reconnect_max_ms));
  TRUSTMOE_RETURN_IF_ERROR(
      GetBounded<uint32_t>(peers, "streams_max", 1, 65536, &c->peer_streams_max));
  if (c->peer_reconnect_min_ms > c->peer_reconnect_max_ms) {
    return Status::InvalidArgument(peers.Where("reconnect_min_ms") +
                                   ": [peers] reconnect_min_ms is above reconnect_max_ms");
  }

  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable pool, root.Table("pool"));
  TRUSTMOE_RETURN_IF_ERROR(GetBounded<uint32_t>(pool, "txs_max", 1, 1u << 24, &c->pool_txs_max));
  TRUSTMOE_RETURN_IF_ERROR(
      GetBounded<uint64_t>(pool, "bytes_max", 1 << 20, 64ull << 30, &c->pool_bytes_max));
  TRUSTMOE_RETURN_IF_ERROR(
      GetBounded<int64_t>(pool, "pending_max_ms", 1000, 24 * kHourMs, &c->tx_pending_max_ms));

  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable watch, root.Table("watch"));
  TRUSTMOE_RETURN_IF_ERROR(
      GetBounded<uint32_t>(watch, "streams_max", 1, 1u << 16, &c->watch_streams_max));
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable query, root.Table("query"));
  TRUSTMOE_RETURN_IF_ERROR(
      GetBounded<uint32_t>(query, "list_limit_max", 1, 100000, &c->list_limit_max));
  TRUSTMOE_RETURN_IF_ERROR(
      GetBounded<uint32_t>(query, "scan_limit_max", 1, 100000, &c->scan_limit_max));
  return Status::Ok();
}

Status ReadVerify(ConfigTable& root, ValidatorConfig* c) {
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable v, root.Table("verify"));
  TRUSTMOE_RETURN_IF_ERROR(v.Get("enabled", &c->verify_enabled));
  TRUSTMOE_RETURN_IF_ERROR(v.Get("store", &c->verify_store_endpoints));
  for (const std::string& endpoint : c->verify_store_endpoints) {
    std::string host;
    int port = 0;
    TRUSTMOE_RETURN_IF_ERROR(net::SplitHostPort(endpoint, &host, &port).WithContext(v.Where("store")));
    if (port == 0) {
      return Status::InvalidArgument(v.Where("store") + ": [verify] store " + endpoint +
                                     " needs a port");
    }
  }
  TRUSTMOE_RETURN_IF_ERROR(GetBounded<uint32_t>(v, "threads", 1, 256, &c->verify_threads));
  TRUSTMOE_RETURN_IF_ERROR(
      GetBounded<uint32_t>(v, "torch_threads", 0, 1024, &c->verify_torch_threads));
  TRUSTMOE_RETURN_IF_ERROR(GetBounded<uint64_t>(v, "memory_bytes_max", 16ull << 20, 1ull << 40,
                                                &c->verify_memory_bytes_max));
  TRUSTMOE_RETURN_IF_ERROR(GetBounded<uint64_t>(v, "tensor_bytes_max", 1 << 16, 16ull << 30,
                                                &c->verify_tensor_bytes_max));
  TRUSTMOE_RETURN_IF_ERROR(GetBounded<uint64_t>(v, "expert_bytes_max", 1 << 16, 1ull << 40,
                                                &c->verify_expert_bytes_max));
  TRUSTMOE_RETURN_IF_ERROR(
      GetBounded<int64_t>(v, "resubmit_ms", 100, kHourMs, &c->verify_resubmit_ms));
  if (c->transport.mode == net::TlsMode::kPlaintext) {
    for (const std::string& endpoint : c->verify_store_endpoints) {
      if (!net::IsLoopbackAddress(endpoint)) {
        return Status::InvalidArgument(v.Where("store") + ": plaintext gRPC to non-loopback " +
                                       endpoint + ": set [tls] mode = \"tls\" or \"mtls\"");
      }
    }
  }
  return Status::Ok();
}

Result<ValidatorConfig> Read(ConfigTable root) {
  ValidatorConfig config;
  TRUSTMOE_RETURN_IF_ERROR(root.Require("data_dir", &config.data_dir));
  TRUSTMOE_RETURN_IF_ERROR(root.Require("identity_key", &config.identity_key));
  TRUSTMOE_RETURN_IF_ERROR(root.Require("genesis", &config.genesis));
  for (const char* key : {"data_dir", "identity_key", "genesis"}) {
    std::string value;
    TRUSTMOE_RETURN_IF_ERROR(root.Get(key, &value));
    if (value.empty()) {
      return Status::InvalidArgument(root.Where(key) + ": '" + key + "' must not be empty");
    }
  }
  TRUSTMOE_RETURN_IF_ERROR(root.Get("port_file", &config.port_file));
  TRUSTMOE_RETURN_IF_ERROR(
      GetBounded<int64_t>(root, "drain_timeout_ms", 0, 600000, &config.drain_timeout_ms));
  TRUSTMOE_RETURN_IF_ERROR(ReadAddresses(root, &config));
  TRUSTMOE_RETURN_IF_ERROR(ReadLogSection(root, &config.log));
  TRUSTMOE_RETURN_IF_ERROR(ReadLimits(root, &config));
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable tls, root.Table("tls"));
  TRUSTMOE_RETURN_IF_ERROR(net::ParseTransportConfig(tls, &config.transport));
  TRUSTMOE_RETURN_IF_ERROR(ReadVerify(root, &config));
  TRUSTMOE_RETURN_IF_ERROR(root.CheckNoUnknownKeys());
  if (config.transport.mode == net::TlsMode::kPlaintext && !net::IsLoopbackAddress(config.listen)) {
    return Status::InvalidArgument(root.Where("listen") + ": plaintext gRPC on non-loopback " +
                                   config.listen + ": set [tls] mode = \"tls\" or \"mtls\"");
  }
  return config;
}

}  // namespace

Result<ValidatorConfig> LoadValidatorConfig(const std::string& path) {
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable root, ConfigTable::LoadFile(path));
  return Read(std::move(root));
}

Result<ValidatorConfig> ParseValidatorConfig(std::string_view text, std::string source_name) {
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable root, ConfigTable::Parse(text, std::move(source_name)));
  return Read(std::move(root));
}

}  // namespace trustmoe::validator
