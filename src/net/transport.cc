#include "net/transport.h"

#include <arpa/inet.h>

#include <string>
#include <utility>

#include "common/files.h"

namespace trustmoe::net {

Status SplitHostPort(const std::string& address, std::string* host, int* port) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
    return Status::InvalidArgument("address '" + address + "' must be host:port");
  }
  std::string h = address.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  int p = 0;
  for (char c : address.substr(colon + 1)) {
    if (c < '0' || c > '9' || p > 65535) {
      return Status::InvalidArgument("address '" + address + "' has a bad port");
    }
    p = p * 10 + (c - '0');
  }
  if (p > 65535) return Status::InvalidArgument("address '" + address + "' has a bad port");
  *host = h;
  *port = p;
  return Status::Ok();
}


Result<TlsMode> ParseTlsMode(std::string_view s) {
  if (s == "plaintext") return TlsMode::kPlaintext;
  if (s == "tls") return TlsMode::kTls;
  if (s == "mtls") return TlsMode::kMutualTls;
  return Status::InvalidArgument("unknown TLS mode '" + std::string(s) +
                                 "': use plaintext, tls or mtls");
}

Status ParseTransportConfig(ConfigTable& table, TransportConfig* out) {
  std::string mode = "plaintext";
  TRUSTMOE_RETURN_IF_ERROR(table.Get("mode", &mode));
  auto parsed = ParseTlsMode(mode);
  if (!parsed.ok()) return parsed.status().WithContext(table.Where("mode"));
  out->mode = *parsed;
  TRUSTMOE_RETURN_IF_ERROR(table.Get("cert", &out->cert_file));
  TRUSTMOE_RETURN_IF_ERROR(table.Get("key", &out->key_file));
  TRUSTMOE_RETURN_IF_ERROR(table.Get("ca", &out->ca_file));
  TRUSTMOE_RETURN_IF_ERROR(table.Get("server_name", &out->server_name_override));
  if (out->mode == TlsMode::kPlaintext) return Status::Ok();
  // A daemon both serves and calls: with TLS it needs its certificate, key and the CA.
  const std::pair<const char*, const std::string*> files[] = {
      {"cert", &out->cert_file}, {"key", &out->key_file}, {"ca", &out->ca_file}};
  for (const auto& [key, path] : files) {
    if (path->empty()) {
      return Status::InvalidArgument(table.source() + ": [tls] mode '" + mode + "' needs " + key +
                                     " = \"<PEM file>\" (docs/transport-security.md)");
    }
    auto content = ReadFile(*path, 1 << 20);
    if (!content.ok()) {
      return Status::InvalidArgument(table.Where(key) + ": [tls] " + key + ": " +
                                     content.status().message());
    }
  }
  return Status::Ok();
}

namespace {

std::string HostOf(const std::string& host_port) {
  if (!host_port.empty() && host_port.front() == '[') {
    auto end = host_port.find(']');
    return end == std::string::npos ? host_port : host_port.substr(1, end - 1);
  }
  auto colon = host_port.rfind(':');
  if (colon == std::string::npos) return host_port;
  // A bare IPv6 address has several colons and no port.
  if (host_port.find(':') != colon) return host_port;
  return host_port.substr(0, colon);
}

Result<std::string> ReadPem(const std::string& path, const char* what) {
  if (path.empty()) return Status::InvalidArgument(std::string("TLS ") + what + " file is not set");
  auto data = ReadFile(path, 1 << 20);
  if (!data.ok()) return data.status().WithContext(std::string("TLS ") + what);
  return data;
}

Status CheckPlaintextAllowed(const std::string& address, const TransportConfig& config) {
  if (config.mode == TlsMode::kPlaintext && !IsLoopbackAddress(address)) {
    return Status::InvalidArgument("refusing plaintext gRPC on non-loopback address " + address +
                                   ": set [tls] mode = \"tls\" or \"mtls\" (see "
                                   "docs/transport-security.md)");
  }
  return Status::Ok();
}

}  // namespace

bool IsLoopbackAddress(const std::string& host_port) {
  std::string host = HostOf(host_port);
  if (host == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    return IN6_IS_ADDR_LOOPBACK(&v6);
  }
  return false;
}

Result<StartedServer> StartServer(const std::string& listen, const TransportConfig& config,
                                  const std::vector<grpc::Service*>& services) {
  TRUSTMOE_RETURN_IF_ERROR(CheckPlaintextAllowed(listen, config));
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (config.mode == TlsMode::kPlaintext) {
    creds = grpc::InsecureServerCredentials();
  } else {
    TRUSTMOE_ASSIGN_OR_RETURN(std::string cert, ReadPem(config.cert_file, "certificate"));
    TRUSTMOE_ASSIGN_OR_RETURN(std::string key, ReadPem(config.key_file, "key"));
    TRUSTMOE_ASSIGN_OR_RETURN(std::string ca, ReadPem(config.ca_file, "CA"));
    grpc::SslServerCredentialsOptions opts(
        config.mode == TlsMode::kMutualTls
            ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
            : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    opts.pem_root_certs = ca;
    opts.pem_key_cert_pairs.push_back({key, cert});
    creds = grpc::SslServerCredentials(opts);
  }
  grpc::ServerBuilder builder;
  StartedServer started;
  builder.AddListeningPort(listen, creds, &started.bound_port);
  builder.SetMaxReceiveMessageSize(config.message_bytes_max);
  builder.SetMaxSendMessageSize(config.message_bytes_max);
  for (grpc::Service* service : services) builder.RegisterService(service);
  started.server = builder.BuildAndStart();
  if (!started.server || started.bound_port == 0) {
    return Status::Unavailable("cannot listen on " + listen +
                               ": the address is in use, not local, or malformed");
  }
  return started;
}

namespace {

// Sets the channel arguments of `options` that are not 0.
Status ApplyChannelOptions(const ChannelOptions& options, grpc::ChannelArguments* args) {
  const std::pair<const char*, int> ints[] = {
      {GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, options.initial_reconnect_backoff_ms},
      {GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, options.min_reconnect_backoff_ms},
      {GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, options.max_reconnect_backoff_ms},
      {GRPC_ARG_KEEPALIVE_TIME_MS, options.keepalive_time_ms},
      {GRPC_ARG_KEEPALIVE_TIMEOUT_MS, options.keepalive_timeout_ms},
  };
  for (const auto& [name, value] : ints) {
    if (value < 0) {
      return Status::InvalidArgument(std::string("channel option ") + name + " is negative (" +
                                     std::to_string(value) + ")");
    }
    if (value > 0) args->SetInt(name, value);
  }
  if (options.max_reconnect_backoff_ms > 0 &&
      options.max_reconnect_backoff_ms < options.initial_reconnect_backoff_ms) {
    return Status::InvalidArgument(
        "channel option max_reconnect_backoff_ms is below "
        "initial_reconnect_backoff_ms");
  }
  if (options.keepalive_without_calls) args->SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  return Status::Ok();
}

}  // namespace

Result<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& endpoint,
                                                   const TransportConfig& config,
                                                   const ChannelOptions& options) {
  if (endpoint.empty()) return Status::InvalidArgument("empty endpoint: expected host:port");
  TRUSTMOE_RETURN_IF_ERROR(CheckPlaintextAllowed(endpoint, config));
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(config.message_bytes_max);
  args.SetMaxSendMessageSize(config.message_bytes_max);
  TRUSTMOE_RETURN_IF_ERROR(ApplyChannelOptions(options, &args));
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (config.mode == TlsMode::kPlaintext) {
    creds = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions opts;
    TRUSTMOE_ASSIGN_OR_RETURN(opts.pem_root_certs, ReadPem(config.ca_file, "CA"));
    if (config.mode == TlsMode::kMutualTls) {
      TRUSTMOE_ASSIGN_OR_RETURN(opts.pem_cert_chain, ReadPem(config.cert_file, "certificate"));
      TRUSTMOE_ASSIGN_OR_RETURN(opts.pem_private_key, ReadPem(config.key_file, "key"));
    }
    if (!config.server_name_override.empty()) {
      args.SetSslTargetNameOverride(config.server_name_override);
    }
    creds = grpc::SslCredentials(opts);
  }
  return grpc::CreateCustomChannel(endpoint, creds, args);
}

grpc::Status ToGrpcStatus(const Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), status.message());
}

Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return Status::Ok();
  int code = status.error_code();
  if (code < 0 || code > static_cast<int>(StatusCode::kUnauthenticated)) {
    return Status::Unknown(status.error_message());
  }
  const auto status_code = static_cast<StatusCode>(code);
  if (status.error_message().empty()) {
    // gRPC's own failures (a cancelled or overloaded call) may carry no text: say what it was.
    return Status(status_code, "the call ended with " + std::string(StatusCodeName(status_code)) +
                                   " and no message");
  }
  return Status(status_code, status.error_message());
}

Status CheckConfigAddress(const ConfigTable& table, std::string_view section, std::string_view key,
                          const std::string& address, AddressUse use) {
  std::string host;
  int port = 0;
  TRUSTMOE_RETURN_IF_ERROR(
      SplitHostPort(address, &host, &port).WithContext(ConfigAt(table, section, key)));
  if (use == AddressUse::kDial && port == 0) {
    return Status::InvalidArgument(ConfigAt(table, section, key) + ": '" + address +
                                   "' has port 0, which cannot be dialed");
  }
  return Status::Ok();
}

Status CheckLoopbackIfPlaintext(const ConfigTable& table, std::string_view section,
                                std::string_view key, const std::string& address, TlsMode mode,
                                AddressUse use) {
  if (mode != TlsMode::kPlaintext || IsLoopbackAddress(address)) return Status::Ok();
  return Status::InvalidArgument(ConfigAt(table, section, key) + ": plaintext gRPC " +
                                 (use == AddressUse::kBind ? "on" : "to") + " non-loopback " +
                                 address + ": set [tls] mode = \"tls\" or \"mtls\"");
}

}  // namespace trustmoe::net
