// The coordinator↔worker messages: what one side encodes, the other decodes to the same values;
// anything else is a Status naming the field, never an exception.
#include "common/protocol.h"

#include <gtest/gtest.h>

namespace bitfleet::protocol {
namespace {

LeasedJob sample_job() {
  return {"job-0123456789abcdef01234567", 3, {{"backbone", "tiny"}},
          {"file-0123456789abcdef01234567", "t.tsv", std::string(64, 'a'), 120},
          FileRef{"file-0123456789abcdef01234568", "d.tsv", std::string(64, 'b'), 60},
          FileRef{"file-0123456789abcdef01234569", "e.tsv", std::string(64, 'c'), 50}, 40};
}

TEST(ProtocolTest, LeaseGrantRoundTrips) {
  LeaseGrant grant{{sample_job(), sample_job()}, 30};
  grant.jobs[1].validation_file.reset();
  grant.jobs[1].test_file.reset();
  grant.jobs[1].checkpoint_step.reset();
  auto back = parse_lease_grant(to_json(grant).dump());
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  ASSERT_EQ(back->jobs.size(), 2u);
  EXPECT_EQ(to_json(*back), to_json(grant));
  EXPECT_EQ(back->jobs[0].checkpoint_step, 40);
  EXPECT_EQ(back->jobs[0].validation_file->sha256, std::string(64, 'b'));
  EXPECT_FALSE(back->jobs[1].validation_file.has_value());
  EXPECT_EQ(back->jobs[0].test_file->filename, "e.tsv");
  EXPECT_FALSE(back->jobs[1].test_file.has_value());
  EXPECT_DOUBLE_EQ(back->lease_seconds, 30);
}

TEST(ProtocolTest, RegistrationAndHeartbeatRepliesRoundTrip) {
  RegistrationReply reg{"wg-0123456789abcdef01234567", 60, 20};
  EXPECT_EQ(to_json(*parse_registration_reply(to_json(reg).dump())), to_json(reg));
  HeartbeatReply hb{{"job-a", "job-b"}, 60};
  EXPECT_EQ(parse_heartbeat_reply(to_json(hb).dump())->cancel, hb.cancel);
}

TEST(ProtocolTest, MalformedRepliesNameTheirFault) {
  EXPECT_NE(parse_lease_grant("<html>502</html>").status().message().find("not valid JSON"), std::string::npos);
  EXPECT_FALSE(parse_lease_grant("").is_ok());
  EXPECT_FALSE(parse_lease_grant("[]").is_ok());
  auto wrong = parse_lease_grant(R"({"jobs": [{"id": "job-x", "attempt": "1"}], "lease_seconds": 60})");
  EXPECT_EQ(wrong.status().field(), "jobs[0].attempt") << wrong.status().to_string();
  auto no_file = parse_lease_grant(R"({"jobs": [{"id": "job-x", "attempt": 1, "request": {}}], "lease_seconds": 60})");
  EXPECT_EQ(no_file.status().field(), "jobs[0].train_file") << no_file.status().to_string();
  EXPECT_EQ(parse_heartbeat_reply(R"({"cancel": [1], "lease_seconds": 60})").status().field(), "cancel[0]");
  EXPECT_EQ(parse_registration_reply(R"({"lease_seconds": 60})").status().field(), "id");
  EXPECT_FALSE(parse_registration_reply(R"({"id": "wg-x", "heartbeat_seconds": -1})").is_ok());
}

TEST(ProtocolTest, UnknownFieldsAreIgnoredForNewerCoordinators) {
  auto hb = parse_heartbeat_reply(R"({"cancel": [], "lease_seconds": 60, "added_later": true})");
  EXPECT_TRUE(hb.is_ok()) << hb.status().to_string();
}

// The worker's requests: every one round-trips, and the coordinator's parse names a bad field.
TEST(ProtocolTest, WorkerRequestsRoundTrip) {
  Registration reg{"wg-0123", "host:1", "minilm", std::string(64, 'c'), "cuda", "bf16", "Xeon; avx512f amx_bf16",
                   8, 2, 16, 256};
  auto reg_back = parse_registration(to_json(reg));
  ASSERT_TRUE(reg_back.is_ok()) << reg_back.status().to_string();
  EXPECT_EQ(to_json(*reg_back), to_json(reg));
  reg.id.clear();
  EXPECT_FALSE(to_json(reg).contains("id")) << "a new group sends no id";
  // A group from before dtypes were registered computed as its device did then.
  nlohmann::json old = {{"name", "x"}, {"backbone", "b"}, {"slots", 2}, {"device", "cuda"}};
  EXPECT_EQ(parse_registration(old)->dtype, "bf16");
  old["device"] = "cpu";
  EXPECT_EQ(parse_registration(old)->dtype, "fp32");

  Heartbeat beat{3, {{"job-1", 2, 10, 40, 0.25}, {"job-2", 1, 0, 0, std::nullopt}}};
  auto beat_back = parse_heartbeat(to_json(beat));
  ASSERT_TRUE(beat_back.is_ok()) << beat_back.status().to_string();
  EXPECT_EQ(to_json(*beat_back), to_json(beat));
  EXPECT_FALSE(beat_back->jobs[1].train_loss.has_value());

  const Fence fence{"wg-0123", 4};
  EventsReport events{fence, {{"eval", {{"accuracy", 0.9}}}, {"log", {{"message", "hi"}}}}};
  auto events_back = parse_events_report(to_json(events));
  ASSERT_TRUE(events_back.is_ok()) << events_back.status().to_string();
  EXPECT_EQ(to_json(*events_back), to_json(events));
  CompleteReport done{fence, {{"accuracy", 0.75}}, 0.5, 120};
  auto done_back = parse_complete_report(to_json(done));
  ASSERT_TRUE(done_back.is_ok()) << done_back.status().to_string();
  EXPECT_EQ(to_json(*done_back), to_json(done));
  auto fail_back = parse_fail_report(to_json(FailReport{fence, "non-finite loss"}));
  ASSERT_TRUE(fail_back.is_ok());
  EXPECT_EQ(fail_back->reason, "non-finite loss");
  EXPECT_EQ(fail_back->fence.attempt, 4);
  auto release_back = parse_release_report(to_json(ReleaseReport{fence}));
  ASSERT_TRUE(release_back.is_ok());
  EXPECT_EQ(release_back->fence.worker_group, "wg-0123");
  EXPECT_EQ(parse_lease_request(to_json(LeaseRequest{5}))->free_slots, 5);
}

TEST(ProtocolTest, MalformedWorkerRequestsNameTheField) {
  using nlohmann::json;
  const std::vector<std::pair<Result<int>, std::string>> cases = {
      {parse_registration(json{{"name", "x"}, {"backbone", "b"}, {"slots", 0}}).status(), "slots"},
      {parse_registration(json{{"name", "x"}, {"backbone", "b"}, {"slots", 2}, {"colour", 1}}).status(), "colour"},
      {parse_registration(json{{"name", "x"}, {"backbone", "b"}, {"slots", 2}, {"dtype", "fp16"}}).status(), "dtype"},
      {parse_lease_request(json{{"free_slots", "many"}}).status(), "free_slots"},
      {parse_heartbeat(json{{"free_slots", 1}, {"jobs", {{{"id", "job-1"}, {"attempt", 0}}}}}).status(), "jobs[0].attempt"},
      {parse_heartbeat(json{{"free_slots", 1}, {"jobs", "none"}}).status(), "jobs"},
      {parse_events_report(json{{"worker_group", "wg"}, {"attempt", 1}, {"events", {{{"type", "x"}, {"data", json::object()}}}}}).status(),
       "events[0].type"},
      {parse_complete_report(json{{"worker_group", "wg"}, {"attempt", 1}, {"steps", 3}, {"metrics", 5}}).status(), "metrics"},
      {parse_fail_report(json{{"attempt", 1}, {"reason", "r"}}).status(), "worker_group"},
      {parse_release_report(json::array()).status(), ""},
  };
  for (const auto& [result, field] : cases) {
    ASSERT_FALSE(result.is_ok()) << field;
    EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument) << field;
    EXPECT_EQ(result.status().field(), field) << result.status().to_string();
  }
}

}  // namespace
}  // namespace bitfleet::protocol
