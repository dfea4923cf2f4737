#include "serve/task_table.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <map>
#include <thread>

namespace bitfleet::serve {
namespace {

using Clock = TaskTable::Clock;

// A table over fake loads: each task's row is [its load number]; installs are recorded.
class TaskTableTest : public ::testing::Test {
 protected:
  TaskTable make(int64_t slots) {
    return TaskTable(
        slots,
        [this](const std::string& key) -> Result<LoadedTask> {
          if (gate_ && key == gated_) gate_->get_future().wait();
          if (key == "broken") return data_loss("broken artifact");
          auto info = std::make_shared<TaskInfo>();
          info->name = key;
          return LoadedTask{info, {static_cast<float>(++loads_)}};
        },
        [this](int slot, std::vector<float> row) {
          std::lock_guard lock(mu_);
          installs_.emplace_back(slot, row[0]);
        },
        nullptr);
  }
  Clock::time_point soon() const { return Clock::now() + std::chrono::seconds(10); }

  std::atomic<int> loads_{0};
  std::mutex mu_;
  std::vector<std::pair<int, float>> installs_;
  std::string gated_;
  std::unique_ptr<std::promise<void>> gate_;
};

TEST_F(TaskTableTest, LoadsOnceAndEvictsTheLeastRecentlyUsed) {
  TaskTable table = make(2);
  int slot_a = table.acquire("a", soon())->slot();
  int slot_b = table.acquire("b", soon())->slot();
  EXPECT_NE(slot_a, slot_b);
  EXPECT_EQ(table.acquire("a", soon())->slot(), slot_a);  // resident: no load; a is now the newest
  EXPECT_EQ(loads_, 2);
  EXPECT_EQ(table.acquire("c", soon())->slot(), slot_b);  // b was least recently used
  EXPECT_FALSE(table.is_resident("b"));
  EXPECT_TRUE(table.is_resident("a"));
  EXPECT_EQ(table.acquire("b", soon())->slot(), slot_a);  // reloaded, into a's slot (a older than c)
  EXPECT_EQ(loads_, 4);
  EXPECT_EQ(table.resident(), 2);
  ASSERT_EQ(installs_.size(), 4u);
  EXPECT_EQ(installs_[2], std::make_pair(slot_b, 3.0f));
}

TEST_F(TaskTableTest, APinnedTaskIsNeverEvicted) {
  TaskTable table = make(1);
  auto held = table.acquire("a", soon());
  ASSERT_TRUE(held.is_ok());
  auto other = table.acquire("b", soon());
  EXPECT_EQ(other.status().code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(table.is_resident("a"));
  { auto released = std::move(held).value(); }
  EXPECT_TRUE(table.acquire("b", soon()).is_ok());
}

TEST_F(TaskTableTest, AFailedLoadLeavesNothingBehind) {
  TaskTable table = make(2);
  EXPECT_EQ(table.acquire("broken", soon()).status().code(), StatusCode::kDataLoss);
  EXPECT_FALSE(table.is_resident("broken"));
  EXPECT_EQ(table.resident(), 0);
  EXPECT_TRUE(installs_.empty());
}

TEST_F(TaskTableTest, ALoadDoesNotBlockResidentTasks) {
  TaskTable table = make(4);
  ASSERT_TRUE(table.acquire("a", soon()).is_ok());
  gated_ = "slow";
  gate_ = std::make_unique<std::promise<void>>();
  auto slow = std::async(std::launch::async, [&] { return table.acquire("slow", soon()).is_ok(); });
  auto waiter = std::async(std::launch::async, [&] { return table.acquire("slow", soon()).is_ok(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  // While "slow" is loading (its loader held until the gate opens), "a" is served: were the
  // table's lock held across a load, this would wait for the gate, which opens only below.
  auto resident = std::async(std::launch::async, [&] { return table.acquire("a", soon()).is_ok(); });
  ASSERT_EQ(resident.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_TRUE(resident.get());
  EXPECT_EQ(table.acquire("slow", Clock::now() + std::chrono::milliseconds(20)).status().code(),
            StatusCode::kDeadlineExceeded);
  gate_->set_value();
  EXPECT_TRUE(slow.get());
  EXPECT_TRUE(waiter.get());
  EXPECT_EQ(loads_, 2);  // the waiters shared the one load
}

}  // namespace
}  // namespace bitfleet::serve
