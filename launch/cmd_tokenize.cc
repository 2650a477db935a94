// `roformer tokenize --vocab FILE [--no-lower-case]`: stdin lines -> one JSON object per line.
#include <cstdio>
#include <iostream>
#include <string>

#include "data/tokenizer/tokenizer.h"
#include "launch/command.h"
#include "runtime/error.h"
#include "runtime/flags.h"

namespace roformer {
namespace {

// JSON string escaping: '"' '\\' and control characters (< 0x20, 0x7F) escaped; U+2028/U+2029
// escaped too, so that no consumer that splits on Unicode line separators can break a line; all
// other non-ASCII is written as raw UTF-8.
void AppendJsonString(std::string& out, std::string_view s) {
  static const char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20 || c == 0x7F) {
      out += "\\u00";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    } else if (c == 0xE2 && i + 2 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0x80 &&
               (static_cast<unsigned char>(s[i + 2]) == 0xA8 ||
                static_cast<unsigned char>(s[i + 2]) == 0xA9)) {
      out += static_cast<unsigned char>(s[i + 2]) == 0xA8 ? "\\u2028" : "\\u2029";
      i += 2;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('"');
}

void AppendLine(std::string& out, const std::vector<Token>& toks) {
  out += "{\"tokens\":[";
  for (size_t i = 0; i < toks.size(); ++i) {
    if (i) out.push_back(',');
    AppendJsonString(out, toks[i].text);
  }
  out += "],\"ids\":[";
  for (size_t i = 0; i < toks.size(); ++i) {
    if (i) out.push_back(',');
    out += std::to_string(toks[i].id);
  }
  out += "],\"offsets\":[";
  for (size_t i = 0; i < toks.size(); ++i) {
    if (i) out.push_back(',');
    out.push_back('[');
    out += std::to_string(toks[i].begin);
    out.push_back(',');
    out += std::to_string(toks[i].end);
    out.push_back(']');
  }
  out += "]}\n";
}

int RunTokenize(int argc, char** argv) {
  Flags flags(argc, argv, {"vocab", "no-lower-case!"});
  if (!flags.positional().empty())
    Fail("tokenize: unexpected argument '", flags.positional()[0], "'");
  Tokenizer tok(Vocab::Load(flags.Require("vocab")), !flags.GetBool("no-lower-case"));

  // Lines end at '\n' only (U+2028 and '\r' are ordinary text); a final line without '\n' counts
  // unless it is empty.
  std::string pending, out;
  std::vector<char> buf(1 << 16);
  int64_t invalid_total = 0;
  auto emit = [&](std::string_view line) {
    int64_t invalid = 0;
    AppendLine(out, tok.Tokenize(line, &invalid));
    invalid_total += invalid;
    if (out.size() >= (1 << 16)) {
      std::fwrite(out.data(), 1, out.size(), stdout);
      out.clear();
    }
  };
  while (true) {
    size_t n = std::fread(buf.data(), 1, buf.size(), stdin);
    if (n == 0) break;
    size_t start = 0;
    for (size_t i = 0; i < n; ++i) {
      if (buf[i] != '\n') continue;
      if (pending.empty()) {
        emit(std::string_view(buf.data() + start, i - start));
      } else {
        pending.append(buf.data() + start, i - start);
        emit(pending);
        pending.clear();
      }
      start = i + 1;
    }
    pending.append(buf.data() + start, n - start);
  }
  if (std::ferror(stdin)) Fail("tokenize: error reading stdin");
  if (!pending.empty()) emit(pending);
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
  if (invalid_total > 0) {
    std::cerr << "warning: dropped " << invalid_total << " invalid UTF-8 byte(s)\n";
  }
  return 0;
}

RegisterCommand reg(
    "tokenize", "tokenize stdin lines with a BERT WordPiece vocab (JSON lines out)",
    "roformer tokenize --vocab vocab.txt [--no-lower-case]\n"
    "Reads UTF-8 text from stdin; every '\\n'-terminated line (only '\\n' ends a\n"
    "line) gives one JSON line {\"tokens\":[...],\"ids\":[...],\"offsets\":[[b,e],...]}\n"
    "with BERT (HF BertTokenizer) tokenization, no [CLS]/[SEP]. Offsets are\n"
    "code-point indices [b, e) into the line; invalid UTF-8 bytes are dropped (not\n"
    "counted in offsets) and reported on stderr.",
    &RunTokenize);

}  // namespace
}  // namespace roformer
