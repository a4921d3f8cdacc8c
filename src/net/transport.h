// The one place where gRPC servers and channels are made (docs/transport-security.md).
//
// Every daemon and client takes a TransportConfig from its TOML [tls] table or its flags:
//   mode = "plaintext"  development on loopback only: a plaintext listen address or endpoint
//                       that is not loopback is refused
//   mode = "tls"        server presents cert/key; clients check it against ca
//   mode = "mtls"       as tls, and the server also requires a client certificate issued by ca
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/status.h"

namespace trustmoe::net {

enum class TlsMode { kPlaintext, kTls, kMutualTls };

struct TransportConfig {
  TlsMode mode = TlsMode::kPlaintext;
  std::string cert_file;  // PEM certificate of this process (server; client in mtls)
  std::string key_file;   // PEM private key matching cert_file
  std::string ca_file;    // PEM CA that issued the peers' certificates
  // Name expected in the server's certificate when it differs from the endpoint's host.
  std::string server_name_override;
  // Largest message accepted or sent, bytes.
  int message_bytes_max = 8 << 20;
};

// Reads mode, cert, key, ca, server_name from `table` (the [tls] table) of a daemon's config.
// With mode tls or mtls, cert, key and ca must all be set and readable (a daemon serves and
// calls); otherwise InvalidArgument naming the key.
Status ParseTransportConfig(ConfigTable& table, TransportConfig* out);

// Where a configured address is used: bound (port 0 picks a free port) or dialed.
enum class AddressUse { kBind, kDial };

// InvalidArgument "file:line: 'section.key': ..." unless `address` is "host:port" (port 0 only
// to bind).
Status CheckConfigAddress(const ConfigTable& table, std::string_view section, std::string_view key,
                          const std::string& address, AddressUse use);

// Plaintext gRPC is for loopback only: InvalidArgument with file and line for a non-loopback
// `address` under `mode` plaintext, rather than a refusal when the daemon binds or dials.
Status CheckLoopbackIfPlaintext(const ConfigTable& table, std::string_view section,
                                std::string_view key, const std::string& address, TlsMode mode,
                                AddressUse use);
Result<TlsMode> ParseTlsMode(std::string_view s);

// "host:port" (or "[v6]:port") split; InvalidArgument unless there is a host and the port is
// 0..65535.
Status SplitHostPort(const std::string& address, std::string* host, int* port);

// True for 127.0.0.0/8, ::1 and "localhost" (with or without a port).
bool IsLoopbackAddress(const std::string& host_port);

// A started server. `bound_port` is the port actually bound (useful with port 0).
struct StartedServer {
  std::unique_ptr<grpc::Server> server;
  int bound_port = 0;
};

// Builds and starts a server listening on `listen` ("host:port") with `services`.
// Unavailable when the address cannot be bound; InvalidArgument for plaintext on a non-loopback
// address or unreadable TLS files.
Result<StartedServer> StartServer(const std::string& listen, const TransportConfig& config,
                                  const std::vector<grpc::Service*>& services);

// Connection settings of a channel beyond TransportConfig; 0 keeps gRPC's default.
struct ChannelOptions {
  // Waits between connection attempts after a failure: the first, then growing 1.6x (with
  // jitter) up to the max. gRPC's defaults are 1 s and 120 s, so a channel whose server came
  // up late may wait seconds to a minute. min_reconnect_backoff_ms is gRPC's minimum time
  // for one connection attempt (connect and TLS handshake), default 20 s: keep it well above
  // the round trip.
  int initial_reconnect_backoff_ms = 0;
  int min_reconnect_backoff_ms = 0;
  int max_reconnect_backoff_ms = 0;
  // HTTP/2 keepalive: a ping after keepalive_time_ms without activity, the connection closed
  // when its ack does not come within keepalive_timeout_ms. Off by default. The server must
  // allow pings that often (gRPC servers refuse pings more often than every 5 min without
  // data, unless configured), so use it only towards servers set up for it.
  int keepalive_time_ms = 0;
  int keepalive_timeout_ms = 0;
  bool keepalive_without_calls = false;  // ping also while no call is open
};

// A channel to `endpoint` ("host:port"). Checks the config (and files) but does not connect.
// InvalidArgument for a negative setting in `options`, or a max back-off below the initial.
Result<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& endpoint,
                                                   const TransportConfig& config,
                                                   const ChannelOptions& options = {});

// Status <-> grpc::Status, one to one on codes.
grpc::Status ToGrpcStatus(const Status& status);
Status FromGrpcStatus(const grpc::Status& status);

}  // namespace trustmoe::net
