// gRPC EdgeService over an EdgeNode (proto/trustmoe/v1/edge.proto).
#pragma once

#include "edge/edge_node.h"
#include "trustmoe/v1/edge.grpc.pb.h"

namespace trustmoe::edge {

class EdgeService final : public v1::EdgeService::Service {
 public:
  explicit EdgeService(EdgeNode* node) : node_(node) {}

  grpc::Status Forward(grpc::ServerContext* ctx, const v1::ForwardRequest* request,
                       v1::CallResponse* response) override;
  grpc::Status Backward(grpc::ServerContext* ctx, const v1::BackwardRequest* request,
                        v1::CallResponse* response) override;
  grpc::Status Update(grpc::ServerContext* ctx, const v1::UpdateRequest* request,
                      v1::UpdateResponse* response) override;
  grpc::Status Health(grpc::ServerContext* ctx, const v1::HealthRequest* request,
                      v1::HealthResponse* response) override;
  grpc::Status Info(grpc::ServerContext* ctx, const v1::InfoRequest* request,
                    v1::InfoResponse* response) override;

 private:
  grpc::Status Run(const CallRequest& call, v1::CallResponse* response);
  EdgeNode* node_;
};

}  // namespace trustmoe::edge
