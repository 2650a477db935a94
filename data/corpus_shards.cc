#include "data/corpus_shards.h"

#include <fcntl.h>
#include <omp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/tokenizer/tokenizer.h"
#include "runtime/crc32c.h"
#include "runtime/error.h"

namespace roformer {
namespace fs = std::filesystem;

namespace {

constexpr char kFormat[] = "roformer-corpus-1";
constexpr char kIndexMagic[8] = {'R', 'F', 'C', 'I', 'D', 'X', '0', '1'};
constexpr uint64_t kEvalSalt = 0x5EEDC0DE2021F00Dull;
constexpr char kManifest[] = "manifest.txt";
constexpr char kIndex[] = "index.bin";

uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

std::string Hex(uint64_t v, int width) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%0*" PRIx64, width, v);
  return buf;
}

// ---- read-only file mapping (also used for inputs) ----
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) : path_(path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) Fail(path, ": cannot open: ", std::strerror(errno));
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      int e = errno;
      ::close(fd);
      Fail(path, ": cannot stat: ", std::strerror(e));
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        int e = errno;
        ::close(fd);
        Fail(path, ": mmap failed: ", std::strerror(e));
      }
      data_ = static_cast<const char*>(p);
      ::madvise(p, size_, MADV_SEQUENTIAL);
    }
    ::close(fd);
  }
  ~MappedFile() {
    if (data_) ::munmap(const_cast<char*>(data_), size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const char* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const char* data_ = nullptr;
  size_t size_ = 0;
};

// ---- atomic file writer: NAME.tmp in the target dir, fsync, rename ----
class AtomicWriter {
 public:
  explicit AtomicWriter(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) Fail(tmp_, ": cannot create: ", std::strerror(errno));
    buf_.reserve(kBuf);
  }
  ~AtomicWriter() {
    if (fd_ >= 0) {
      ::close(fd_);
      ::unlink(tmp_.c_str());
    }
  }
  void Write(const void* p, size_t n) {
    const char* c = static_cast<const char*>(p);
    crc_ = Crc32cExtend(crc_, c, n);
    bytes_ += n;
    if (buf_.size() + n > kBuf) Flush();
    if (n >= kBuf) {
      WriteRaw(c, n);
    } else {
      buf_.insert(buf_.end(), c, c + n);
    }
  }
  void Write(std::string_view s) { Write(s.data(), s.size()); }
  // Flushes, fsyncs and renames into place.
  void Commit() {
    Flush();
    if (::fsync(fd_) != 0) Fail(tmp_, ": fsync failed: ", std::strerror(errno));
    if (::close(fd_) != 0) Fail(tmp_, ": close failed: ", std::strerror(errno));
    fd_ = -1;
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
      Fail(path_, ": rename failed: ", std::strerror(errno));
    }
  }
  uint64_t bytes() const { return bytes_; }
  uint32_t crc() const { return crc_; }

 private:
  static constexpr size_t kBuf = 4 << 20;
  void Flush() {
    WriteRaw(buf_.data(), buf_.size());
    buf_.clear();
  }
  void WriteRaw(const char* p, size_t n) {
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        Fail(tmp_, ": write failed: ", std::strerror(errno));
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
  }
  std::string path_, tmp_;
  int fd_ = -1;
  std::vector<char> buf_;
  uint64_t bytes_ = 0;
  uint32_t crc_ = 0;
};

void FsyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // best effort: some filesystems refuse directory fds
  ::fsync(fd);
  ::close(fd);
}

std::string ShardName(uint64_t i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "shard-%05" PRIu64 ".bin", i);
  return buf;
}

bool IsSpace(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

bool AllSpace(std::string_view s) {
  for (char c : s) {
    if (!IsSpace(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// Length of a sentence ender starting at p (0 if none).
size_t EnderLen(const unsigned char* p, const unsigned char* end) {
  const size_t left = static_cast<size_t>(end - p);
  switch (p[0]) {
    case '!':
    case '?':
      return 1;
    case 0xE3:  // 。 U+3002
      return left >= 3 && p[1] == 0x80 && p[2] == 0x82 ? 3 : 0;
    case 0xEF:  // ！U+FF01 ？U+FF1F ；U+FF1B
      return left >= 3 && p[1] == 0xBC && (p[2] == 0x81 || p[2] == 0x9F || p[2] == 0x9B) ? 3 : 0;
    case 0xE2:  // … U+2026
      return left >= 3 && p[1] == 0x80 && p[2] == 0xA6 ? 3 : 0;
    default:
      return 0;
  }
}

// Closing quote/bracket that stays with the sentence before it.
size_t CloserLen(const unsigned char* p, const unsigned char* end) {
  const size_t left = static_cast<size_t>(end - p);
  switch (p[0]) {
    case '"':
    case '\'':
    case ')':
      return 1;
    case 0xE2:  // ” U+201D ’ U+2019
      return left >= 3 && p[1] == 0x80 && (p[2] == 0x9D || p[2] == 0x99) ? 3 : 0;
    case 0xE3:  // 」U+300D 』U+300F
      return left >= 3 && p[1] == 0x80 && (p[2] == 0x8D || p[2] == 0x8F) ? 3 : 0;
    case 0xEF:  // ）U+FF09
      return left >= 3 && p[1] == 0xBC && p[2] == 0x89 ? 3 : 0;
    default:
      return 0;
  }
}

// Code points of the well-formed UTF-8 in s (ill-formed bytes, which the tokenizer drops, are not
// counted).
uint64_t CountCodePoints(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  uint64_t count = 0;
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++count;
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2, cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3, cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4, cp = c & 0x07;
    }
    bool ok = len > 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) {
      ok = (p[i + k] & 0xC0) == 0x80;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    // Overlong, surrogate and out-of-range forms are ill-formed too.
    if (ok && ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
               (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))) {
      ok = false;
    }
    if (ok) {
      ++count;
      i += len;
    } else {
      ++i;
    }
  }
  return count;
}

struct DocResult {
  std::vector<int32_t> tokens;
  std::vector<uint32_t> sentence_lengths;
  int64_t invalid_bytes = 0;
  uint64_t characters = 0;
  uint64_t unk = 0;
};

void TokenizeDocument(std::string_view doc, bool newline_is_boundary, const Tokenizer& tok,
                      int unk_id, DocResult* r) {
  std::vector<std::string_view> sentences;
  SplitSentences(doc, newline_is_boundary, &sentences);
  r->tokens.clear();
  r->sentence_lengths.clear();
  r->invalid_bytes = 0;
  r->characters = 0;
  r->unk = 0;
  for (std::string_view s : sentences) {
    int64_t bad = 0;
    std::vector<int32_t> ids = tok.Encode(s, &bad);
    r->invalid_bytes += bad;
    r->characters += CountCodePoints(s);
    if (ids.empty()) continue;
    for (int32_t id : ids) r->unk += id == unk_id;
    r->sentence_lengths.push_back(static_cast<uint32_t>(ids.size()));
    r->tokens.insert(r->tokens.end(), ids.begin(), ids.end());
  }
}

// Streams documents into shards and builds the index in memory.
class CorpusWriter {
 public:
  CorpusWriter(std::string dir, int token_bytes, uint64_t max_shard_tokens)
      : dir_(std::move(dir)), token_bytes_(token_bytes), max_shard_tokens_(max_shard_tokens) {
    shard_doc_begin_.push_back(0);
    doc_sent_begin_.push_back(0);
    sent_tok_begin_.push_back(0);
  }

  void Add(const DocResult& d) {
    const uint64_t n = d.tokens.size();
    if (!shard_ || (shard_tokens_ > 0 && shard_tokens_ + n > max_shard_tokens_)) NextShard();
    if (token_bytes_ == 2) {
      conv16_.resize(n);
      for (uint64_t i = 0; i < n; ++i) conv16_[i] = static_cast<uint16_t>(d.tokens[i]);
      shard_->Write(conv16_.data(), n * 2);
    } else {
      shard_->Write(d.tokens.data(), n * 4);
    }
    shard_tokens_ += n;
    for (uint32_t len : d.sentence_lengths) {
      sent_tok_begin_.push_back(sent_tok_begin_.back() + len);
    }
    doc_sent_begin_.push_back(sent_tok_begin_.size() - 1);
  }

  uint64_t documents() const { return doc_sent_begin_.size() - 1; }
  uint64_t sentences() const { return sent_tok_begin_.size() - 1; }
  uint64_t tokens() const { return sent_tok_begin_.back(); }
  uint64_t shards() const { return files_.size(); }

  // Finishes the last shard and writes index.bin; returns the list of (name, bytes, crc).
  std::vector<CorpusManifest::File> Finish() {
    CloseShard();
    AtomicWriter w(dir_ + "/" + kIndex);
    w.Write(kIndexMagic, 8);
    const uint64_t header[4] = {documents(), sentences(), tokens(), shards()};
    w.Write(header, sizeof header);
    w.Write(shard_doc_begin_.data(), shard_doc_begin_.size() * 8);
    w.Write(doc_sent_begin_.data(), doc_sent_begin_.size() * 8);
    w.Write(sent_tok_begin_.data(), sent_tok_begin_.size() * 8);
    w.Commit();
    std::vector<CorpusManifest::File> files;
    files.push_back({kIndex, w.bytes(), w.crc()});
    files.insert(files.end(), files_.begin(), files_.end());
    return files;
  }

 private:
  void CloseShard() {
    if (!shard_) return;
    shard_->Commit();
    files_.push_back({ShardName(files_.size()), shard_->bytes(), shard_->crc()});
    shard_.reset();
    shard_doc_begin_.push_back(documents());
  }
  void NextShard() {
    CloseShard();
    shard_ = std::make_unique<AtomicWriter>(dir_ + "/" + ShardName(files_.size()));
    shard_tokens_ = 0;
  }

  std::string dir_;
  int token_bytes_;
  uint64_t max_shard_tokens_;
  std::unique_ptr<AtomicWriter> shard_;
  uint64_t shard_tokens_ = 0;
  std::vector<uint16_t> conv16_;
  std::vector<uint64_t> shard_doc_begin_, doc_sent_begin_, sent_tok_begin_;
  std::vector<CorpusManifest::File> files_;
};

std::string FormatDouble(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string StripTrailingSlash(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

}  // namespace

uint64_t VocabFingerprint(const Vocab& vocab) {
  uint64_t h = 0xCBF29CE484222325ull;
  auto mix = [&h](unsigned char c) {
    h ^= c;
    h *= 0x100000001B3ull;
  };
  for (const auto& t : vocab.tokens()) {
    for (char c : t) mix(static_cast<unsigned char>(c));
    mix('\n');
  }
  return h;
}

bool IsEvalDocument(uint64_t doc, double eval_fraction) {
  if (eval_fraction <= 0) return false;
  if (eval_fraction >= 1) return true;
  const double u = static_cast<double>(SplitMix64(doc ^ kEvalSalt) >> 11) * 0x1.0p-53;
  return u < eval_fraction;
}

std::vector<std::string> ListCorpusFiles(const std::vector<std::string>& inputs) {
  if (inputs.empty()) Fail("no corpus input given");
  std::vector<std::string> files;
  for (const auto& in : inputs) {
    std::error_code ec;
    auto st = fs::status(in, ec);
    if (ec || !fs::exists(st)) Fail(in, ": corpus input does not exist");
    if (fs::is_directory(st)) {
      std::vector<std::string> found;
      for (const auto& e : fs::directory_iterator(in, ec)) {
        if (e.path().extension() == ".txt" && fs::is_regular_file(e.status())) {
          found.push_back(e.path().string());
        }
      }
      if (ec) Fail(in, ": cannot list directory: ", ec.message());
      if (found.empty()) Fail(in, ": directory holds no *.txt corpus file");
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else {
      files.push_back(in);
    }
  }
  return files;
}

void SplitSentences(std::string_view doc, bool newline_is_boundary,
                    std::vector<std::string_view>* out) {
  const auto* base = reinterpret_cast<const unsigned char*>(doc.data());
  const unsigned char* end = base + doc.size();
  const unsigned char* start = base;
  const unsigned char* p = base;
  auto emit = [&](const unsigned char* stop) {
    std::string_view s(reinterpret_cast<const char*>(start), static_cast<size_t>(stop - start));
    if (!AllSpace(s)) out->push_back(s);
  };
  while (p < end) {
    if (*p == '\n' && newline_is_boundary) {
      emit(p);
      start = ++p;
      continue;
    }
    size_t n = EnderLen(p, end);
    if (n == 0) {
      ++p;
      continue;
    }
    p += n;
    // Runs of enders ("？！", "……") and closing quotes stay with this sentence.
    for (;;) {
      if (p >= end) break;
      size_t m = EnderLen(p, end);
      if (m == 0) m = CloserLen(p, end);
      if (m == 0) break;
      p += m;
    }
    emit(p);
    start = p;
  }
  if (start < end) emit(end);
}

CorpusStats PrepareCorpus(const std::vector<std::string>& inputs, const Tokenizer& tokenizer,
                          const std::string& out_dir_arg, const CorpusOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  if (options.eval_fraction < 0 || options.eval_fraction >= 1) {
    Fail("eval fraction must be in [0, 1), got ", options.eval_fraction);
  }
  if (options.max_shard_tokens == 0) Fail("max_shard_tokens must be positive");
  const std::vector<std::string> files = ListCorpusFiles(inputs);
  const Vocab& vocab = tokenizer.vocab();
  int unk_id = -1;
  if (vocab.Find("[UNK]") >= 0) unk_id = vocab.unk_id();
  const int token_bytes = vocab.size() <= 65535 ? 2 : 4;

  const std::string out_dir = StripTrailingSlash(out_dir_arg);
  if (out_dir.empty()) Fail("empty output directory name");
  std::error_code ec;
  if (fs::exists(out_dir, ec) && !options.overwrite) {
    Fail(out_dir, ": output directory already exists (pass --force to replace it)");
  }
  const std::string tmp_dir = out_dir + ".tmp";
  fs::remove_all(tmp_dir, ec);  // a stale one from an interrupted run
  if (!fs::create_directories(tmp_dir, ec) || ec) {
    Fail(tmp_dir, ": cannot create directory: ", ec ? ec.message() : "exists");
  }

  CorpusStats st;
  st.input_files = files.size();
  CorpusWriter writer(tmp_dir, token_bytes, options.max_shard_tokens);
  std::vector<std::string_view> docs;
  std::vector<DocResult> results;
  const bool newline_boundary = !options.doc_per_line;
  const size_t kChunkBytes = 16 << 20;

  auto flush = [&]() {
    if (docs.empty()) return;
    results.resize(std::max(results.size(), docs.size()));
    const int64_t n = static_cast<int64_t>(docs.size());
    const int threads = options.threads > 0 ? options.threads : omp_get_max_threads();
    // Tokenizer::Encode is const and thread-safe; results land in document order.
#pragma omp parallel for schedule(dynamic, 16) num_threads(threads)
    for (int64_t i = 0; i < n; ++i) {
      TokenizeDocument(docs[i], newline_boundary, tokenizer, unk_id, &results[i]);
    }
    for (int64_t i = 0; i < n; ++i) {
      const DocResult& r = results[i];
      st.invalid_utf8_bytes += static_cast<uint64_t>(r.invalid_bytes);
      if (r.tokens.empty()) {
        ++st.dropped_documents;
        continue;
      }
      st.characters += r.characters;
      st.unk_tokens += r.unk;
      st.max_document_tokens = std::max<uint64_t>(st.max_document_tokens, r.tokens.size());
      if (writer.documents() >= 0xFFFFFFFFull) Fail("corpus has more than 2^32-1 documents");
      writer.Add(r);
    }
    docs.clear();
  };

  for (const auto& path : files) {
    MappedFile in(path);
    st.input_bytes += in.size();
    const char* p = in.data();
    const char* end = p + in.size();
    size_t pending = 0;
    const char* doc_begin = nullptr;  // blank-line mode: first line of the current document
    const char* doc_end = nullptr;
    while (p < end) {
      const char* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
      const char* line_end = nl ? nl : end;
      std::string_view line(p, static_cast<size_t>(line_end - p));
      p = nl ? nl + 1 : end;
      const bool blank = AllSpace(line);
      if (blank) ++st.empty_lines;
      if (options.doc_per_line) {
        if (blank) continue;
        docs.push_back(line);
        pending += line.size();
      } else if (blank) {
        if (doc_begin) {
          docs.emplace_back(doc_begin, static_cast<size_t>(doc_end - doc_begin));
          pending += docs.back().size();
          doc_begin = nullptr;
        }
      } else {
        if (!doc_begin) doc_begin = line.data();
        doc_end = line_end;
      }
      if (pending >= kChunkBytes) {
        flush();
        pending = 0;
      }
    }
    if (doc_begin) docs.emplace_back(doc_begin, static_cast<size_t>(doc_end - doc_begin));
    flush();  // the mapping dies with this iteration
  }

  if (writer.tokens() == 0) {
    std::string names;
    for (const auto& in : inputs) names += (names.empty() ? "" : ", ") + in;
    fs::remove_all(tmp_dir, ec);
    Fail(names, ": corpus is empty (no token after tokenization; ", st.input_bytes, " bytes read, ",
         st.invalid_utf8_bytes, " invalid UTF-8 bytes)");
  }
  std::vector<CorpusManifest::File> out_files = writer.Finish();
  st.documents = writer.documents();
  st.sentences = writer.sentences();
  st.tokens = writer.tokens();
  st.shards = writer.shards();
  for (uint64_t d = 0; d < st.documents; ++d)
    st.eval_documents += IsEvalDocument(d, options.eval_fraction);
  st.train_documents = st.documents - st.eval_documents;

  std::ostringstream m;
  m << "# roformer prepared corpus (roformer data prepare); see data/corpus_shards.h\n";
  m << "format " << kFormat << "\n";
  m << "vocab_path " << vocab.path() << "\n";
  m << "vocab_size " << vocab.size() << "\n";
  m << "vocab_fnv64 " << Hex(VocabFingerprint(vocab), 16) << "\n";
  m << "token_bytes " << token_bytes << "\n";
  m << "doc_per_line " << (options.doc_per_line ? 1 : 0) << "\n";
  m << "eval_fraction " << FormatDouble(options.eval_fraction) << "\n";
  for (const auto& f : files) m << "input " << f << "\n";
  m << "input_bytes " << st.input_bytes << "\n";
  m << "documents " << st.documents << "\n";
  m << "sentences " << st.sentences << "\n";
  m << "tokens " << st.tokens << "\n";
  m << "characters " << st.characters << "\n";
  m << "invalid_utf8_bytes " << st.invalid_utf8_bytes << "\n";
  m << "unk_tokens " << st.unk_tokens << "\n";
  m << "eval_documents " << st.eval_documents << "\n";
  m << "shards " << st.shards << "\n";
  for (const auto& f : out_files) {
    m << "file " << f.name << " " << f.bytes << " " << Hex(f.crc32c, 8) << "\n";
  }
  {
    AtomicWriter w(tmp_dir + "/" + kManifest);
    w.Write(m.str());
    w.Commit();
  }
  FsyncDir(tmp_dir);

  // Swap the finished directory into place.
  if (fs::exists(out_dir, ec)) {
    const std::string old = out_dir + ".old";
    fs::remove_all(old, ec);
    if (::rename(out_dir.c_str(), old.c_str()) != 0) {
      Fail(out_dir, ": cannot move the existing directory aside: ", std::strerror(errno));
    }
    if (::rename(tmp_dir.c_str(), out_dir.c_str()) != 0) {
      Fail(out_dir, ": rename from ", tmp_dir, " failed: ", std::strerror(errno));
    }
    fs::remove_all(old, ec);
  } else if (::rename(tmp_dir.c_str(), out_dir.c_str()) != 0) {
    Fail(out_dir, ": rename from ", tmp_dir, " failed: ", std::strerror(errno));
  }
  FsyncDir(fs::path(out_dir).has_parent_path() ? fs::path(out_dir).parent_path().string() : ".");
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return st;
}

// ---------------------------------------------------------------- reader

struct ShardedCorpus::Mapping {
  explicit Mapping(const std::string& path) : file(path) {}
  MappedFile file;
};

ShardedCorpus::ShardedCorpus(ShardedCorpus&&) noexcept = default;
ShardedCorpus& ShardedCorpus::operator=(ShardedCorpus&&) noexcept = default;
ShardedCorpus::~ShardedCorpus() = default;

namespace {

uint64_t ParseU64(const std::string& path, int line, const std::string& key, const std::string& v,
                  int base = 10) {
  try {
    size_t pos = 0;
    unsigned long long x = std::stoull(v, &pos, base);
    if (pos != v.size()) throw std::invalid_argument(v);
    return x;
  } catch (const std::exception&) {
    Fail(path, ":", line, ": field '", key, "': bad number '", v, "'");
  }
}

CorpusManifest ReadManifest(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    Fail(path,
         ": cannot open corpus manifest (is this a directory written by `roformer data prepare`?)");
  CorpusManifest m;
  std::string line;
  int lineno = 0;
  bool format_ok = false;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty() || line[0] == '#') continue;
    const size_t sp = line.find(' ');
    const std::string key = line.substr(0, sp);
    const std::string value = sp == std::string::npos ? "" : line.substr(sp + 1);
    auto u = [&](const std::string& v) { return ParseU64(path, lineno, key, v); };
    if (key == "format") {
      if (value != kFormat)
        Fail(path, ":", lineno, ": unsupported format '", value, "' (expected ", kFormat, ")");
      format_ok = true;
    } else if (key == "vocab_path") {
      m.vocab_path = value;
    } else if (key == "vocab_size") {
      m.vocab_size = u(value);
    } else if (key == "vocab_fnv64") {
      m.vocab_fingerprint = ParseU64(path, lineno, key, value, 16);
    } else if (key == "token_bytes") {
      m.token_bytes = static_cast<int>(u(value));
      if (m.token_bytes != 2 && m.token_bytes != 4)
        Fail(path, ":", lineno, ": token_bytes must be 2 or 4");
    } else if (key == "doc_per_line") {
      m.doc_per_line = u(value) != 0;
    } else if (key == "eval_fraction") {
      try {
        m.eval_fraction = std::stod(value);
      } catch (const std::exception&) {
        Fail(path, ":", lineno, ": bad eval_fraction '", value, "'");
      }
    } else if (key == "documents") {
      m.documents = u(value);
    } else if (key == "sentences") {
      m.sentences = u(value);
    } else if (key == "tokens") {
      m.tokens = u(value);
    } else if (key == "characters") {
      m.characters = u(value);
    } else if (key == "invalid_utf8_bytes") {
      m.invalid_utf8_bytes = u(value);
    } else if (key == "unk_tokens") {
      m.unk_tokens = u(value);
    } else if (key == "eval_documents") {
      m.eval_documents = u(value);
    } else if (key == "shards") {
      m.shards = u(value);
    } else if (key == "file") {
      std::istringstream is(value);
      CorpusManifest::File f;
      std::string bytes, crc;
      if (!(is >> f.name >> bytes >> crc) || f.name.find('/') != std::string::npos) {
        Fail(path, ":", lineno, ": bad file line '", line, "'");
      }
      f.bytes = u(bytes);
      f.crc32c = static_cast<uint32_t>(ParseU64(path, lineno, key, crc, 16));
      m.files.push_back(f);
    }
  }
  if (!format_ok) Fail(path, ": not a roformer corpus manifest (no 'format ", kFormat, "' line)");
  if (m.files.size() != m.shards + 1 || m.files.empty() || m.files[0].name != kIndex) {
    Fail(path, ": manifest lists ", m.files.size(), " files for ", m.shards, " shards (expected ",
         kIndex, " and the shards)");
  }
  return m;
}

}  // namespace

ShardedCorpus ShardedCorpus::Open(const std::string& dir_arg, bool verify_checksums) {
  ShardedCorpus c;
  c.dir_ = StripTrailingSlash(dir_arg);
  const std::string mpath = c.dir_ + "/" + kManifest;
  c.manifest_ = ReadManifest(mpath);
  const CorpusManifest& m = c.manifest_;
  for (const auto& f : m.files) {
    const std::string path = c.dir_ + "/" + f.name;
    auto map = std::make_unique<Mapping>(path);
    if (map->file.size() != f.bytes) {
      Fail(path, ": size ", map->file.size(), " bytes, manifest says ", f.bytes,
           " (truncated or modified file)");
    }
    if (verify_checksums) {
      const uint32_t crc = Crc32c(map->file.data(), map->file.size());
      if (crc != f.crc32c) {
        Fail(path, ": CRC32C mismatch (file ", Hex(crc, 8), ", manifest ", Hex(f.crc32c, 8),
             "): the file is corrupted");
      }
    }
    c.maps_.push_back(std::move(map));
  }
  // Index layout checks (also catch a manifest that does not match its index).
  const MappedFile& idx = c.maps_[0]->file;
  const std::string ipath = idx.path();
  if (idx.size() < 40 || std::memcmp(idx.data(), kIndexMagic, 8) != 0)
    Fail(ipath, ": not a corpus index");
  uint64_t header[4];
  std::memcpy(header, idx.data() + 8, sizeof header);
  if (header[0] != m.documents || header[1] != m.sentences || header[2] != m.tokens ||
      header[3] != m.shards) {
    Fail(ipath, ": header counts do not match ", mpath);
  }
  const uint64_t expect = 40 + 8 * ((m.shards + 1) + (m.documents + 1) + (m.sentences + 1));
  if (idx.size() != expect) Fail(ipath, ": size ", idx.size(), " bytes, expected ", expect);
  const auto* base = reinterpret_cast<const uint64_t*>(idx.data() + 40);
  c.shard_doc_ = base;
  c.doc_sent_ = c.shard_doc_ + m.shards + 1;
  c.sent_tok_ = c.doc_sent_ + m.documents + 1;
  auto monotone = [&](const uint64_t* a, uint64_t n, uint64_t last, const char* what) {
    if (a[0] != 0 || a[n] != last) Fail(ipath, ": bad ", what, " bounds");
    for (uint64_t i = 0; i < n; ++i) {
      if (a[i + 1] <= a[i]) Fail(ipath, ": ", what, " not strictly increasing at ", i);
    }
  };
  monotone(c.shard_doc_, m.shards, m.documents, "shard/document");
  monotone(c.doc_sent_, m.documents, m.sentences, "document/sentence");
  monotone(c.sent_tok_, m.sentences, m.tokens, "sentence/token");
  c.shard_tok_begin_.resize(m.shards + 1);
  for (uint64_t s = 0; s <= m.shards; ++s)
    c.shard_tok_begin_[s] = c.sent_tok_[c.doc_sent_[c.shard_doc_[s]]];
  for (uint64_t s = 0; s < m.shards; ++s) {
    const MappedFile& f = c.maps_[s + 1]->file;
    const uint64_t n = c.shard_tok_begin_[s + 1] - c.shard_tok_begin_[s];
    if (f.size() != n * m.token_bytes) {
      Fail(f.path(), ": holds ", f.size(), " bytes, index says ", n, " tokens of ", m.token_bytes,
           " bytes");
    }
    c.shard_data_.push_back(f.data());
  }
  if (m.documents > 0xFFFFFFFFull) Fail(mpath, ": too many documents");
  for (uint64_t d = 0; d < m.documents; ++d) {
    (IsEvalDocument(d, m.eval_fraction) ? c.eval_docs_ : c.train_docs_)
        .push_back(static_cast<uint32_t>(d));
  }
  return c;
}

void ShardedCorpus::CheckVocab(const Vocab& vocab) const {
  const uint64_t fp = VocabFingerprint(vocab);
  if (static_cast<uint64_t>(vocab.size()) != manifest_.vocab_size ||
      fp != manifest_.vocab_fingerprint) {
    Fail(dir_, "/", kManifest, ": corpus was tokenized with vocab ", manifest_.vocab_path, " (",
         manifest_.vocab_size, " tokens, fnv64 ", Hex(manifest_.vocab_fingerprint, 16),
         ") but the model uses ",
         vocab.path().empty() ? std::string("<in-memory vocab>") : vocab.path(), " (", vocab.size(),
         " tokens, fnv64 ", Hex(fp, 16), "); re-run `roformer data prepare`");
  }
}

uint64_t ShardedCorpus::SentenceAt(uint64_t d, uint64_t pos) const {
  const uint64_t* first = sent_tok_ + doc_sent_[d];
  const uint64_t* last = sent_tok_ + doc_sent_[d + 1];
  // Last sentence start <= pos.
  const uint64_t* it = std::upper_bound(first, last, pos);
  return static_cast<uint64_t>(it - sent_tok_) - 1;
}

const void* ShardedCorpus::ShardData(uint64_t pos, uint64_t* shard_begin) const {
  auto it = std::upper_bound(shard_tok_begin_.begin(), shard_tok_begin_.end(), pos);
  const size_t s = static_cast<size_t>(it - shard_tok_begin_.begin()) - 1;
  *shard_begin = shard_tok_begin_[s];
  return shard_data_[s];
}

int32_t ShardedCorpus::token(uint64_t pos) const {
  int32_t v;
  CopyTokens(pos, pos + 1, &v);
  return v;
}

void ShardedCorpus::CopyTokens(uint64_t begin, uint64_t end, int32_t* out) const {
  if (begin >= end) return;
  uint64_t sb = 0;
  const void* data = ShardData(begin, &sb);
  if (manifest_.token_bytes == 2) {
    const uint16_t* p = static_cast<const uint16_t*>(data) + (begin - sb);
    for (uint64_t i = 0; i < end - begin; ++i) out[i] = p[i];
  } else {
    const uint32_t* p = static_cast<const uint32_t*>(data) + (begin - sb);
    for (uint64_t i = 0; i < end - begin; ++i) out[i] = static_cast<int32_t>(p[i]);
  }
}

}  // namespace roformer
