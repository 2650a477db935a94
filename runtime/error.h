// User-facing errors. Anything a user can cause (bad config, bad data file, bad checkpoint, bad flag,
// bad world size) throws roformer::Error with a message that names the file/line/field; the command
// dispatcher prints it and exits non-zero. CHECK() is reserved for programmer errors.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

namespace roformer {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

// Concatenates its arguments with operator<< into an Error message.
template <typename... Args>
[[noreturn]] void Fail(Args&&... args);

}  // namespace roformer

#include <sstream>

namespace roformer {
template <typename... Args>
[[noreturn]] void Fail(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  throw Error(os.str());
}
}  // namespace roformer
