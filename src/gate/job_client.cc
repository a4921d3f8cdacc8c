#include "gate/job_client.h"

#include <algorithm>
#include <chrono>
#include <exception>

#include "chain/ledger/job.h"
#include "chain/ledger/tx.h"
#include "trustmoe/v1/gate.grpc.pb.h"

namespace trustmoe::gate {

struct JobClient::Stub {
  std::unique_ptr<v1::JobService::Stub> stub;
};

namespace {

// Larger than any answer a gate should send (a ListJobs of many jobs with their specs).
constexpr int kResponseBytesMax = 64 << 20;

void SetDeadline(grpc::ClientContext* ctx, int64_t ms) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(ms));
}

// Runs one unary call, turning a thrown exception (protobuf, gRPC) into Internal.
template <typename Call>
Status Guarded(const Call& call) {
  try {
    return call();
  } catch (const std::exception& e) {
    return Status::Internal(std::string("client error: ") + e.what());
  }
}

Status CheckJobId(const std::string& job_id) {
  if (job_id.empty()) return Status::InvalidArgument("job id is empty");
  if (job_id.size() > 128) {
    return Status::InvalidArgument("job id is " + std::to_string(job_id.size()) +
                                   " characters, at most 128");
  }
  for (char c : job_id) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return Status::InvalidArgument("job id '" + job_id +
                                     "' is not lowercase hex (as `trustmoe job submit` prints)");
    }
  }
  return Status::Ok();
}

}  // namespace

bool IsFinalJobState(std::string_view state) {
  return state == "completed" || state == "cancelled" || state == "failed";
}

JobClient::JobClient(JobClientOptions options) : options_(std::move(options)) {}

JobClient::~JobClient() = default;

Result<std::unique_ptr<JobClient>> JobClient::Create(JobClientOptions options) {
  if (options.endpoint.empty()) {
    return Status::InvalidArgument("no gate endpoint (expected host:port)");
  }
  std::string host;
  int port = 0;
  TRUSTMOE_RETURN_IF_ERROR(net::SplitHostPort(options.endpoint, &host, &port)
                               .WithContext("gate endpoint '" + options.endpoint + "'"));
  if (port == 0) {
    return Status::InvalidArgument("gate endpoint '" + options.endpoint + "' has port 0");
  }
  if (options.chain_id.empty()) return Status::InvalidArgument("no chain id to sign requests for");
  if (options.key == nullptr) return Status::InvalidArgument("no researcher key to sign with");
  if (options.rpc_timeout_ms <= 0) {
    return Status::InvalidArgument("rpc_timeout_ms must be positive");
  }
  options.transport.message_bytes_max =
      std::max(options.transport.message_bytes_max, kResponseBytesMax);
  auto channel = net::MakeChannel(options.endpoint, options.transport);
  if (!channel.ok()) return channel.status().WithContext("gate " + options.endpoint);
  std::unique_ptr<JobClient> client(new JobClient(std::move(options)));
  client->stub_ = std::make_unique<Stub>();
  client->stub_->stub = v1::JobService::NewStub(*channel);
  return client;
}

v1::RequestAuth JobClient::Sign(std::string_view method, std::string_view payload) const {
  const uint64_t nonce = ledger::FreshNonce();
  const Bytes message =
      ledger::GateRequestMessage(options_.chain_id, method, nonce, AsBytes(payload));
  const crypto::Signature signature = options_.key->Sign(message);
  const auto& researcher = options_.key->public_key().bytes();
  v1::RequestAuth auth;
  auth.set_researcher(researcher.data(), researcher.size());
  auth.set_nonce(nonce);
  auth.set_signature(signature.data(), signature.size());
  return auth;
}

Status JobClient::Named(const Status& status) const {
  if (status.ok()) return status;
  return status.WithContext("gate " + options_.endpoint);
}

Result<v1::JobInfo> JobClient::Submit(const std::string& spec_toml) {
  if (spec_toml.size() > ledger::kJobSpecBytesMax) {
    return Status::InvalidArgument("the job spec is " + std::to_string(spec_toml.size()) +
                                   " bytes, at most " + std::to_string(ledger::kJobSpecBytesMax));
  }
  v1::JobInfo info;
  Status status = Guarded([&] {
    v1::SubmitJobRequest request;
    request.set_spec_toml(spec_toml);
    *request.mutable_auth() = Sign("SubmitJob", spec_toml);
    grpc::ClientContext ctx;
    SetDeadline(&ctx, options_.rpc_timeout_ms);
    return net::FromGrpcStatus(stub_->stub->SubmitJob(&ctx, request, &info));
  });
  if (!status.ok()) return Named(status);
  return info;
}

Result<v1::JobInfo> JobClient::Get(const std::string& job_id) {
  TRUSTMOE_RETURN_IF_ERROR(CheckJobId(job_id));
  v1::JobInfo info;
  Status status = Guarded([&] {
    v1::JobRequest request;
    request.set_job_id(job_id);
    *request.mutable_auth() = Sign("GetJob", job_id);
    grpc::ClientContext ctx;
    SetDeadline(&ctx, options_.rpc_timeout_ms);
    return net::FromGrpcStatus(stub_->stub->GetJob(&ctx, request, &info));
  });
  if (!status.ok()) return Named(status);
  return info;
}

Result<v1::JobInfo> JobClient::Cancel(const std::string& job_id) {
  TRUSTMOE_RETURN_IF_ERROR(CheckJobId(job_id));
  v1::JobInfo info;
  Status status = Guarded([&] {
    v1::JobRequest request;
    request.set_job_id(job_id);
    *request.mutable_auth() = Sign("CancelJob", job_id);
    grpc::ClientContext ctx;
    SetDeadline(&ctx, options_.rpc_timeout_ms);
    return net::FromGrpcStatus(stub_->stub->CancelJob(&ctx, request, &info));
  });
  if (!status.ok()) return Named(status);
  return info;
}

Result<std::vector<v1::JobInfo>> JobClient::List() {
  v1::ListJobsResponse response;
  Status status = Guarded([&] {
    v1::ListJobsRequest request;
    *request.mutable_auth() = Sign("ListJobs", "");
    grpc::ClientContext ctx;
    SetDeadline(&ctx, options_.rpc_timeout_ms);
    return net::FromGrpcStatus(stub_->stub->ListJobs(&ctx, request, &response));
  });
  if (!status.ok()) return Named(status);
  return std::vector<v1::JobInfo>(response.jobs().begin(), response.jobs().end());
}

Status JobClient::Watch(const std::string& job_id, const JobProgressCallback& callback) {
  TRUSTMOE_RETURN_IF_ERROR(CheckJobId(job_id));
  Status status = Guarded([&]() -> Status {
    v1::JobRequest request;
    request.set_job_id(job_id);
    *request.mutable_auth() = Sign("WatchJob", job_id);
    grpc::ClientContext ctx;  // no deadline: a job may run for hours
    std::unique_ptr<grpc::ClientReader<v1::JobProgress>> reader =
        stub_->stub->WatchJob(&ctx, request);
    v1::JobProgress progress;
    Status failure;
    bool done = false;
    while (reader->Read(&progress)) {
      if (!progress.job_id().empty() && progress.job_id() != job_id) {
        failure = Status::DataLoss("sent progress of job " + progress.job_id() + " while " +
                                   job_id + " was watched");
        break;
      }
      if (!callback(progress) || IsFinalJobState(progress.state())) {
        done = true;
        break;
      }
    }
    if (done || !failure.ok()) {
      ctx.TryCancel();
      reader->Finish().ok();
      return failure;
    }
    Status finished = net::FromGrpcStatus(reader->Finish());
    if (!finished.ok()) return finished;
    return Status::Unavailable("the progress stream of job " + job_id +
                               " ended before the job did");
  });
  return Named(status);
}

}  // namespace trustmoe::gate
