#include "chain/validator/peer_transport.h"

#include <algorithm>
#include <chrono>
#include <exception>

#include "common/log.h"

namespace trustmoe::validator {
namespace {

// Peer channels retry a connection quickly: validators start one after another, and with
// gRPC's default back-off (1 s growing to 120 s) a validator whose peers came up a few seconds
// after it would not reach them for seconds more. The connect timeout stays generous for TLS
// handshakes over long links.
net::ChannelOptions PeerChannelOptions() {
  net::ChannelOptions options;
  options.initial_reconnect_backoff_ms = 100;
  options.max_reconnect_backoff_ms = 2000;
  options.min_reconnect_backoff_ms = 5000;  // gRPC's minimum connect timeout
  return options;
}

}  // namespace

// ---- Sending ----

class PeerTransport::Peer {
 public:
  Peer(uint32_t id, std::string endpoint, std::shared_ptr<grpc::Channel> channel,
       const PeerTransportOptions& options, MetricsRegistry* metrics)
      : id_(id),
        endpoint_(std::move(endpoint)),
        stub_(v1::ValidatorPeerService::NewStub(channel)),
        options_(options) {
    Labels labels{{"peer", std::to_string(id)}};
    dropped_ = metrics->GetCounter("trustmoe_validator_peer_queue_dropped_total",
                                   "Messages dropped because a peer's send queue was full", labels);
    sent_ = metrics->GetCounter("trustmoe_validator_peer_sent_total",
                                "Messages written to a peer's stream", labels);
    reconnects_ = metrics->GetCounter("trustmoe_validator_peer_reconnects_total",
                                      "Streams to a peer that failed and were reopened", labels);
    queue_gauge_ = metrics->GetGauge("trustmoe_validator_peer_queue",
                                     "Messages waiting in a peer's send queue", labels);
  }

  void Start() {
    thread_ = std::thread([this] { Run(); });
  }

  void Stop() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
      if (active_ != nullptr) active_->TryCancel();
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  void Enqueue(std::shared_ptr<const Bytes> message) {
    uint64_t dropped = 0;
    {
      std::lock_guard lock(mu_);
      if (message->size() > options_.queue_bytes_max) {
        dropped = 1;
      } else {
        while (!queue_.empty() && (queue_.size() >= options_.queue_max ||
                                   bytes_ + message->size() > options_.queue_bytes_max)) {
          bytes_ -= queue_.front()->size();
          queue_.pop_front();
          ++dropped;
        }
        bytes_ += message->size();
        queue_.push_back(std::move(message));
      }
      dropped_total_ += dropped;
      queue_gauge_->Set(static_cast<double>(queue_.size()));
    }
    if (dropped > 0) dropped_->Inc(static_cast<double>(dropped));
    cv_.notify_one();
  }

  uint64_t dropped() const {
    std::lock_guard lock(mu_);
    return dropped_total_;
  }

 private:
  // Next message, or null once stopping.
  std::shared_ptr<const Bytes> Pop() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (stop_) return nullptr;
    auto message = std::move(queue_.front());
    queue_.pop_front();
    bytes_ -= message->size();
    queue_gauge_->Set(static_cast<double>(queue_.size()));
    return message;
  }

  // One stream: writes until a write fails or Stop. True when at least one write succeeded.
  bool RunStream() {
    grpc::ClientContext ctx;
    v1::PeerAck ack;
    {
      std::lock_guard lock(mu_);
      if (stop_) return false;
      active_ = &ctx;
    }
    bool wrote = false;
    std::unique_ptr<grpc::ClientWriter<v1::PeerMessage>> writer = stub_->Deliver(&ctx, &ack);
    v1::PeerMessage message;
    while (std::shared_ptr<const Bytes> bytes = Pop()) {
      message.set_envelope(bytes->data(), bytes->size());
      if (!writer->Write(message)) break;
      wrote = true;
      sent_->Inc();
    }
    ctx.TryCancel();
    grpc::Status status = writer->Finish();
    {
      std::lock_guard lock(mu_);
      active_ = nullptr;
    }
    if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
      TM_DEBUG("stream to validator {} at {} ended: {}", id_, endpoint_, status.error_message());
    }
    return wrote;
  }

  void Run() {
    int64_t backoff_ms = options_.reconnect_min_ms;
    while (true) {
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (stop_) return;
      }
      bool wrote = false;
      try {
        wrote = RunStream();
      } catch (const std::exception& e) {
        TM_ERROR("stream to validator {} at {}: {}", id_, endpoint_, e.what());
      }
      if (wrote) backoff_ms = options_.reconnect_min_ms;
      std::unique_lock lock(mu_);
      if (stop_) return;
      reconnects_->Inc();
      cv_.wait_for(lock, std::chrono::milliseconds(backoff_ms), [this] { return stop_; });
      if (stop_) return;
      backoff_ms = std::min(backoff_ms * 2, options_.reconnect_max_ms);
    }
  }

  const uint32_t id_;
  const std::string endpoint_;
  std::unique_ptr<v1::ValidatorPeerService::Stub> stub_;
  const PeerTransportOptions& options_;
  Counter* dropped_;
  Counter* sent_;
  Counter* reconnects_;
  Gauge* queue_gauge_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<const Bytes>> queue_;
  uint64_t bytes_ = 0;
  uint64_t dropped_total_ = 0;
  bool stop_ = false;
  grpc::ClientContext* active_ = nullptr;
  std::thread thread_;
};

Result<std::unique_ptr<PeerTransport>> PeerTransport::Create(PeerTransportOptions options,
                                                             MetricsRegistry* metrics) {
  if (options.self_id >= options.endpoints.size()) {
    return Status::InvalidArgument("validator id " + std::to_string(options.self_id) +
                                   " has no endpoint");
  }
  if (options.queue_max == 0 || options.queue_bytes_max == 0 || options.reconnect_min_ms <= 0 ||
      options.reconnect_max_ms < options.reconnect_min_ms) {
    return Status::InvalidArgument("peer transport: queue bounds and back-off must be positive");
  }
  std::unique_ptr<PeerTransport> transport(new PeerTransport(std::move(options)));
  const PeerTransportOptions& o = transport->options_;
  for (uint32_t id = 0; id < o.endpoints.size(); ++id) {
    if (id == o.self_id) {
      transport->peers_.push_back(nullptr);
      continue;
    }
    auto channel = net::MakeChannel(o.endpoints[id], o.transport, PeerChannelOptions());
    if (!channel.ok()) {
      return channel.status().WithContext("endpoint of validator " + std::to_string(id));
    }
    transport->peers_.push_back(std::make_unique<Peer>(id, o.endpoints[id], *channel, o, metrics));
  }
  return transport;
}

PeerTransport::PeerTransport(PeerTransportOptions options) : options_(std::move(options)) {}

PeerTransport::~PeerTransport() { Stop(); }

void PeerTransport::Start() {
  for (auto& peer : peers_) {
    if (peer) peer->Start();
  }
}

void PeerTransport::Stop() {
  for (auto& peer : peers_) {
    if (peer) peer->Stop();
  }
}

void PeerTransport::Send(uint32_t to, std::shared_ptr<const Bytes> envelope) {
  if (to >= peers_.size() || !peers_[to]) return;
  peers_[to]->Enqueue(std::move(envelope));
}

uint64_t PeerTransport::dropped(uint32_t peer) const {
  if (peer >= peers_.size() || !peers_[peer]) return 0;
  return peers_[peer]->dropped();
}

// ---- Receiving ----

// One incoming stream. Owned by gRPC until OnDone and by whoever holds a reference from
// PeerService::Shutdown; deleted when both let go.
class PeerService::DeliverReactor final : public grpc::ServerReadReactor<v1::PeerMessage> {
 public:
  explicit DeliverReactor(PeerService* service) : service_(service) {}

  void Begin() {
    grpc::Status refusal;
    if (!service_->Register(this, &refusal)) {
      FinishOnce(std::move(refusal));
      return;
    }
    std::lock_guard lock(mu_);
    StartRead(&message_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      FinishOnce(grpc::Status::OK);
      return;
    }
    try {
      const std::string& envelope = message_.envelope();
      service_->received_->Inc();
      if (envelope.empty()) {
        service_->Count("empty");
      } else if (envelope.size() > service_->message_bytes_max_) {
        service_->Count("oversized");
      } else {
        Bytes bytes(envelope.begin(), envelope.end());
        if (!service_->node_->DeliverPeerMessage(std::move(bytes))) {
          service_->Count("queue_full");
        }
      }
    } catch (const std::exception& e) {
      TM_ERROR("peer stream: {}", e.what());
      FinishOnce(grpc::Status(grpc::StatusCode::INTERNAL, "validator error"));
      return;
    }
    std::lock_guard lock(mu_);
    if (!finished_) StartRead(&message_);
  }

  void OnCancel() override { FinishOnce(grpc::Status::CANCELLED); }

  void OnDone() override {
    service_->Unregister(this);
    Unref();
  }

  void End() { FinishOnce(grpc::Status::OK); }
  void Ref() { refs_.fetch_add(1); }
  void Unref() {
    if (refs_.fetch_sub(1) == 1) delete this;
  }

 private:
  void FinishOnce(grpc::Status status) {
    std::lock_guard lock(mu_);
    if (finished_) return;
    finished_ = true;
    Finish(std::move(status));
  }

  PeerService* service_;
  std::mutex mu_;
  bool finished_ = false;
  v1::PeerMessage message_;
  std::atomic<int> refs_{1};
};

PeerService::PeerService(Node* node, uint64_t message_bytes_max, MetricsRegistry* metrics,
                         uint32_t streams_max)
    : node_(node),
      message_bytes_max_(message_bytes_max),
      streams_max_(streams_max),
      metrics_(metrics) {
  streams_gauge_ =
      metrics->GetGauge("trustmoe_validator_peer_streams", "Open incoming streams from peers");
  received_ = metrics->GetCounter("trustmoe_validator_peer_received_total",
                                  "Envelopes received from peers");
  for (const char* reason : {"empty", "oversized", "queue_full", "streams_max"}) {
    metrics->GetCounter("trustmoe_validator_peer_refused_total",
                        "Envelopes refused by the peer transport, by reason", {{"reason", reason}});
  }
}

PeerService::~PeerService() { Shutdown(); }

grpc::ServerReadReactor<v1::PeerMessage>* PeerService::Deliver(grpc::CallbackServerContext*,
                                                               v1::PeerAck*) {
  auto* reactor = new DeliverReactor(this);
  reactor->Begin();
  return reactor;
}

void PeerService::Count(const std::string& reason) {
  metrics_
      ->GetCounter("trustmoe_validator_peer_refused_total",
                   "Envelopes refused by the peer transport, by reason", {{"reason", reason}})
      ->Inc();
}

uint64_t PeerService::rejected(const std::string& reason) const {
  return static_cast<uint64_t>(
      metrics_
          ->GetCounter("trustmoe_validator_peer_refused_total",
                       "Envelopes refused by the peer transport, by reason", {{"reason", reason}})
          ->Value());
}

bool PeerService::Register(DeliverReactor* reactor, grpc::Status* refusal) {
  std::lock_guard lock(mu_);
  if (shut_down_) {
    *refusal = grpc::Status(grpc::StatusCode::UNAVAILABLE, "validator is shutting down");
    return false;
  }
  if (open_.size() >= streams_max_) {
    Count("streams_max");
    *refusal = grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        "validator has its maximum of " + std::to_string(streams_max_) + " open peer streams");
    return false;
  }
  open_.insert(reactor);
  streams_gauge_->Set(static_cast<double>(open_.size()));
  return true;
}

void PeerService::Unregister(DeliverReactor* reactor) {
  std::lock_guard lock(mu_);
  open_.erase(reactor);
  streams_gauge_->Set(static_cast<double>(open_.size()));
}

void PeerService::Shutdown() {
  std::vector<DeliverReactor*> open;
  {
    std::lock_guard lock(mu_);
    shut_down_ = true;
    for (DeliverReactor* r : open_) {
      r->Ref();
      open.push_back(r);
    }
  }
  for (DeliverReactor* r : open) {
    r->End();
    r->Unref();
  }
}

}  // namespace trustmoe::validator
