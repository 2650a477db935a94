// Reader and writer of the safetensors format (huggingface/safetensors):
//   u64 little-endian N | N bytes of JSON header | data region
// The header maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
// relative to the data region) plus an optional "__metadata__" object of string values.
//
// The reader validates strictly, like the reference implementation, and throws roformer::Error
// naming the file (and the tensor) for: a file shorter than 8 bytes, N beyond the file or above
// kMaxHeaderBytes, invalid header JSON (incl. duplicate names), unknown dtypes or fields, negative
// or overflowing shapes, numel * dtype size != end - begin, and offsets that are out of range,
// overlap, leave gaps, or do not cover the data region exactly. Nothing a file contains can make it
// crash. Data is read on request and converted to float32 or int64.
//
// The writer is deterministic: tensors are laid out by (element size descending, name), the order
// the official writer uses so every tensor is naturally aligned; the header is padded with spaces
// to a multiple of 8 bytes as the official writer does.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace roformer::safetensors {

enum class DType { kBool, kU8, kI8, kI16, kU16, kF16, kBF16, kI32, kU32, kF32, kI64, kU64, kF64 };

// "F32", "BF16", ... (the header spelling); Error for unknown names.
DType ParseDType(std::string_view s, const std::string& context);
const char* DTypeName(DType t);
int DTypeSize(DType t);
bool IsFloat(DType t);

inline constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range inside the data region
  int64_t numel() const;
};

class Reader {
 public:
  // Reads and validates the whole file.
  static Reader Open(const std::string& path);
  // Validates an in-memory file image; `origin` names it in errors.
  static Reader FromBytes(std::string bytes, const std::string& origin);

  const std::string& origin() const { return origin_; }
  // Tensors in name order.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  std::vector<std::string> names() const;
  bool has(const std::string& name) const { return index_.count(name) > 0; }
  // Error "<file>: no tensor '<name>'" when absent.
  const TensorInfo& info(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // The tensor's raw little-endian bytes.
  std::span<const uint8_t> raw(const std::string& name) const;
  // Converted copies. ReadFloat accepts every dtype (floats exactly widened/narrowed, integers and
  // bool converted); ReadInt accepts integer and bool dtypes only (Error naming the tensor
  // otherwise, and for U64 values above INT64_MAX).
  std::vector<float> ReadFloat(const std::string& name) const;
  std::vector<int64_t> ReadInt(const std::string& name) const;
  // As above, also checking the shape (Error naming file, tensor, both shapes on mismatch).
  std::vector<float> ReadFloat(const std::string& name, const std::vector<int64_t>& shape) const;
  std::vector<int64_t> ReadInt(const std::string& name, const std::vector<int64_t>& shape) const;

 private:
  void Parse();

  std::string origin_;
  std::string bytes_;
  uint64_t data_start_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

class Writer {
 public:
  // Copies `bytes` (numel * DTypeSize(dtype) of them). Error on a duplicate name or size mismatch.
  void Add(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
           const void* data, size_t bytes);
  void AddFloat(const std::string& name, const std::vector<int64_t>& shape,
                std::span<const float> data);
  void AddInt64(const std::string& name, const std::vector<int64_t>& shape,
                std::span<const int64_t> data);
  void AddInt32(const std::string& name, const std::vector<int64_t>& shape,
                std::span<const int32_t> data);
  void SetMetadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

  std::string Serialize() const;
  // Writes <path>.tmp then renames it over `path`.
  void WriteFile(const std::string& path) const;

 private:
  struct Entry {
    DType dtype;
    std::vector<int64_t> shape;
    std::string data;
  };
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Shape as "[2, 3]" for messages.
std::string ShapeString(const std::vector<int64_t>& shape);

}  // namespace roformer::safetensors
