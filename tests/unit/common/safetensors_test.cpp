#include "common/safetensors.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

namespace bitfleet::safetensors {
namespace {

// A file from a raw header and data buffer, so that tests can break any part of it.
std::string raw_file(const std::string& header, size_t data_bytes, uint64_t header_len_override = 0) {
  std::string out(8, '\0');
  uint64_t n = header_len_override ? header_len_override : header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out += header;
  out.append(data_bytes, '\x01');
  return out;
}

Status open_bytes(const std::string& bytes) { return File::from_bytes(bytes, "test.safetensors").status(); }

TEST(SafetensorsTest, WriterOutputReadsBackEqual) {
  Writer w;
  std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 1e-30f, 7.0f};
  std::vector<int64_t> b = {1, -2, 3};
  w.add_f32("layer.0.bias", {2, 3}, a);
  w.add("ids", DType::kI64, {3}, std::as_bytes(std::span<const int64_t>(b)));
  w.set_metadata("job_id", "job-1");
  auto f = File::from_bytes(w.to_bytes(), "mem");
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  ASSERT_EQ(f->tensors().size(), 2u);
  const TensorView* t = f->find("layer.0.bias");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(std::memcmp(t->data.data(), a.data(), a.size() * 4), 0);
  EXPECT_EQ(f->metadata().at("job_id"), "job-1");
  const TensorView* ids = f->find("ids");
  ASSERT_NE(ids, nullptr);
  EXPECT_EQ(ids->dtype, DType::kI64);
  EXPECT_EQ(std::memcmp(ids->data.data(), b.data(), 24), 0);
}

TEST(SafetensorsTest, DataBufferStartsEightByteAligned) {
  Writer w;
  std::vector<float> a = {1.0f};
  w.add_f32("x", {1}, a);
  std::string bytes = w.to_bytes();
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
}

TEST(SafetensorsTest, MappedFileMatchesWrittenFile) {
  auto dir = std::filesystem::temp_directory_path() / ("bitfleet-st-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::string path = (dir / "a.safetensors").string();
  Writer w;
  std::vector<float> a(1000);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i) * 0.5f;
  w.add_f32("big", {10, 100}, a);
  ASSERT_TRUE(w.write_file(path).is_ok());
  {
    auto f = File::open(path);
    ASSERT_TRUE(f.is_ok()) << f.status().to_string();
    File moved = std::move(f).value();  // views survive a move
    EXPECT_EQ(std::memcmp(moved.find("big")->data.data(), a.data(), 4000), 0);
  }
  std::filesystem::remove_all(dir);
}

TEST(SafetensorsTest, SmallInMemoryFileSurvivesMove) {
  Writer w;
  w.add("empty", DType::kF32, {0}, {});
  auto f = File::from_bytes(w.to_bytes(), "mem");
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  File moved = std::move(f).value();
  EXPECT_EQ(moved.find("empty")->numel(), 0);
}

TEST(SafetensorsTest, RejectsFileShorterThanHeaderLength) {
  EXPECT_EQ(open_bytes("abc").code(), StatusCode::kDataLoss);
}

TEST(SafetensorsTest, RejectsTruncatedData) {
  std::string f = raw_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 16);
  ASSERT_TRUE(open_bytes(f).is_ok());
  Status s = open_bytes(f.substr(0, f.size() - 5));
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("outside"), std::string::npos) << s.message();
}

TEST(SafetensorsTest, RejectsHeaderLengthBeyondFile) {
  std::string f = raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4, 1u << 30);
  Status s = open_bytes(f);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("header length"), std::string::npos) << s.message();
}

TEST(SafetensorsTest, RejectsHeaderThatIsNotJson) {
  EXPECT_EQ(open_bytes(raw_file("{\"a\": [1, 2", 0)).code(), StatusCode::kDataLoss);
  EXPECT_EQ(open_bytes(raw_file("[1, 2]", 0)).code(), StatusCode::kDataLoss);
}

// Found by fuzz_safetensors: a number beyond a double's range in the header threw out of the
// reader (std::terminate) instead of being refused.
TEST(SafetensorsTest, RejectsHeaderNumberOutOfRange) {
  EXPECT_EQ(open_bytes(raw_file(R"({"a":{"dtype":"F32","shape":[8888e888],"data_offsets":[0,4]}})", 4)).code(),
            StatusCode::kDataLoss);
  EXPECT_EQ(open_bytes(raw_file("8888e888", 0)).code(), StatusCode::kDataLoss);
}

TEST(SafetensorsTest, RejectsOverlappingTensors) {
  Status s = open_bytes(raw_file(
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
      12));
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("overlaps"), std::string::npos) << s.message();
}

TEST(SafetensorsTest, RejectsGapBetweenTensors) {
  Status s = open_bytes(raw_file(
      R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
      12));
  EXPECT_NE(s.message().find("gap"), std::string::npos) << s.message();
}

TEST(SafetensorsTest, RejectsBytesOwnedByNoTensor) {
  Status s = open_bytes(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8));
  EXPECT_NE(s.message().find("belong to none"), std::string::npos) << s.message();
}

TEST(SafetensorsTest, RejectsOffsetsOutOfRange) {
  Status s = open_bytes(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", 4));
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  s = open_bytes(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", 4));
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
}

TEST(SafetensorsTest, RejectsUnknownDtype) {
  Status s = open_bytes(raw_file(R"({"a":{"dtype":"F31","shape":[1],"data_offsets":[0,4]}})", 4));
  EXPECT_NE(s.message().find("unknown dtype"), std::string::npos) << s.message();
}

TEST(SafetensorsTest, RejectsDtypeThatDoesNotMatchByteCount) {
  // Four bytes hold one F32 but claim to be one F64.
  Status s = open_bytes(raw_file(R"({"a":{"dtype":"F64","shape":[1],"data_offsets":[0,4]}})", 4));
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("4 bytes for a F64"), std::string::npos) << s.message();
}

TEST(SafetensorsTest, RejectsNegativeOrOverflowingShape) {
  EXPECT_EQ(open_bytes(raw_file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4)).code(),
            StatusCode::kDataLoss);
  EXPECT_EQ(open_bytes(raw_file(
                R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4))
                .code(),
            StatusCode::kDataLoss);
}

TEST(SafetensorsTest, RejectsMissingOrExtraTensorKeys) {
  EXPECT_EQ(open_bytes(raw_file(R"({"a":{"dtype":"F32","shape":[1]}})", 0)).code(), StatusCode::kDataLoss);
  EXPECT_EQ(open_bytes(raw_file(
                R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", 4)).code(),
            StatusCode::kDataLoss);
}

TEST(SafetensorsTest, RejectsMetadataValuesThatAreNotStrings) {
  Status s = open_bytes(raw_file(R"({"__metadata__":{"epochs":3}})", 0));
  EXPECT_NE(s.message().find("__metadata__.epochs"), std::string::npos) << s.message();
}

TEST(SafetensorsTest, RejectsRandomCorruptionWithoutCrashing) {
  Writer w;
  std::vector<float> a(64, 1.0f);
  w.add_f32("a", {8, 8}, a);
  w.add_f32("b", {64}, a);
  const std::string good = w.to_bytes();
  uint64_t state = 12345;
  int rejected = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    std::string bad = good;
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    size_t pos = (state >> 33) % 120;  // the length prefix and the header
    bad[pos] = static_cast<char>(state >> 56);
    if (!open_bytes(bad).is_ok()) ++rejected;
  }
  EXPECT_GT(rejected, 0);
}

}  // namespace
}  // namespace bitfleet::safetensors
