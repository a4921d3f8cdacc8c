// State transfer: a replica behind its peers asks one of them for the committed blocks after
// its executed height; each block comes with its commit certificate, which is verified (quorum
// valid signatures of distinct validators over the block's digest) together with the block's
// digest and its link to the chain before the block is executed.
#include <algorithm>
#include <set>

#include "chain/pbft/replica.h"

namespace trustmoe::pbft {

void Replica::NotePeerExecuted(uint32_t peer, uint64_t seq) {
  if (peer == id_) return;
  uint64_t& known = peer_executed_[peer];
  known = std::max(known, seq);
}

// The height that at least f + 1 peers claim to have executed (so at least one honest one
// has), or the stable checkpoint, whichever is higher.
uint64_t Replica::FetchTarget() const {
  std::vector<uint64_t> claims;
  for (const auto& [peer, seq] : peer_executed_) claims.push_back(seq);
  uint64_t target = stable_.seq;
  if (claims.size() > config_.f) {
    std::sort(claims.begin(), claims.end(), std::greater<uint64_t>());
    target = std::max(target, claims[config_.f]);
  }
  return target;
}

void Replica::MaybeFetch() {
  if (fetch_active_ && now_ms_ < fetch_deadline_ms_) return;
  fetch_active_ = false;
  if (FetchTarget() <= last_executed_) return;
  std::vector<uint32_t> peers;
  for (const auto& [peer, seq] : peer_executed_) {
    if (seq > last_executed_) peers.push_back(peer);
  }
  if (peers.empty()) return;
  fetch_peer_ = peers[fetch_rotation_ % peers.size()];
  fetch_active_ = true;
  fetch_deadline_ms_ = now_ms_ + config_.fetch_timeout_ms;
  FetchBlocks fetch{last_executed_ + 1, config_.fetch_blocks_max};
  Send(fetch_peer_, Sign(MsgType::kFetchBlocks, fetch.Body(id_)));
}

void Replica::HandleFetchBlocks(const Envelope& e) {
  Result<FetchBlocks> fetch = FetchBlocks::Parse(e);
  if (!fetch.ok() || fetch->from_seq == 0) return Count(Reject::kMalformed);
  if (!Verify(e)) return Count(Reject::kBadSignature);
  NotePeerExecuted(e.sender, fetch->from_seq - 1);
  Blocks reply;
  reply.stable = stable_;
  reply.checkpoint_proof = stable_proof_;
  const uint32_t count_max = std::min(fetch->count_max, config_.fetch_blocks_max);
  // Half the message limit for blocks leaves room for the proof and framing.
  const uint64_t bytes_max = config_.message_bytes_max / 2;
  uint64_t bytes = 0;
  for (uint64_t seq = fetch->from_seq; seq <= last_executed_ && reply.entries.size() < count_max;
       ++seq) {
    Result<CommittedBlock> stored = app_->ReadBlock(seq);
    if (!stored.ok()) break;
    bytes += stored->block.size() + 128 + 80 * stored->cert.signatures.size();
    if (bytes > bytes_max && !reply.entries.empty()) break;
    reply.entries.push_back(BlockEntry{seq, std::move(stored->block), std::move(stored->cert)});
  }
  if (reply.entries.empty() && stable_.seq < fetch->from_seq) return;
  Send(e.sender, Sign(MsgType::kBlocks, reply.Body(id_)));
}

// A commit certificate, through the verified-signature cache.
bool Replica::VerifyCertificate(const CommitCertificate& cert) {
  std::set<uint32_t> signers;
  for (const auto& [signer, sig] : cert.signatures) {
    if (signer >= config_.n() || !signers.insert(signer).second) return false;
    Bytes body = Commit{cert.view, cert.seq, cert.digest}.Body(signer);
    if (!VerifySig(signer, MsgType::kCommit, body, sig)) return false;
  }
  return signers.size() >= config_.quorum();
}

void Replica::HandleBlocks(const Envelope& e) {
  Result<Blocks> reply = Blocks::Parse(e, limits_);
  if (!reply.ok()) return Count(Reject::kMalformed);
  if (!Verify(e)) return Count(Reject::kBadSignature);
  if (e.sender == fetch_peer_) fetch_active_ = false;
  if (reply->stable.seq > stable_.seq) {
    if (!CheckCheckpointProof(reply->stable, reply->checkpoint_proof)) {
      return Count(Reject::kBadCertificate);
    }
    AdoptStable(reply->stable, reply->checkpoint_proof);
  }
  for (BlockEntry& entry : reply->entries) {
    if (entry.seq <= last_executed_) continue;
    if (entry.seq != last_executed_ + 1 || entry.cert.seq != entry.seq) {
      Count(Reject::kUnsolicited);
      break;
    }
    if (!VerifyCertificate(entry.cert)) {
      Count(Reject::kBadCertificate);
      break;
    }
    bool digest_ok = false;
    if (entry.block.empty()) {
      digest_ok = entry.cert.digest == NullBlockDigest(entry.seq);
    } else {
      Result<Digest> d = app_->BlockDigest(entry.block);
      digest_ok = d.ok() && *d == entry.cert.digest;
    }
    if (!digest_ok) {
      Count(Reject::kDigestMismatch);
      break;
    }
    if (!entry.block.empty() && !app_->CheckCommittedBlock(entry.seq, entry.block).ok()) {
      Count(Reject::kInvalidBlock);
      break;
    }
    NotePeerExecuted(e.sender, entry.seq);
    Digest digest = entry.cert.digest;
    ExecuteCommitted(
        CommittedBlock{entry.seq, digest, std::move(entry.block), std::move(entry.cert)},
        /*via_state_transfer=*/true);
  }
  AfterProgress();
}

}  // namespace trustmoe::pbft
