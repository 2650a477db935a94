#include "runtime/safetensors.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include "runtime/error.h"
#include "runtime/json.h"

namespace roformer::safetensors {

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes little-endian");

namespace {

struct DTypeEntry {
  DType t;
  const char* name;
  int size;
};
constexpr DTypeEntry kDTypes[] = {
    {DType::kBool, "BOOL", 1}, {DType::kU8, "U8", 1},   {DType::kI8, "I8", 1},
    {DType::kI16, "I16", 2},   {DType::kU16, "U16", 2}, {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2}, {DType::kI32, "I32", 4}, {DType::kU32, "U32", 4},
    {DType::kF32, "F32", 4},   {DType::kI64, "I64", 8}, {DType::kU64, "U64", 8},
    {DType::kF64, "F64", 8},
};

float HalfToFloat(uint16_t h) {
  uint32_t sign = (h >> 15) & 1, exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
  float v;
  if (exp == 0) {
    v = std::ldexp(static_cast<float>(mant), -24);
  } else if (exp == 31) {
    v = mant ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  } else {
    v = std::ldexp(static_cast<float>(mant | 0x400), static_cast<int>(exp) - 25);
  }
  return sign ? -v : v;
}

float Bf16ToFloat(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

template <typename T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Product of dims with overflow detection; -1 on overflow or negative dims.
int64_t CheckedNumel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return -1;
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) return -1;
    n *= d;
  }
  return n;
}

}  // namespace

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

DType ParseDType(std::string_view s, const std::string& context) {
  for (const auto& e : kDTypes) {
    if (s == e.name) return e.t;
  }
  Fail(context, ": unknown dtype \"", s, "\"");
}

const char* DTypeName(DType t) {
  for (const auto& e : kDTypes) {
    if (e.t == t) return e.name;
  }
  return "?";
}

int DTypeSize(DType t) {
  for (const auto& e : kDTypes) {
    if (e.t == t) return e.size;
  }
  return 0;
}

bool IsFloat(DType t) {
  return t == DType::kF16 || t == DType::kBF16 || t == DType::kF32 || t == DType::kF64;
}

int64_t TensorInfo::numel() const { return CheckedNumel(shape); }

Reader Reader::Open(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail(path, ": cannot open safetensors file");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) Fail(path, ": read error");
  return FromBytes(ss.str(), path);
}

Reader Reader::FromBytes(std::string bytes, const std::string& origin) {
  Reader r;
  r.origin_ = origin;
  r.bytes_ = std::move(bytes);
  r.Parse();
  return r;
}

void Reader::Parse() {
  const uint64_t size = bytes_.size();
  if (size < 8) Fail(origin_, ": not a safetensors file (", size, " bytes, need at least 8)");
  uint64_t n = Load<uint64_t>(reinterpret_cast<const uint8_t*>(bytes_.data()));
  if (n > kMaxHeaderBytes)
    Fail(origin_, ": safetensors header length ", n, " exceeds the ", kMaxHeaderBytes,
         "-byte limit (corrupt or not a safetensors file)");
  if (n > size - 8)
    Fail(origin_, ": safetensors header length ", n, " runs past the end of the file (", size,
         " bytes)");
  if (n < 2 || bytes_[8] != '{')
    Fail(origin_, ": safetensors header does not start with '{' (not a safetensors file)");
  data_start_ = 8 + n;
  const uint64_t data_len = size - data_start_;
  Json header;
  try {
    header = Json::Parse(std::string_view(bytes_).substr(8, n), origin_ + " (header)");
  } catch (const Error& e) {
    Fail(origin_, ": bad safetensors header: ", e.what());
  }
  if (!header.is_object()) Fail(origin_, ": safetensors header is not a JSON object");

  for (const auto& [key, val] : header.as_object()) {
    if (key == "__metadata__") {
      if (!val.is_object()) Fail(origin_, ": __metadata__ is not an object");
      for (const auto& [mk, mv] : val.as_object()) {
        if (!mv.is_string()) Fail(origin_, ": __metadata__ value of \"", mk, "\" is not a string");
        metadata_[mk] = mv.as_string();
      }
      continue;
    }
    const std::string ctx = origin_ + ": tensor '" + key + "'";
    if (!val.is_object()) Fail(ctx, ": header entry is not an object");
    TensorInfo t;
    t.name = key;
    bool has_dtype = false, has_shape = false, has_offsets = false;
    for (const auto& [fk, fv] : val.as_object()) {
      if (fk == "dtype") {
        if (!fv.is_string()) Fail(ctx, ": dtype is not a string");
        t.dtype = ParseDType(fv.as_string(), ctx);
        has_dtype = true;
      } else if (fk == "shape") {
        if (!fv.is_array()) Fail(ctx, ": shape is not an array");
        for (const auto& d : fv.as_array()) {
          if (!d.is_int() || d.as_int() < 0) Fail(ctx, ": shape has a non-integer or negative dim");
          t.shape.push_back(d.as_int());
        }
        has_shape = true;
      } else if (fk == "data_offsets") {
        if (!fv.is_array() || fv.size() != 2) Fail(ctx, ": data_offsets is not [begin, end]");
        for (int i = 0; i < 2; ++i) {
          const Json& o = fv.at(static_cast<size_t>(i));
          if (!o.is_int() || o.as_int() < 0) Fail(ctx, ": data_offsets has a bad entry");
        }
        t.begin = static_cast<uint64_t>(fv.at(size_t{0}).as_int());
        t.end = static_cast<uint64_t>(fv.at(size_t{1}).as_int());
        has_offsets = true;
      } else {
        Fail(ctx, ": unknown header field \"", fk, "\"");
      }
    }
    if (!has_dtype || !has_shape || !has_offsets)
      Fail(ctx, ": header entry needs dtype, shape and data_offsets");
    if (t.end < t.begin) Fail(ctx, ": data_offsets end ", t.end, " < begin ", t.begin);
    if (t.end > data_len)
      Fail(ctx, ": data_offsets [", t.begin, ", ", t.end, "] run past the data region (", data_len,
           " bytes)");
    int64_t numel = CheckedNumel(t.shape);
    if (numel < 0) Fail(ctx, ": shape ", ShapeString(t.shape), " overflows");
    uint64_t want = static_cast<uint64_t>(numel);
    if (want > std::numeric_limits<uint64_t>::max() / DTypeSize(t.dtype) ||
        want * DTypeSize(t.dtype) != t.end - t.begin)
      Fail(ctx, ": shape ", ShapeString(t.shape), " x ", DTypeName(t.dtype), " needs ",
           want * DTypeSize(t.dtype), " bytes but data_offsets span ", t.end - t.begin);
    tensors_.push_back(std::move(t));
  }

  // Offsets must tile the data region exactly: sorted by begin, each starts where the last ended.
  std::vector<const TensorInfo*> by_offset;
  for (const auto& t : tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t expect = 0;
  for (const TensorInfo* t : by_offset) {
    if (t->begin < expect)
      Fail(origin_, ": tensor '", t->name, "' data_offsets [", t->begin, ", ", t->end,
           "] overlap the previous tensor (which ends at ", expect, ")");
    if (t->begin > expect)
      Fail(origin_, ": gap in the data region before tensor '", t->name, "' (bytes ", expect, "..",
           t->begin, " unused)");
    expect = t->end;
  }
  if (expect != data_len)
    Fail(origin_, ": tensors cover ", expect, " bytes of a ", data_len,
         "-byte data region (trailing bytes or truncated file)");

  std::sort(tensors_.begin(), tensors_.end(),
            [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
  for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
}

std::vector<std::string> Reader::names() const {
  std::vector<std::string> out;
  for (const auto& t : tensors_) out.push_back(t.name);
  return out;
}

const TensorInfo& Reader::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) Fail(origin_, ": no tensor '", name, "'");
  return tensors_[it->second];
}

std::span<const uint8_t> Reader::raw(const std::string& name) const {
  const TensorInfo& t = info(name);
  return {reinterpret_cast<const uint8_t*>(bytes_.data()) + data_start_ + t.begin,
          static_cast<size_t>(t.end - t.begin)};
}

std::vector<float> Reader::ReadFloat(const std::string& name) const {
  const TensorInfo& t = info(name);
  auto b = raw(name);
  const size_t n = static_cast<size_t>(t.numel());
  std::vector<float> out(n);
  const uint8_t* p = b.data();
  switch (t.dtype) {
    case DType::kF32:
      if (n) std::memcpy(out.data(), p, n * 4);
      break;
    case DType::kF64:
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(Load<double>(p + 8 * i));
      break;
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) out[i] = HalfToFloat(Load<uint16_t>(p + 2 * i));
      break;
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) out[i] = Bf16ToFloat(Load<uint16_t>(p + 2 * i));
      break;
    default: {
      // Integers and bool: via ReadInt (U64 above INT64_MAX is rejected there).
      auto v = ReadInt(name);
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(v[i]);
    }
  }
  return out;
}

std::vector<int64_t> Reader::ReadInt(const std::string& name) const {
  const TensorInfo& t = info(name);
  auto b = raw(name);
  const size_t n = static_cast<size_t>(t.numel());
  std::vector<int64_t> out(n);
  const uint8_t* p = b.data();
  switch (t.dtype) {
    case DType::kBool:
      for (size_t i = 0; i < n; ++i) {
        if (p[i] > 1) Fail(origin_, ": tensor '", name, "': BOOL byte ", int(p[i]), " is not 0/1");
        out[i] = p[i];
      }
      break;
    case DType::kU8:
      for (size_t i = 0; i < n; ++i) out[i] = p[i];
      break;
    case DType::kI8:
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<int8_t>(p[i]);
      break;
    case DType::kI16:
      for (size_t i = 0; i < n; ++i) out[i] = Load<int16_t>(p + 2 * i);
      break;
    case DType::kU16:
      for (size_t i = 0; i < n; ++i) out[i] = Load<uint16_t>(p + 2 * i);
      break;
    case DType::kI32:
      for (size_t i = 0; i < n; ++i) out[i] = Load<int32_t>(p + 4 * i);
      break;
    case DType::kU32:
      for (size_t i = 0; i < n; ++i) out[i] = Load<uint32_t>(p + 4 * i);
      break;
    case DType::kI64:
      if (n) std::memcpy(out.data(), p, n * 8);
      break;
    case DType::kU64:
      for (size_t i = 0; i < n; ++i) {
        uint64_t v = Load<uint64_t>(p + 8 * i);
        if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
          Fail(origin_, ": tensor '", name, "': U64 value ", v, " does not fit int64");
        out[i] = static_cast<int64_t>(v);
      }
      break;
    default:
      Fail(origin_, ": tensor '", name, "' has dtype ", DTypeName(t.dtype),
           ", expected an integer dtype");
  }
  return out;
}

std::vector<float> Reader::ReadFloat(const std::string& name,
                                     const std::vector<int64_t>& shape) const {
  const TensorInfo& t = info(name);
  if (t.shape != shape)
    Fail(origin_, ": tensor '", name, "' has shape ", ShapeString(t.shape), ", expected ",
         ShapeString(shape));
  return ReadFloat(name);
}

std::vector<int64_t> Reader::ReadInt(const std::string& name,
                                     const std::vector<int64_t>& shape) const {
  const TensorInfo& t = info(name);
  if (t.shape != shape)
    Fail(origin_, ": tensor '", name, "' has shape ", ShapeString(t.shape), ", expected ",
         ShapeString(shape));
  return ReadInt(name);
}

void Writer::Add(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                 const void* data, size_t bytes) {
  if (name.empty() || name == "__metadata__")
    Fail("safetensors writer: bad tensor name '", name, "'");
  if (entries_.count(name)) Fail("safetensors writer: duplicate tensor '", name, "'");
  int64_t numel = CheckedNumel(shape);
  if (numel < 0 || static_cast<uint64_t>(numel) * DTypeSize(dtype) != bytes)
    Fail("safetensors writer: tensor '", name, "' shape ", ShapeString(shape), " x ",
         DTypeName(dtype), " does not match ", bytes, " bytes");
  Entry e{dtype, shape, std::string(static_cast<const char*>(data), bytes)};
  entries_.emplace(name, std::move(e));
}

void Writer::AddFloat(const std::string& name, const std::vector<int64_t>& shape,
                      std::span<const float> data) {
  Add(name, DType::kF32, shape, data.data(), data.size_bytes());
}

void Writer::AddInt64(const std::string& name, const std::vector<int64_t>& shape,
                      std::span<const int64_t> data) {
  Add(name, DType::kI64, shape, data.data(), data.size_bytes());
}

void Writer::AddInt32(const std::string& name, const std::vector<int64_t>& shape,
                      std::span<const int32_t> data) {
  Add(name, DType::kI32, shape, data.data(), data.size_bytes());
}

std::string Writer::Serialize() const {
  std::vector<const std::pair<const std::string, Entry>*> order;
  for (const auto& kv : entries_) order.push_back(&kv);
  std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    return DTypeSize(a->second.dtype) > DTypeSize(b->second.dtype);
  });
  Json header = Json::Object();
  if (!metadata_.empty()) {
    Json meta = Json::Object();
    for (const auto& [k, v] : metadata_) meta.set(k, v);
    header.set("__metadata__", std::move(meta));
  }
  uint64_t off = 0;
  for (const auto* kv : order) {
    const Entry& e = kv->second;
    Json shape = Json::Array();
    for (int64_t d : e.shape) shape.push_back(static_cast<long long>(d));
    Json t = Json::Object();
    t.set("dtype", DTypeName(e.dtype));
    t.set("shape", std::move(shape));
    t.set("data_offsets",
          Json::Array({static_cast<long long>(off), static_cast<long long>(off + e.data.size())}));
    header.set(kv->first, std::move(t));
    off += e.data.size();
  }
  std::string h = header.Dump();
  h.append((8 - h.size() % 8) % 8, ' ');
  std::string out;
  out.reserve(8 + h.size() + off);
  uint64_t n = h.size();
  out.append(reinterpret_cast<const char*>(&n), 8);
  out.append(h);
  for (const auto* kv : order) out.append(kv->second.data);
  return out;
}

void Writer::WriteFile(const std::string& path) const {
  std::string bytes = Serialize();
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) Fail(tmp, ": cannot open for writing");
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) Fail(tmp, ": write failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    Fail(path, ": cannot rename ", tmp, " into place");
}

}  // namespace roformer::safetensors
