#include "runtime/json.h"

#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <unordered_set>

#include "runtime/error.h"

namespace roformer {
namespace {

class Parser {
 public:
  Parser(std::string_view text, const std::string& origin) : s_(text), origin_(origin) {}

  Json ParseDocument() {
    if (s_.size() >= 3 && std::memcmp(s_.data(), "\xEF\xBB\xBF", 3) == 0) pos_ = 3;
    SkipWs();
    Json v = ParseValue(0);
    SkipWs();
    if (pos_ != s_.size()) Err("unexpected trailing characters after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void Err(const std::string& what) const { ErrAt(pos_, what); }
  [[noreturn]] void ErrAt(size_t at, const std::string& what) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < at && i < s_.size(); ++i) {
      if (s_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    Fail(origin_, ":", line, ":", col, ": invalid JSON: ", what);
  }

  void SkipWs() {
    while (pos_ < s_.size()) {
      char c = s_[pos_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        ++pos_;
      } else {
        break;
      }
    }
  }

  std::string Describe() const {
    if (pos_ >= s_.size()) return "end of input";
    unsigned char c = static_cast<unsigned char>(s_[pos_]);
    if (c >= 0x20 && c < 0x7f) return std::string("'") + static_cast<char>(c) + "'";
    char buf[16];
    std::snprintf(buf, sizeof(buf), "byte 0x%02x", c);
    return buf;
  }

  Json ParseValue(int depth) {
    if (depth > Json::kMaxDepth) Err("nesting deeper than " + std::to_string(Json::kMaxDepth));
    if (pos_ >= s_.size()) Err("unexpected end of input, expected a value");
    char c = s_[pos_];
    switch (c) {
      case '{':
        return ParseObject(depth);
      case '[':
        return ParseArray(depth);
      case '"':
        return Json(ParseString());
      case 't':
        ExpectWord("true");
        return Json(true);
      case 'f':
        ExpectWord("false");
        return Json(false);
      case 'n':
        ExpectWord("null");
        return Json();
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return ParseNumber();
        Err("unexpected " + Describe() + ", expected a value");
    }
  }

  void ExpectWord(const char* w) {
    size_t n = std::strlen(w);
    if (s_.substr(pos_, n) != w) Err("invalid literal, expected '" + std::string(w) + "'");
    pos_ += n;
  }

  Json ParseObject(int depth) {
    ++pos_;  // '{'
    Json obj = Json::Object();
    std::unordered_set<std::string> seen;  // linear find() would make parsing quadratic
    SkipWs();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return obj;
    }
    while (true) {
      SkipWs();
      if (pos_ >= s_.size() || s_[pos_] != '"') Err("expected a string key, got " + Describe());
      size_t key_at = pos_;
      std::string key = ParseString();
      if (!seen.insert(key).second) ErrAt(key_at, "duplicate key \"" + key + "\"");
      SkipWs();
      if (pos_ >= s_.size() || s_[pos_] != ':') Err("expected ':' after key, got " + Describe());
      ++pos_;
      SkipWs();
      obj.set(std::move(key), ParseValue(depth + 1));
      SkipWs();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == '}') {
        ++pos_;
        return obj;
      }
      Err("expected ',' or '}' in object, got " + Describe());
    }
  }

  Json ParseArray(int depth) {
    ++pos_;  // '['
    Json arr = Json::Array();
    SkipWs();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return arr;
    }
    while (true) {
      SkipWs();
      arr.push_back(ParseValue(depth + 1));
      SkipWs();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == ']') {
        ++pos_;
        return arr;
      }
      Err("expected ',' or ']' in array, got " + Describe());
    }
  }

  uint32_t Hex4() {
    if (pos_ + 4 > s_.size()) Err("truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = s_[pos_ + i];
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= c - '0';
      } else if (c >= 'a' && c <= 'f') {
        v |= c - 'a' + 10;
      } else if (c >= 'A' && c <= 'F') {
        v |= c - 'A' + 10;
      } else {
        Err("invalid hex digit in \\u escape");
      }
    }
    pos_ += 4;
    return v;
  }

  static void AppendUtf8(std::string* out, uint32_t cp) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  // Validates one UTF-8 sequence starting at pos_ (a byte >= 0x80) and copies it.
  void CopyUtf8(std::string* out) {
    unsigned char c = static_cast<unsigned char>(s_[pos_]);
    int n;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      cp = c & 0x07;
    } else {
      Err("invalid UTF-8 byte in string");
    }
    if (pos_ + n >= s_.size()) Err("truncated UTF-8 sequence");
    for (int i = 1; i <= n; ++i) {
      unsigned char cc = static_cast<unsigned char>(s_[pos_ + i]);
      if ((cc & 0xC0) != 0x80) Err("invalid UTF-8 continuation byte in string");
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
      Err("overlong or out-of-range UTF-8 sequence in string");
    if (cp >= 0xD800 && cp <= 0xDFFF) Err("UTF-8 encoded surrogate in string");
    out->append(s_.substr(pos_, n + 1));
    pos_ += n + 1;
  }

  std::string ParseString() {
    ++pos_;  // opening quote
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) Err("unterminated string");
      unsigned char c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) Err("unescaped control character in string");
      if (c >= 0x80) {
        CopyUtf8(&out);
        continue;
      }
      if (c != '\\') {
        out.push_back(static_cast<char>(c));
        ++pos_;
        continue;
      }
      ++pos_;
      if (pos_ >= s_.size()) Err("unterminated escape");
      char e = s_[pos_++];
      switch (e) {
        case '"':
          out.push_back('"');
          break;
        case '\\':
          out.push_back('\\');
          break;
        case '/':
          out.push_back('/');
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'u': {
          uint32_t cp = Hex4();
          if (cp >= 0xDC00 && cp <= 0xDFFF) Err("lone low surrogate in \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (pos_ + 2 > s_.size() || s_[pos_] != '\\' || s_[pos_ + 1] != 'u')
              Err("high surrogate not followed by a low surrogate");
            pos_ += 2;
            uint32_t lo = Hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) Err("high surrogate not followed by a low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          AppendUtf8(&out, cp);
          break;
        }
        default:
          --pos_;
          Err("invalid escape '\\" + std::string(1, e) + "'");
      }
    }
  }

  Json ParseNumber() {
    size_t start = pos_;
    bool integral = true;
    if (s_[pos_] == '-') ++pos_;
    if (pos_ >= s_.size() || !std::isdigit(static_cast<unsigned char>(s_[pos_])))
      Err("invalid number");
    if (s_[pos_] == '0') {
      ++pos_;
      if (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_])))
        Err("leading zero in number");
    } else {
      while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) ++pos_;
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      integral = false;
      ++pos_;
      if (pos_ >= s_.size() || !std::isdigit(static_cast<unsigned char>(s_[pos_])))
        Err("expected a digit after '.'");
      while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      integral = false;
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (pos_ >= s_.size() || !std::isdigit(static_cast<unsigned char>(s_[pos_])))
        Err("expected a digit in the exponent");
      while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) ++pos_;
    }
    const char* b = s_.data() + start;
    const char* e = s_.data() + pos_;
    if (integral) {
      int64_t v = 0;
      auto r = std::from_chars(b, e, v);
      if (r.ec == std::errc() && r.ptr == e) return Json(static_cast<long long>(v));
      // Out of int64 range: fall through to double.
    }
    double d = 0;
    auto r = std::from_chars(b, e, d);
    if (r.ec == std::errc::result_out_of_range) ErrAt(start, "number out of double range");
    if (r.ec != std::errc() || r.ptr != e) ErrAt(start, "invalid number");
    return Json(d);
  }

  std::string_view s_;
  const std::string& origin_;
  size_t pos_ = 0;
};

void AppendNumber(std::string* out, double v) {
  if (!std::isfinite(v)) {
    out->append("null");
    return;
  }
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  out->append(buf, r.ptr - buf);
}

}  // namespace

std::string JsonQuote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back('"');
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '\n':
        out.append("\\n");
        break;
      case '\r':
        out.append("\\r");
        break;
      case '\t':
        out.append("\\t");
        break;
      case '\b':
        out.append("\\b");
        break;
      case '\f':
        out.append("\\f");
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out.append(buf);
        } else {
          out.push_back(ch);
        }
    }
  }
  out.push_back('"');
  return out;
}

Json::Json(const Json& o)
    : type_(o.type_),
      bool_(o.bool_),
      is_int_(o.is_int_),
      int_(o.int_),
      num_(o.num_),
      str_(o.str_),
      arr_(o.arr_ ? std::make_shared<ArrayT>(*o.arr_) : nullptr),
      obj_(o.obj_ ? std::make_shared<ObjectT>(*o.obj_) : nullptr) {}

Json& Json::operator=(const Json& o) {
  if (this != &o) {
    Json tmp(o);
    *this = std::move(tmp);
  }
  return *this;
}

Json Json::Array(ArrayT items) {
  Json j;
  j.type_ = Type::kArray;
  j.arr_ = std::make_shared<ArrayT>(std::move(items));
  return j;
}

Json Json::Object() {
  Json j;
  j.type_ = Type::kObject;
  j.obj_ = std::make_shared<ObjectT>();
  return j;
}

Json Json::Parse(std::string_view text, const std::string& origin) {
  return Parser(text, origin).ParseDocument();
}

Json Json::ParseFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail(path, ": cannot open for reading");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) Fail(path, ": read error");
  return Parse(ss.str(), path);
}

const char* Json::TypeName(Type t) {
  switch (t) {
    case Type::kNull:
      return "null";
    case Type::kBool:
      return "bool";
    case Type::kNumber:
      return "number";
    case Type::kString:
      return "string";
    case Type::kArray:
      return "array";
    case Type::kObject:
      return "object";
  }
  return "?";
}

void Json::Expect(Type t) const {
  if (type_ != t) Fail("JSON: expected ", TypeName(t), ", got ", TypeName(type_));
}

bool Json::is_int() const {
  if (type_ != Type::kNumber) return false;
  if (is_int_) return true;
  return std::isfinite(num_) && std::floor(num_) == num_ && num_ >= -9.2233720368547758e18 &&
         num_ < 9.2233720368547758e18;
}

bool Json::as_bool() const {
  Expect(Type::kBool);
  return bool_;
}

int64_t Json::as_int() const {
  Expect(Type::kNumber);
  if (is_int_) return int_;
  if (!is_int()) Fail("JSON: expected an integer, got ", Dump());
  return static_cast<int64_t>(num_);
}

double Json::as_double() const {
  Expect(Type::kNumber);
  return is_int_ ? static_cast<double>(int_) : num_;
}

const std::string& Json::as_string() const {
  Expect(Type::kString);
  return str_;
}

const Json::ArrayT& Json::as_array() const {
  Expect(Type::kArray);
  return *arr_;
}

Json::ArrayT& Json::as_array() {
  Expect(Type::kArray);
  return *arr_;
}

const Json::ObjectT& Json::as_object() const {
  Expect(Type::kObject);
  return *obj_;
}

size_t Json::size() const {
  if (type_ == Type::kArray) return arr_->size();
  if (type_ == Type::kObject) return obj_->size();
  Fail("JSON: size() of a ", TypeName(type_));
}

const Json& Json::at(size_t i) const {
  Expect(Type::kArray);
  if (i >= arr_->size()) Fail("JSON: index ", i, " out of range (array of ", arr_->size(), ")");
  return (*arr_)[i];
}

Json& Json::push_back(Json v) {
  Expect(Type::kArray);
  arr_->push_back(std::move(v));
  return arr_->back();
}

const Json* Json::find(std::string_view key) const {
  Expect(Type::kObject);
  for (const auto& [k, v] : *obj_) {
    if (k == key) return &v;
  }
  return nullptr;
}

const Json& Json::at(std::string_view key) const {
  const Json* v = find(key);
  if (!v) Fail("JSON: missing key \"", key, "\"");
  return *v;
}

bool Json::get(std::string_view key, bool def) const {
  const Json* v = find(key);
  if (!v || v->is_null()) return def;
  if (!v->is_bool()) Fail("JSON: key \"", key, "\": expected bool, got ", TypeName(v->type_));
  return v->bool_;
}

int64_t Json::get(std::string_view key, int64_t def) const {
  const Json* v = find(key);
  if (!v || v->is_null()) return def;
  if (!v->is_int()) Fail("JSON: key \"", key, "\": expected an integer, got ", v->Dump());
  return v->as_int();
}

double Json::get(std::string_view key, double def) const {
  const Json* v = find(key);
  if (!v || v->is_null()) return def;
  if (!v->is_number()) Fail("JSON: key \"", key, "\": expected a number, got ", v->Dump());
  return v->as_double();
}

std::string Json::get(std::string_view key, const char* def) const {
  const Json* v = find(key);
  if (!v || v->is_null()) return def;
  if (!v->is_string()) Fail("JSON: key \"", key, "\": expected a string, got ", v->Dump());
  return v->str_;
}

Json& Json::set(std::string key, Json v) {
  Expect(Type::kObject);
  for (auto& [k, old] : *obj_) {
    if (k == key) {
      old = std::move(v);
      return *this;
    }
  }
  obj_->emplace_back(std::move(key), std::move(v));
  return *this;
}

std::string Json::Dump(int indent) const {
  std::string out;
  DumpTo(&out, indent, 0);
  return out;
}

void Json::DumpTo(std::string* out, int indent, int level) const {
  auto newline = [&](int lvl) {
    if (indent < 0) return;
    out->push_back('\n');
    out->append(static_cast<size_t>(indent) * lvl, ' ');
  };
  switch (type_) {
    case Type::kNull:
      out->append("null");
      return;
    case Type::kBool:
      out->append(bool_ ? "true" : "false");
      return;
    case Type::kNumber:
      if (is_int_) {
        out->append(std::to_string(int_));
      } else {
        AppendNumber(out, num_);
      }
      return;
    case Type::kString:
      out->append(JsonQuote(str_));
      return;
    case Type::kArray: {
      out->push_back('[');
      for (size_t i = 0; i < arr_->size(); ++i) {
        if (i) out->push_back(',');
        newline(level + 1);
        (*arr_)[i].DumpTo(out, indent, level + 1);
      }
      if (!arr_->empty()) newline(level);
      out->push_back(']');
      return;
    }
    case Type::kObject: {
      out->push_back('{');
      for (size_t i = 0; i < obj_->size(); ++i) {
        if (i) out->push_back(',');
        newline(level + 1);
        out->append(JsonQuote((*obj_)[i].first));
        out->append(indent < 0 ? ":" : ": ");
        (*obj_)[i].second.DumpTo(out, indent, level + 1);
      }
      if (!obj_->empty()) newline(level);
      out->push_back('}');
      return;
    }
  }
}

bool Json::operator==(const Json& o) const {
  if (type_ != o.type_) return false;
  switch (type_) {
    case Type::kNull:
      return true;
    case Type::kBool:
      return bool_ == o.bool_;
    case Type::kNumber:
      if (is_int_ && o.is_int_) return int_ == o.int_;
      return as_double() == o.as_double();
    case Type::kString:
      return str_ == o.str_;
    case Type::kArray:
      return *arr_ == *o.arr_;
    case Type::kObject:
      return *obj_ == *o.obj_;
  }
  return false;
}

}  // namespace roformer
