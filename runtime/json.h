// A small strict JSON value type (RFC 8259) for config.json, jsonl inputs, safetensors headers and
// metrics. Parse errors throw roformer::Error as "<origin>:<line>:<col>: <what>"; access errors
// (wrong type, missing key) throw Error too, so a malformed user file never crashes the program.
//
//   Json j = Json::Parse(text, "config.json");
//   int h = j.at("hidden_size").as_int();
//   double eps = j.get("layer_norm_eps", 1e-12);   // default when absent
//   Json out = Json::Object();
//   out.set("loss", 1.5).set("ids", Json::Array({1, 2, 3}));
//   std::string s = out.Dump();                    // {"loss":1.5,"ids":[1,2,3]}
//
// Strictness: no comments, trailing commas, NaN/Infinity, leading zeros, unescaped control
// characters, invalid UTF-8, lone surrogates, or duplicate object keys; nesting is capped at
// kMaxDepth. A leading UTF-8 BOM is skipped. Objects keep their insertion order (Dump is
// reproducible). Integers are kept exactly as int64 when the literal has no fraction/exponent and
// fits; other numbers are doubles. Dump writes non-finite doubles as null (JSON has no NaN).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace roformer {

class Json {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  using ArrayT = std::vector<Json>;
  using ObjectT = std::vector<std::pair<std::string, Json>>;
  static constexpr int kMaxDepth = 256;

  Json() = default;  // null
  Json(std::nullptr_t) {}
  Json(bool b) : type_(Type::kBool), bool_(b) {}
  Json(int v) : Json(static_cast<long long>(v)) {}
  Json(long v) : Json(static_cast<long long>(v)) {}
  Json(long long v) : type_(Type::kNumber), is_int_(true), int_(v), num_(static_cast<double>(v)) {}
  Json(unsigned v) : Json(static_cast<long long>(v)) {}
  Json(double v) : type_(Type::kNumber), num_(v) {}
  Json(float v) : Json(static_cast<double>(v)) {}
  Json(const char* s) : type_(Type::kString), str_(s) {}
  Json(std::string s) : type_(Type::kString), str_(std::move(s)) {}
  Json(std::string_view s) : type_(Type::kString), str_(s) {}

  static Json Array(ArrayT items = {});
  static Json Array(std::initializer_list<Json> items) { return Array(ArrayT(items)); }
  static Json Object();

  // Parses one JSON text (whitespace around it allowed, nothing else). `origin` names the source in
  // error messages (a path, or "file:line" for jsonl).
  static Json Parse(std::string_view text, const std::string& origin = "<json>");
  // Reads and parses a whole file; errors name the path.
  static Json ParseFile(const std::string& path);

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::kNull; }
  bool is_bool() const { return type_ == Type::kBool; }
  bool is_number() const { return type_ == Type::kNumber; }
  // A number with an exact int64 value (an integer literal, or an integral double in range).
  bool is_int() const;
  bool is_string() const { return type_ == Type::kString; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_object() const { return type_ == Type::kObject; }
  static const char* TypeName(Type t);

  // Typed access; Error on the wrong type (as_int also on a non-integral or out-of-range number).
  bool as_bool() const;
  int64_t as_int() const;
  double as_double() const;
  const std::string& as_string() const;
  const ArrayT& as_array() const;
  ArrayT& as_array();
  const ObjectT& as_object() const;

  // Arrays and objects: element count. Error for other types.
  size_t size() const;
  // Array element; Error when out of range or not an array.
  const Json& at(size_t i) const;
  Json& push_back(Json v);  // arrays only; returns the new element

  // Objects: lookup. at() throws Error naming the key when absent; find() returns nullptr.
  bool contains(std::string_view key) const { return find(key) != nullptr; }
  const Json* find(std::string_view key) const;
  const Json& at(std::string_view key) const;
  const Json& at(const char* key) const { return at(std::string_view(key)); }
  // Value of `key` converted like as_*(), or `def` when the key is absent or null.
  bool get(std::string_view key, bool def) const;
  int64_t get(std::string_view key, int def) const { return get(key, int64_t{def}); }
  int64_t get(std::string_view key, int64_t def) const;
  double get(std::string_view key, double def) const;
  std::string get(std::string_view key, const char* def) const;
  // Sets (replacing an existing key in place, else appending); returns *this for chaining.
  Json& set(std::string key, Json v);

  // Compact when indent < 0, else pretty-printed with `indent` spaces. Strings are written as
  // UTF-8 with only the mandatory escapes; doubles in shortest round-trip form.
  std::string Dump(int indent = -1) const;

  bool operator==(const Json& o) const;

 private:
  void DumpTo(std::string* out, int indent, int level) const;
  void Expect(Type t) const;

  Type type_ = Type::kNull;
  bool bool_ = false;
  bool is_int_ = false;  // number parsed/constructed as an exact integer
  int64_t int_ = 0;
  double num_ = 0;
  std::string str_;
  std::shared_ptr<ArrayT> arr_;  // copy-on-write is not needed: copies deep-copy (see Json(const&))
  std::shared_ptr<ObjectT> obj_;

 public:
  Json(const Json& o);
  Json& operator=(const Json& o);
  Json(Json&&) noexcept = default;
  Json& operator=(Json&&) noexcept = default;
  ~Json() = default;
};

// Escapes `s` as a JSON string literal including the quotes.
std::string JsonQuote(std::string_view s);

}  // namespace roformer
