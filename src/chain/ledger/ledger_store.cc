#include "chain/ledger/ledger_store.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <set>
#include <utility>

#include "crypto/canonical.h"
#include "crypto/cid.h"

namespace trustmoe::ledger {

using crypto::CanonicalReader;
using crypto::CanonicalWriter;

namespace {

constexpr std::string_view kHeadKey = "head";
constexpr std::string_view kStatePrefix = "s/";
constexpr std::string_view kDurablePrefix = "pbft/";
constexpr std::string_view kHeadDomain = "trustmoe/ledger/head/v1";
constexpr std::string_view kTxLocationDomain = "trustmoe/ledger/tx-location/v1";

std::string HeightKey(char prefix, uint64_t height) {
  std::string key(1, prefix);
  for (int shift = 56; shift >= 0; shift -= 8) key.push_back(static_cast<char>(height >> shift));
  return key;
}

std::string TxKey(const TxId& id) {
  std::string key(1, 't');
  key.append(reinterpret_cast<const char*>(id.data()), id.size());
  return key;
}

rocksdb::Slice AsSlice(ByteSpan data) {
  return rocksdb::Slice(reinterpret_cast<const char*>(data.data()), data.size());
}

Bytes ToBytes(const std::string& s) { return Bytes(s.begin(), s.end()); }

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::Ok();
  return Status::Internal(std::string(what) + ": " + s.ToString());
}

// A block's stored bytes and certificate, decoded and checked against each other.
struct CheckedBlock {
  Digest digest{};
  std::optional<Block> block;
  CommitCertificate cert;
};

// Decodes and checks block `height` (everything but the link to its predecessor). The status
// code is InvalidArgument for bytes that do not decode or do not match themselves and
// Unauthenticated for a bad certificate; callers reading from disk turn both into DataLoss.
Result<CheckedBlock> CheckBlock(const LedgerOptions& options, uint64_t height, ByteSpan block_bytes,
                                ByteSpan cert_bytes) {
  CheckedBlock out;
  auto cert =
      CommitCertificate::Decode(cert_bytes, static_cast<uint32_t>(options.validators.keys.size()));
  if (!cert.ok()) return cert.status().WithContext("certificate");
  out.cert = std::move(cert).value();
  if (block_bytes.empty()) {
    out.digest = pbft::NullBlockDigest(height);
  } else {
    auto block = Block::Decode(block_bytes, options.limits);
    if (!block.ok()) return block.status().WithContext("block");
    const BlockHeader& header = block.value().header;
    if (header.height != height) {
      return Status::InvalidArgument("block header says height " + std::to_string(header.height));
    }
    if (TxRoot(block.value().txs) != header.tx_root) {
      return Status::InvalidArgument("tx Merkle root does not match the transactions");
    }
    out.digest = header.Hash();
    out.block = std::move(block).value();
  }
  TRUSTMOE_RETURN_IF_ERROR(VerifyCertificate(options.validators, out.cert, height, out.digest));
  return out;
}

Status AsCorruption(const Status& s, uint64_t height) {
  return Status::DataLoss("stored block " + std::to_string(height) + " is corrupt: " + s.message());
}

}  // namespace

std::string BlockKey(uint64_t height) { return HeightKey('b', height); }
std::string CertKey(uint64_t height) { return HeightKey('c', height); }

LedgerStore::LedgerStore(LedgerOptions options, std::unique_ptr<rocksdb::DB> db)
    : options_(std::move(options)), db_(std::move(db)) {
  head_.digest = options_.genesis_digest;
}

LedgerStore::~LedgerStore() = default;

Result<std::unique_ptr<LedgerStore>> LedgerStore::Open(const LedgerOptions& options) {
  if (options.path.empty()) return Status::InvalidArgument("ledger path is empty");
  if (options.validators.keys.size() < 3 * static_cast<size_t>(options.validators.f) + 1) {
    return Status::InvalidArgument("ledger needs n >= 3f + 1 validator keys");
  }
  rocksdb::Options opts;
  opts.create_if_missing = !options.read_only;
  opts.paranoid_checks = true;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = options.read_only ? rocksdb::DB::OpenForReadOnly(opts, options.path, &raw)
                                        : rocksdb::DB::Open(opts, options.path, &raw);
  TRUSTMOE_RETURN_IF_ERROR(FromRocks(s, "opening ledger " + options.path));
  std::unique_ptr<LedgerStore> store(new LedgerStore(options, std::unique_ptr<rocksdb::DB>(raw)));
  TRUSTMOE_RETURN_IF_ERROR(store->LoadHead());
  TRUSTMOE_RETURN_IF_ERROR(store->LoadStateRoot());
  return store;
}

Status LedgerStore::LoadHead() {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), std::string(kHeadKey), &value);
  if (s.IsNotFound()) return Status::Ok();
  TRUSTMOE_RETURN_IF_ERROR(FromRocks(s, "reading ledger head"));
  Bytes bytes = ToBytes(value);
  CanonicalReader r(bytes);
  LedgerHead head;
  Status parsed = r.ExpectDomain(kHeadDomain);
  if (parsed.ok()) {
    auto height = r.U64();
    auto digest = r.Fixed();
    parsed = !height.ok() ? height.status() : !digest.ok() ? digest.status() : r.ExpectEnd();
    if (parsed.ok()) head = {height.value(), digest.value()};
  }
  if (!parsed.ok()) return Status::DataLoss("ledger head is corrupt: " + parsed.message());
  if (head.height == 0) return Status::DataLoss("ledger head names height 0");
  head_ = head;
  auto block = GetBlock(head.height);
  if (!block.ok()) return block.status();
  if (block.value().digest != head.digest) {
    return Status::DataLoss("ledger head digest does not match stored block " +
                            std::to_string(head.height));
  }
  // Time of the last non-null block (null blocks are rare: a view change's gaps).
  for (uint64_t h = head.height; h >= 1; --h) {
    auto stored = h == head.height ? std::move(block) : GetBlock(h);
    if (!stored.ok()) return stored.status();
    if (stored.value().block.has_value()) {
      head_.time_unix_ms = stored.value().block->header.time_unix_ms;
      break;
    }
  }
  return Status::Ok();
}

Status LedgerStore::LoadStateRoot() {
  auto root = StateRootAt(head_.height);
  if (root.status().code() == StatusCode::kNotFound) {
    // Genesis state not written yet (or a ledger kept without state).
    if (head_.height == 0 || StateRootAt(0).status().code() == StatusCode::kNotFound) {
      return Status::Ok();
    }
    return Status::DataLoss("state root of the head block " + std::to_string(head_.height) +
                            " is missing");
  }
  if (!root.ok()) return root.status();
  head_.state_root = root.value();
  state_initialized_ = true;
  return Status::Ok();
}

bool LedgerStore::StateInitialized() const {
  std::lock_guard lock(head_mu_);
  return state_initialized_;
}

Status LedgerStore::InitState(const StateCommit& genesis_state) {
  if (options_.read_only) return Status::FailedPrecondition("ledger is open read-only");
  if (StateInitialized()) return Status::FailedPrecondition("genesis state is already written");
  if (head_.height != 0) return Status::FailedPrecondition("ledger has blocks but no state");
  rocksdb::WriteBatch batch;
  AddStateWrites(genesis_state, 0, &batch);
  rocksdb::WriteOptions sync;
  sync.sync = true;
  TRUSTMOE_RETURN_IF_ERROR(FromRocks(db_->Write(sync, &batch), "writing genesis state"));
  std::lock_guard lock(head_mu_);
  head_.state_root = genesis_state.root;
  state_initialized_ = true;
  return Status::Ok();
}

void LedgerStore::AddStateWrites(const StateCommit& state, uint64_t height,
                                 rocksdb::WriteBatch* batch) {
  for (const auto& [key, value] : state.writes) {
    if (value.has_value()) {
      batch->Put(std::string(kStatePrefix) + key, AsSlice(*value));
    } else {
      batch->Delete(std::string(kStatePrefix) + key);
    }
  }
  batch->Put(HeightKey('r', height), AsSlice(ByteSpan(state.root.data(), state.root.size())));
}

Result<Digest> LedgerStore::StateRootAt(uint64_t height) const {
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes raw,
                            GetRaw(HeightKey('r', height),
                                   "state root at height " + std::to_string(height)));
  if (raw.size() != 32) {
    return Status::DataLoss("state root at height " + std::to_string(height) + " is corrupt");
  }
  Digest d;
  std::copy(raw.begin(), raw.end(), d.begin());
  return d;
}

Result<std::optional<Bytes>> LedgerStore::Get(const std::string& key) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), std::string(kStatePrefix) + key, &value);
  if (s.IsNotFound()) return std::optional<Bytes>();
  TRUSTMOE_RETURN_IF_ERROR(FromRocks(s, "reading state " + key));
  return std::optional<Bytes>(ToBytes(value));
}

Result<std::vector<std::pair<std::string, Bytes>>> LedgerStore::Scan(
    const std::string& prefix, const std::string& start_after, size_t limit) const {
  std::vector<std::pair<std::string, Bytes>> out;
  const std::string full_prefix = std::string(kStatePrefix) + prefix;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  if (start_after.empty() || start_after < prefix) {
    it->Seek(full_prefix);
  } else {
    const std::string after = std::string(kStatePrefix) + start_after;
    it->Seek(after);
    if (it->Valid() && it->key() == rocksdb::Slice(after)) it->Next();
  }
  for (; it->Valid() && out.size() < limit; it->Next()) {
    if (!it->key().starts_with(full_prefix)) break;
    out.emplace_back(it->key().ToString().substr(kStatePrefix.size()),
                     ToBytes(it->value().ToString()));
  }
  TRUSTMOE_RETURN_IF_ERROR(FromRocks(it->status(), "scanning state " + prefix));
  return out;
}

Status LedgerStore::WriteDurable(const std::vector<pbft::DurableWrite>& writes) {
  if (options_.read_only) return Status::FailedPrecondition("ledger is open read-only");
  rocksdb::WriteBatch batch;
  for (const pbft::DurableWrite& w : writes) {
    if (!w.key.starts_with(kDurablePrefix)) {
      return Status::InvalidArgument("durable key '" + w.key + "' does not start with pbft/");
    }
    if (w.value.has_value()) {
      batch.Put(w.key, AsSlice(*w.value));
    } else {
      batch.Delete(w.key);
    }
  }
  rocksdb::WriteOptions sync;
  sync.sync = true;
  return FromRocks(db_->Write(sync, &batch), "writing consensus state");
}

Result<pbft::DurableState> LedgerStore::LoadDurable() const {
  pbft::DurableState out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(std::string(kDurablePrefix));
       it->Valid() && it->key().starts_with(std::string(kDurablePrefix)); it->Next()) {
    out[it->key().ToString()] = ToBytes(it->value().ToString());
  }
  TRUSTMOE_RETURN_IF_ERROR(FromRocks(it->status(), "reading consensus state"));
  return out;
}

Status LedgerStore::Append(ByteSpan block_bytes, const CommitCertificate& cert,
                           const StateCommit* state) {
  if (options_.read_only) return Status::FailedPrecondition("ledger is open read-only");
  const uint64_t height = head_.height + 1;
  if (cert.seq != height) {
    return Status::FailedPrecondition("block for height " + std::to_string(cert.seq) +
                                      ", the next height is " + std::to_string(height));
  }
  if (!block_bytes.empty()) {
    auto block = Block::Decode(block_bytes, options_.limits);
    if (!block.ok()) return block.status().WithContext("block");
    const BlockHeader& header = block.value().header;
    if (header.height != height) {
      return Status::FailedPrecondition("block has height " + std::to_string(header.height) +
                                        ", the next height is " + std::to_string(height));
    }
    if (header.prev_hash != head_.digest) {
      return Status::FailedPrecondition("block " + std::to_string(height) +
                                        " prev_hash does not name the head");
    }
  }
  Bytes cert_bytes = cert.Encode();
  TRUSTMOE_ASSIGN_OR_RETURN(CheckedBlock checked,
                            CheckBlock(options_, height, block_bytes, cert_bytes));

  rocksdb::WriteBatch batch;
  if (checked.block.has_value()) {
    std::set<TxId> seen;
    const std::vector<Bytes>& txs = checked.block->txs;
    for (uint32_t i = 0; i < txs.size(); ++i) {
      TxId id = pbft::ComputeTxId(txs[i]);
      std::string ignored;
      if (!seen.insert(id).second ||
          !db_->Get(rocksdb::ReadOptions(), TxKey(id), &ignored).IsNotFound()) {
        return Status::AlreadyExists("transaction " + ToHex(id) + " is already in the ledger");
      }
      batch.Put(TxKey(id), AsSlice(CanonicalWriter(kTxLocationDomain).U64(height).U32(i).bytes()));
    }
  }
  batch.Put(BlockKey(height), AsSlice(block_bytes));
  batch.Put(CertKey(height), AsSlice(cert_bytes));
  Bytes head = CanonicalWriter(kHeadDomain).U64(height).Fixed(checked.digest).Take();
  batch.Put(std::string(kHeadKey), AsSlice(head));
  LedgerHead next = Head();
  if (state != nullptr) {
    AddStateWrites(*state, height, &batch);
    next.state_root = state->root;
  } else if (state_initialized_) {
    AddStateWrites(StateCommit{{}, next.state_root}, height, &batch);
  }
  rocksdb::WriteOptions sync;
  sync.sync = true;
  TRUSTMOE_RETURN_IF_ERROR(FromRocks(db_->Write(sync, &batch), "writing block"));
  next.height = height;
  next.digest = checked.digest;
  if (checked.block.has_value()) next.time_unix_ms = checked.block->header.time_unix_ms;
  std::lock_guard lock(head_mu_);
  if (state != nullptr) state_initialized_ = true;
  head_ = next;
  return Status::Ok();
}

Result<Bytes> LedgerStore::GetRaw(const std::string& key, std::string_view what) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), key, &value);
  if (s.IsNotFound()) return Status::NotFound(std::string(what) + " is not stored");
  TRUSTMOE_RETURN_IF_ERROR(FromRocks(s, "reading " + std::string(what)));
  return ToBytes(value);
}

bool LedgerStore::HasTx(const TxId& id) const {
  std::string ignored;
  return db_->Get(rocksdb::ReadOptions(), TxKey(id), &ignored).ok();
}

Result<Bytes> LedgerStore::RawBlock(uint64_t height) const {
  return GetRaw(BlockKey(height), "block " + std::to_string(height));
}

Result<Bytes> LedgerStore::RawCert(uint64_t height) const {
  return GetRaw(CertKey(height), "certificate of block " + std::to_string(height));
}

Result<StoredBlock> LedgerStore::GetBlock(uint64_t height) const {
  const uint64_t head_height = Head().height;
  if (height == 0 || height > head_height) {
    return Status::NotFound("no block at height " + std::to_string(height) + " (head is " +
                            std::to_string(head_height) + ")");
  }
  auto block_bytes = RawBlock(height);
  auto cert_bytes = RawCert(height);
  if (block_bytes.status().code() == StatusCode::kNotFound) {
    return AsCorruption(block_bytes.status(), height);
  }
  if (cert_bytes.status().code() == StatusCode::kNotFound) {
    return AsCorruption(cert_bytes.status(), height);
  }
  if (!block_bytes.ok()) return block_bytes.status();
  if (!cert_bytes.ok()) return cert_bytes.status();
  auto checked = CheckBlock(options_, height, block_bytes.value(), cert_bytes.value());
  if (!checked.ok()) return AsCorruption(checked.status(), height);
  return StoredBlock{height, checked.value().digest, std::move(checked.value().block),
                     std::move(checked.value().cert)};
}

Result<TxWithProof> LedgerStore::GetTx(const TxId& id) const {
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes location, GetRaw(TxKey(id), "transaction " + ToHex(id)));
  CanonicalReader r(location);
  Status parsed = r.ExpectDomain(kTxLocationDomain);
  uint64_t height = 0;
  uint32_t index = 0;
  if (parsed.ok()) {
    auto h = r.U64();
    auto i = r.U32();
    parsed = !h.ok() ? h.status() : !i.ok() ? i.status() : r.ExpectEnd();
    if (parsed.ok()) {
      height = h.value();
      index = i.value();
    }
  }
  if (!parsed.ok()) return Status::DataLoss("tx index entry is corrupt: " + parsed.message());
  TRUSTMOE_ASSIGN_OR_RETURN(StoredBlock stored, GetBlock(height));
  if (!stored.block.has_value() || index >= stored.block->txs.size() ||
      pbft::ComputeTxId(stored.block->txs[index]) != id) {
    return Status::DataLoss("tx index entry does not match block " + std::to_string(height));
  }
  const std::vector<Bytes>& txs = stored.block->txs;
  std::vector<Digest> leaves;
  leaves.reserve(txs.size());
  for (const Bytes& tx : txs) leaves.push_back(TxLeaf(pbft::ComputeTxId(tx)));
  crypto::MerkleTree tree(std::move(leaves));
  TxWithProof out;
  out.tx = txs[index];
  out.proof = {height, index, static_cast<uint32_t>(txs.size()), tree.Proof(index)};
  out.header = stored.block->header;
  out.cert = std::move(stored.cert);
  return out;
}

ChainCheck VerifyChain(const LedgerStore& store) {
  ChainCheck out;
  Digest prev = store.options().genesis_digest;
  const uint64_t head = store.Head().height;
  auto fail = [&](uint64_t height, std::string reason) {
    out.ok = false;
    out.first_bad_height = height;
    out.reason = std::move(reason);
    return out;
  };
  for (uint64_t height = 1; height <= head; ++height) {
    auto block_bytes = store.RawBlock(height);
    if (!block_bytes.ok()) return fail(height, block_bytes.status().message());
    auto cert_bytes = store.RawCert(height);
    if (!cert_bytes.ok()) return fail(height, cert_bytes.status().message());
    auto checked = CheckBlock(store.options(), height, block_bytes.value(), cert_bytes.value());
    if (!checked.ok()) return fail(height, checked.status().message());
    if (checked.value().block.has_value() && checked.value().block->header.prev_hash != prev) {
      return fail(height,
                  "prev_hash does not match the digest of block " + std::to_string(height - 1));
    }
    prev = checked.value().digest;
    ++out.blocks_checked;
  }
  if (head > 0 && prev != store.Head().digest) {
    return fail(head, "head digest does not match the last block");
  }
  return out;
}

}  // namespace trustmoe::ledger
