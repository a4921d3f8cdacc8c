#include "edge/edge_service.h"

#include "common/log.h"
#include "net/transport.h"

namespace trustmoe::edge {

grpc::Status EdgeService::Run(const CallRequest& call, v1::CallResponse* response) {
  auto result = node_->Call(call);
  if (!result.ok()) {
    TM_DEBUG("{} {} refused: {}", ledger::CallKindName(call.kind), call.expert_cid,
             result.status().ToString());
    return net::ToGrpcStatus(result.status());
  }
  response->set_output(result->output.data(), result->output.size());
  response->set_result_tx(result->result_tx.data(), result->result_tx.size());
  response->set_result_id(result->result_id.data(), result->result_id.size());
  response->set_input_cid(result->input_cid);
  response->set_output_cid(result->output_cid);
  response->set_rows(static_cast<uint64_t>(result->rows));
  return grpc::Status::OK;
}

grpc::Status EdgeService::Forward(grpc::ServerContext*, const v1::ForwardRequest* request,
                                  v1::CallResponse* response) {
  CallRequest call;
  call.kind = ledger::CallKind::kForward;
  call.job = request->job();
  call.step = request->step();
  call.expert_cid = request->expert_cid();
  call.input.assign(request->input().begin(), request->input().end());
  return Run(call, response);
}

grpc::Status EdgeService::Backward(grpc::ServerContext*, const v1::BackwardRequest* request,
                                   v1::CallResponse* response) {
  CallRequest call;
  call.kind = ledger::CallKind::kBackward;
  call.job = request->job();
  call.step = request->step();
  call.expert_cid = request->expert_cid();
  call.input.assign(request->input().begin(), request->input().end());
  call.grad_output.assign(request->grad_output().begin(), request->grad_output().end());
  if (call.grad_output.empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "backward needs grad_output");
  }
  return Run(call, response);
}

grpc::Status EdgeService::Update(grpc::ServerContext*, const v1::UpdateRequest* request,
                                 v1::UpdateResponse* response) {
  UpdateRequest update;
  update.job = request->job();
  update.step = request->step();
  update.parent_cid = request->parent_cid();
  update.sources.assign(request->sources().begin(), request->sources().end());
  const v1::OptimizerParams& o = request->optimizer();
  if (o.kind() == "sgd") {
    update.optimizer.kind = ledger::OptimizerKind::kSgd;
  } else if (o.kind() == "adam") {
    update.optimizer.kind = ledger::OptimizerKind::kAdam;
  } else {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "optimizer.kind must be sgd or adam, got '" + o.kind().substr(0, 32) + "'");
  }
  update.optimizer.lr = o.lr();
  update.optimizer.momentum = o.momentum();
  update.optimizer.beta1 = o.beta1() == 0 ? 0.9 : o.beta1();
  update.optimizer.beta2 = o.beta2() == 0 ? 0.999 : o.beta2();
  update.optimizer.eps = o.eps() == 0 ? 1e-8 : o.eps();
  update.optimizer.weight_decay = o.weight_decay();
  auto result = node_->Update(update);
  if (!result.ok()) {
    TM_DEBUG("update of {} refused: {}", update.parent_cid, result.status().ToString());
    return net::ToGrpcStatus(result.status());
  }
  response->set_child_cid(result->child_cid);
  response->set_child_state_cid(result->child_state_cid);
  response->set_update_tx(result->update_tx.data(), result->update_tx.size());
  response->set_update_id(result->update_id.data(), result->update_id.size());
  return grpc::Status::OK;
}

grpc::Status EdgeService::Health(grpc::ServerContext*, const v1::HealthRequest*,
                                 v1::HealthResponse* response) {
  EdgeStatus s = node_->status();
  response->set_serving(s.serving());
  response->set_detail(s.detail);
  return grpc::Status::OK;
}

grpc::Status EdgeService::Info(grpc::ServerContext*, const v1::InfoRequest*,
                               v1::InfoResponse* response) {
  EdgeInfo info = node_->Info();
  const auto& key = node_->edge_key().bytes();
  response->set_edge_key(key.data(), key.size());
  response->set_device(info.device);
  response->set_compute_dtype(info.compute_dtype);
  for (const std::string& cid : info.experts_held) response->add_experts_held(cid);
  response->set_in_flight(info.in_flight);
  response->set_requests(info.requests);
  response->set_rows(info.rows);
  response->set_outbox_depth(info.outbox_depth);
  response->set_device_bytes_used(info.device_bytes_used);
  response->set_device_bytes_max(info.device_bytes_max);
  response->set_rows_per_request_max(info.rows_per_request_max);
  response->set_serving(info.status.serving());
  response->set_detail(info.status.detail);
  return grpc::Status::OK;
}

}  // namespace trustmoe::edge
