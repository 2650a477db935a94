// A small command-line flag parser for subcommands: `--name value`, `--name=value`, boolean
// `--name`, repeated `--set a.b=c`, and positional arguments. Unknown flags are errors.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace roformer {

class Flags {
 public:
  // `spec`: flag names this command accepts; a trailing '!' marks a boolean flag ("force!").
  Flags(int argc, char** argv, const std::vector<std::string>& spec);

  bool Has(const std::string& name) const;
  std::string Get(const std::string& name, const std::string& def = "") const;
  // Throws Error when absent.
  std::string Require(const std::string& name) const;
  long long GetInt(const std::string& name, long long def) const;
  double GetDouble(const std::string& name, double def) const;
  bool GetBool(const std::string& name) const { return Has(name); }
  // All values of a repeated flag, in order.
  std::vector<std::string> GetAll(const std::string& name) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::multimap<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

}  // namespace roformer
