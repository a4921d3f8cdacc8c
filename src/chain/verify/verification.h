// A validator's verification, assembled: store client, expert runtime, verifier and worker,
// from the [verify] section of its config (docs/verification.md). trustmoe-validator's main()
// starts it next to the Validator when the build has libtorch and the config names a store.
#pragma once

#include <memory>

#include "chain/validator/validator.h"
#include "chain/validator/validator_config.h"
#include "chain/verify/verifier.h"
#include "chain/verify/verify_worker.h"
#include "edge/runtime.h"
#include "storage/store_client.h"

namespace trustmoe::verify {

// Reads blobs from trustmoe-store, each verified against its CID chunk by chunk.
class StoreBlobSource : public BlobSource {
 public:
  explicit StoreBlobSource(storage::StoreClient* client) : client_(client) {}
  Result<Bytes> Get(const crypto::Cid& cid, uint64_t bytes_max) override {
    return client_->Get(cid, bytes_max);
  }
  Result<int64_t> CreatedUnixMs(const crypto::Cid& cid) override {
    TRUSTMOE_ASSIGN_OR_RETURN(storage::StoredBlob blob, client_->Stat(cid));
    return blob.created_unix_ms;
  }

 private:
  storage::StoreClient* client_;
};

class Verification {
 public:
  // `validator` (started, not owned) must outlive the result; `runtime` runs the
  // re-computations (f32 on the CPU: the tolerances are calibrated against it).
  static Result<std::unique_ptr<Verification>> Start(const validator::ValidatorConfig& config,
                                                     validator::Validator* validator,
                                                     std::unique_ptr<edge::ExpertRuntime> runtime);
  ~Verification();  // Stop()
  // Finishes the checks in progress and stops. Call before the validator stops.
  void Stop();
  VerificationWorker* worker() { return worker_.get(); }

 private:
  Verification() = default;
  std::unique_ptr<storage::StoreClient> store_;
  std::unique_ptr<edge::ExpertRuntime> runtime_;
  std::unique_ptr<StoreBlobSource> blobs_;
  std::unique_ptr<ResultVerifier> verifier_;
  std::unique_ptr<VerificationWorker> worker_;
};

}  // namespace trustmoe::verify
