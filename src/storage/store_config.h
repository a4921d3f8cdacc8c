// trustmoe-store's configuration file (docs/operator.md lists every key).
#pragma once

#include <cstdint>
#include <set>
#include <string>

#include "common/log.h"
#include "common/status.h"
#include "crypto/ed25519.h"
#include "net/transport.h"

namespace trustmoe::storage {

struct StoreConfig {
  std::string listen = "127.0.0.1:7400";
  std::string data_dir;
  std::string identity_key;          // PEM, mode 0600
  std::string http_listen = "127.0.0.1:7401";
  std::string port_file;             // if set: "<grpc port> <http port>\n" written once serving
  LogOptions log;
  uint64_t blob_bytes_max = 4ull << 30;
  uint64_t store_bytes_max = 64ull << 30;
  uint32_t concurrent_streams_max = 64;
  int64_t retention_s = 24 * 3600;
  int64_t gc_interval_s = 600;
  int64_t drain_timeout_s = 30;      // SIGTERM: how long in-flight streams may take to finish
  std::set<crypto::PublicKey> writers;
  net::TransportConfig transport;
};

// Reads and checks the file: unknown keys, wrong types, missing required keys and unreadable
// writer keys are InvalidArgument naming file and line.
Result<StoreConfig> LoadStoreConfig(const std::string& path);


}  // namespace trustmoe::storage
