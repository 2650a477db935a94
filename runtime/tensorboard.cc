#include "runtime/tensorboard.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "runtime/crc32c.h"
#include "runtime/error.h"
#include "runtime/tensorboard_event.pb.h"

namespace roformer {
namespace {

constexpr uint32_t kMaskDelta = 0xa282ead8u;

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void PutU64(std::string* s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutU32(std::string* s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t GetU64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}
uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}

std::string HostName() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "localhost";
  std::string h(buf);
  for (char& c : h) {
    if (c == '/' || c == '\\') c = '_';
  }
  return h;
}

}  // namespace

uint32_t MaskCrc32c(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kMaskDelta; }

uint32_t UnmaskCrc32c(uint32_t masked) {
  const uint32_t rot = masked - kMaskDelta;
  return (rot >> 17) | (rot << 15);
}

std::string FrameTfRecord(std::string_view data) {
  std::string out;
  out.reserve(data.size() + 16);
  PutU64(&out, data.size());
  PutU32(&out, MaskCrc32c(Crc32c(out.data(), 8)));
  out.append(data);
  PutU32(&out, MaskCrc32c(Crc32c(data)));
  return out;
}

TensorBoardWriter::TensorBoardWriter(const std::string& run_dir) {
  std::error_code ec;
  std::filesystem::create_directories(run_dir, ec);
  if (ec) Fail(run_dir, ": cannot create TensorBoard run directory: ", ec.message());
  const double now = NowSeconds();
  const std::string base =
      (std::filesystem::path(run_dir) /
       ("events.out.tfevents." + std::to_string(static_cast<int64_t>(now)) + "." + HostName()))
          .string();
  path_ = base;
  for (int i = 1; std::filesystem::exists(path_); ++i) path_ = base + "." + std::to_string(i);
  f_ = std::fopen(path_.c_str(), "wb");
  if (f_ == nullptr) Fail(path_, ": cannot create event file: ", std::strerror(errno));
  tensorboard::Event ev;
  ev.set_wall_time(now);
  ev.set_file_version("brain.Event:2");
  WriteRecord(ev.SerializeAsString());
  Flush();
}

TensorBoardWriter::~TensorBoardWriter() {
  if (f_ != nullptr) std::fclose(f_);
}

void TensorBoardWriter::WriteRecord(const std::string& event_bytes) {
  const std::string rec = FrameTfRecord(event_bytes);
  if (std::fwrite(rec.data(), 1, rec.size(), f_) != rec.size()) {
    Fail(path_, ": write failed: ", std::strerror(errno));
  }
}

void TensorBoardWriter::AddScalar(const std::string& tag, int64_t step, float value) {
  AddScalar(tag, step, value, NowSeconds());
}

void TensorBoardWriter::AddScalar(const std::string& tag, int64_t step, float value,
                                  double wall_time) {
  tensorboard::Event ev;
  ev.set_wall_time(wall_time);
  ev.set_step(step);
  tensorboard::SummaryValue* v = ev.mutable_summary()->add_value();
  v->set_tag(tag);
  v->set_simple_value(value);
  const std::string bytes = ev.SerializeAsString();
  std::lock_guard<std::mutex> lock(mu_);
  WriteRecord(bytes);
}

void TensorBoardWriter::Flush() {
  std::lock_guard<std::mutex> lock(mu_);
  if (std::fflush(f_) != 0) Fail(path_, ": flush failed: ", std::strerror(errno));
}

std::vector<ScalarEvent> ReadEventFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail(path, ": cannot open event file");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) Fail(path, ": read error");
  const std::string buf = ss.str();
  std::vector<ScalarEvent> out;
  size_t off = 0;
  int64_t index = 0;
  while (off < buf.size()) {
    if (buf.size() - off < 12) {
      Fail(path, ": truncated record header at byte ", off, " (record ", index, ")");
    }
    const uint64_t len = GetU64(buf.data() + off);
    if (UnmaskCrc32c(GetU32(buf.data() + off + 8)) != Crc32c(buf.data() + off, 8)) {
      Fail(path, ": length CRC mismatch at byte ", off, " (record ", index, ")");
    }
    const size_t data_off = off + 12;
    if (len > buf.size() - data_off || buf.size() - data_off - len < 4) {
      Fail(path, ": truncated record at byte ", off, " (record ", index, ", length ", len, ")");
    }
    if (len > static_cast<uint64_t>(INT32_MAX)) {
      Fail(path, ": record ", index, " at byte ", off, " claims ", len, " bytes (> 2 GiB)");
    }
    const char* data = buf.data() + data_off;
    if (UnmaskCrc32c(GetU32(data + len)) != Crc32c(data, len)) {
      Fail(path, ": data CRC mismatch at byte ", off, " (record ", index, ")");
    }
    tensorboard::Event ev;
    if (!ev.ParseFromArray(data, static_cast<int>(len))) {
      Fail(path, ": record ", index, " at byte ", off, " is not a valid Event message");
    }
    if (index == 0 && !(ev.has_file_version() && ev.file_version().rfind("brain.Event:", 0) == 0)) {
      Fail(path, ": first record is not a file_version \"brain.Event:N\" event");
    }
    if (ev.has_summary()) {
      for (const auto& v : ev.summary().value()) {
        if (v.has_simple_value())
          out.push_back({ev.step(), v.tag(), v.simple_value(), ev.wall_time()});
      }
    }
    off = data_off + len + 4;
    ++index;
  }
  if (index == 0) Fail(path, ": empty event file");
  return out;
}

}  // namespace roformer
