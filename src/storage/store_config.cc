#include "storage/store_config.h"

#include "common/config.h"

namespace trustmoe::storage {

namespace {

Status ReadLimits(ConfigTable& root, StoreConfig* config) {
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable limits, root.Table("limits"));
  TRUSTMOE_RETURN_IF_ERROR(limits.Get("blob_bytes_max", &config->blob_bytes_max));
  TRUSTMOE_RETURN_IF_ERROR(limits.Get("store_bytes_max", &config->store_bytes_max));
  TRUSTMOE_RETURN_IF_ERROR(limits.Get("concurrent_streams_max", &config->concurrent_streams_max));
  if (config->concurrent_streams_max == 0) {
    return Status::InvalidArgument(limits.Where("concurrent_streams_max") + ": must be at least 1");
  }
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable gc, root.Table("gc"));
  TRUSTMOE_RETURN_IF_ERROR(gc.Get("retention_s", &config->retention_s));
  TRUSTMOE_RETURN_IF_ERROR(gc.Get("interval_s", &config->gc_interval_s));
  if (config->retention_s < 0 || config->gc_interval_s <= 0) {
    return Status::InvalidArgument(root.source() +
                                   ": [gc] retention_s must be >= 0 and interval_s > 0");
  }
  return Status::Ok();
}

Status ReadWriters(ConfigTable& root, StoreConfig* config) {
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable auth, root.Table("auth"));
  std::vector<std::string> hex_keys;
  std::vector<std::string> key_files;
  TRUSTMOE_RETURN_IF_ERROR(auth.Get("writers", &hex_keys));
  TRUSTMOE_RETURN_IF_ERROR(auth.Get("writer_key_files", &key_files));
  for (const std::string& hex : hex_keys) {
    auto key = crypto::PublicKey::FromHex(hex);
    if (!key.ok()) {
      return key.status().WithContext(auth.Where("writers") + ": writer key '" + hex + "'");
    }
    config->writers.insert(*key);
  }
  for (const std::string& file : key_files) {
    auto key = crypto::PublicKey::LoadPem(file);
    // InvalidArgument whatever the cause: NotFound from LoadStoreConfig means the config itself.
    if (!key.ok()) {
      return Status::InvalidArgument(auth.Where("writer_key_files") + ": " +
                                     key.status().ToString());
    }
    config->writers.insert(*key);
  }
  return Status::Ok();
}

}  // namespace

Result<StoreConfig> LoadStoreConfig(const std::string& path) {
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable root, ConfigTable::LoadFile(path));
  StoreConfig config;
  TRUSTMOE_RETURN_IF_ERROR(root.Get("listen", &config.listen));
  TRUSTMOE_RETURN_IF_ERROR(root.Require("data_dir", &config.data_dir));
  TRUSTMOE_RETURN_IF_ERROR(root.Require("identity_key", &config.identity_key));
  TRUSTMOE_RETURN_IF_ERROR(root.Get("port_file", &config.port_file));
  TRUSTMOE_RETURN_IF_ERROR(root.Get("drain_timeout_s", &config.drain_timeout_s));

  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable http, root.Table("http"));
  TRUSTMOE_RETURN_IF_ERROR(http.Get("listen", &config.http_listen));
  std::string host;
  int port = 0;
  TRUSTMOE_RETURN_IF_ERROR(
      net::SplitHostPort(config.http_listen, &host, &port).WithContext(http.Where("listen")));
  TRUSTMOE_RETURN_IF_ERROR(
      net::SplitHostPort(config.listen, &host, &port).WithContext(root.Where("listen")));

  TRUSTMOE_RETURN_IF_ERROR(ReadLogSection(root, &config.log));

  TRUSTMOE_RETURN_IF_ERROR(ReadLimits(root, &config));
  TRUSTMOE_RETURN_IF_ERROR(ReadWriters(root, &config));
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable tls, root.Table("tls"));
  TRUSTMOE_RETURN_IF_ERROR(net::ParseTransportConfig(tls, &config.transport));
  TRUSTMOE_RETURN_IF_ERROR(root.CheckNoUnknownKeys());
  return config;
}

}  // namespace trustmoe::storage
