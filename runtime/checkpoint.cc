#include "runtime/checkpoint.h"

#include <fcntl.h>
#include <glog/logging.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <exception>
#include <filesystem>
#include <memory>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>

#include "runtime/config.h"
#include "runtime/crc32c.h"
#include "runtime/error.h"

namespace roformer {

static_assert(std::endian::native == std::endian::little,
              "checkpoint payloads are little-endian fp32 written straight from memory");

namespace fs = std::filesystem;

namespace {

constexpr char kManifestMagic[8] = {'R', 'F', 'C', 'K', 'M', 'A', 'N', '1'};
constexpr uint32_t kFrameVersion = 1;
constexpr size_t kFrameHeader = 8 + 4 + 8 + 4;
constexpr char kManifestName[] = "manifest.pb";
constexpr char kLatestName[] = "latest";
// Largest manifest accepted on read (a sanity bound, far above any real one).
constexpr uint64_t kMaxManifestBytes = uint64_t{1} << 30;
// Payload is read in pieces of about this size (CRC and scatter per piece).
constexpr uint64_t kReadPiece = uint64_t{16} << 20;

std::string Errno() { return std::strerror(errno); }

const char* KindName(int kind) {
  switch (kind) {
    case ckpt::PARAM:
      return "param";
    case ckpt::ADAM_M:
      return "adam_m";
    case ckpt::ADAM_V:
      return "adam_v";
    default:
      return "unknown-kind";
  }
}

template <typename Seq>
std::string ShapeStr(const Seq& s) {
  std::ostringstream os;
  os << "[";
  bool first = true;
  for (auto d : s) {
    os << (first ? "" : ", ") << d;
    first = false;
  }
  os << "]";
  return os.str();
}

std::string Hex32(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof(b), "0x%08x", v);
  return b;
}

std::string TensorLabel(const ckpt::Tensor& t) {
  return "tensor '" + t.name() + "' (" + KindName(t.kind()) + ")";
}

// ---- durable file primitives ----

class Fd {
 public:
  Fd(const std::string& path, int flags, mode_t mode = 0644) : path_(path) {
    fd_ = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  }
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  bool ok() const { return fd_ >= 0; }
  int get() const { return fd_; }
  void Close() {
    if (fd_ >= 0 && ::close(fd_) != 0) {
      fd_ = -1;
      Fail("checkpoint: closing ", path_, ": ", Errno());
    }
    fd_ = -1;
  }

 private:
  std::string path_;
  int fd_ = -1;
};

void WriteAll(int fd, const std::string& path, const void* data, uint64_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, std::min<uint64_t>(n, uint64_t{1} << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      Fail("checkpoint: writing ", path, ": ", Errno());
    }
    p += w;
    n -= static_cast<uint64_t>(w);
  }
}

// Reads exactly n bytes at `off`; false on a short read (the caller names the tensor).
bool PreadAll(int fd, void* data, uint64_t n, uint64_t off) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t r = ::pread(fd, p, std::min<uint64_t>(n, uint64_t{1} << 30), static_cast<off_t>(off));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<uint64_t>(r);
    off += static_cast<uint64_t>(r);
  }
  return true;
}

void FsyncFd(int fd, const std::string& path) {
  if (::fsync(fd) != 0) Fail("checkpoint: fsync ", path, ": ", Errno());
}

void FsyncDir(const std::string& dir) {
  Fd fd(dir, O_RDONLY | O_DIRECTORY);
  if (!fd.ok()) Fail("checkpoint: opening directory ", dir, ": ", Errno());
  FsyncFd(fd.get(), dir);
}

void WriteFileDurable(const std::string& path, const std::string& bytes, bool sync) {
  Fd fd(path, O_WRONLY | O_CREAT | O_TRUNC);
  if (!fd.ok()) Fail("checkpoint: creating ", path, ": ", Errno());
  WriteAll(fd.get(), path, bytes.data(), bytes.size());
  if (sync) FsyncFd(fd.get(), path);
  fd.Close();
}

// Reads a whole small file; false when it cannot be opened or is larger than `limit`.
bool ReadSmallFile(const std::string& path, uint64_t limit, std::string* out) {
  Fd fd(path, O_RDONLY);
  if (!fd.ok()) return false;
  struct stat st;
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  if (static_cast<uint64_t>(st.st_size) > limit) return false;
  out->resize(static_cast<size_t>(st.st_size));
  return PreadAll(fd.get(), out->data(), out->size(), 0);
}

// ---- manifest framing: magic, frame version, payload length, crc32c(payload), payload ----

std::string FrameManifest(const ckpt::Manifest& m) {
  std::string payload;
  CHECK(m.SerializeToString(&payload));
  std::string out(kFrameHeader, '\0');
  uint64_t len = payload.size();
  uint32_t crc = Crc32c(payload.data(), payload.size());
  std::memcpy(out.data(), kManifestMagic, 8);
  std::memcpy(out.data() + 8, &kFrameVersion, 4);
  std::memcpy(out.data() + 12, &len, 8);
  std::memcpy(out.data() + 20, &crc, 4);
  out += payload;
  return out;
}

// Parses a framed manifest; on failure returns false with the reason in *why.
bool ParseFramedManifest(const std::string& bytes, ckpt::Manifest* m, std::string* why) {
  if (bytes.size() < kFrameHeader) {
    *why = "file is " + std::to_string(bytes.size()) + " bytes, shorter than the frame header";
    return false;
  }
  if (std::memcmp(bytes.data(), kManifestMagic, 8) != 0) {
    *why = "bad magic (not a roformer checkpoint manifest)";
    return false;
  }
  uint32_t ver, crc;
  uint64_t len;
  std::memcpy(&ver, bytes.data() + 8, 4);
  std::memcpy(&len, bytes.data() + 12, 8);
  std::memcpy(&crc, bytes.data() + 20, 4);
  if (ver != kFrameVersion) {
    *why = "unknown frame version " + std::to_string(ver);
    return false;
  }
  if (len != bytes.size() - kFrameHeader) {
    *why = "frame says " + std::to_string(len) + " payload bytes, file has " +
           std::to_string(bytes.size() - kFrameHeader) + " (truncated or extended)";
    return false;
  }
  uint32_t actual = Crc32cExtend(0, bytes.data() + kFrameHeader, len);
  if (actual != crc) {
    *why = "crc32c mismatch (stored " + Hex32(crc) + ", computed " + Hex32(actual) + ")";
    return false;
  }
  if (!m->ParseFromArray(bytes.data() + kFrameHeader, static_cast<int>(len))) {
    *why = "protobuf parse failed";
    return false;
  }
  return true;
}

ckpt::Manifest ReadFramed(const std::string& path) {
  std::string bytes;
  if (!ReadSmallFile(path, kMaxManifestBytes + kFrameHeader, &bytes)) {
    Fail("checkpoint manifest ", path, ": cannot read (",
         fs::exists(path) ? "unreadable or too large" : "missing", ")");
  }
  ckpt::Manifest m;
  std::string why;
  if (!ParseFramedManifest(bytes, &m, &why)) Fail("checkpoint manifest ", path, ": ", why);
  return m;
}

// ---- manifest consistency ----

bool MulOk(int64_t a, int64_t b, int64_t* out) { return !__builtin_mul_overflow(a, b, out); }

// Element count of a shape; Error when negative or overflowing.
int64_t Numel(const google::protobuf::RepeatedField<int64_t>& shape, const std::string& where) {
  int64_t n = 1;
  for (auto d : shape) {
    if (d < 0) Fail(where, ": negative dimension in ", ShapeStr(shape));
    if (!MulOk(n, d, &n) || n > (int64_t{1} << 60))
      Fail(where, ": shape ", ShapeStr(shape), " overflows");
  }
  return n;
}

bool Overlap(const ckpt::Shard& a, const ckpt::Shard& b) {
  for (int d = 0; d < a.offsets_size(); ++d) {
    if (a.offsets(d) + a.extents(d) <= b.offsets(d) || b.offsets(d) + b.extents(d) <= a.offsets(d))
      return false;
  }
  return true;
}

bool ValidChunkName(const std::string& n) {
  return !n.empty() && n != "." && n != ".." && n.find('/') == std::string::npos &&
         n.find('\0') == std::string::npos;
}

// Every check that needs only the manifest. `path` names the manifest in messages.
void ValidateManifest(const ckpt::Manifest& m, const std::string& path) {
  if (m.format_version() < 1 || m.format_version() > kCheckpointFormatVersion) {
    Fail("checkpoint manifest ", path, ": format_version ", m.format_version(),
         " is not supported (this build reads 1..", kCheckpointFormatVersion, ")");
  }
  std::map<std::string, uint64_t> chunk_size;
  for (const auto& c : m.chunks()) {
    if (!ValidChunkName(c.name()))
      Fail("checkpoint manifest ", path, ": bad chunk name '", c.name(), "'");
    if (!chunk_size.emplace(c.name(), c.size()).second) {
      Fail("checkpoint manifest ", path, ": chunk file ", c.name(), " listed twice");
    }
  }
  // Byte ranges per chunk file, to check that shards cover each file exactly.
  std::map<std::string, std::vector<std::pair<uint64_t, uint64_t>>> ranges;
  std::set<std::pair<std::string, int>> seen;
  for (const auto& t : m.tensors()) {
    std::string where = "checkpoint manifest " + path + ": " + TensorLabel(t);
    if (t.name().empty()) Fail("checkpoint manifest ", path, ": a tensor has no name");
    if (t.kind() != ckpt::PARAM && t.kind() != ckpt::ADAM_M && t.kind() != ckpt::ADAM_V) {
      Fail(where, ": unknown kind ", static_cast<int>(t.kind()));
    }
    if (!seen.emplace(t.name(), t.kind()).second) Fail(where, ": listed twice");
    if (t.dtype() != ckpt::FLOAT32) {
      Fail(where, ": dtype ", ckpt::DType_Name(t.dtype()), " is not supported (float32 only)");
    }
    const int nd = t.global_shape_size();
    int64_t numel = Numel(t.global_shape(), where);
    int64_t covered = 0;
    for (int s = 0; s < t.shards_size(); ++s) {
      const auto& sh = t.shards(s);
      std::string sw = where + " shard " + std::to_string(s);
      if (sh.offsets_size() != nd || sh.extents_size() != nd) {
        Fail(sw, ": has ", sh.offsets_size(), " offsets and ", sh.extents_size(),
             " extents for a rank-", nd, " tensor");
      }
      for (int d = 0; d < nd; ++d) {
        int64_t end;
        if (sh.offsets(d) < 0 || sh.extents(d) < 0 ||
            __builtin_add_overflow(sh.offsets(d), sh.extents(d), &end) || end > t.global_shape(d)) {
          Fail(sw, ": offsets ", ShapeStr(sh.offsets()), " extents ", ShapeStr(sh.extents()),
               " fall outside the global shape ", ShapeStr(t.global_shape()));
        }
      }
      int64_t vol = Numel(sh.extents(), sw);
      if (sh.byte_length() != static_cast<uint64_t>(vol) * sizeof(float)) {
        Fail(sw, ": byte_length ", sh.byte_length(), " != ", vol, " elements * 4");
      }
      auto it = chunk_size.find(sh.file());
      if (it == chunk_size.end())
        Fail(sw, ": chunk file '", sh.file(), "' is not listed in the manifest");
      uint64_t end;
      if (__builtin_add_overflow(sh.byte_offset(), sh.byte_length(), &end) || end > it->second) {
        Fail(sw, ": bytes [", sh.byte_offset(), ", +", sh.byte_length(), ") of ", sh.file(),
             " run past its recorded size ", it->second);
      }
      if (vol > 0) {
        for (int p = 0; p < s; ++p) {
          if (Numel(t.shards(p).extents(), sw) > 0 && Overlap(sh, t.shards(p))) {
            Fail(sw, " overlaps shard ", p, " (offsets ", ShapeStr(sh.offsets()), " / ",
                 ShapeStr(t.shards(p).offsets()), ")");
          }
        }
        ranges[sh.file()].push_back({sh.byte_offset(), sh.byte_length()});
      }
      covered += vol;
    }
    if (covered != numel) {
      Fail(where, ": shards cover ", covered, " of ", numel, " elements of global shape ",
           ShapeStr(t.global_shape()));
    }
  }
  for (const auto& [name, size] : chunk_size) {
    auto& r = ranges[name];
    std::sort(r.begin(), r.end());
    uint64_t pos = 0;
    for (const auto& [off, len] : r) {
      if (off != pos) {
        Fail("checkpoint manifest ", path, ": chunk file ", name, " has ",
             off < pos ? "overlapping shards" : "bytes no shard covers", " at byte ",
             std::min(off, pos));
      }
      pos += len;
    }
    if (pos != size) {
      Fail("checkpoint manifest ", path, ": chunk file ", name, " is ", size,
           " bytes but its shards cover ", pos);
    }
  }
}

// ---- block copies between row-major tensors ----

// Copies the box `ext` at `src_off` of src (shape src_shape) to `dst_off` of dst (shape dst_shape).
void CopyBox(const float* src, const std::vector<int64_t>& src_shape,
             const std::vector<int64_t>& src_off, float* dst, const std::vector<int64_t>& dst_shape,
             const std::vector<int64_t>& dst_off, const std::vector<int64_t>& ext) {
  const int nd = static_cast<int>(ext.size());
  if (nd == 0) {
    *dst = *src;
    return;
  }
  for (auto e : ext) {
    if (e == 0) return;
  }
  std::vector<int64_t> ss(nd), ds(nd);
  ss[nd - 1] = ds[nd - 1] = 1;
  for (int d = nd - 2; d >= 0; --d) {
    ss[d] = ss[d + 1] * src_shape[d + 1];
    ds[d] = ds[d + 1] * dst_shape[d + 1];
  }
  int64_t sbase = 0, dbase = 0;
  for (int d = 0; d < nd; ++d) {
    sbase += src_off[d] * ss[d];
    dbase += dst_off[d] * ds[d];
  }
  const size_t run = static_cast<size_t>(ext[nd - 1]) * sizeof(float);
  std::vector<int64_t> idx(nd, 0);  // odometer over dims 0..nd-2
  while (true) {
    int64_t so = sbase, dO = dbase;
    for (int d = 0; d < nd - 1; ++d) {
      so += idx[d] * ss[d];
      dO += idx[d] * ds[d];
    }
    std::memcpy(dst + dO, src + so, run);
    int d = nd - 2;
    for (; d >= 0; --d) {
      if (++idx[d] < ext[d]) break;
      idx[d] = 0;
    }
    if (d < 0) break;
  }
}

std::vector<int64_t> ToVec(const google::protobuf::RepeatedField<int64_t>& r) {
  return std::vector<int64_t>(r.begin(), r.end());
}

// Reads one shard's bytes from an open chunk file, checks its CRC32C, and (when `global` is not
// null) scatters it into the global tensor. Reads in pieces of whole dim-0 slabs.
void ReadShard(int fd, const std::string& file_path, const ckpt::Tensor& t, int shard_index,
               float* global, std::vector<float>* buf) {
  const auto& sh = t.shards(shard_index);
  const int nd = sh.extents_size();
  std::vector<int64_t> gshape = ToVec(t.global_shape());
  std::vector<int64_t> off = ToVec(sh.offsets()), ext = ToVec(sh.extents());
  auto fail = [&](const std::string& what) {
    Fail("checkpoint chunk ", file_path, ": ", TensorLabel(t), " shard ", shard_index, " (bytes [",
         sh.byte_offset(), ", ", sh.byte_offset() + sh.byte_length(), ")): ", what);
  };
  // Elements per dim-0 index of the shard; a rank-0 tensor is one element.
  int64_t slab = 1;
  for (int d = 1; d < nd; ++d) slab *= ext[d];
  const int64_t rows = nd == 0 ? 1 : ext[0];
  if (slab == 0 || rows == 0) {
    if (Crc32c(nullptr, 0) != sh.crc32c()) fail("crc32c mismatch on an empty shard");
    return;
  }
  // The shard is one contiguous run of the global tensor when it spans every trailing dim fully.
  bool contiguous = true;
  for (int d = 1; d < nd; ++d) contiguous &= (off[d] == 0 && ext[d] == gshape[d]);
  int64_t gslab = 1;
  for (int d = 1; d < nd; ++d) gslab *= gshape[d];
  const int64_t rows_per_piece =
      std::max<int64_t>(1, static_cast<int64_t>(kReadPiece / sizeof(float)) / slab);
  uint32_t crc = 0;
  uint64_t pos = sh.byte_offset();
  for (int64_t r0 = 0; r0 < rows; r0 += rows_per_piece) {
    const int64_t nr = std::min(rows_per_piece, rows - r0);
    const uint64_t nbytes = static_cast<uint64_t>(nr * slab) * sizeof(float);
    float* dst;
    if (global != nullptr && contiguous) {
      dst = global + ((nd == 0 ? 0 : off[0]) + r0) * gslab;
    } else {
      if (buf->size() < static_cast<size_t>(nr * slab)) buf->resize(nr * slab);
      dst = buf->data();
    }
    if (!PreadAll(fd, dst, nbytes, pos)) fail("short read (file truncated?)");
    crc = Crc32cExtend(crc, dst, nbytes);
    if (global != nullptr && !contiguous) {
      std::vector<int64_t> piece_shape = ext, piece_off(nd, 0), goff = off;
      piece_shape[0] = nr;
      goff[0] += r0;
      CopyBox(dst, piece_shape, piece_off, global, gshape, goff, piece_shape);
    }
    pos += nbytes;
  }
  if (crc != sh.crc32c()) {
    fail("crc32c mismatch (stored " + Hex32(sh.crc32c()) + ", computed " + Hex32(crc) + ")");
  }
}

// Opens every chunk file and checks its size; returns path -> fd owner.
struct OpenChunks {
  std::map<std::string, std::unique_ptr<Fd>> fds;
};

// The first tensor with a shard in `file`, for messages about a whole file.
std::string TensorInFile(const ckpt::Manifest& m, const std::string& file) {
  for (const auto& t : m.tensors()) {
    for (const auto& sh : t.shards()) {
      if (sh.file() == file) return TensorLabel(t);
    }
  }
  return "no tensor";
}

OpenChunks OpenAndCheckChunks(const ckpt::Manifest& m, const std::string& dir) {
  OpenChunks oc;
  for (const auto& c : m.chunks()) {
    std::string p = dir + "/" + c.name();
    auto fd = std::make_unique<Fd>(p, O_RDONLY);
    if (!fd->ok()) {
      Fail("checkpoint chunk ", p, " (holding ", TensorInFile(m, c.name()),
           "): cannot open: ", Errno());
    }
    struct stat st;
    if (::fstat(fd->get(), &st) != 0) Fail("checkpoint chunk ", p, ": stat: ", Errno());
    if (static_cast<uint64_t>(st.st_size) != c.size()) {
      Fail("checkpoint chunk ", p, " (holding ", TensorInFile(m, c.name()), ") is ", st.st_size,
           " bytes, the manifest says ", c.size(), " (truncated or overwritten)");
    }
    ::posix_fadvise(fd->get(), 0, 0, POSIX_FADV_SEQUENTIAL);
    oc.fds[c.name()] = std::move(fd);
  }
  return oc;
}

// Shards in (file, byte offset) order, so each chunk file is read front to back.
struct ShardRef {
  std::string file;
  uint64_t byte_offset;
  int tensor;
  int shard;
  bool operator<(const ShardRef& o) const {
    return std::tie(file, byte_offset) < std::tie(o.file, o.byte_offset);
  }
};

std::vector<ShardRef> SortedShards(const ckpt::Manifest& m, bool with_optimizer) {
  std::vector<ShardRef> refs;
  for (int i = 0; i < m.tensors_size(); ++i) {
    const auto& t = m.tensors(i);
    if (!with_optimizer && t.kind() != ckpt::PARAM) continue;
    for (int s = 0; s < t.shards_size(); ++s)
      refs.push_back({t.shards(s).file(), t.shards(s).byte_offset(), i, s});
  }
  std::sort(refs.begin(), refs.end());
  return refs;
}

// ---- directory naming and completeness ----

// Step number of a directory name "step_<digits>", or -1.
int64_t ParseStepName(const std::string& name) {
  if (name.size() <= 5 || name.compare(0, 5, "step_") != 0 || name.size() > 5 + 18) return -1;
  int64_t v = 0;
  for (size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return -1;
    v = v * 10 + (name[i] - '0');
  }
  return v;
}

std::string StepName(int64_t step) {
  char b[32];
  std::snprintf(b, sizeof(b), "step_%08lld", static_cast<long long>(step));
  return b;
}

// A complete checkpoint: step_<N> directory whose manifest frame checks out.
bool IsComplete(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return false;
  std::string bytes, why;
  if (!ReadSmallFile(dir + "/" + kManifestName, kMaxManifestBytes + kFrameHeader, &bytes))
    return false;
  ckpt::Manifest m;
  return ParseFramedManifest(bytes, &m, &why);
}

void RemoveTree(const fs::path& p) {
  std::error_code ec;
  fs::remove_all(p, ec);
  if (ec) LOG(WARNING) << "checkpoint: could not remove " << p << ": " << ec.message();
}

// Deletes old complete checkpoints beyond `keep` (never `just_saved`) and stale .tmp directories.
void Prune(const std::string& root, int keep, const std::string& just_saved, bool sync) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    std::string n = e.path().filename().string();
    if (n.rfind("step_", 0) == 0 && n.size() > 4 && n.compare(n.size() - 4, 4, ".tmp") == 0) {
      RemoveTree(e.path());
    }
  }
  if (keep <= 0) return;
  auto all = ListCompleteCheckpoints(root);
  int64_t excess = static_cast<int64_t>(all.size()) - keep;
  for (const auto& d : all) {
    if (excess <= 0) break;
    if (fs::path(d) == fs::path(just_saved)) continue;
    // Rename first so a crash mid-delete never leaves a half-deleted "complete" directory.
    std::string trash = d + ".old.tmp";
    if (::rename(d.c_str(), trash.c_str()) != 0) {
      LOG(WARNING) << "checkpoint: could not retire " << d << ": " << Errno();
      continue;
    }
    RemoveTree(trash);
    --excess;
  }
  if (sync) FsyncDir(root);
}

void WriteLatest(const std::string& root, const std::string& name, bool sync) {
  std::string tmp = root + "/" + kLatestName + ".tmp", dst = root + "/" + kLatestName;
  WriteFileDurable(tmp, name + "\n", sync);
  if (::rename(tmp.c_str(), dst.c_str()) != 0) Fail("checkpoint: renaming ", tmp, ": ", Errno());
  if (sync) FsyncDir(root);
}

// Renames the finished tmp directory onto `final_dir`; an existing checkpoint of the same step is
// swapped out atomically (RENAME_EXCHANGE) so `latest` never names a missing directory.
void CommitDir(const std::string& tmp, const std::string& final_dir) {
  if (::rename(tmp.c_str(), final_dir.c_str()) == 0) return;
  if (errno != ENOTEMPTY && errno != EEXIST) {
    Fail("checkpoint: renaming ", tmp, " to ", final_dir, ": ", Errno());
  }
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_EXCHANGE) == 0) {
    RemoveTree(tmp);  // now holds the replaced checkpoint
    return;
  }
  // Filesystem without RENAME_EXCHANGE: retire the old one first (readers fall back meanwhile).
  std::string trash = final_dir + ".old.tmp";
  RemoveTree(trash);
  if (::rename(final_dir.c_str(), trash.c_str()) != 0 ||
      ::rename(tmp.c_str(), final_dir.c_str()) != 0) {
    Fail("checkpoint: replacing ", final_dir, ": ", Errno());
  }
  RemoveTree(trash);
}

ckpt::Placement ToProto(Placement p) {
  switch (p) {
    case Placement::kReplicated:
      return ckpt::REPLICATED;
    case Placement::kShardDim0:
      return ckpt::SHARD_DIM0;
    case Placement::kShardDim1:
      return ckpt::SHARD_DIM1;
  }
  return ckpt::PLACEMENT_UNSPECIFIED;
}

int ShardDim(Placement p) {
  return p == Placement::kShardDim0 ? 0 : p == Placement::kShardDim1 ? 1 : -1;
}

// Writes this rank's tensors into chunk-r<rank>-<k>.bin files in `dir`; returns a manifest holding
// only those tensors' shards and the chunk list.
class ChunkWriter {
 public:
  ChunkWriter(std::string dir, int rank, uint64_t max_bytes, bool sync)
      : dir_(std::move(dir)), rank_(rank), max_(std::max<uint64_t>(max_bytes, 64)), sync_(sync) {}

  // Appends `rows` dim-0 slabs of `slab_bytes` each; may split across files. Calls
  // add(file, byte_offset, first_row, nrows, crc) per piece.
  template <typename AddFn>
  void Append(const char* data, int64_t rows, uint64_t slab_bytes, AddFn add) {
    if (rows == 0 || slab_bytes == 0) {
      Ensure();
      add(name_, size_, 0, rows, Crc32c(nullptr, 0));
      return;
    }
    int64_t r = 0;
    while (r < rows) {
      Ensure();
      uint64_t room = max_ - size_;
      int64_t fit = static_cast<int64_t>(room / slab_bytes);
      if (fit == 0) {
        if (size_ > 0) {
          Roll();
          continue;
        }
        fit = 1;  // a single slab larger than the cap gets a file of its own
      }
      int64_t nr = std::min(fit, rows - r);
      uint64_t nbytes = static_cast<uint64_t>(nr) * slab_bytes;
      const char* p = data + static_cast<uint64_t>(r) * slab_bytes;
      uint32_t crc = Crc32c(p, nbytes);
      WriteAll(fd_->get(), path_, p, nbytes);
      add(name_, size_, r, nr, crc);
      size_ += nbytes;
      r += nr;
      if (size_ >= max_) Roll();
    }
  }

  void Finish(ckpt::Manifest* m) {
    Roll();
    for (auto& c : done_) *m->add_chunks() = c;
  }

 private:
  void Ensure() {
    if (fd_) return;
    name_ = "chunk-r" + std::to_string(rank_) + "-" + std::to_string(done_.size()) + ".bin";
    path_ = dir_ + "/" + name_;
    fd_ = std::make_unique<Fd>(path_, O_WRONLY | O_CREAT | O_TRUNC);
    if (!fd_->ok()) Fail("checkpoint: creating ", path_, ": ", Errno());
    size_ = 0;
  }
  void Roll() {
    if (!fd_) return;
    if (sync_) FsyncFd(fd_->get(), path_);
    fd_->Close();
    fd_.reset();
    ckpt::ChunkFile c;
    c.set_name(name_);
    c.set_size(size_);
    c.set_writer_rank(rank_);
    done_.push_back(c);
  }

  std::string dir_;
  int rank_;
  uint64_t max_;
  bool sync_;
  std::unique_ptr<Fd> fd_;
  std::string name_, path_;
  uint64_t size_ = 0;
  std::vector<ckpt::ChunkFile> done_;
};

// What a save reads: the declarations and the three flat buffers, either a live ParamStore or an
// async snapshot of one.
struct StoreView {
  const std::vector<ParamInfo>* infos = nullptr;
  const float* params = nullptr;
  const float* m = nullptr;  // null when Adam state is not saved
  const float* v = nullptr;
};

StoreView ViewOf(const ParamStore& store, bool with_optimizer) {
  CHECK_EQ(static_cast<int64_t>(store.params().size()), store.size()) << "store not allocated";
  StoreView sv;
  sv.infos = &store.infos();
  sv.params = store.params().data();
  if (with_optimizer) {
    CHECK_EQ(static_cast<int64_t>(store.adam_m().size()), store.size())
        << "SaveOptions.with_optimizer needs Adam state allocated";
    CHECK_EQ(static_cast<int64_t>(store.adam_v().size()), store.size());
    sv.m = store.adam_m().data();
    sv.v = store.adam_v().data();
  }
  return sv;
}

// True for the rank that writes anything (DP replicas hold identical state; ZeRO-1 m/v are
// gathered before a save).
bool WritesShards(const SaveOptions& opt) { return opt.rank / opt.tp == 0; }

ckpt::Manifest WriteRankShards(const std::string& dir, const StoreView& store,
                               const SaveOptions& opt) {
  const int tp_rank = opt.rank % opt.tp;
  ckpt::Manifest frag;
  if (!WritesShards(opt)) return frag;
  ChunkWriter w(dir, opt.rank, opt.max_chunk_bytes, opt.fsync);
  std::vector<std::pair<ckpt::TensorKind, const float*>> kinds = {{ckpt::PARAM, store.params}};
  if (opt.with_optimizer) {
    CHECK(store.m != nullptr && store.v != nullptr);
    kinds.push_back({ckpt::ADAM_M, store.m});
    kinds.push_back({ckpt::ADAM_V, store.v});
  }
  for (const auto& [kind, buf] : kinds) {
    for (const auto& pi : *store.infos) {
      const int sd = ShardDim(pi.placement);
      if (sd < 0 && tp_rank != 0) continue;  // replicated: written once, by tp rank 0
      if (sd >= 0 && (pi.local_shape[sd] * opt.tp != pi.global_shape[sd] ||
                      pi.shard_start != pi.local_shape[sd] * tp_rank)) {
        Fail("checkpoint save: tensor '", pi.name, "' local shape ", ShapeStr(pi.local_shape),
             " shard_start ", pi.shard_start, " is not tp rank ", tp_rank, " of tp ", opt.tp,
             " of global shape ", ShapeStr(pi.global_shape));
      }
      ckpt::Tensor* t = frag.add_tensors();
      t->set_name(pi.name);
      t->set_kind(kind);
      t->set_dtype(ckpt::FLOAT32);
      t->set_placement(ToProto(pi.placement));
      for (auto d : pi.global_shape) t->add_global_shape(d);
      const int nd = static_cast<int>(pi.local_shape.size());
      std::vector<int64_t> base(nd, 0);
      if (sd >= 0) base[sd] = pi.shard_start;
      int64_t slab = 1;
      for (int d = 1; d < nd; ++d) slab *= pi.local_shape[d];
      const int64_t rows = nd == 0 ? 1 : pi.local_shape[0];
      const char* data = reinterpret_cast<const char*>(buf + pi.offset);
      w.Append(data, rows, static_cast<uint64_t>(slab) * sizeof(float),
               [&](const std::string& file, uint64_t off, int64_t r0, int64_t nr, uint32_t crc) {
                 ckpt::Shard* s = t->add_shards();
                 for (int d = 0; d < nd; ++d) {
                   s->add_offsets(base[d] + (d == 0 ? r0 : 0));
                   s->add_extents(d == 0 ? nr : pi.local_shape[d]);
                 }
                 s->set_file(file);
                 s->set_byte_offset(off);
                 s->set_byte_length(static_cast<uint64_t>(nr * slab) * sizeof(float));
                 s->set_crc32c(crc);
                 s->set_writer_rank(opt.rank);
               });
    }
  }
  w.Finish(&frag);
  return frag;
}

// Merges per-rank fragments: shards of the same (name, kind) are concatenated.
void MergeFragment(const ckpt::Manifest& frag, const std::string& frag_path, ckpt::Manifest* out,
                   std::map<std::pair<std::string, int>, int>* index) {
  for (const auto& t : frag.tensors()) {
    auto key = std::make_pair(t.name(), static_cast<int>(t.kind()));
    auto it = index->find(key);
    if (it == index->end()) {
      (*index)[key] = out->tensors_size();
      *out->add_tensors() = t;
      continue;
    }
    ckpt::Tensor* dst = out->mutable_tensors(it->second);
    if (ToVec(dst->global_shape()) != ToVec(t.global_shape())) {
      Fail("checkpoint save: ", frag_path, ": ", TensorLabel(t), " global shape ",
           ShapeStr(t.global_shape()), " differs from another rank's ",
           ShapeStr(dst->global_shape()));
    }
    for (const auto& s : t.shards()) *dst->add_shards() = s;
  }
  for (const auto& c : frag.chunks()) *out->add_chunks() = c;
}

}  // namespace

std::string VocabTokensHash(const std::vector<std::string>& tokens) {
  uint32_t crc = 0;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i > 0) crc = Crc32cExtend(crc, "\n", 1);
    crc = Crc32cExtend(crc, tokens[i].data(), tokens[i].size());
  }
  char b[32];
  std::snprintf(b, sizeof(b), "crc32c:%08x", crc);
  return b;
}

std::string CheckpointStepDir(const std::string& root, int64_t step) {
  return (fs::path(root) / StepName(step)).string();
}

namespace {

void CheckSaveOptions(const SaveOptions& opt, const TrainState& st) {
  CHECK_GE(opt.rank, 0);
  CHECK_LT(opt.rank, opt.world);
  CHECK_GE(opt.tp, 1);
  CHECK_EQ(opt.world % opt.tp, 0) << "world " << opt.world << " is not a multiple of tp " << opt.tp;
  CHECK(opt.world == 1 || opt.all_ok) << "SaveOptions.all_ok is required when world > 1";
  CHECK_GE(st.step, 0);
}

// Runs one phase on every rank; all ranks throw if any rank failed. `err` carries a failure that
// happened earlier (e.g. on the async writer thread) into the round.
void Phase(const SaveOptions& opt, const std::string& root, int64_t step, const char* what,
           const std::function<void()>& fn, std::exception_ptr err = nullptr) {
  if (!err) {
    try {
      fn();
    } catch (...) {
      err = std::current_exception();
    }
  }
  bool all = opt.world == 1 ? !err : opt.all_ok(!err);
  if (err) std::rethrow_exception(err);
  if (!all) {
    Fail("checkpoint save of step ", step, " into ", root, " failed on another rank while ", what);
  }
}

// Rank 0: a fresh, empty <root>/step_<N>.tmp.
void PrepareTmp(const std::string& root, const std::string& tmp) {
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) Fail("checkpoint: creating ", root, ": ", ec.message());
  fs::remove_all(tmp, ec);
  if (ec) Fail("checkpoint: removing stale ", tmp, ": ", ec.message());
  if (!fs::create_directory(tmp, ec) || ec) Fail("checkpoint: creating ", tmp, ": ", ec.message());
}

// Every rank: its chunk files and (world > 1) its manifest fragment. No collectives.
ckpt::Manifest WriteFragment(const std::string& tmp, const StoreView& view,
                             const SaveOptions& opt) {
  ckpt::Manifest frag = WriteRankShards(tmp, view, opt);
  if (opt.world > 1) {
    frag.set_fragment_rank(opt.rank);
    frag.set_format_version(kCheckpointFormatVersion);
    WriteFileDurable(tmp + "/manifest-r" + std::to_string(opt.rank) + ".part", FrameManifest(frag),
                     opt.fsync);
  }
  return frag;
}

// Rank 0, once every rank's fragment is durable: merges the fragments into manifest.pb, renames
// the directory into place, updates `latest` and prunes. `frag` is rank 0's own (world == 1).
void CommitTmp(const std::string& root, const std::string& tmp, const std::string& final_dir,
               const config::Config& cfg, const TrainState& st, const SaveOptions& opt,
               const ckpt::Manifest& frag) {
  ckpt::Manifest m;
  m.set_format_version(kCheckpointFormatVersion);
  m.set_software_version(kSoftwareVersion);
  *m.mutable_model() = cfg.model();
  // Record the effective model config even when the caller's Config came without defaults, so a
  // later change of a default cannot reinterpret the checkpoint.
  FillDefaults(m.mutable_model(), /*recursive=*/false);
  m.set_config_text(ConfigToText(cfg));
  auto* v = m.mutable_vocab();
  v->set_path(opt.vocab.path);
  v->set_size(opt.vocab.size);
  v->set_padded_size(opt.vocab.padded_size);
  v->set_tokens_hash(opt.vocab.tokens_hash);
  auto* tr = m.mutable_train();
  tr->set_step(st.step);
  tr->set_consumed_samples(st.consumed_samples);
  tr->set_data_seed(st.seed);
  tr->set_lr(st.lr);
  tr->set_warmup_steps(st.warmup_steps);
  tr->set_total_steps(st.total_steps);
  tr->set_growth_stage(st.growth_stage);
  tr->set_skipped_steps(st.skipped_steps);
  tr->set_adam_step(st.adam_step);
  auto* l = m.mutable_layout();
  l->set_tp(opt.tp);
  l->set_dp(opt.world / opt.tp);
  l->set_zero_stage(opt.zero_stage);
  l->set_world_size(opt.world);
  for (const auto& [k, val] : opt.metadata) (*m.mutable_metadata())[k] = val;
  m.set_created_unix_time(static_cast<int64_t>(std::time(nullptr)));
  std::map<std::pair<std::string, int>, int> index;
  if (opt.world == 1) {
    MergeFragment(frag, tmp, &m, &index);
  } else {
    for (int r = 0; r < opt.world; ++r) {
      std::string p = tmp + "/manifest-r" + std::to_string(r) + ".part";
      MergeFragment(ReadFramed(p), p, &m, &index);
    }
  }
  ValidateManifest(m, tmp + "/" + kManifestName);
  WriteFileDurable(tmp + "/" + kManifestName, FrameManifest(m), opt.fsync);
  for (int r = 0; opt.world > 1 && r < opt.world; ++r) {
    std::string p = tmp + "/manifest-r" + std::to_string(r) + ".part";
    if (::unlink(p.c_str()) != 0) Fail("checkpoint: removing ", p, ": ", Errno());
  }
  if (opt.fsync) FsyncDir(tmp);
  CommitDir(tmp, final_dir);
  if (opt.fsync) FsyncDir(root);
  WriteLatest(root, StepName(st.step), opt.fsync);
  Prune(root, opt.keep, final_dir, opt.fsync);
}

}  // namespace

std::string SaveCheckpoint(const std::string& root, const ParamStore& store,
                           const config::Config& cfg, const TrainState& st,
                           const SaveOptions& opt) {
  CheckSaveOptions(opt, st);
  const std::string final_dir = CheckpointStepDir(root, st.step);
  const std::string tmp = final_dir + ".tmp";
  Phase(opt, root, st.step, "preparing the directory", [&] {
    if (opt.rank == 0) PrepareTmp(root, tmp);
  });
  ckpt::Manifest frag;
  Phase(opt, root, st.step, "writing tensor chunks",
        [&] { frag = WriteFragment(tmp, ViewOf(store, opt.with_optimizer), opt); });
  Phase(opt, root, st.step, "committing", [&] {
    if (opt.rank == 0) CommitTmp(root, tmp, final_dir, cfg, st, opt, frag);
  });
  return final_dir;
}

// ---- asynchronous save ----

struct AsyncCheckpointer::Pending {
  std::string root, tmp, final_dir;
  config::Config cfg;
  TrainState st;
  SaveOptions opt;
  std::thread thread;
  std::atomic<bool> done{false};
  std::exception_ptr err;  // set by the thread before `done`
  ckpt::Manifest frag;
};

AsyncCheckpointer::AsyncCheckpointer() = default;

AsyncCheckpointer::~AsyncCheckpointer() {
  // No collectives here: an unwinding caller (an Error elsewhere) must not block on other ranks.
  // The uncommitted step_<N>.tmp is removed by a later save.
  if (pending_ && pending_->thread.joinable()) pending_->thread.join();
}

void AsyncCheckpointer::Start(const std::string& root, const ParamStore& store,
                              const config::Config& cfg, const TrainState& st,
                              const SaveOptions& opt) {
  CheckSaveOptions(opt, st);
  Wait();
  auto p = std::make_unique<Pending>();
  p->root = root;
  p->final_dir = CheckpointStepDir(root, st.step);
  p->tmp = p->final_dir + ".tmp";
  p->cfg = cfg;
  p->st = st;
  p->opt = opt;
  Phase(opt, root, st.step, "preparing the directory", [&] {
    if (opt.rank == 0) PrepareTmp(root, p->tmp);
  });
  // The snapshot: only ranks that write anything copy, and the buffers are reused across saves.
  StoreView view;
  view.infos = &infos_;
  if (WritesShards(opt)) {
    StoreView live = ViewOf(store, opt.with_optimizer);
    infos_ = store.infos();
    const size_t n = static_cast<size_t>(store.size());
    params_.assign(live.params, live.params + n);
    view.params = params_.data();
    if (opt.with_optimizer) {
      m_.assign(live.m, live.m + n);
      v_.assign(live.v, live.v + n);
      view.m = m_.data();
      view.v = v_.data();
    }
  }
  Pending* raw = p.get();
  std::function<void()> hook = before_write_for_test;
  p->thread = std::thread([raw, view, hook] {
    try {
      if (hook) hook();
      raw->frag = WriteFragment(raw->tmp, view, raw->opt);
    } catch (...) {
      raw->err = std::current_exception();
    }
    raw->done.store(true, std::memory_order_release);
  });
  pending_ = std::move(p);
}

bool AsyncCheckpointer::pending() const { return pending_ != nullptr; }

std::string AsyncCheckpointer::Finish(bool block) {
  if (!pending_) return "";
  Pending& p = *pending_;
  if (block) {
    if (p.thread.joinable()) p.thread.join();
  } else {
    bool local = p.done.load(std::memory_order_acquire);
    bool all = p.opt.world == 1 ? local : p.opt.all_ok(local);
    if (!all) return "";
  }
  if (p.thread.joinable()) p.thread.join();
  // From here the save is over whatever happens: a failure leaves the .tmp for a later save.
  std::unique_ptr<Pending> own = std::move(pending_);
  Phase(
      p.opt, p.root, p.st.step, "writing tensor chunks (in the background)", [] {}, p.err);
  Phase(p.opt, p.root, p.st.step, "committing", [&] {
    if (p.opt.rank == 0) CommitTmp(p.root, p.tmp, p.final_dir, p.cfg, p.st, p.opt, p.frag);
  });
  return p.final_dir;
}

std::string AsyncCheckpointer::TryCommit() { return Finish(/*block=*/false); }

std::string AsyncCheckpointer::Wait() { return Finish(/*block=*/true); }

std::vector<std::string> ListCompleteCheckpoints(const std::string& root) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    int64_t step = ParseStepName(e.path().filename().string());
    if (step < 0) continue;
    if (IsComplete(e.path().string())) found.push_back({step, e.path().string()});
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

std::string FindLatestCheckpoint(const std::string& root) {
  std::string content;
  std::string why;
  if (ReadSmallFile(root + "/" + kLatestName, 4096, &content)) {
    while (!content.empty() && (content.back() == '\n' || content.back() == ' '))
      content.pop_back();
    if (ParseStepName(content) >= 0) {
      std::string dir = (fs::path(root) / content).string();
      if (IsComplete(dir)) return dir;
      why = "names " + content + ", which is not a complete checkpoint";
    } else {
      why = "is corrupt";
    }
  } else {
    why = "is missing";
  }
  auto all = ListCompleteCheckpoints(root);
  if (all.empty()) return "";
  LOG(WARNING) << "checkpoint: " << root << "/" << kLatestName << " " << why
               << "; using the newest complete checkpoint " << all.back();
  return all.back();
}

std::string ResolveCheckpointDir(const std::string& path) {
  std::error_code ec;
  if (fs::exists(fs::path(path) / kManifestName, ec)) return path;
  if (!fs::is_directory(path, ec)) Fail("checkpoint ", path, ": no such directory");
  std::string d = FindLatestCheckpoint(path);
  if (d.empty()) {
    Fail("checkpoint ", path, ": neither a checkpoint directory (no ", kManifestName,
         ") nor a root holding a complete step_<N> checkpoint");
  }
  return d;
}

ckpt::Manifest ReadCheckpointManifest(const std::string& step_dir) {
  std::string path = step_dir + "/" + kManifestName;
  ckpt::Manifest m = ReadFramed(path);
  ValidateManifest(m, path);
  return m;
}

TrainState TrainStateFromManifest(const ckpt::Manifest& m) {
  TrainState s;
  const auto& t = m.train();
  s.step = t.step();
  s.consumed_samples = t.consumed_samples();
  s.seed = t.data_seed();
  s.lr = t.lr();
  s.warmup_steps = t.warmup_steps();
  s.total_steps = t.total_steps();
  s.skipped_steps = t.skipped_steps();
  s.growth_stage = t.growth_stage();
  s.adam_step = t.adam_step();
  return s;
}

const LoadedTensor* LoadedCheckpoint::Find(const std::string& name, ckpt::TensorKind kind) const {
  auto it = index_.find({name, static_cast<int>(kind)});
  return it == index_.end() ? nullptr : &tensors[it->second];
}

LoadedCheckpoint LoadCheckpoint(const std::string& path, bool with_optimizer) {
  LoadedCheckpoint ck;
  ck.dir = ResolveCheckpointDir(path);
  ck.manifest = ReadCheckpointManifest(ck.dir);
  ck.state = TrainStateFromManifest(ck.manifest);
  const auto& m = ck.manifest;
  std::vector<int> slot(m.tensors_size(), -1);
  for (int i = 0; i < m.tensors_size(); ++i) {
    const auto& t = m.tensors(i);
    if (!with_optimizer && t.kind() != ckpt::PARAM) continue;
    LoadedTensor lt;
    lt.name = t.name();
    lt.kind = t.kind();
    lt.shape = ToVec(t.global_shape());
    int64_t n = 1;
    for (auto d : lt.shape) n *= d;  // validated: no overflow, covered by file bytes
    lt.data.resize(n);
    slot[i] = static_cast<int>(ck.tensors.size());
    ck.index_[{lt.name, static_cast<int>(lt.kind)}] = ck.tensors.size();
    ck.tensors.push_back(std::move(lt));
  }
  OpenChunks oc = OpenAndCheckChunks(m, ck.dir);
  std::vector<float> buf;
  for (const auto& r : SortedShards(m, with_optimizer)) {
    ReadShard(oc.fds.at(r.file)->get(), ck.dir + "/" + r.file, m.tensors(r.tensor), r.shard,
              ck.tensors[slot[r.tensor]].data.data(), &buf);
  }
  return ck;
}

VerifyReport VerifyCheckpoint(const std::string& path) {
  VerifyReport rep;
  rep.dir = ResolveCheckpointDir(path);
  ckpt::Manifest m = ReadCheckpointManifest(rep.dir);
  OpenChunks oc = OpenAndCheckChunks(m, rep.dir);
  std::vector<float> buf;
  for (const auto& r : SortedShards(m, true)) {
    ReadShard(oc.fds.at(r.file)->get(), rep.dir + "/" + r.file, m.tensors(r.tensor), r.shard,
              nullptr, &buf);
    ++rep.shards;
  }
  rep.tensors = m.tensors_size();
  rep.chunk_files = m.chunks_size();
  for (const auto& c : m.chunks()) rep.payload_bytes += c.size();
  return rep;
}

int64_t PaddedRowsToCopy(const std::string& what, int64_t logical_rows,
                         const std::vector<int64_t>& from_shape, const float* from,
                         const std::vector<int64_t>& to_shape, const std::string& from_label,
                         const std::string& to_label) {
  auto mismatch = [&](const std::string& why) {
    Fail(what, " has global shape ", ShapeStr(from_shape), " in ", from_label, " but ",
         ShapeStr(to_shape), " in ", to_label, why);
  };
  if (from_shape == to_shape) return from_shape.empty() ? 1 : from_shape[0];
  if (logical_rows < 0 || from_shape.empty() || from_shape.size() != to_shape.size() ||
      !std::equal(from_shape.begin() + 1, from_shape.end(), to_shape.begin() + 1)) {
    mismatch("");
  }
  if (std::min(from_shape[0], to_shape[0]) < logical_rows) {
    mismatch(" (only dim 0 may differ, by padding beyond the " + std::to_string(logical_rows) +
             " logical rows; a different vocab?)");
  }
  if (from_shape[0] > to_shape[0]) {
    // Trimmed rows lie beyond logical_rows: zero by construction (no gradient ever reaches them).
    int64_t slab = 1;
    for (size_t d = 1; d < from_shape.size(); ++d) slab *= from_shape[d];
    const float* p = from + to_shape[0] * slab;
    const float* e = from + from_shape[0] * slab;
    const float* bad = std::find_if(p, e, [](float x) { return x != 0.0f; });
    if (bad != e) {
      const int64_t row = to_shape[0] + (bad - p) / slab;
      mismatch(": padding row " + std::to_string(row) + " (beyond the " +
               std::to_string(logical_rows) + " logical rows, dropped for this layout) holds " +
               std::to_string(*bad) + " instead of 0");
    }
    return to_shape[0];
  }
  return from_shape[0];
}

void RestoreInto(const LoadedCheckpoint& ck, ParamStore* store, bool with_optimizer,
                 bool allow_unused) {
  CHECK_EQ(static_cast<int64_t>(store->params().size()), store->size()) << "store not allocated";
  std::vector<std::pair<ckpt::TensorKind, std::vector<float>*>> kinds = {
      {ckpt::PARAM, &store->params()}};
  if (with_optimizer) {
    CHECK_EQ(static_cast<int64_t>(store->adam_m().size()), store->size())
        << "RestoreInto(with_optimizer) needs Adam state allocated";
    kinds.push_back({ckpt::ADAM_M, &store->adam_m()});
    kinds.push_back({ckpt::ADAM_V, &store->adam_v()});
  }
  for (const auto& [kind, buf] : kinds) {
    for (const auto& pi : store->infos()) {
      const LoadedTensor* t = ck.Find(pi.name, kind);
      if (t == nullptr) {
        bool any_opt = false;
        for (const auto& x : ck.tensors) any_opt |= x.kind != ckpt::PARAM;
        Fail("checkpoint ", ck.dir, ": tensor '", pi.name, "' (", KindName(kind),
             ") with global shape ", ShapeStr(pi.global_shape), " is missing from the checkpoint",
             kind != ckpt::PARAM && !any_opt ? " (it was saved or loaded without optimizer state)"
                                             : "");
      }
      const int64_t ck_rows = PaddedRowsToCopy(
          "checkpoint " + ck.dir + ": tensor '" + pi.name + "' (" + KindName(kind) + ")",
          pi.logical_rows, t->shape, t->data.data(), pi.global_shape, "the checkpoint",
          "the model");
      std::vector<int64_t> off(pi.global_shape.size(), 0);
      int sd = ShardDim(pi.placement);
      if (sd >= 0) off[sd] = pi.shard_start;
      std::vector<int64_t> zero(pi.local_shape.size(), 0);
      std::vector<int64_t> ext = pi.local_shape;
      float* dst = buf->data() + pi.offset;
      if (!ext.empty() && off[0] + ext[0] > ck_rows) {
        // Padded rows the checkpoint's layout did not have: zero, like a fresh model's.
        std::fill(dst, dst + pi.numel, 0.0f);
        ext[0] = std::max<int64_t>(0, ck_rows - off[0]);
      }
      CopyBox(t->data.data(), t->shape, off, dst, pi.local_shape, zero, ext);
    }
  }
  if (!allow_unused) {
    for (const auto& t : ck.tensors) {
      if (t.kind != ckpt::PARAM && !with_optimizer) continue;
      if (!store->has(t.name)) {
        Fail("checkpoint ", ck.dir, ": tensor '", t.name, "' (", KindName(t.kind),
             ") with global shape ", ShapeStr(t.shape),
             " is not declared by the model (a different architecture?)");
      }
    }
  }
}

}  // namespace roformer
