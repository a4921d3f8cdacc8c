#include "chain/verify/verification.h"

#include "common/log.h"

namespace trustmoe::verify {

Result<std::unique_ptr<Verification>> Verification::Start(
    const validator::ValidatorConfig& config, validator::Validator* validator,
    std::unique_ptr<edge::ExpertRuntime> runtime) {
  std::unique_ptr<Verification> v(new Verification());
  auto key = crypto::PrivateKey::LoadPem(config.identity_key);
  if (!key.ok()) return key.status().WithContext("identity key " + config.identity_key);

  storage::StoreClientOptions store_options;
  store_options.endpoints = config.verify_store_endpoints;
  store_options.transport = config.transport;
  TRUSTMOE_ASSIGN_OR_RETURN(v->store_, storage::StoreClient::Create(store_options));
  v->runtime_ = std::move(runtime);
  v->blobs_ = std::make_unique<StoreBlobSource>(v->store_.get());

  const ledger::Genesis& genesis = validator->node()->genesis();
  VerifierOptions verifier_options;
  verifier_options.tensor_bytes_max = config.verify_tensor_bytes_max;
  verifier_options.expert_bytes_max = config.verify_expert_bytes_max;
  v->verifier_ = std::make_unique<ResultVerifier>(genesis.params, v->runtime_.get(),
                                                  v->blobs_.get(), verifier_options);
  WorkerOptions worker_options;
  worker_options.threads = static_cast<int>(config.verify_threads);
  worker_options.resubmit_ms = config.verify_resubmit_ms;
  TRUSTMOE_ASSIGN_OR_RETURN(
      v->worker_, VerificationWorker::Start(validator->node(), std::move(key).value(),
                                            v->verifier_.get(), worker_options,
                                            validator->metrics()));
  const ledger::ChainParams& p = genesis.params;
  TM_INFO("verification on: store {}, {} thread(s) on {}, sample max({} rows, {} ppm), "
          "deadline {} ms, tolerance f32 {} / bf16 {} / f16 {} ppm",
          config.verify_store_endpoints.front(), config.verify_threads,
          v->runtime_->DeviceDescription(), p.verify_rows_min, p.verify_fraction_ppm,
          p.verify_deadline_ms, p.tolerance_f32_ppm, p.tolerance_bf16_ppm, p.tolerance_f16_ppm);
  return v;
}

Verification::~Verification() { Stop(); }

void Verification::Stop() {
  if (worker_) worker_->Stop();
}

}  // namespace trustmoe::verify
