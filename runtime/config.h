// Loading, overriding and validating the run configuration (schema: runtime/config.proto).
#pragma once

#include <string>
#include <vector>

#include "runtime/config.pb.h"

namespace google::protobuf {
class Message;
}

namespace roformer {

// ---- helpers for any text-format message (the pretraining Config, the fine-tuning config) ----
// Parses `path` into `msg`; errors name the file, line, column and field.
void ParseTextProtoFile(const std::string& path, google::protobuf::Message* msg);
// Applies `path.to.field=value` to `msg` (strings need no quotes); errors name the field.
void ApplyOverrideTo(google::protobuf::Message* msg, const std::string& assignment);
// Sets every unset scalar field to its declared default (recursing into sub-messages when
// `recursive`), so text dumps show the effective values.
void FillDefaults(google::protobuf::Message* msg, bool recursive = true);

// Parses a text-format Config file. Syntax errors, unknown fields and type errors throw Error
// naming the file, line, column and field.
config::Config LoadConfigFile(const std::string& path);

// Applies one `path.to.field=value` override (value in text-format syntax; strings need no quotes).
void ApplyOverride(config::Config* cfg, const std::string& assignment);

// Applies a list of overrides in order.
void ApplyOverrides(config::Config* cfg, const std::vector<std::string>& assignments);

// Range and consistency checks that do not need a vocab or a world size. `origin` names the source
// in messages (the config file path, or "defaults").
void ValidateConfig(const config::Config& cfg, const std::string& origin);

// Loads `path` (or the defaults when empty), applies overrides, validates.
config::Config ResolveConfig(const std::string& path, const std::vector<std::string>& overrides);

// Text-format dump (with defaults filled in) for logs and run directories.
std::string ConfigToText(const config::Config& cfg);

}  // namespace roformer
