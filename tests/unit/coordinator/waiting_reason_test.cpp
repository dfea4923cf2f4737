// waiting_reason (coordinator/resources.h): a queued job that no live worker group can run says
// why, naming what the groups lack; a job some group can run, or one not queued, says nothing. The
// scheduler and the reason share group_fit, so what one leases the other never calls stuck.
#include <gtest/gtest.h>

#include "coordinator/resources.h"

namespace bitfleet::coordinator {
namespace {

JobRecord queued_job(int labels = 2, int64_t max_seq_len = 128, std::optional<common::Dtype> dtype = std::nullopt) {
  JobRecord job;
  job.status = kQueued;
  job.request.backbone = "minilm";
  for (int i = 0; i < labels; ++i) job.request.task.labels.push_back("l" + std::to_string(i));
  job.request.hyperparameters.max_seq_len = max_seq_len;
  job.request.hyperparameters.dtype = dtype;
  return job;
}

WorkerRecord group(const std::string& dtype, int64_t max_labels = 64, int64_t max_seq_len = 256,
                   const std::string& backbone = "minilm") {
  WorkerRecord w;
  w.backbone = backbone;
  w.dtype = dtype;
  w.max_labels = max_labels;
  w.max_seq_len = max_seq_len;
  return w;
}

std::string reason(const JobRecord& job, const std::vector<WorkerRecord>& live) {
  const nlohmann::json r = waiting_reason(job, live);
  return r.is_null() ? "" : r.get<std::string>();
}

TEST(WaitingReasonTest, NullWhenSomeLiveGroupCanRunIt) {
  EXPECT_EQ(reason(queued_job(), {group("bf16")}), "");
  EXPECT_EQ(reason(queued_job(2, 128, common::Dtype::kFp32), {group("bf16"), group("fp32")}), "");
  EXPECT_TRUE(group_fit(group("fp32"), queued_job(2, 128, common::Dtype::kFp32).request).all());
}

TEST(WaitingReasonTest, NullUnlessQueued) {
  JobRecord running = queued_job(2, 128, common::Dtype::kFp32);
  running.status = kRunning;
  EXPECT_EQ(reason(running, {}), "");
}

TEST(WaitingReasonTest, NoGroupServesTheBackbone) {
  EXPECT_EQ(reason(queued_job(), {}), "no live worker group serves backbone \"minilm\"");
  EXPECT_EQ(reason(queued_job(), {group("fp32", 64, 256, "roberta")}), "no live worker group serves backbone \"minilm\"");
}

TEST(WaitingReasonTest, NamesTheDtypeTheGroupsRun) {
  const std::string r = reason(queued_job(2, 128, common::Dtype::kFp32), {group("bf16"), group("bf16")});
  EXPECT_EQ(r, "no live worker group of backbone \"minilm\" can run it: it requires dtype fp32, the groups run bf16 "
               "(their --dtype)");
  EXPECT_FALSE(group_fit(group("bf16"), queued_job(2, 128, common::Dtype::kFp32).request).dtype);
}

TEST(WaitingReasonTest, NamesLabelsAndSequenceLengthTogether) {
  const std::string r = reason(queued_job(40, 512), {group("fp32", 16, 256), group("bf16", 32, 128)});
  EXPECT_EQ(r, "no live worker group of backbone \"minilm\" can run it: it has 40 labels, the groups take at most 32 "
               "(their --max-labels); its max_seq_len is 512, the groups take at most 256 (their --max-seq-len)");
}

TEST(WaitingReasonTest, EachNeedMetByADifferentGroupIsStillStuck) {
  // One group has the labels, the other the dtype: neither can lease it.
  const std::string r = reason(queued_job(40, 128, common::Dtype::kFp32), {group("bf16", 64), group("fp32", 16)});
  EXPECT_EQ(r, "no live worker group of backbone \"minilm\" can run it: each lacks one of its labels, max_seq_len or "
               "dtype, none has all three");
}

}  // namespace
}  // namespace bitfleet::coordinator
