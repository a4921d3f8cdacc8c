// JobService (proto/trustmoe/v1/gate.proto) over GateNode: checks each request's size and
// signature, then hands it to the node.
#pragma once

#include "gate/gate_node.h"
#include "trustmoe/v1/gate.grpc.pb.h"

namespace trustmoe::gate {

class JobService final : public v1::JobService::Service {
 public:
  explicit JobService(GateNode* node, uint64_t request_bytes_max)
      : node_(node), request_bytes_max_(request_bytes_max) {}

  grpc::Status SubmitJob(grpc::ServerContext* ctx, const v1::SubmitJobRequest* request,
                         v1::JobInfo* response) override;
  grpc::Status GetJob(grpc::ServerContext* ctx, const v1::JobRequest* request,
                      v1::JobInfo* response) override;
  grpc::Status WatchJob(grpc::ServerContext* ctx, const v1::JobRequest* request,
                        grpc::ServerWriter<v1::JobProgress>* writer) override;
  grpc::Status CancelJob(grpc::ServerContext* ctx, const v1::JobRequest* request,
                         v1::JobInfo* response) override;
  grpc::Status ListJobs(grpc::ServerContext* ctx, const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override;

 private:
  GateNode* node_;
  uint64_t request_bytes_max_;
};

}  // namespace trustmoe::gate
