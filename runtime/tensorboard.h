// Native TensorBoard event-file writer and reader (scalars only), no TensorFlow needed.
//
// File: <run_dir>/events.out.tfevents.<unix seconds>.<hostname>, a sequence of TFRecords
//   u64 length (little-endian) | u32 masked_crc32c(length bytes) | data | u32 masked_crc32c(data)
// with masked_crc = ((crc >> 15) | (crc << 17)) + 0xa282ead8, and data = a serialized
// tensorflow.Event (runtime/tensorboard_event.proto has the same field numbers). The first record
// is Event{wall_time, file_version: "brain.Event:2"}; each AddScalar writes
// Event{wall_time, step, summary{value{tag, simple_value}}}.
#pragma once

#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace roformer {

// TFRecord CRC mask (tensorflow/core/lib/hash/crc32c.h).
uint32_t MaskCrc32c(uint32_t crc);
uint32_t UnmaskCrc32c(uint32_t masked);
// Frames one record (length, masked CRC of length, data, masked CRC of data).
std::string FrameTfRecord(std::string_view data);

class TensorBoardWriter {
 public:
  // Creates run_dir (and parents) if needed and opens a new event file in it; Error naming the
  // path when that fails. The file name uses the current unix time and hostname; if that name
  // already exists (two writers in one second) a ".<n>" suffix is appended rather than clobbering.
  explicit TensorBoardWriter(const std::string& run_dir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // Buffered; wall_time is taken now. Non-finite values are written as is (TensorBoard shows them).
  void AddScalar(const std::string& tag, int64_t step, float value);
  // Same, with an explicit wall time (seconds since the epoch).
  void AddScalar(const std::string& tag, int64_t step, float value, double wall_time);
  // Pushes buffered records to the OS (Error on a write failure).
  void Flush();
  const std::string& path() const { return path_; }

 private:
  void WriteRecord(const std::string& event_bytes);

  std::mutex mu_;
  std::string path_;
  std::FILE* f_ = nullptr;
};

struct ScalarEvent {
  int64_t step = 0;
  std::string tag;
  float value = 0;
  double wall_time = 0;
};

// Reads every scalar (simple_value) of an event file, in file order. Verifies both CRCs of every
// record and that each record parses as an Event; throws Error naming the file and byte offset on
// truncation or corruption. Records without scalars (file_version, other summaries) are skipped.
std::vector<ScalarEvent> ReadEventFile(const std::string& path);

}  // namespace roformer
