// A researcher's client of the gate's JobService (proto/trustmoe/v1/gate.proto, docs/gate.md).
//
// Every request carries a RequestAuth: the researcher's public key, a fresh nonce (the signing
// time in Unix nanoseconds, ledger::FreshNonce) and an Ed25519 signature over
//   ledger::GateRequestMessage(chain_id, method, nonce, payload)
// where payload is the spec's TOML text (SubmitJob), the job id (GetJob, WatchJob, CancelJob)
// or empty (ListJobs). The gate refuses a nonce more than 5 minutes from its clock, so the
// client's clock must be roughly right.
//
// Errors are the gate's (InvalidArgument, Unauthenticated, PermissionDenied, NotFound,
// AlreadyExists, FailedPrecondition, ResourceExhausted) or the transport's (Unavailable,
// DeadlineExceeded), with "gate <host:port>: " in front. No retries and no failover: a
// job lives on the one gate that owns it.
//
// Thread-safe: one client may serve many threads. No gRPC type appears in this header.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "crypto/ed25519.h"
#include "net/transport.h"
#include "trustmoe/v1/gate.pb.h"

namespace trustmoe::gate {

struct JobClientOptions {
  std::string endpoint;  // the gate's "host:port"
  net::TransportConfig transport;
  std::string chain_id;  // from the genesis file; part of every signed request
  std::shared_ptr<const crypto::PrivateKey> key;  // the researcher's key (role researcher)
  int64_t rpc_timeout_ms = 30'000;                // unary calls; WatchJob has no deadline
};

// Called with each message of WatchJob, in order; return false to stop watching.
using JobProgressCallback = std::function<bool(const v1::JobProgress&)>;

class JobClient {
 public:
  // InvalidArgument for an empty or malformed endpoint, an empty chain id, no key, a
  // non-positive timeout, or a bad transport config (plaintext to a non-loopback gate
  // included). Does not connect.
  static Result<std::unique_ptr<JobClient>> Create(JobClientOptions options);

  ~JobClient();
  JobClient(const JobClient&) = delete;
  JobClient& operator=(const JobClient&) = delete;

  // Submits the spec's exact text (the gate parses and validates it; what is signed is these
  // bytes). The job as the gate recorded it. InvalidArgument, before any call, for a spec
  // over ledger::kJobSpecBytesMax.
  Result<v1::JobInfo> Submit(const std::string& spec_toml);

  // The job now. NotFound for a job this gate does not own.
  Result<v1::JobInfo> Get(const std::string& job_id);

  // Streams the job's progress to `callback` until the job ends (its last message has a final
  // state), the callback returns false, or the stream fails. Ok when the callback stopped it
  // or a final state arrived; Unavailable naming the gate when the stream ended before a final
  // state; the gate's error otherwise.
  Status Watch(const std::string& job_id, const JobProgressCallback& callback);

  // Stops a queued or running job. FailedPrecondition when it already ended.
  Result<v1::JobInfo> Cancel(const std::string& job_id);

  // The signer's jobs on this gate, newest first.
  Result<std::vector<v1::JobInfo>> List();

  const std::string& endpoint() const { return options_.endpoint; }

 private:
  struct Stub;
  explicit JobClient(JobClientOptions options);
  // A RequestAuth for `method` over `payload`, with a fresh nonce.
  v1::RequestAuth Sign(std::string_view method, std::string_view payload) const;
  // "gate host:port: <message>", keeping the code.
  Status Named(const Status& status) const;

  JobClientOptions options_;
  std::unique_ptr<Stub> stub_;
};

// True for the states a job ends in: "completed", "cancelled", "failed".
bool IsFinalJobState(std::string_view state);

}  // namespace trustmoe::gate
