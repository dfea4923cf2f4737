#include "common/table_reader.h"

#include <gtest/gtest.h>

#include <fstream>

namespace bitfleet::common {
namespace {

TEST(TableReaderTest, TsvKeepsQuotesLiterallyAndStripsCarriageReturns) {
  auto t = read_table("sentence\tlabel\r\nhe said \"hi\"\t1\r\n\nok\t0\n", TableFormat::kTsv, "a.tsv");
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  ASSERT_EQ(t->records.size(), 2u);
  EXPECT_EQ(t->records[0].values["sentence"], "he said \"hi\"");
  EXPECT_EQ(t->records[1].line, 4);
}

TEST(TableReaderTest, TsvWrongFieldCountNamesLine) {
  auto t = read_table("a\tb\nx\ty\nonly-one\n", TableFormat::kTsv, "train.tsv");
  ASSERT_FALSE(t.is_ok());
  EXPECT_NE(t.status().message().find("train.tsv:3:"), std::string::npos) << t.status().message();
  EXPECT_NE(t.status().message().find("got 1"), std::string::npos);
}

TEST(TableReaderTest, CsvFollowsRfc4180) {
  auto t = read_table("text,label\n\"a, \"\"quoted\"\"\nline\",pos\nplain,neg", TableFormat::kCsv, "a.csv");
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  ASSERT_EQ(t->records.size(), 2u);
  EXPECT_EQ(t->records[0].values["text"], "a, \"quoted\"\nline");
  EXPECT_EQ(t->records[1].line, 4);  // the quoted newline moved the second record down a line
  EXPECT_EQ(t->records[1].values["label"], "neg");
}

TEST(TableReaderTest, CsvUnclosedQuoteNamesTheRecordsLine) {
  auto t = read_table("text,label\nok,1\n\"never closed,1\n", TableFormat::kCsv, "a.csv");
  ASSERT_FALSE(t.is_ok());
  EXPECT_NE(t.status().message().find("a.csv:3:"), std::string::npos) << t.status().message();
}

TEST(TableReaderTest, CsvStrayQuoteIsAnError) {
  auto t = read_table("text,label\nab\"c,1\n", TableFormat::kCsv, "a.csv");
  EXPECT_FALSE(t.is_ok());
}

TEST(TableReaderTest, JsonlNamesTheBadLine) {
  auto t = read_table("{\"t\": \"a\"}\n{\"t\": \n", TableFormat::kJsonl, "d.jsonl");
  ASSERT_FALSE(t.is_ok());
  EXPECT_NE(t.status().message().find("d.jsonl:2:"), std::string::npos);
  EXPECT_FALSE(read_table("[1,2]\n", TableFormat::kJsonl, "d.jsonl").is_ok());
}

TEST(TableReaderTest, InvalidUtf8NamesItsLine) {
  auto t = read_table("a\tb\nfine\t1\nbad \xC3\x28 bytes\t2\n", TableFormat::kTsv, "x.tsv");
  ASSERT_FALSE(t.is_ok());
  EXPECT_NE(t.status().message().find("x.tsv:3: not valid UTF-8"), std::string::npos) << t.status().message();
  EXPECT_TRUE(read_table("a\n\xE4\xB8\xAD\xF0\x9F\x98\x80\n", TableFormat::kTsv, "x.tsv").is_ok());
}

TEST(TableReaderTest, DuplicateHeaderColumnIsAnError) {
  EXPECT_FALSE(read_table("a\ta\n1\t2\n", TableFormat::kTsv, "x.tsv").is_ok());
}

TEST(TableReaderTest, FormatComesFromTheFileName) {
  EXPECT_EQ(*table_format_from_name("train.tsv"), TableFormat::kTsv);
  EXPECT_EQ(*table_format_from_name("x.jsonl"), TableFormat::kJsonl);
  EXPECT_FALSE(table_format_from_name("train.parquet").is_ok());
}

TEST(TableReaderTest, ColumnsResolveByNameOrIndex) {
  auto t = read_table("index\tsentence\tlabel\n0\thi\t1\n", TableFormat::kTsv, "a.tsv");
  ASSERT_TRUE(t.is_ok());
  EXPECT_EQ(*resolve_column(*t, "1", "task.text_fields[0]"), "sentence");
  auto missing = resolve_column(*t, "premise", "task.text_fields[0]");
  ASSERT_FALSE(missing.is_ok());
  EXPECT_EQ(missing.status().field(), "task.text_fields[0]");
  EXPECT_NE(missing.status().message().find("index, sentence, label"), std::string::npos);
}

}  // namespace
}  // namespace bitfleet::common

namespace bitfleet::common {
namespace {

TEST(TableReaderTest, ALineLongerThanTheRecordLimitNamesItsLine) {
  const std::string content = "a\tb\n" + std::string(kMaxRecordBytes + 1, 'x') + "\t1\n";
  auto t = read_table(content, TableFormat::kTsv, "x.tsv");
  ASSERT_FALSE(t.is_ok());
  EXPECT_NE(t.status().message().find("x.tsv:2: a line longer than"), std::string::npos) << t.status().message();
}

// The coordinator checks uploads with scan_table_file, workers read them with read_table: both
// must agree on what a file holds and on what is wrong with it, also across 1 MiB read chunks.
TEST(TableReaderTest, StreamingAFileAgreesWithReadingItWhole) {
  const std::string path = ::testing::TempDir() + "/table_reader_stream.csv";
  std::string content = "text,label\n";
  for (int i = 0; i < 60000; ++i) content += "\"row " + std::to_string(i) + ",\nwith a quoted newline\",l" + std::to_string(i % 3) + "\n";
  for (const std::string& tail : {std::string(), std::string("\"never closed,x\n")}) {
    {
      std::ofstream out(path, std::ios::binary);
      out << content << tail;
    }
    auto whole = read_table(content + tail, TableFormat::kCsv, "s.csv");
    auto streamed = scan_table_file(path, TableFormat::kCsv, "s.csv");
    ASSERT_EQ(whole.is_ok(), streamed.is_ok());
    if (whole.is_ok()) {
      EXPECT_EQ(streamed->records, 60000);
      EXPECT_EQ(static_cast<int64_t>(whole->records.size()), streamed->records);
      EXPECT_EQ(whole->columns, streamed->columns);
    } else {
      EXPECT_EQ(whole.status().message(), streamed.status().message());
      EXPECT_NE(streamed.status().message().find("s.csv:120002:"), std::string::npos) << streamed.status().message();
    }
  }
}

}  // namespace
}  // namespace bitfleet::common
