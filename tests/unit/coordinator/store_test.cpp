// The store's scheduling and durability rules, on a real SQLite file, time passed in explicitly.
#include "coordinator/store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "coordinator/blob_store.h"

namespace bitfleet::coordinator {
namespace {

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("bitfleet-store-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    open();
    FileRecord f{"file-000000000000000000000001", "a", "t.tsv", "tsv", "abc", 10, 2, 1000, {"sentence", "label"}};
    ASSERT_TRUE(store_->insert_file(f, std::nullopt).is_ok());
    WorkerRecord w{"wg-000000000000000000000001", "g", "bert", "", "cpu", "fp32", "", 4, 1, 4, 8, 128, 0, 0};
    ASSERT_TRUE(store_->put_worker(w).is_ok());
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void open() {
    store_.reset();
    auto s = Store::open((dir_ / "bitfleet.db").string());
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    store_ = std::move(s).value();
  }

  std::string create(int priority = 0, int labels = 2, int64_t at = 1000, const std::string& backbone = "bert",
                     const std::string& tenant = "a") {
    JobRecord job;
    job.id = new_id("job-");
    job.request.backbone = backbone;
    job.request.train_file = "file-000000000000000000000001";
    job.request.task.type = common::TaskType::kClassification;
    job.request.task.text_fields = {"sentence"};
    job.request.task.label_field = "label";
    for (int i = 0; i < labels; ++i) job.request.task.labels.push_back("l" + std::to_string(i));
    job.request.priority = priority;
    job.created_at = at;
    auto r = store_->create_jobs(tenant, {job}, std::nullopt);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return job.id;
  }
  std::vector<std::string> lease(int64_t n, int64_t now, int64_t lease_ms = 1000) {
    auto leased = store_->lease_jobs(kGroup, n, now, lease_ms);
    EXPECT_TRUE(leased.is_ok()) << leased.status().to_string();
    std::vector<std::string> ids;
    for (const auto& l : *leased) ids.push_back(l.job.id);
    return ids;
  }
  JobRecord job(const std::string& id) { return **store_->get_job(id); }
  // A regression job not yet stored, created at `at`.
  static JobRecord regression_job(int64_t at) {
    JobRecord j;
    j.id = new_id("job-");
    j.request.backbone = "bert";
    j.request.train_file = "file-000000000000000000000001";
    j.request.task = {common::TaskType::kRegression, {"sentence"}, "label", {}};
    j.created_at = at;
    return j;
  }

  static constexpr const char* kGroup = "wg-000000000000000000000001";
  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(StoreTest, ReopeningKeepsDataAndSchemaVersion) {
  std::string id = create();
  const int version = store_->schema_version();
  open();
  EXPECT_EQ(store_->schema_version(), version);
  EXPECT_EQ(job(id).status, kQueued);
}

TEST_F(StoreTest, IdempotencyKeyReturnsTheStoredResponseAndCreatesNothing) {
  JobRecord j = regression_job(1000);
  IdempotencyKey key{"k1", "hash-1"};
  auto first = store_->create_jobs("a", {j}, key);
  JobRecord other = regression_job(2000);
  auto again = store_->create_jobs("a", {other}, key);
  ASSERT_TRUE(first.is_ok() && again.is_ok());
  EXPECT_FALSE(first->replayed);
  EXPECT_TRUE(again->replayed);
  ASSERT_EQ(again->jobs.size(), 1u);
  EXPECT_EQ(again->jobs[0].id, j.id);
  EXPECT_FALSE(store_->get_job(other.id)->has_value());
  auto mismatch = store_->create_jobs("a", {other}, IdempotencyKey{"k1", "hash-2"});
  EXPECT_EQ(mismatch.status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(StoreTest, ReplayAnswersWithTheJobsCurrentState) {
  JobRecord fresh = regression_job(1000);
  IdempotencyKey key{"k2", "hash"};
  auto first = store_->create_jobs("a", {fresh}, key);
  ASSERT_TRUE(first.is_ok());
  ASSERT_TRUE(store_->cancel_job(fresh.id, 1500).is_ok());
  JobRecord retry = fresh;
  retry.created_at = 2000;
  auto again = store_->create_jobs("a", {retry}, key);
  ASSERT_TRUE(again.is_ok());
  ASSERT_TRUE(again->replayed);
  EXPECT_EQ(again->jobs[0].status, kCancelled);
}

TEST_F(StoreTest, ReplayOfADeletedFileSaysSo) {
  FileRecord f{"file-000000000000000000000002", "a", "u.tsv", "tsv", "def", 10, 2, 1000, {"sentence", "label"}};
  IdempotencyKey key{"k3", "hash"};
  ASSERT_TRUE(store_->insert_file(f, key).is_ok());
  ASSERT_TRUE(store_->delete_file(f.id).is_ok());
  auto again = store_->insert_file(f, key);
  ASSERT_TRUE(again.is_ok());
  EXPECT_TRUE(again->replayed);
  EXPECT_FALSE(again->file.has_value());
}

TEST_F(StoreTest, IdempotencyKeysExpireAfterTheTtl) {
  IdempotencyKey key{"k4", "hash"};
  ASSERT_TRUE(store_->create_jobs("a", {regression_job(1000)}, key).is_ok());
  const int64_t day = StoreOptions{}.idempotency_ttl_ms;
  auto swept = store_->expire_idempotency_keys(1000 + day / 2);
  ASSERT_TRUE(swept.is_ok());
  EXPECT_EQ(*swept, 0);
  // Past the TTL the key is forgotten: the same key creates a new job.
  JobRecord later = regression_job(1001 + day);
  auto again = store_->create_jobs("a", {later}, key);
  ASSERT_TRUE(again.is_ok());
  EXPECT_FALSE(again->replayed);
  EXPECT_TRUE(store_->get_job(later.id)->has_value());
  swept = store_->expire_idempotency_keys(2002 + 2 * day);
  ASSERT_TRUE(swept.is_ok());
  EXPECT_EQ(*swept, 1);
}

TEST_F(StoreTest, LeaseGoesByFairShareAcrossTenantsBeforePriorityAndAge) {
  std::vector<std::string> a_jobs;
  for (int i = 0; i < 100; ++i) a_jobs.push_back(create(5, 2, 1000 + i));
  const std::string b_job = create(0, 2, 5000, "bert", "b");  // later, and lower priority
  // Tenant b's one job is among the first handed out, not after a's hundred.
  EXPECT_EQ(lease(2, 6000), (std::vector<std::string>{a_jobs[0], b_job}));
  // With a holding one running job and b none, a new b job goes before a's next ones.
  const std::string b_next = create(0, 2, 7000, "bert", "b");
  ASSERT_TRUE(store_->fail_job(b_job, kGroup, 1, "done with", 7100).is_ok());
  EXPECT_EQ(lease(1, 8000), (std::vector<std::string>{b_next}));
  EXPECT_EQ(lease(2, 8000), (std::vector<std::string>{a_jobs[1], a_jobs[2]}));
}

TEST_F(StoreTest, LeaseTakesHighestPriorityThenOldest) {
  std::string old_low = create(0, 2, 1000), new_high = create(5, 2, 2000), new_low = create(0, 2, 3000);
  EXPECT_EQ(lease(2, 5000), (std::vector<std::string>{new_high, old_low}));
  EXPECT_EQ(lease(5, 5000), (std::vector<std::string>{new_low}));
  EXPECT_EQ(job(new_high).attempt, 1);
  EXPECT_EQ(job(new_high).status, kRunning);
}

TEST_F(StoreTest, LeaseSkipsJobsTheGroupCannotRun) {
  std::string too_many_labels = create(9, 16), other_backbone = create(9, 2, 1000, "roberta"), fits = create(0, 2);
  EXPECT_EQ(lease(3, 5000), (std::vector<std::string>{fits}));
  EXPECT_EQ(job(too_many_labels).status, kQueued);
  EXPECT_EQ(job(other_backbone).status, kQueued);
}

// A job's dtype requirement: only groups computing in it lease the job; "any" goes anywhere.
TEST_F(StoreTest, LeaseLeavesJobsThatRequireAnotherDtype) {
  auto requiring = [&](std::optional<common::Dtype> dtype, int64_t at) {
    JobRecord j = regression_job(at);
    j.request.hyperparameters.dtype = dtype;
    EXPECT_TRUE(store_->create_jobs("a", {j}, std::nullopt).is_ok());
    return j.id;
  };
  const std::string bf16 = requiring(common::Dtype::kBf16, 1000), fp32 = requiring(common::Dtype::kFp32, 2000),
                    any = requiring(std::nullopt, 3000);
  EXPECT_EQ(lease(3, 5000), (std::vector<std::string>{fp32, any}));
  EXPECT_EQ(job(bf16).status, kQueued);
  EXPECT_EQ(job(bf16).request.hyperparameters.dtype, common::Dtype::kBf16) << "the requirement is stored";

  WorkerRecord w = **store_->get_worker(kGroup);
  EXPECT_EQ(w.dtype, "fp32");
  w.id = "wg-000000000000000000000002";
  w.dtype = "bf16";
  w.cpu = "Xeon; avx512f avx512_bf16 amx_bf16";
  ASSERT_TRUE(store_->put_worker(w).is_ok());
  EXPECT_EQ((*store_->get_worker(w.id))->cpu, w.cpu);
  auto leased = store_->lease_jobs(w.id, 3, 5000, 1000);
  ASSERT_TRUE(leased.is_ok());
  ASSERT_EQ(leased->size(), 1u);
  EXPECT_EQ((*leased)[0].job.id, bf16);
}

TEST_F(StoreTest, ExpiredLeaseRequeuesWithNextAttempt) {
  std::string id = create();
  lease(1, 1000, 500);
  auto out = store_->expire_leases(1499, 3);
  EXPECT_TRUE(out->empty());  // not yet
  out = store_->expire_leases(1501, 3);
  ASSERT_EQ(out->size(), 1u);
  EXPECT_TRUE((*out)[0].requeued);
  EXPECT_EQ(job(id).status, kQueued);
  lease(1, 2000);
  EXPECT_EQ(job(id).attempt, 2);
}

TEST_F(StoreTest, ReportFromStaleAttemptIsConflict) {
  std::string id = create();
  lease(1, 1000, 500);
  ASSERT_TRUE(store_->expire_leases(2000, 3).is_ok());
  lease(1, 2000, 500);  // attempt 2
  EXPECT_EQ(store_->add_events(id, kGroup, 1, {}, 2100).code(), StatusCode::kConflict);
  EXPECT_TRUE(store_->add_events(id, kGroup, 2, {}, 2100).is_ok());
  EXPECT_EQ(store_->fail_job(id, kGroup, 1, "late", 2100).status().code(), StatusCode::kConflict);
}

TEST_F(StoreTest, HeartbeatRenewsLiveLeasesAndNamesTheRest) {
  std::string live = create(), cancelled = create();
  lease(2, 1000, 500);
  ASSERT_TRUE(store_->cancel_job(cancelled, 1100).is_ok());
  auto drop = store_->heartbeat(kGroup, 2, {{live, 1, 5, 10}, {cancelled, 1, 5, 10}}, 1400, 500);
  EXPECT_EQ(*drop, std::vector<std::string>{cancelled});
  EXPECT_TRUE(store_->expire_leases(1600, 3)->empty());  // renewed until 1900
  EXPECT_EQ(job(live).step, 5);
}

TEST_F(StoreTest, RestartGivesRunningLeasesAGracePeriod) {
  std::string id = create();
  lease(1, 1000, 500);  // would expire at 1500
  ASSERT_TRUE(store_->extend_leases(5000).is_ok());  // the coordinator restarts at 4500
  EXPECT_TRUE(store_->expire_leases(4900, 3)->empty());
  EXPECT_EQ(store_->expire_leases(5001, 3)->size(), 1u);
}

TEST_F(StoreTest, JobFailsOnceItsLeaseExpiredTooOften) {
  std::string id = create();
  for (int i = 0; i < 2; ++i) {
    lease(1, 1000 * (i + 1), 100);
    ASSERT_TRUE(store_->expire_leases(1000 * (i + 1) + 200, 2).is_ok());
  }
  EXPECT_EQ(job(id).status, kFailed);
  EXPECT_NE(job(id).error.find("retry limit"), std::string::npos);
}

TEST_F(StoreTest, CompletionNeedsTheArtifact) {
  std::string id = create();
  lease(1, 1000);
  EXPECT_EQ(store_->complete_job(id, kGroup, 1, {}, 0.1, 10, {}, 1100).status().code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(store_->set_artifact(id, kGroup, 1, "blob", 3, "sha").is_ok());
  auto done = store_->complete_job(id, kGroup, 1, {{"accuracy", 0.9}}, 0.1, 10, {}, 1200);
  ASSERT_TRUE(done.is_ok());
  EXPECT_EQ(done->status, kSucceeded);
  EXPECT_DOUBLE_EQ(done->metrics["accuracy"].get<double>(), 0.9);
}

}  // namespace
}  // namespace bitfleet::coordinator
