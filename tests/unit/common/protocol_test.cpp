// The coordinator→worker messages: what the coordinator encodes, the agent decodes to the same
// values; anything else is a Status naming the field, never an exception.
#include "common/protocol.h"

#include <gtest/gtest.h>

namespace bitfleet::protocol {
namespace {

LeasedJob sample_job() {
  return {"job-0123456789abcdef01234567", 3, {{"backbone", "tiny"}},
          {"file-0123456789abcdef01234567", "t.tsv", std::string(64, 'a'), 120},
          FileRef{"file-0123456789abcdef01234568", "d.tsv", std::string(64, 'b'), 60}, 40};
}

TEST(ProtocolTest, LeaseGrantRoundTrips) {
  LeaseGrant grant{{sample_job(), sample_job()}, 30};
  grant.jobs[1].validation_file.reset();
  grant.jobs[1].checkpoint_step.reset();
  auto back = parse_lease_grant(to_json(grant).dump());
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  ASSERT_EQ(back->jobs.size(), 2u);
  EXPECT_EQ(to_json(*back), to_json(grant));
  EXPECT_EQ(back->jobs[0].checkpoint_step, 40);
  EXPECT_EQ(back->jobs[0].validation_file->sha256, std::string(64, 'b'));
  EXPECT_FALSE(back->jobs[1].validation_file.has_value());
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

}  // namespace
}  // namespace bitfleet::protocol
