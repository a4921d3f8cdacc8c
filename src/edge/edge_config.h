// trustmoe-edge's configuration file (docs/edge.md lists every key;
// deploy/config/edge.toml is a commented example).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/log.h"
#include "edge/attack.h"
#include "common/status.h"
#include "net/transport.h"

namespace trustmoe::edge {

// CUDA device indices accepted in [runtime] device: 0 .. kCudaDevicesMax - 1.
inline constexpr int kCudaDevicesMax = 64;

struct EdgeConfig {
  std::string listen = "127.0.0.1:7700";       // gRPC EdgeService; plaintext only on loopback
  std::string http_listen = "127.0.0.1:7701";  // [http] listen: /metrics and /healthz
  std::string identity_key;  // PEM Ed25519 key (mode 0600), registered on the chain as an edge
  std::string data_dir;      // state; results not yet committed wait in <data_dir>/outbox
  std::string genesis;       // the chain's genesis JSON file
  std::string port_file;     // if set: "<grpc port> <http port>\n" written once serving
  int64_t drain_timeout_ms = 10000;  // SIGTERM: how long requests in progress may take to finish
  LogOptions log;                    // [log] level and format
  net::TransportConfig transport;    // [tls]: serving, and dialing the store and validators

  // [store]
  std::vector<std::string> store_endpoints;  // trustmoe-store "host:port"s; at least one
  // [chain]
  std::vector<std::string> chain_validators;  // "host:port"s; empty: the genesis file's endpoints
  int64_t registration_check_ms = 10000;      // how often registration and blacklist are re-read
  int64_t submit_timeout_ms = 30000;          // wait for a submitted transaction to be committed

  // [runtime]
  std::string device = "cpu";  // "cpu" or "cuda:N" (N in 0..63; "cuda" in the file is "cuda:0")
  std::string dtype = "f32";   // compute dtype "f32", "bf16" or "f16"; the file's "auto" resolved
  uint64_t gpu_memory_bytes_max = 8ull << 30;  // expert weights on the device; LRU evicted above
  uint32_t batch_rows_max = 16384;             // rows run in one batched call
  int64_t batch_wait_us = 0;  // how long a batch waits for more concurrent requests (adds latency)

  // [limits]
  uint32_t rows_per_request_max = 8192;      // activation rows in one request
  uint32_t concurrent_requests_max = 64;     // requests in progress at once
  uint64_t tensor_bytes_max = 256ull << 20;  // bytes of one inline tensor

  // [cache]
  std::string cache_dir;                   // verified expert files; "<data_dir>/cache" if unset
  uint64_t cache_bytes_max = 64ull << 30;  // bytes of expert files kept in cache_dir

  // [outbox] uploads and commit transactions retried until they land
  int64_t outbox_retry_min_ms = 500;      // first retry back-off, doubling up to the max
  int64_t outbox_retry_max_ms = 30000;    // largest retry back-off
  uint32_t outbox_entries_max = 1000000;  // most entries waiting in the outbox

  // [attack] fault injection for experiments only (edge/attack.h); mode "none" by default.
  AttackConfig attack;
};

// Reads and checks the file: unknown keys, wrong types, missing required keys (identity_key,
// data_dir, genesis, [store] endpoints), values out of range, a bad device or dtype, and
// plaintext gRPC to or from a non-loopback address are InvalidArgument naming file, line and
// key; NotFound when the file itself is missing. Resolves `dtype` "auto" and an unset
// `cache_dir`. Does not open the key, genesis or data files (the daemon does, and names them
// when they fail).
Result<EdgeConfig> LoadEdgeConfig(const std::string& path);

// As LoadEdgeConfig, from text; `source_name` stands for the file name in messages.
Result<EdgeConfig> ParseEdgeConfig(std::string_view text, std::string source_name);

// "cpu" -> "cpu"; "cuda" -> "cuda:0"; "cuda:N" -> "cuda:N" (N in 0..kCudaDevicesMax - 1, one or
// two digits). InvalidArgument for anything else. For flags that name a device as the file does.
Result<std::string> ParseDevice(std::string_view device);

// The compute dtype for `dtype` ("auto", "f32", "bf16" or "f16") on a device ParseDevice
// returned: "auto" is "bf16" on cuda and "f32" on cpu. InvalidArgument for f16 on cpu (use f32
// or bf16) and for an unknown dtype.
Result<std::string> ResolveDtype(std::string_view dtype, std::string_view device);

}  // namespace trustmoe::edge
