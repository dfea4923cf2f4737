// The agent against a real coordinator (Service + HttpServer in this process, on an ephemeral
// loopback port, data in a temporary directory): registration, leases, heartbeats, reports.
#include "worker/agent/agent.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <fstream>
#include <thread>

#include "common/net/http_client.h"
#include "common/net/http_server.h"
#include "coordinator/service.h"

namespace bitfleet::agent {
namespace {

using namespace std::chrono_literals;

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("bitfleet-agent-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    auto auth = coordinator::Auth::default_tokens(dir_.string(), nullptr);
    ASSERT_TRUE(auth.is_ok());
    auto service = coordinator::Service::create({.data_dir = dir_.string(), .lease_ms = 3000}, std::move(auth).value());
    ASSERT_TRUE(service.is_ok()) << service.status().to_string();
    service_ = std::move(service).value();
    net::ServerOptions server;
    server.port = 0;
    server.upload_dir = service_->upload_dir();
    server.is_upload = [this](const std::string& m, const std::string& p) { return service_->is_upload(m, p); };
    server.handle = [this](net::Request& r) {
      if (auto bad = garbage_for(r)) return *bad;
      return service_->handle(r);
    };
    server_ = std::make_unique<net::HttpServer>(server);
    ASSERT_TRUE(server_->start().is_ok());
    url_ = "http://127.0.0.1:" + std::to_string(server_->port());
    admin_ = std::make_unique<net::HttpClient>(*net::parse_url(url_), token("admin"), 10s);
    std::string tsv = "sentence\tlabel\nthe movie was good\tpos\nit was bad\tneg\n";
    auto file = admin_->request("POST", "/v1/files?filename=t.tsv", tsv, {{"Content-Type", "application/octet-stream"}});
    ASSERT_TRUE(file.is_ok() && file->status == 201) << (file.is_ok() ? file->body : file.status().message());
    file_id_ = nlohmann::json::parse(file->body)["id"];
  }
  void TearDown() override {
    server_->stop(1s);
    service_.reset();
    std::filesystem::remove_all(dir_);
  }
  // What a broken proxy or a half-dead coordinator answers instead of the protocol, in turn: an
  // HTML page, a truncated body, wrong types, an empty body, nesting past the JSON limit.
  std::optional<net::Response> garbage_for(const net::Request& r) {
    std::lock_guard<std::mutex> lock(garbage_mutex_);
    for (auto& [suffix, left] : garbage_left_) {
      if (left == 0 || r.path.size() < suffix.size() || r.path.compare(r.path.size() - suffix.size(), suffix.size(), suffix) != 0) {
        continue;
      }
      static const char* kBodies[] = {"<html><body>502 Bad Gateway</body></html>", "{\"jobs\": [{\"id\": \"job-",
                                      "{\"id\": 5, \"jobs\": \"none\", \"cancel\": {\"a\": 1}}", "",
                                      "{\"jobs\": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"};
      net::Response bad;
      bad.status = suffix == "/workers" ? 201 : 200;
      bad.body = kBodies[--left % 5];
      ++garbage_sent_;
      return bad;
    }
    return std::nullopt;
  }
  std::string token(const std::string& who) {
    std::ifstream f(dir_ / (who + ".token"));
    std::string t;
    f >> t;
    return t;
  }
  std::string create_job() {
    nlohmann::json request = {{"backbone", "tiny"}, {"train_file", file_id_},
                              {"task", {{"type", "classification"}, {"text_fields", {"sentence"}}, {"label_field", "label"},
                                        {"labels", {"neg", "pos"}}}}};
    auto r = admin_->request("POST", "/v1/jobs", request.dump());
    EXPECT_TRUE(r.is_ok() && r->status == 201);
    return nlohmann::json::parse(r->body)["id"];
  }
  std::string status_of(const std::string& id) {
    return nlohmann::json::parse(admin_->request("GET", "/v1/jobs/" + id)->body)["status"];
  }
  std::unique_ptr<Agent> make_agent(int64_t slots) {
    AgentOptions o;
    o.coordinator_url = url_;
    o.token = token("worker");
    o.name = "test";
    o.backbone = "tiny";
    o.slots = slots;
    o.lease_poll = 100ms;
    auto a = std::make_unique<Agent>(o);
    EXPECT_TRUE(a->start().is_ok());
    return a;
  }
  std::vector<LeasedJob> wait_for_leases(Agent& a, size_t n) {
    std::vector<LeasedJob> got;
    for (int i = 0; i < 100 && got.size() < n; ++i) {
      a.wait_for_work(100ms);
      for (auto& j : a.take_leased()) got.push_back(std::move(j));
    }
    return got;
  }

  std::filesystem::path dir_;
  std::unique_ptr<coordinator::Service> service_;
  std::unique_ptr<net::HttpServer> server_;
  std::unique_ptr<net::HttpClient> admin_;
  std::string url_, file_id_;
  std::mutex garbage_mutex_;
  std::map<std::string, int> garbage_left_;  // path suffix -> malformed answers still to give
  int garbage_sent_ = 0;
};

TEST_F(AgentTest, LeasesQueuedJobsUpToItsCapacity) {
  std::vector<std::string> ids = {create_job(), create_job(), create_job()};
  auto agent = make_agent(2);
  auto leased = wait_for_leases(*agent, 2);
  ASSERT_EQ(leased.size(), 2u);
  EXPECT_EQ(leased[0].id, ids[0]);
  EXPECT_EQ(leased[0].attempt, 1);
  EXPECT_EQ(leased[0].train_file.id, file_id_);
  EXPECT_EQ(leased[0].request["backbone"], "tiny");
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(agent->take_leased().empty());  // no capacity left
  EXPECT_EQ(status_of(ids[2]), "queued");
}

// A job counts against the group's slots from its lease until the loop lets it go, also while the
// loop has taken it but not yet put it in a slot: the group never leases more than it can admit
// (over-leasing released the surplus at once, bumping every attempt), and a freed slot is
// refilled without waiting for the loop to say so.
TEST_F(AgentTest, HoldsNoMoreJobsThanSlotsUntilTheLoopLetsThemGo) {
  std::vector<std::string> ids = {create_job(), create_job(), create_job(), create_job()};
  auto agent = make_agent(2);
  auto leased = wait_for_leases(*agent, 2);
  ASSERT_EQ(leased.size(), 2u);
  std::this_thread::sleep_for(400ms);  // several lease polls
  EXPECT_TRUE(agent->take_leased().empty());
  EXPECT_EQ(status_of(ids[2]), "queued");
  agent->release(leased[0].id, leased[0].attempt);
  auto refill = wait_for_leases(*agent, 1);
  ASSERT_EQ(refill.size(), 1u);
  EXPECT_NE(refill[0].id, leased[1].id);
  std::this_thread::sleep_for(400ms);
  EXPECT_TRUE(agent->take_leased().empty());
}

// A coordinator (or a proxy before it) answering garbage with 200/201 is logged and retried; the
// agent never throws out of its thread (which would end rank 0 and the group) and, once real
// answers come, registers, leases and heartbeats as usual.
TEST_F(AgentTest, MalformedCoordinatorRepliesAreRetriedNotFatal) {
  {
    std::lock_guard<std::mutex> lock(garbage_mutex_);
    garbage_left_ = {{"/workers", 2}, {"/lease", 5}, {"/heartbeat", 5}};
  }
  std::string id = create_job();
  auto agent = make_agent(1);
  auto leased = wait_for_leases(*agent, 1);
  ASSERT_EQ(leased.size(), 1u);
  EXPECT_EQ(leased[0].id, id);
  EXPECT_EQ(leased[0].attempt, 1);
  agent->set_progress({{id, 1, 1, 10}});
  for (int i = 0; i < 100; ++i) {
    {
      std::lock_guard<std::mutex> lock(garbage_mutex_);
      if (garbage_left_["/heartbeat"] == 0) break;
    }
    std::this_thread::sleep_for(100ms);
  }
  std::lock_guard<std::mutex> lock(garbage_mutex_);
  EXPECT_EQ(garbage_sent_, 12);  // every kind was answered, on every call, and survived
}

TEST_F(AgentTest, HeartbeatsKeepLeasesAlive) {
  std::string id = create_job();
  auto agent = make_agent(1);
  auto leased = wait_for_leases(*agent, 1);
  ASSERT_EQ(leased.size(), 1u);
  agent->stop_leasing();
  agent->set_progress({{id, leased[0].attempt, 3, 10}});
  std::this_thread::sleep_for(4500ms);  // longer than the 3 s lease
  service_->sweep();
  EXPECT_EQ(status_of(id), "running");
}

TEST_F(AgentTest, ReportsReachTheCoordinatorInOrder) {
  std::string id = create_job();
  auto agent = make_agent(1);
  auto leased = wait_for_leases(*agent, 1);
  ASSERT_EQ(leased.size(), 1u);
  agent->send_events(id, 1, {{"train_loss", {{"step", 1}, {"loss", 0.5}}}});
  agent->upload_checkpoint(id, 1, 1, "checkpoint-1");
  agent->complete(id, 1, "artifact-bytes", {.metrics = {{"accuracy", 1.0}}, .train_loss = 0.25, .steps = 2});
  ASSERT_TRUE(agent->drain(10s));
  EXPECT_EQ(status_of(id), "succeeded");
  EXPECT_EQ(admin_->request("GET", "/v1/jobs/" + id + "/artifact")->body, "artifact-bytes");
}

TEST_F(AgentTest, CancelledJobIsDroppedAtTheNextHeartbeat) {
  std::string id = create_job();
  auto agent = make_agent(1);
  auto leased = wait_for_leases(*agent, 1);
  ASSERT_EQ(leased.size(), 1u);
  agent->set_progress({{id, 1, 0, 10}});
  ASSERT_TRUE(admin_->request("POST", "/v1/jobs/" + id + "/cancel").is_ok());
  std::vector<std::string> dropped;
  for (int i = 0; i < 50 && dropped.empty(); ++i) {
    agent->wait_for_work(100ms);
    dropped = agent->take_dropped();
  }
  EXPECT_EQ(dropped, std::vector<std::string>{id});
}

// A bad --coordinator is refused at start (bitfleet-worker exits 2), never silently replaced by
// an address that cannot answer.
TEST(AgentUrlTest, BadCoordinatorUrlIsRefusedAtStart) {
  for (const char* bad : {"127.0.0.1:8080", "http://", "http://host:", "http://host:80x", "http://host:0",
                          "http://host:70000", "https://host:443"}) {
    AgentOptions o;
    o.coordinator_url = bad;
    Agent agent(o);
    Status s = agent.start();
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(s.field(), "coordinator") << bad;
  }
  auto good = net::parse_url("http://10.0.0.5:8080/prefix/");
  ASSERT_TRUE(good.is_ok());
  EXPECT_EQ(good->host, "10.0.0.5");
  EXPECT_EQ(good->port, "8080");
  EXPECT_EQ(good->base_path, "/prefix");
}

}  // namespace
}  // namespace bitfleet::agent
