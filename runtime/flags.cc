#include "runtime/flags.h"

#include <set>

#include "runtime/error.h"

namespace roformer {

Flags::Flags(int argc, char** argv, const std::vector<std::string>& spec) {
  std::set<std::string> valued, boolean;
  for (const auto& s : spec) {
    if (!s.empty() && s.back() == '!') {
      boolean.insert(s.substr(0, s.size() - 1));
    } else {
      valued.insert(s);
    }
  }
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0 || a == "--") {
      positional_.push_back(a);
      continue;
    }
    std::string name = a.substr(2), value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    if (boolean.count(name)) {
      if (has_value) Fail("flag --", name, " takes no value");
      values_.emplace(name, "true");
    } else if (valued.count(name)) {
      if (!has_value) {
        if (i + 1 >= argc) Fail("flag --", name, " needs a value");
        value = argv[++i];
      }
      values_.emplace(name, value);
    } else {
      std::string known;
      for (const auto& s : spec) known += " --" + (s.back() == '!' ? s.substr(0, s.size() - 1) : s);
      Fail("unknown flag --", name, " (this command accepts:", known.empty() ? " none" : known,
           ")");
    }
  }
}

bool Flags::Has(const std::string& name) const { return values_.count(name) > 0; }

std::string Flags::Get(const std::string& name, const std::string& def) const {
  auto it = values_.find(name);
  if (it == values_.end()) return def;
  // The last occurrence wins for non-repeated flags.
  auto range = values_.equal_range(name);
  std::string v;
  for (auto r = range.first; r != range.second; ++r) v = r->second;
  return v;
}

std::string Flags::Require(const std::string& name) const {
  if (!Has(name)) Fail("missing required flag --", name);
  return Get(name);
}

long long Flags::GetInt(const std::string& name, long long def) const {
  if (!Has(name)) return def;
  std::string v = Get(name);
  try {
    size_t pos = 0;
    long long x = std::stoll(v, &pos);
    if (pos != v.size()) throw std::invalid_argument(v);
    return x;
  } catch (const std::exception&) {
    Fail("flag --", name, ": expected an integer, got '", v, "'");
  }
}

double Flags::GetDouble(const std::string& name, double def) const {
  if (!Has(name)) return def;
  std::string v = Get(name);
  try {
    size_t pos = 0;
    double x = std::stod(v, &pos);
    if (pos != v.size()) throw std::invalid_argument(v);
    return x;
  } catch (const std::exception&) {
    Fail("flag --", name, ": expected a number, got '", v, "'");
  }
}

std::vector<std::string> Flags::GetAll(const std::string& name) const {
  std::vector<std::string> out;
  auto range = values_.equal_range(name);
  for (auto r = range.first; r != range.second; ++r) out.push_back(r->second);
  return out;
}

}  // namespace roformer
