#include "gate/gate_config.h"

#include "common/config.h"

namespace trustmoe::gate {

namespace {

constexpr int64_t kHourMs = 3600 * 1000;

using net::AddressUse;

Status ReadTopLevel(ConfigTable& root, GateConfig* c) {
  TRUSTMOE_RETURN_IF_ERROR(root.Require("identity_key", &c->identity_key));
  TRUSTMOE_RETURN_IF_ERROR(root.Require("data_dir", &c->data_dir));
  TRUSTMOE_RETURN_IF_ERROR(root.Require("genesis", &c->genesis));
  TRUSTMOE_RETURN_IF_ERROR(root.Get("dataset_dir", &c->dataset_dir));
  for (const char* key : {"identity_key", "data_dir", "genesis", "dataset_dir"}) {
    std::string value;
    TRUSTMOE_RETURN_IF_ERROR(root.Get(key, &value));
    if (root.Has(key) && value.empty()) {
      return Status::InvalidArgument(ConfigAt(root, "", key) + " must not be empty");
    }
  }
  TRUSTMOE_RETURN_IF_ERROR(root.Get("port_file", &c->port_file));
  TRUSTMOE_RETURN_IF_ERROR(root.Get("listen", &c->listen));
  TRUSTMOE_RETURN_IF_ERROR(net::CheckConfigAddress(root, "", "listen", c->listen, AddressUse::kBind));
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable http, root.Table("http"));
  TRUSTMOE_RETURN_IF_ERROR(http.Get("listen", &c->http_listen));
  return net::CheckConfigAddress(http, "http", "listen", c->http_listen, AddressUse::kBind);
}

Status ReadStoreAndChain(ConfigTable& root, GateConfig* c) {
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
  return GetBounded<int64_t>(chain, "chain", "submit_timeout_ms", 1, kHourMs,
                             &c->submit_timeout_ms);
}

Status ReadJobsAndEdges(ConfigTable& root, GateConfig* c) {
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable jobs, root.Table("jobs"));
  TRUSTMOE_RETURN_IF_ERROR(
      GetBounded<uint32_t>(jobs, "jobs", "concurrent_max", 1, 64, &c->jobs_concurrent_max));
  TRUSTMOE_RETURN_IF_ERROR(
      GetBounded<int64_t>(jobs, "jobs", "call_timeout_ms", 100, 600000, &c->call_timeout_ms));
  TRUSTMOE_RETURN_IF_ERROR(
      GetBounded<int64_t>(jobs, "jobs", "verdict_timeout_ms", 100, 600000, &c->verdict_timeout_ms));
  TRUSTMOE_RETURN_IF_ERROR(
      GetBounded<int>(jobs, "jobs", "torch_threads", 0, 256, &c->torch_threads));
  TRUSTMOE_RETURN_IF_ERROR(GetBounded<uint64_t>(jobs, "jobs", "request_bytes_max", 1ull << 10,
                                                64ull << 20, &c->request_bytes_max));
  TRUSTMOE_RETURN_IF_ERROR(
      GetBounded<uint32_t>(jobs, "jobs", "watchers_max", 1, 4096, &c->watchers_max));

  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable edges, root.Table("edges"));
  return GetBounded<uint64_t>(edges, "edges", "tensor_bytes_max", 1ull << 10, 4ull << 30,
                              &c->edge_tensor_bytes_max);
}

// Checks that involve more than one key. They run after CheckNoUnknownKeys, so a misspelt key
// is reported as such rather than as the combination its default made.
Status CheckPlaintextAddresses(ConfigTable& root, const GateConfig& c) {
  const net::TlsMode mode = c.transport.mode;
  TRUSTMOE_RETURN_IF_ERROR(
      net::CheckLoopbackIfPlaintext(root, "", "listen", c.listen, mode, AddressUse::kBind));
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable store, root.Table("store"));
  for (const std::string& endpoint : c.store_endpoints) {
    TRUSTMOE_RETURN_IF_ERROR(
        net::CheckLoopbackIfPlaintext(store, "store", "endpoints", endpoint, mode, AddressUse::kDial));
  }
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable chain, root.Table("chain"));
  for (const std::string& endpoint : c.chain_validators) {
    TRUSTMOE_RETURN_IF_ERROR(
        net::CheckLoopbackIfPlaintext(chain, "chain", "validators", endpoint, mode, AddressUse::kDial));
  }
  return Status::Ok();
}

Result<GateConfig> Read(ConfigTable root) {
  GateConfig config;
  TRUSTMOE_RETURN_IF_ERROR(ReadTopLevel(root, &config));
  TRUSTMOE_RETURN_IF_ERROR(ReadLogSection(root, &config.log));
  TRUSTMOE_RETURN_IF_ERROR(ReadStoreAndChain(root, &config));
  TRUSTMOE_RETURN_IF_ERROR(ReadJobsAndEdges(root, &config));
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable tls, root.Table("tls"));
  TRUSTMOE_RETURN_IF_ERROR(net::ParseTransportConfig(tls, &config.transport));
  TRUSTMOE_RETURN_IF_ERROR(root.CheckNoUnknownKeys());
  TRUSTMOE_RETURN_IF_ERROR(CheckPlaintextAddresses(root, config));
  return config;
}

}  // namespace

Result<GateConfig> LoadGateConfig(const std::string& path) {
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable root, ConfigTable::LoadFile(path));
  return Read(std::move(root));
}

Result<GateConfig> ParseGateConfig(std::string_view text, std::string source_name) {
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable root, ConfigTable::Parse(text, std::move(source_name)));
  return Read(std::move(root));
}

}  // namespace trustmoe::gate
