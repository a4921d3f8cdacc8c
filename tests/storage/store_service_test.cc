// Malformed, oversized, unsigned and hostile requests against a real trustmoe-store: each is
// refused with the right code and a message that says what is wrong, and nothing is stored.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>

#include "common/clock.h"
#include "crypto/cid.h"
#include "net/transport.h"
#include "storage/signing.h"
#include "storage/store_client.h"
#include "tests/storage/store_process.h"
#include "trustmoe/v1/storage.grpc.pb.h"

namespace trustmoe::storage {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::StoreProcess;
using testing::StoreProcessOptions;

constexpr uint64_t kMiB = 1 << 20;

std::unique_ptr<v1::StorageService::Stub> RawStub(const std::string& endpoint) {
  auto channel = net::MakeChannel(endpoint, net::TransportConfig{});
  EXPECT_TRUE(channel.ok()) << channel.status().ToString();
  return v1::StorageService::NewStub(*channel);
}

void SetDeadline(grpc::ClientContext* ctx) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
}

v1::PutRequest Header(uint64_t size, const crypto::PublicKey& writer,
                      const std::string& declared_cid = "", bool pin = false) {
  v1::PutRequest msg;
  v1::PutHeader* header = msg.mutable_header();
  header->set_size(size);
  header->set_writer_key(writer.bytes().data(), writer.bytes().size());
  header->set_declared_cid(declared_cid);
  header->set_pin(pin);
  return msg;
}

v1::PutRequest Chunk(uint64_t offset, ByteSpan data) {
  v1::PutRequest msg;
  msg.mutable_chunk()->set_offset(offset);
  msg.mutable_chunk()->set_data(data.data(), data.size());
  return msg;
}

// The chunks of `data` in pieces of `piece` bytes, with correct offsets.
std::vector<v1::PutRequest> Chunks(const Bytes& data, uint64_t piece = kMiB) {
  std::vector<v1::PutRequest> out;
  for (uint64_t offset = 0; offset < data.size(); offset += piece) {
    uint64_t n = std::min<uint64_t>(piece, data.size() - offset);
    out.push_back(Chunk(offset, ByteSpan(data).subspan(offset, n)));
  }
  return out;
}

v1::PutRequest Trailer(const crypto::Cid& cid, uint64_t size, const crypto::PrivateKey& key,
                       bool pin = false, int64_t timestamp_ms = SystemClock::Get()->NowUnixMs()) {
  v1::PutRequest msg;
  v1::PutTrailer* trailer = msg.mutable_trailer();
  trailer->set_cid(cid.ToString());
  v1::SignedBy* signed_by = trailer->mutable_signed_by();
  const auto& raw = key.public_key().bytes();
  signed_by->set_public_key(raw.data(), raw.size());
  signed_by->set_timestamp_unix_ms(timestamp_ms);
  crypto::Signature sig = key.Sign(PutSigningBytes(cid, size, key.public_key(), pin, timestamp_ms));
  signed_by->set_signature(sig.data(), sig.size());
  return msg;
}

struct PutOutcome {
  grpc::Status status;
  v1::PutResponse response;
};

// Sends `msgs` as one Put stream, then half-closes it (or cancels it).
PutOutcome RawPut(v1::StorageService::Stub* stub, const std::vector<v1::PutRequest>& msgs,
                  bool cancel = false) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  PutOutcome outcome;
  auto stream = stub->Put(&ctx, &outcome.response);
  for (const v1::PutRequest& msg : msgs) {
    if (!stream->Write(msg)) break;  // the store already answered
  }
  if (cancel) {
    ctx.TryCancel();
  } else {
    stream->WritesDone();
  }
  outcome.status = stream->Finish();
  return outcome;
}

std::vector<v1::PutRequest> Concat(std::vector<v1::PutRequest> a,
                                   const std::vector<v1::PutRequest>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// A store per test, with its writer key and a raw stub.
class StoreServiceTest : public ::testing::Test {
 protected:
  virtual StoreProcessOptions Options() { return {}; }
  void SetUp() override {
    store_ = StoreProcess::Start(Options());
    ASSERT_NE(store_, nullptr);
    stub_ = RawStub(store_->endpoint());
    client_ = store_->Client();
    ASSERT_NE(client_, nullptr);
  }

  const crypto::PrivateKey& writer() const { return *store_->writer(); }

  // The number of blobs List reports.
  size_t ListCount() {
    auto page = client_->List("", 1000, false);
    EXPECT_TRUE(page.ok()) << page.status().ToString();
    return page.ok() ? page->blobs.size() : 0;
  }

  void ExpectNotStored(const crypto::Cid& cid) {
    auto stat = client_->Stat(cid);
    EXPECT_EQ(stat.status().code(), StatusCode::kNotFound) << stat.status().ToString();
  }

  // A well-formed, signed Put of `data`.
  std::vector<v1::PutRequest> GoodPut(const Bytes& data) {
    auto msgs = Concat({Header(data.size(), writer().public_key())}, Chunks(data));
    msgs.push_back(Trailer(crypto::ComputeCid(data), data.size(), writer()));
    return msgs;
  }

  std::unique_ptr<StoreProcess> store_;
  std::unique_ptr<v1::StorageService::Stub> stub_;
  std::unique_ptr<StoreClient> client_;
};

// A store of 4 MiB that takes blobs of up to 3 MiB.
class SmallStoreTest : public StoreServiceTest {
 protected:
  StoreProcessOptions Options() override {
    StoreProcessOptions options;
    options.store_bytes_max = 4 * kMiB;
    options.blob_bytes_max = 3 * kMiB;
    return options;
  }
};

TEST_F(StoreServiceTest, RawPutOfAWellFormedStreamIsStored) {
  const Bytes data = testing::RandomBytes(2 * kMiB + 7, 1);
  PutOutcome out = RawPut(stub_.get(), GoodPut(data));
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  EXPECT_EQ(out.response.blob().cid(), crypto::ComputeCid(data).ToString());
  EXPECT_EQ(out.response.blob().size(), data.size());
  EXPECT_EQ(out.response.blob().chunk_count(), 3u);
  EXPECT_FALSE(out.response.already_stored());
}

TEST_F(SmallStoreTest, StreamCutBeforeTrailerStoresNothingAndReleasesItsReservation) {
  const Bytes data = testing::RandomBytes(3 * kMiB, 2);
  auto msgs = Concat({Header(data.size(), writer().public_key())}, Chunks(data));
  msgs.pop_back();  // two of three chunks, then WritesDone without a trailer
  PutOutcome out = RawPut(stub_.get(), msgs);
  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(out.status.error_message(), AllOf(HasSubstr("cut"), HasSubstr("nothing stored")));
  EXPECT_EQ(ListCount(), 0u);
  ExpectNotStored(crypto::ComputeCid(data));
  // The 3 MiB reservation is gone: the whole 4 MiB can be filled at once.
  auto big = client_->Put(testing::RandomBytes(3 * kMiB, 3));
  ASSERT_TRUE(big.ok()) << big.status().ToString();
  auto rest = client_->Put(testing::RandomBytes(kMiB, 4));
  ASSERT_TRUE(rest.ok()) << rest.status().ToString();
  EXPECT_EQ(ListCount(), 2u);
  EXPECT_TRUE(testing::WaitFor([&] {
    return store_->Metric("trustmoe_store_stored_bytes") == 4.0 * kMiB &&
           store_->Metric("trustmoe_store_reserved_bytes") == 0.0 &&
           store_->Metric("trustmoe_store_blobs") == 2.0;
  })) << store_->Metrics().value_or("(no metrics)");
}

TEST_F(SmallStoreTest, CancelledPutStoresNothingAndReleasesItsReservation) {
  const Bytes data = testing::RandomBytes(3 * kMiB, 5);
  auto msgs = Concat({Header(data.size(), writer().public_key())}, Chunks(data));
  msgs.pop_back();
  PutOutcome out = RawPut(stub_.get(), msgs, /*cancel=*/true);
  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::CANCELLED);
  // The store learns of the cancel asynchronously: wait until the whole capacity is usable.
  crypto::Cid filled;
  ASSERT_TRUE(testing::WaitFor([&] {
    auto put = client_->Put(testing::RandomBytes(3 * kMiB, 6));
    if (put.ok()) filled = put->cid;
    return put.ok();
  })) << "the cancelled upload's reservation was never released";
  auto rest = client_->Put(testing::RandomBytes(kMiB, 7));
  ASSERT_TRUE(rest.ok()) << rest.status().ToString();
  EXPECT_EQ(ListCount(), 2u);
  ExpectNotStored(crypto::ComputeCid(data));
}

TEST_F(SmallStoreTest, BlobOverBlobBytesMaxIsRefusedNamingTheLimit) {
  auto put = client_->Put(testing::RandomBytes(3 * kMiB + 1, 8));
  EXPECT_EQ(put.status().code(), StatusCode::kInvalidArgument) << put.status().ToString();
  EXPECT_THAT(put.status().message(),
              AllOf(HasSubstr("blob_bytes_max"), HasSubstr(std::to_string(3 * kMiB))));
  EXPECT_EQ(ListCount(), 0u);
  auto fits = client_->Put(testing::RandomBytes(3 * kMiB, 8));
  EXPECT_TRUE(fits.ok()) << fits.status().ToString();
}

TEST_F(SmallStoreTest, FullStoreIsResourceExhaustedAndLeavesNothingBehind) {
  auto first = client_->Put(testing::RandomBytes(3 * kMiB, 9));
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto over = client_->Put(testing::RandomBytes(2 * kMiB, 10));
  EXPECT_EQ(over.status().code(), StatusCode::kResourceExhausted) << over.status().ToString();
  EXPECT_THAT(over.status().message(), HasSubstr("store_bytes_max"));
  EXPECT_EQ(ListCount(), 1u);
  ExpectNotStored(crypto::ComputeCid(testing::RandomBytes(2 * kMiB, 10)));
  // Exactly what is left still fits, repeatedly refused attempts did not leak reservations.
  auto fits = client_->Put(testing::RandomBytes(kMiB, 11));
  EXPECT_TRUE(fits.ok()) << fits.status().ToString();
  EXPECT_EQ(ListCount(), 2u);
}

TEST_F(StoreServiceTest, ChunkWithAnOffsetGapIsInvalidArgument) {
  const Bytes data = testing::RandomBytes(3 * kMiB, 12);
  auto chunks = Chunks(data);
  std::vector<v1::PutRequest> msgs = {Header(data.size(), writer().public_key()), chunks[0],
                                      chunks[2], chunks[1]};
  msgs.push_back(Trailer(crypto::ComputeCid(data), data.size(), writer()));
  PutOutcome out = RawPut(stub_.get(), msgs);
  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(out.status.error_message(),
              AllOf(HasSubstr("out of order"), HasSubstr(std::to_string(2 * kMiB)),
                    HasSubstr(std::to_string(kMiB))));
  EXPECT_EQ(ListCount(), 0u);
}

TEST_F(StoreServiceTest, MalformedPutStreamsAreInvalidArgument) {
  const Bytes data = testing::RandomBytes(kMiB + 10, 13);
  const crypto::PublicKey& key = writer().public_key();
  const crypto::Cid cid = crypto::ComputeCid(data);
  const v1::PutRequest trailer = Trailer(cid, data.size(), writer());
  struct Case {
    const char* name;
    std::vector<v1::PutRequest> msgs;
    const char* message;
  };
  std::vector<Case> cases = {
      {"chunk first", Concat(Chunks(data), {Header(data.size(), key), trailer}),
       "first message of a Put must be its header"},
      {"trailer first", {trailer}, "first message of a Put must be its header"},
      {"empty stream", {}, "ended before its header"},
      {"two headers", Concat({Header(data.size(), key), Header(data.size(), key)}, Chunks(data)),
       "only one header"},
      {"more than declared", Concat({Header(data.size() - 1, key)}, Chunks(data)),
       "more than the declared"},
      {"fewer than declared",
       Concat(Concat({Header(data.size() + 1, key)}, Chunks(data)), {trailer}), "ended after"},
      {"empty chunk", {Header(data.size(), key), Chunk(0, {})}, "empty PutChunk"},
      {"messages after the trailer",
       Concat(Concat({Header(data.size(), key)}, Chunks(data)), {trailer, trailer}),
       "after the Put trailer"},
      {"malformed trailer CID",
       [&] {
         auto msgs = Concat({Header(data.size(), key)}, Chunks(data));
         v1::PutRequest bad = trailer;
         bad.mutable_trailer()->set_cid("sha256-tree:1234");
         msgs.push_back(bad);
         return msgs;
       }(),
       "cid"},
      {"malformed declared CID", {Header(data.size(), key, "md5:abc")}, "cid"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    PutOutcome out = RawPut(stub_.get(), c.msgs);
    EXPECT_EQ(out.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << out.status.error_message();
    EXPECT_THAT(out.status.error_message(), HasSubstr(c.message));
  }
  EXPECT_EQ(ListCount(), 0u);
  // A chunk over the 4 MiB message limit (still under gRPC's own limit).
  Bytes big = testing::RandomBytes(5 * kMiB, 14);
  PutOutcome out = RawPut(stub_.get(), {Header(big.size(), key), Chunk(0, big)});
  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(out.status.error_message(), HasSubstr("over the limit"));
  EXPECT_EQ(ListCount(), 0u);
  // The store still works.
  EXPECT_TRUE(RawPut(stub_.get(), GoodPut(data)).status.ok());
}

TEST_F(StoreServiceTest, DeclaredCidThatDiffersIsInvalidArgumentNamingBoth) {
  const Bytes data = testing::RandomBytes(kMiB + 3, 15);
  const crypto::Cid actual = crypto::ComputeCid(data);
  const crypto::Cid other = crypto::ComputeCid(testing::RandomBytes(kMiB + 3, 16));

  // Declared in the header, trailer honest.
  auto msgs = Concat({Header(data.size(), writer().public_key(), other.ToString())}, Chunks(data));
  msgs.push_back(Trailer(actual, data.size(), writer()));
  PutOutcome out = RawPut(stub_.get(), msgs);
  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(out.status.error_message(),
              AllOf(HasSubstr(other.ToString()), HasSubstr(actual.ToString())));

  // Claimed in a (validly signed) trailer.
  msgs = Concat({Header(data.size(), writer().public_key())}, Chunks(data));
  msgs.push_back(Trailer(other, data.size(), writer()));
  out = RawPut(stub_.get(), msgs);
  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(out.status.error_message(),
              AllOf(HasSubstr(other.ToString()), HasSubstr(actual.ToString())));

  ExpectNotStored(actual);
  ExpectNotStored(other);
  EXPECT_EQ(ListCount(), 0u);

  // A correct declared CID is accepted.
  msgs = Concat({Header(data.size(), writer().public_key(), actual.ToString())}, Chunks(data));
  msgs.push_back(Trailer(actual, data.size(), writer()));
  out = RawPut(stub_.get(), msgs);
  EXPECT_TRUE(out.status.ok()) << out.status.error_message();
}

TEST_F(StoreServiceTest, BadSignaturesAreUnauthenticatedAndStoreNothing) {
  const Bytes data = testing::RandomBytes(kMiB + 5, 17);
  const crypto::Cid cid = crypto::ComputeCid(data);
  auto body = Concat({Header(data.size(), writer().public_key())}, Chunks(data));
  auto other_key = crypto::PrivateKey::Generate();
  ASSERT_TRUE(other_key.ok());
  const int64_t now = SystemClock::Get()->NowUnixMs();

  v1::PutRequest flipped = Trailer(cid, data.size(), writer());
  std::string sig = flipped.trailer().signed_by().signature();
  sig[10] ^= 0x01;
  flipped.mutable_trailer()->mutable_signed_by()->set_signature(sig);

  v1::PutRequest unsigned_trailer = Trailer(cid, data.size(), writer());
  unsigned_trailer.mutable_trailer()->mutable_signed_by()->clear_signature();

  // Signed for pin=true while the header says pin=false.
  v1::PutRequest wrong_fields = Trailer(cid, data.size(), writer(), /*pin=*/true);

  struct Case {
    const char* name;
    v1::PutRequest trailer;
    const char* message;
  };
  std::vector<Case> cases = {
      {"flipped signature", flipped, "does not verify"},
      {"no signature", unsigned_trailer, "does not verify"},
      {"signature over other fields", wrong_fields, "does not verify"},
      {"stale timestamp", Trailer(cid, data.size(), writer(), false, now - 10 * 60 * 1000),
       "clock"},
      {"future timestamp", Trailer(cid, data.size(), writer(), false, now + 10 * 60 * 1000),
       "clock"},
      {"signed by another key", Trailer(cid, data.size(), *other_key), "another key"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    PutOutcome out = RawPut(stub_.get(), Concat(body, {c.trailer}));
    EXPECT_EQ(out.status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << out.status.error_message();
    EXPECT_THAT(out.status.error_message(), HasSubstr(c.message));
  }
  ExpectNotStored(cid);
  EXPECT_EQ(ListCount(), 0u);
}

TEST_F(StoreServiceTest, WriterNotInTheListIsPermissionDenied) {
  auto stranger_key = crypto::PrivateKey::Generate();
  ASSERT_TRUE(stranger_key.ok());
  auto stranger = StoreClient::Create(testing::ClientOptions(
      {store_->endpoint()}, std::make_shared<const crypto::PrivateKey>(*stranger_key)));
  ASSERT_TRUE(stranger.ok());
  const Bytes data = testing::RandomBytes(1000, 18);
  auto put = (*stranger)->Put(data);
  EXPECT_EQ(put.status().code(), StatusCode::kPermissionDenied) << put.status().ToString();
  EXPECT_THAT(put.status().message(),
              AllOf(HasSubstr(stranger_key->public_key().Hex()), HasSubstr("writers")));
  ExpectNotStored(crypto::ComputeCid(data));

  // A header key that is not 32 bytes.
  v1::PutRequest header = Header(data.size(), writer().public_key());
  header.mutable_header()->set_writer_key("short");
  PutOutcome out = RawPut(stub_.get(), {header});
  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ListCount(), 0u);
}

TEST_F(StoreServiceTest, ExtraWriterFromConfigIsAccepted) {
  auto extra_key = crypto::PrivateKey::Generate();
  ASSERT_TRUE(extra_key.ok());
  StoreProcessOptions options;
  options.extra_writers = {extra_key->public_key()};
  auto store = StoreProcess::Start(options);
  ASSERT_NE(store, nullptr);
  auto client = StoreClient::Create(testing::ClientOptions(
      {store->endpoint()}, std::make_shared<const crypto::PrivateKey>(*extra_key)));
  ASSERT_TRUE(client.ok());
  auto put = (*client)->Put(testing::RandomBytes(100, 19));
  EXPECT_TRUE(put.ok()) << put.status().ToString();
}

TEST_F(StoreServiceTest, GetAndStatRefuseUnknownMalformedAndUnalignedRequests) {
  const Bytes data = testing::RandomBytes(2 * kMiB + 1, 20);
  auto put = client_->Put(data);
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  const crypto::Cid unknown = crypto::ComputeCid(AsBytes("never stored"));

  // Through the client.
  auto get = client_->Get(unknown);
  EXPECT_EQ(get.status().code(), StatusCode::kNotFound) << get.status().ToString();
  EXPECT_THAT(get.status().message(), HasSubstr(unknown.ToString()));
  EXPECT_EQ(client_->Stat(unknown).status().code(), StatusCode::kNotFound);

  auto raw_get = [&](const std::string& cid, uint64_t offset, std::vector<v1::GetResponse>* out) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::GetRequest request;
    request.set_cid(cid);
    request.set_offset(offset);
    auto stream = stub_->Get(&ctx, request);
    v1::GetResponse response;
    while (stream->Read(&response)) {
      if (out) out->push_back(response);
    }
    return stream->Finish();
  };
  auto raw_stat = [&](const std::string& cid) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::StatRequest request;
    request.set_cid(cid);
    v1::BlobInfo info;
    return stub_->Stat(&ctx, request, &info);
  };

  EXPECT_EQ(raw_get(unknown.ToString(), 0, nullptr).error_code(), grpc::StatusCode::NOT_FOUND);
  for (const std::string& bad : std::vector<std::string>{
           "", "sha256-tree:", "sha256-tree:xyz", "sha256:" + std::string(64, 'a'),
           "sha256-tree:" + std::string(64, 'A'), "sha256-tree:" + std::string(66, 'a')}) {
    SCOPED_TRACE(bad);
    grpc::Status g = raw_get(bad, 0, nullptr);
    EXPECT_EQ(g.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << g.error_message();
    EXPECT_THAT(g.error_message(), HasSubstr("cid"));
    EXPECT_EQ(raw_stat(bad).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::ListRequest request;
    request.set_after_cid("sha256-tree:nothex");
    v1::ListResponse response;
    EXPECT_EQ(stub_->List(&ctx, request, &response).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }

  const std::string cid = put->cid.ToString();
  for (uint64_t offset : {uint64_t{1}, kMiB - 1, kMiB + 1, 3 * kMiB, 4 * kMiB}) {
    SCOPED_TRACE(offset);
    grpc::Status g = raw_get(cid, offset, nullptr);
    EXPECT_EQ(g.error_code(), grpc::StatusCode::OUT_OF_RANGE) << g.error_message();
    EXPECT_THAT(g.error_message(), HasSubstr(std::to_string(offset)));
  }

  // A resumed read from an aligned offset starts at that chunk with proofs that verify.
  std::vector<v1::GetResponse> chunks;
  ASSERT_TRUE(raw_get(cid, kMiB, &chunks).ok());
  ASSERT_EQ(chunks.size(), 2u);
  for (size_t i = 0; i < chunks.size(); ++i) {
    const uint64_t index = i + 1;
    EXPECT_EQ(chunks[i].index(), index);
    EXPECT_EQ(chunks[i].blob_size(), data.size());
    const uint64_t length = crypto::ChunkLength(data.size(), index);
    ASSERT_EQ(chunks[i].data().size(), length);
    EXPECT_EQ(std::memcmp(chunks[i].data().data(), data.data() + index * kMiB, length), 0);
    std::vector<crypto::Digest> proof;
    for (const std::string& p : chunks[i].proof()) {
      ASSERT_EQ(p.size(), 32u);
      crypto::Digest d;
      std::copy(p.begin(), p.end(), d.begin());
      proof.push_back(d);
    }
    EXPECT_TRUE(crypto::VerifyMerkleProof(crypto::LeafHash(AsBytes(chunks[i].data())), index, 3,
                                          proof, put->cid.root));
  }
}

TEST(StoreStreamLimitTest, StreamsOverTheLimitAreRefusedUntilOneEnds) {
  StoreProcessOptions options;
  options.concurrent_streams_max = 1;
  auto store = StoreProcess::Start(options);
  ASSERT_NE(store, nullptr);
  auto client = store->Client();
  ASSERT_NE(client, nullptr);
  const Bytes data = testing::RandomBytes(1000, 30);
  auto put = client->Put(data);
  ASSERT_TRUE(put.ok()) << put.status().ToString();

  // A Put that sent its header and holds its stream open takes the only slot.
  auto stub = RawStub(store->endpoint());
  grpc::ClientContext held_ctx;
  SetDeadline(&held_ctx);
  v1::PutResponse held_response;
  auto held = stub->Put(&held_ctx, &held_response);
  ASSERT_TRUE(held->Write(Header(10, store->writer()->public_key())));
  // Wait until the store serves that stream.
  ASSERT_TRUE(testing::WaitFor(
      [&] { return store->Metric("trustmoe_store_active_streams").value_or(0) == 1.0; }));

  auto refused = client->Get(put->cid);
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted) << refused.status().ToString();
  EXPECT_THAT(refused.status().message(), HasSubstr("concurrent streams"));
  // Unary calls are not streams.
  EXPECT_TRUE(client->Stat(put->cid).ok());

  held->WritesDone();
  EXPECT_EQ(held->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  auto got = client->Get(put->cid);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(*got == data);
}

}  // namespace
}  // namespace trustmoe::storage
