#include "chain/validator/verdict_feed.h"

#include <set>

#include "chain/ledger/verdict.h"

namespace trustmoe::validator {
namespace {

std::string ToString(ByteSpan b) { return std::string(b.begin(), b.end()); }

Result<ledger::ResultRecord> ReadResult(const ledger::StateReader& state, const ResultId& id) {
  const std::string key = ledger::ResultKey(id.edge, id.nonce);
  TRUSTMOE_ASSIGN_OR_RETURN(std::optional<Bytes> bytes, state.Get(key));
  if (!bytes.has_value()) return Status::NotFound("no result " + key);
  auto record = ledger::ResultRecord::Decode(*bytes);
  if (!record.ok())
    return Status::DataLoss("state entry " + key + ": " + record.status().message());
  return record;
}

}  // namespace

Result<VerdictFilter> ParseVerdictFilter(const v1::WatchVerdictsRequest& request) {
  VerdictFilter filter;
  if (request.job().size() > ledger::kJobBytesMax) {
    return Status::InvalidArgument("field job is " + std::to_string(request.job().size()) +
                                   " bytes; at most " + std::to_string(ledger::kJobBytesMax));
  }
  filter.job = request.job();
  if (!request.edge().empty()) {
    if (request.edge().size() != 32) {
      return Status::InvalidArgument("field edge must be a 32-byte public key, got " +
                                     std::to_string(request.edge().size()) + " bytes");
    }
    auto key = crypto::PublicKey::FromBytes(AsBytes(request.edge()));
    if (!key.ok()) return Status::InvalidArgument("field edge: " + key.status().message());
    filter.edge = *key;
  }
  filter.from_height = request.from_height() == 0 ? 1 : request.from_height();
  filter.to_height = request.to_height();
  if (filter.to_height != 0 && filter.to_height < filter.from_height) {
    return Status::InvalidArgument("to_height " + std::to_string(filter.to_height) +
                                   " is below from_height " + std::to_string(filter.from_height));
  }
  return filter;
}

Result<std::vector<ResultId>> VerdictsOfBlock(const ledger::LedgerStore& store, uint64_t height,
                                              const VerdictFilter& filter) {
  TRUSTMOE_ASSIGN_OR_RETURN(ledger::StoredBlock block, store.GetBlock(height));
  std::vector<ResultId> out;
  if (!block.block) return out;
  const uint32_t tx_bytes_max = store.options().limits.tx_bytes_max;
  std::set<ResultId> seen;
  for (const Bytes& bytes : block.block->txs) {
    auto tx = ledger::Tx::Decode(bytes, tx_bytes_max);
    if (!tx.ok()) {
      return Status::DataLoss("block " + std::to_string(height) +
                              " holds an undecodable transaction: " + tx.status().message());
    }
    ResultId id;
    if (tx->type == static_cast<uint8_t>(ledger::TxType::kVote)) {
      // A vote that does not decode did not execute: it changed nothing.
      auto vote = ledger::VoteBody::Decode(tx->body);
      if (!vote.ok()) continue;
      id = ResultId{vote->edge, vote->result_nonce};
    } else if (tx->type == static_cast<uint8_t>(ledger::TxType::kExpertResult)) {
      id = ResultId{tx->signer, tx->nonce};  // rejected as it is ordered (unpublished expert)
    } else {
      continue;
    }
    if (filter.edge && id.edge != *filter.edge) continue;
    if (!seen.insert(id).second) continue;
    auto record = ReadResult(store, id);
    if (!record.ok()) {
      if (record.status().code() == StatusCode::kNotFound) continue;  // it did not execute
      return record.status();
    }
    if (record->verdict_height != height) continue;
    if (!filter.job.empty() && record->body.job != filter.job) continue;
    out.push_back(id);
  }
  return out;
}

Status ReadVerdictInfo(const ledger::StateReader& state, const ResultId& id, size_t validators,
                       v1::VerdictInfo* info) {
  TRUSTMOE_ASSIGN_OR_RETURN(ledger::ResultRecord record, ReadResult(state, id));
  TRUSTMOE_ASSIGN_OR_RETURN(auto votes,
                            state.Scan(ledger::VotePrefix(id.edge, id.nonce), "", validators));
  info->Clear();
  info->set_edge(ToString(id.edge.bytes()));
  info->set_nonce(id.nonce);
  const ledger::ExpertResultBody& body = record.body;
  info->set_job(body.job);
  info->set_step(body.step);
  info->set_kind(std::string(ledger::CallKindName(body.kind)));
  info->set_expert_cid(body.expert_cid);
  info->set_input_cid(body.input_cid);
  info->set_grad_output_cid(body.grad_output_cid);
  info->set_output_cid(body.output_cid);
  info->set_rows(body.rows);
  info->set_dtype(std::string(ledger::ComputeDTypeName(body.dtype)));
  info->set_device(body.device);
  info->set_status(std::string(ledger::ResultStatusName(record.status)));
  info->set_reason(record.reason);
  info->set_height(record.height);
  info->set_verdict_height(record.verdict_height);
  for (const auto& [key, value] : votes) {
    auto vote = ledger::VoteRecord::Decode(value);
    if (!vote.ok()) return Status::DataLoss("state entry " + key + ": " + vote.status().message());
    v1::VoteInfo* v = info->add_votes();
    v->set_validator_id(vote->validator);
    v->set_verdict(std::string(ledger::VerdictName(vote->verdict)));
    v->set_reason(std::string(ledger::RejectReasonName(vote->reason)));
    v->set_detail(vote->detail);
    v->set_height(vote->height);
  }
  return Status::Ok();
}

}  // namespace trustmoe::validator
