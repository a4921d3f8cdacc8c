// ChainService (proto/trustmoe/v1/chain.proto) on a validator node, on gRPC's callback API.
//
// SubmitTx holds no thread while it waits: its reactor is finished from the node's commit
// path (or its deadline). Queries read the committed ledger directly (LedgerStore reads are
// safe beside the consensus thread) and answer on the gRPC thread. WatchBlocks streams blocks
// from the ledger by height, one write in flight at a time, and is woken by each commit; a
// slow reader only falls behind, it buffers nothing. WatchVerdicts streams the same way the
// verdicts finalized in each block (found by the block's vote transactions); it keeps at most
// one block's worth of result keys. Every request field is checked and refused with
// INVALID_ARGUMENT saying what is wrong.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "chain/validator/node.h"
#include "common/metrics.h"
#include "trustmoe/v1/chain.grpc.pb.h"

namespace trustmoe::validator {

struct ChainServiceOptions {
  int64_t submit_timeout_ms = 30000;       // when a request gives 0
  int64_t submit_timeout_max_ms = 300000;  // longer requested waits are cut to this
  uint32_t watch_streams_max = 256;        // WatchBlocks and WatchVerdicts together
  uint32_t list_limit_max = 1000;   // ListNodes / ListExperts / ListModels
  uint32_t scan_limit_max = 10000;  // ScanState
};

class ChainService final : public v1::ChainService::CallbackService {
 public:
  // `node` and `metrics` must outlive the service. Installs the node's commit listener.
  ChainService(Node* node, ChainServiceOptions options, MetricsRegistry* metrics);
  ~ChainService() override;

  // Ends every WatchBlocks and WatchVerdicts stream (OK) and answers new calls with
  // UNAVAILABLE.
  void Shutdown();

  grpc::ServerUnaryReactor* SubmitTx(grpc::CallbackServerContext* ctx,
                                     const v1::SubmitTxRequest* request,
                                     v1::SubmitTxResponse* response) override;
  grpc::ServerUnaryReactor* GetHead(grpc::CallbackServerContext* ctx,
                                    const v1::GetHeadRequest* request,
                                    v1::HeadInfo* response) override;
  grpc::ServerUnaryReactor* GetBlock(grpc::CallbackServerContext* ctx,
                                     const v1::GetBlockRequest* request,
                                     v1::BlockInfo* response) override;
  grpc::ServerUnaryReactor* GetTx(grpc::CallbackServerContext* ctx, const v1::GetTxRequest* request,
                                  v1::TxInfo* response) override;
  grpc::ServerUnaryReactor* ListNodes(grpc::CallbackServerContext* ctx,
                                      const v1::ListNodesRequest* request,
                                      v1::ListNodesResponse* response) override;
  grpc::ServerUnaryReactor* ListExperts(grpc::CallbackServerContext* ctx,
                                        const v1::ListExpertsRequest* request,
                                        v1::ListExpertsResponse* response) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* ctx,
                                       const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override;
  grpc::ServerUnaryReactor* ScanState(grpc::CallbackServerContext* ctx,
                                      const v1::ScanStateRequest* request,
                                      v1::ScanStateResponse* response) override;
  grpc::ServerUnaryReactor* GetGenesis(grpc::CallbackServerContext* ctx,
                                       const v1::GetGenesisRequest* request,
                                       v1::GenesisInfo* response) override;
  grpc::ServerWriteReactor<v1::BlockInfo>* WatchBlocks(
      grpc::CallbackServerContext* ctx, const v1::WatchBlocksRequest* request) override;
  grpc::ServerWriteReactor<v1::VerdictInfo>* WatchVerdicts(
      grpc::CallbackServerContext* ctx, const v1::WatchVerdictsRequest* request) override;

 private:
  // An open watch stream as the service sees it: woken by each commit, ended by Shutdown.
  // Reference counted: gRPC holds one reference until OnDone, and callers of Pump and End
  // hold one for the call.
  class Watch {
   public:
    virtual ~Watch() = default;
    virtual void Pump() = 0;  // a block was committed
    virtual void End() = 0;   // finish the stream (OK) once no write is in flight
    void Ref() { refs_.fetch_add(1); }
    void Unref() {
      if (refs_.fetch_sub(1) == 1) delete this;
    }

   private:
    std::atomic<int> refs_{1};
  };
  class WatchReactor;
  class VerdictReactor;
  // Runs `body` (catching exceptions), counts a refusal, and finishes the default reactor.
  template <typename Fn>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx, const char* rpc, Fn body);
  void Refused(const Status& status, const char* rpc);
  void OnCommit(uint64_t height);
  bool RegisterWatch(Watch* watch, const char* rpc, Status* refusal);
  void UnregisterWatch(Watch* watch);
  // Every watch, each with a reference the caller drops.
  std::vector<Watch*> RefWatches();

  Status DoGetHead(v1::HeadInfo* response);
  Status DoGetBlock(const v1::GetBlockRequest& request, v1::BlockInfo* response);
  Status DoGetTx(const v1::GetTxRequest& request, v1::TxInfo* response);
  Status DoListNodes(const v1::ListNodesRequest& request, v1::ListNodesResponse* response);
  Status DoListExperts(const v1::ListExpertsRequest& request, v1::ListExpertsResponse* response);
  Status DoListModels(const v1::ListModelsRequest& request, v1::ListModelsResponse* response);
  Status DoScanState(const v1::ScanStateRequest& request, v1::ScanStateResponse* response);
  uint32_t ListLimit(uint32_t requested) const;

  Node* node_;
  const ChainServiceOptions options_;
  MetricsRegistry* metrics_;
  Gauge* watch_gauge_;

  std::mutex mu_;
  bool shut_down_ = false;
  std::set<Watch*> watches_;

  // Commits wake this thread, which pumps the watch streams: their ledger reads never run on
  // the consensus thread (the commit listener only sets a flag).
  void PumpLoop();
  // Wakes the pump thread (a commit, a new stream, a replay that yielded).
  void RequestPump();
  std::mutex pump_mu_;
  std::condition_variable pump_cv_;
  bool pump_due_ = false;
  bool pump_stop_ = false;
  std::thread pump_thread_;
};

// Fills `info` from a committed transaction with its proof.
void FillTxInfo(const ledger::TxWithProof& tx, v1::TxInfo* info);

}  // namespace trustmoe::validator
