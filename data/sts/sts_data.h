// Reader of the STS evaluation files (shared/data/sts/*.tsv, the CSTS layout used by
// bojone/BERT-whitening chn/eval.py): one pair per line, `text1<TAB>text2<TAB>label`, no header.
// Labels are integers 0-5 (STS-B) or 0/1 (LCQMC, PAWS-X); decimals such as "3.8" (English STS-B)
// are accepted too. Stricter than the reference loader, which silently skips lines without exactly
// three fields: here a wrong field count, an empty text, or a label that is not a finite number in
// [0, 5] is an Error "<file>:<line>: ...". A UTF-8 BOM, CRLF line ends and blank lines are
// accepted.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace roformer::sts {

struct StsPair {
  std::string text1;
  std::string text2;
  double label = 0;
};

// Parses file contents; `origin` names the source in errors.
std::vector<StsPair> ParseStsTsv(std::string_view text, const std::string& origin);
// Reads and parses a file; Error naming the path when unreadable or empty.
std::vector<StsPair> ReadStsFile(const std::string& path);

}  // namespace roformer::sts
