// A whole validator in one object: node, peer transport, gRPC services and server, and the
// /metrics + /healthz HTTP server. trustmoe-validator's main() and the in-process cluster
// tests build it the same way.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>

#include "chain/ledger/genesis.h"
#include "chain/validator/chain_service.h"
#include "chain/validator/node.h"
#include "chain/validator/peer_transport.h"
#include "chain/validator/validator_config.h"
#include "common/http_server.h"
#include "common/metrics.h"
#include "crypto/ed25519.h"
#include "net/transport.h"

namespace trustmoe::validator {

class Validator {
 public:
  // Loads the genesis and identity key named by `config`, then as below. NotFound /
  // InvalidArgument / PermissionDenied naming the file that fails.
  static Result<std::unique_ptr<Validator>> Start(const ValidatorConfig& config);

  // Opens the ledger, starts the consensus thread, the peer streams, the gRPC server on
  // config.listen and the HTTP server on config.http_listen. Unavailable when an address
  // cannot be bound; the errors of Node::Create otherwise.
  static Result<std::unique_ptr<Validator>> Start(const ValidatorConfig& config,
                                                  ledger::Genesis genesis, crypto::PrivateKey key);
  ~Validator();  // Stop()

  // Stops accepting calls, lets the consensus thread finish its step (waiting SubmitTx calls
  // get UNAVAILABLE), ends every stream, and shuts the servers down. Idempotent.
  void Stop();

  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_.port(); }
  Node* node() { return node_.get(); }
  PeerService* peer_service() { return peer_service_.get(); }
  PeerTransport* peer_transport() { return peers_.get(); }
  MetricsRegistry* metrics() { return &metrics_; }
  // Healthy while the consensus thread runs and has woken within the last 10 s.
  HealthReport Health() const;

 private:
  explicit Validator(const ValidatorConfig& config);
  Status Init(ledger::Genesis genesis, crypto::PrivateKey key);

  ValidatorConfig config_;
  MetricsRegistry metrics_;
  std::unique_ptr<Node> node_;
  std::unique_ptr<PeerTransport> peers_;
  std::unique_ptr<PeerService> peer_service_;
  std::unique_ptr<ChainService> chain_service_;
  std::unique_ptr<grpc::Server> server_;
  int grpc_port_ = 0;
  HttpServer http_;
  std::mutex stop_mu_;
  bool stopped_ = false;
};

}  // namespace trustmoe::validator
