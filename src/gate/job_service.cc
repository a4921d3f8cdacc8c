#include "gate/job_service.h"

#include "common/log.h"
#include "net/transport.h"

namespace trustmoe::gate {
namespace {

ByteSpan AsSpan(const std::string& s) {
  return ByteSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

grpc::Status Fail(const Status& s) { return net::ToGrpcStatus(s); }

}  // namespace

grpc::Status JobService::SubmitJob(grpc::ServerContext*, const v1::SubmitJobRequest* request,
                                   v1::JobInfo* response) {
  if (request->ByteSizeLong() > request_bytes_max_) {
    return Fail(Status::ResourceExhausted("the request is larger than the gate's request_bytes_max"));
  }
  auto caller = node_->Authenticate(request->auth(), "SubmitJob", AsSpan(request->spec_toml()));
  if (!caller.ok()) return Fail(caller.status());
  auto info = node_->Submit(*caller, *request);
  if (!info.ok()) return Fail(info.status());
  *response = std::move(info).value();
  return grpc::Status::OK;
}

grpc::Status JobService::GetJob(grpc::ServerContext*, const v1::JobRequest* request,
                                v1::JobInfo* response) {
  auto caller = node_->Authenticate(request->auth(), "GetJob", AsSpan(request->job_id()));
  if (!caller.ok()) return Fail(caller.status());
  auto info = node_->Get(*caller, request->job_id());
  if (!info.ok()) return Fail(info.status());
  *response = std::move(info).value();
  return grpc::Status::OK;
}

grpc::Status JobService::WatchJob(grpc::ServerContext* ctx, const v1::JobRequest* request,
                                  grpc::ServerWriter<v1::JobProgress>* writer) {
  auto caller = node_->Authenticate(request->auth(), "WatchJob", AsSpan(request->job_id()));
  if (!caller.ok()) return Fail(caller.status());
  Status s = node_->Watch(
      *caller, request->job_id(), [&](const v1::JobProgress& p) { return writer->Write(p); },
      [&] { return !ctx->IsCancelled(); });
  if (s.code() == StatusCode::kCancelled) return grpc::Status::OK;  // the client left
  return Fail(s);
}

grpc::Status JobService::CancelJob(grpc::ServerContext*, const v1::JobRequest* request,
                                   v1::JobInfo* response) {
  auto caller = node_->Authenticate(request->auth(), "CancelJob", AsSpan(request->job_id()));
  if (!caller.ok()) return Fail(caller.status());
  auto info = node_->Cancel(*caller, request->job_id());
  if (!info.ok()) return Fail(info.status());
  *response = std::move(info).value();
  return grpc::Status::OK;
}

grpc::Status JobService::ListJobs(grpc::ServerContext*, const v1::ListJobsRequest* request,
                                  v1::ListJobsResponse* response) {
  auto caller = node_->Authenticate(request->auth(), "ListJobs", ByteSpan());
  if (!caller.ok()) return Fail(caller.status());
  auto jobs = node_->List(*caller);
  if (!jobs.ok()) return Fail(jobs.status());
  for (auto& j : *jobs) *response->add_jobs() = std::move(j);
  return grpc::Status::OK;
}

}  // namespace trustmoe::gate
