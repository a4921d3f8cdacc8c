#include "chain/validator/validator.h"

#include <chrono>
#include <climits>

#include "common/log.h"

namespace trustmoe::validator {
namespace {

// gRPC framing around a PBFT envelope in a PeerMessage.
constexpr uint64_t kFramingBytes = 64 * 1024;
constexpr int64_t kHealthyStepAgeMs = 10000;

}  // namespace

Result<std::unique_ptr<Validator>> Validator::Start(const ValidatorConfig& config) {
  auto genesis = ledger::Genesis::Load(config.genesis);
  if (!genesis.ok()) return genesis.status().WithContext("genesis " + config.genesis);
  auto key = crypto::PrivateKey::LoadPem(config.identity_key);
  if (!key.ok()) return key.status().WithContext("identity key " + config.identity_key);
  return Start(config, std::move(genesis).value(), std::move(key).value());
}

Result<std::unique_ptr<Validator>> Validator::Start(const ValidatorConfig& config,
                                                    ledger::Genesis genesis,
                                                    crypto::PrivateKey key) {
  std::unique_ptr<Validator> v(new Validator(config));
  Status s = v->Init(std::move(genesis), std::move(key));
  if (!s.ok()) {
    v->Stop();
    return s;
  }
  return v;
}

Validator::Validator(const ValidatorConfig& config)
    : config_(config), http_(&metrics_, [this] { return Health(); }) {}

Validator::~Validator() { Stop(); }

Status Validator::Init(ledger::Genesis genesis, crypto::PrivateKey key) {
  NodeOptions options;
  options.data_dir = config_.data_dir;
  options.genesis = genesis;
  options.key = key;
  options.pool_txs_max = config_.pool_txs_max;
  options.pool_bytes_max = config_.pool_bytes_max;
  options.tx_pending_max_ms = config_.tx_pending_max_ms;
  options.event_queue_max = config_.event_queue_max;
  options.event_queue_bytes_max = config_.event_queue_bytes_max;
  options.step_events_max = config_.step_events_max;
  options.submit_waiters_max = config_.submit_waiters_max;
  options.metrics = &metrics_;
  TRUSTMOE_ASSIGN_OR_RETURN(node_, Node::Create(std::move(options)));

  const uint64_t message_bytes_max = node_->pbft_config().message_bytes_max;
  net::TransportConfig transport = config_.transport;
  transport.message_bytes_max =
      static_cast<int>(std::min<uint64_t>(message_bytes_max + kFramingBytes, INT_MAX));

  PeerTransportOptions peer_options;
  peer_options.self_id = node_->id();
  for (const ledger::GenesisValidator& v : genesis.validators) {
    peer_options.endpoints.push_back(v.endpoint);
  }
  peer_options.transport = transport;
  peer_options.queue_max = config_.peer_queue_max;
  peer_options.queue_bytes_max = config_.peer_queue_bytes_max;
  peer_options.reconnect_min_ms = config_.peer_reconnect_min_ms;
  peer_options.reconnect_max_ms = config_.peer_reconnect_max_ms;
  TRUSTMOE_ASSIGN_OR_RETURN(peers_, PeerTransport::Create(std::move(peer_options), &metrics_));

  peer_service_ = std::make_unique<PeerService>(node_.get(), message_bytes_max, &metrics_,
                                                config_.peer_streams_max);
  ChainServiceOptions chain_options;
  chain_options.submit_timeout_ms = config_.submit_timeout_ms;
  chain_options.submit_timeout_max_ms = config_.submit_timeout_max_ms;
  chain_options.watch_streams_max = config_.watch_streams_max;
  chain_options.list_limit_max = config_.list_limit_max;
  chain_options.scan_limit_max = config_.scan_limit_max;
  chain_service_ = std::make_unique<ChainService>(node_.get(), chain_options, &metrics_);

  node_->Start(peers_.get());
  peers_->Start();
  TRUSTMOE_ASSIGN_OR_RETURN(
      net::StartedServer started,
      net::StartServer(config_.listen, transport, {peer_service_.get(), chain_service_.get()}));
  server_ = std::move(started.server);
  grpc_port_ = started.bound_port;

  std::string http_host;
  int http_port = 0;
  TRUSTMOE_RETURN_IF_ERROR(net::SplitHostPort(config_.http_listen, &http_host, &http_port));
  TRUSTMOE_RETURN_IF_ERROR(http_.Start(http_host, http_port));
  TM_INFO("validator {} of chain '{}' serving on port {} (http {}), height {}, view {}",
          node_->id(), genesis.chain_id, grpc_port_, http_.port(), node_->store().Head().height,
          node_->view());
  return Status::Ok();
}

void Validator::Stop() {
  std::lock_guard lock(stop_mu_);
  if (stopped_) return;
  stopped_ = true;
  // New calls get UNAVAILABLE; watch streams end.
  if (chain_service_) chain_service_->Shutdown();
  // The step in progress finishes; waiting SubmitTx calls are answered.
  if (node_) node_->Stop();
  if (peer_service_) peer_service_->Shutdown();
  if (peers_) peers_->Stop();
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(config_.drain_timeout_ms));
    server_->Wait();
  }
  http_.Stop();
}

HealthReport Validator::Health() const {
  if (!node_) return {false, "starting"};
  NodeSnapshot s = node_->Snapshot();
  if (!s.running) return {false, "consensus thread is not running"};
  int64_t age = SystemClock::Get()->MonotonicMs() - s.last_step_mono_ms;
  if (age > kHealthyStepAgeMs) {
    return {false, "consensus thread has not woken for " + std::to_string(age) + " ms"};
  }
  return {true, "ok height " + std::to_string(s.height) + " view " + std::to_string(s.view) +
                    (s.view_active ? "" : " (changing view)")};
}

}  // namespace trustmoe::validator
