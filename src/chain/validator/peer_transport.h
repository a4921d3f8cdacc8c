// PBFT messages between validators over gRPC (ValidatorPeerService in chain.proto).
//
// Sending: per peer one thread, one bounded queue and one long-lived client stream to the
// peer's Deliver at its genesis endpoint. When the queue is full the oldest message is dropped
// (PBFT retransmits what it needs; a fresh message is worth more than an old one). A failed
// stream is reopened with exponential back-off; the messages it failed to write are lost.
//
// Receiving: PeerService hands every envelope to the node's queue. The transport trusts no
// one: the replica checks every signature. Envelopes over message_bytes_max are refused here
// (gRPC already refuses messages over its own limit, message_bytes_max plus framing).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "chain/validator/node.h"
#include "common/metrics.h"
#include "common/status.h"
#include "net/transport.h"
#include "trustmoe/v1/chain.grpc.pb.h"

namespace trustmoe::validator {

struct PeerTransportOptions {
  uint32_t self_id = 0;
  std::vector<std::string> endpoints;  // by validator id; endpoints[self_id] is not dialled
  net::TransportConfig transport;      // message_bytes_max already set for PBFT messages
  uint32_t queue_max = 4096;
  uint64_t queue_bytes_max = 128ull << 20;
  int64_t reconnect_min_ms = 100;
  int64_t reconnect_max_ms = 5000;
};

class PeerTransport final : public PeerSink {
 public:
  // Checks the options and makes one channel per peer (no connection yet). InvalidArgument
  // for an empty or non-loopback plaintext endpoint or unreadable TLS files.
  static Result<std::unique_ptr<PeerTransport>> Create(PeerTransportOptions options,
                                                       MetricsRegistry* metrics);
  ~PeerTransport() override;  // Stop()

  void Start();
  // Cancels the streams and joins the sender threads; queued messages are dropped.
  void Stop();

  // Queues `envelope` for peer `to`. Never blocks. Thread-safe.
  void Send(uint32_t to, std::shared_ptr<const Bytes> envelope) override;

  // Messages dropped for `peer` because its queue was full.
  uint64_t dropped(uint32_t peer) const;

 private:
  class Peer;
  explicit PeerTransport(PeerTransportOptions options);
  PeerTransportOptions options_;
  std::vector<std::unique_ptr<Peer>> peers_;  // by validator id; null for self
};

// Server side of ValidatorPeerService.Deliver, on the callback API: an open stream costs no
// thread. Shutdown() ends every open stream.
class PeerService final : public v1::ValidatorPeerService::CallbackService {
 public:
  // `node` and `metrics` must outlive the service. At most `streams_max` incoming streams are
  // open at once (peers hold one each; more are refused with RESOURCE_EXHAUSTED).
  PeerService(Node* node, uint64_t message_bytes_max, MetricsRegistry* metrics,
              uint32_t streams_max = 64);
  ~PeerService() override;

  grpc::ServerReadReactor<v1::PeerMessage>* Deliver(grpc::CallbackServerContext* ctx,
                                                    v1::PeerAck* ack) override;

  // Finishes every open stream and refuses new ones (UNAVAILABLE).
  void Shutdown();

  // Envelopes (or streams) refused here, by reason ("oversized", "empty", "queue_full",
  // "streams_max").
  uint64_t rejected(const std::string& reason) const;

 private:
  class DeliverReactor;
  void Count(const std::string& reason);
  // False, with the reason, when shut down or at streams_max.
  bool Register(DeliverReactor* reactor, grpc::Status* refusal);
  void Unregister(DeliverReactor* reactor);

  Node* node_;
  const uint64_t message_bytes_max_;
  const uint32_t streams_max_;
  MetricsRegistry* metrics_;
  Gauge* streams_gauge_;
  Counter* received_;
  mutable std::mutex mu_;
  bool shut_down_ = false;
  std::set<DeliverReactor*> open_;
};

}  // namespace trustmoe::validator
