// `roformer plot RUN_DIR... --out loss.png`: training curves from each run's metrics.jsonl as a
// multi-panel PNG (one panel per metric, one line per run) drawn by gnuplot (Debian gnuplot-nox).
// We write a gnuplot script and whitespace-separated data files into a temp dir and run gnuplot on
// them, so there is no plotting code or image library in the binary.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "launch/command.h"
#include "runtime/error.h"
#include "runtime/flags.h"
#include "runtime/json.h"

namespace roformer {
namespace {

namespace fs = std::filesystem;

const char kDefaultMetrics[] = "loss,eval_mlm_loss,mlm_acc,lr,tokens_per_s";

// metric -> (step -> value); a resumed run appends records for steps it already logged, the later
// record wins.
using RunMetrics = std::map<std::string, std::map<int64_t, double>>;

// The trainer formats numbers with printf, which writes non-finite values as nan/inf (not JSON).
// Such a line is retried with those bare tokens turned into null so one diverged step does not make
// the whole file unplottable; anything else malformed is an Error naming file:line.
std::string NonFiniteToNull(const std::string& line) {
  std::string out;
  size_t i = 0;
  auto is_word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  bool in_string = false;
  while (i < line.size()) {
    const char c = line[i];
    if (in_string) {
      out.push_back(c);
      if (c == '\\' && i + 1 < line.size()) out.push_back(line[++i]);
      if (c == '"') in_string = false;
      ++i;
      continue;
    }
    if (c == '"') {
      in_string = true;
      out.push_back(c);
      ++i;
      continue;
    }
    bool replaced = false;
    for (const char* tok : {"-nan", "nan", "-inf", "inf", "-NaN", "NaN", "-Infinity", "Infinity"}) {
      const size_t n = std::strlen(tok);
      if (line.compare(i, n, tok) == 0 && (i + n >= line.size() || !is_word(line[i + n])) &&
          (i == 0 || !is_word(line[i - 1]))) {
        out += "null";
        i += n;
        replaced = true;
        break;
      }
    }
    if (!replaced) out.push_back(line[i++]);
  }
  return out;
}

RunMetrics ReadMetrics(const std::string& path) {
  std::ifstream in(path);
  if (!in) Fail(path, ": cannot open (is this a run directory written by `roformer pretrain`?)");
  RunMetrics m;
  std::string line;
  int64_t line_no = 0, records = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const std::string origin = path + ":" + std::to_string(line_no);
    Json j;
    try {
      j = Json::Parse(line, origin);
    } catch (const Error&) {
      const std::string fixed = NonFiniteToNull(line);
      if (fixed == line) throw;
      j = Json::Parse(fixed, origin);
    }
    if (!j.is_object()) Fail(origin, ": expected a JSON object per line");
    const Json* step = j.find("step");
    if (step == nullptr || !step->is_int()) Fail(origin, ": missing integer \"step\"");
    for (const auto& [key, v] : j.as_object()) {
      if (key == "step" || !v.is_number()) continue;
      const double x = v.as_double();
      if (std::isfinite(x)) m[key][step->as_int()] = x;
    }
    ++records;
  }
  if (in.bad()) Fail(path, ": read error");
  if (records == 0) Fail(path, ": no metric records (empty file)");
  return m;
}

std::vector<std::string> SplitComma(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// gnuplot single-quoted string: only ' needs escaping (doubled).
std::string GpQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "''";
    else if (c == '\n' || c == '\r')
      out += ' ';
    else
      out += c;
  }
  return out + "'";
}

std::string FindInPath(const std::string& prog) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return "";
  std::stringstream ss(path);
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    // An empty PATH entry means the current directory.
    const std::string p = ((dir.empty() ? fs::path(".") : fs::path(dir)) / prog).string();
    if (::access(p.c_str(), X_OK) == 0 && !fs::is_directory(p)) return p;
  }
  return "";
}

// Runs `exe script` with stdout/stderr to `log`; returns the exit status (or -1 on spawn failure).
int RunProgram(const std::string& exe, const std::string& script, const std::string& log) {
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    FILE* f = std::fopen(log.c_str(), "w");
    if (f != nullptr) {
      ::dup2(::fileno(f), 1);
      ::dup2(::fileno(f), 2);
    }
    ::execl(exe.c_str(), exe.c_str(), script.c_str(), static_cast<char*>(nullptr));
    std::_Exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status)
                           : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

std::string RunLabel(const std::string& dir, const std::vector<std::string>& all) {
  auto base = [](const std::string& d) {
    std::string s = fs::path(d).lexically_normal().string();
    while (s.size() > 1 && s.back() == '/') s.pop_back();
    const std::string b = fs::path(s).filename().string();
    return b.empty() ? s : b;
  };
  const std::string b = base(dir);
  int same = 0;
  for (const auto& d : all) same += base(d) == b;
  return same > 1 ? dir : b;  // ambiguous basenames: show the path as given
}

int RunPlot(int argc, char** argv) {
  Flags flags(argc, argv, {"out", "metrics", "title", "keep!"});
  const std::vector<std::string>& runs = flags.positional();
  if (runs.empty()) Fail("roformer plot: give at least one RUN_DIR (see `roformer help plot`)");
  const std::string out = flags.Require("out");
  const std::vector<std::string> metrics = SplitComma(flags.Get("metrics", kDefaultMetrics));
  if (metrics.empty()) Fail("--metrics: empty list");
  if (std::set<std::string>(metrics.begin(), metrics.end()).size() != metrics.size()) {
    Fail("--metrics: duplicate metric in '", flags.Get("metrics"), "'");
  }

  std::vector<RunMetrics> data;
  for (const auto& r : runs) {
    if (!fs::is_directory(r)) Fail(r, ": not a directory");
    data.push_back(ReadMetrics((fs::path(r) / "metrics.jsonl").string()));
  }

  const std::string gnuplot = FindInPath("gnuplot");
  if (gnuplot.empty()) {
    Fail(
        "gnuplot not found in PATH; `roformer plot` needs it (Debian/Ubuntu: apt-get install "
        "gnuplot-nox)");
  }

  char tmpl[] = "/tmp/roformer-plot-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr)
    Fail("cannot create a temp dir under /tmp: ", std::strerror(errno));
  const fs::path tmp(tmpl);

  // One data file per (run, metric) with finite points; panels for metrics no run has are dropped.
  struct Series {
    std::string file, label;
  };
  std::vector<std::pair<std::string, std::vector<Series>>> panels;
  for (const auto& metric : metrics) {
    std::vector<Series> series;
    for (size_t r = 0; r < runs.size(); ++r) {
      auto it = data[r].find(metric);
      if (it == data[r].end() || it->second.empty()) continue;
      const std::string file =
          (tmp / ("run" + std::to_string(r) + "_" + std::to_string(panels.size()) + ".dat"))
              .string();
      std::ofstream f(file);
      f.precision(10);
      for (const auto& [step, v] : it->second) f << step << ' ' << v << '\n';
      if (!f) Fail(file, ": write failed");
      series.push_back({file, RunLabel(runs[r], runs)});
    }
    if (series.empty()) {
      std::cerr << "warning: no run has metric '" << metric << "'; panel skipped\n";
      continue;
    }
    panels.emplace_back(metric, std::move(series));
  }
  if (panels.empty()) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    Fail("none of the metrics (", flags.Get("metrics", kDefaultMetrics), ") occur in ",
         runs.size() == 1 ? runs[0] + "/metrics.jsonl" : "the runs' metrics.jsonl files");
  }

  const int np = static_cast<int>(panels.size());
  const int cols = np == 1 ? 1 : 2;
  const int rows = (np + cols - 1) / cols;
  const std::string png = (tmp / "plot.png").string();
  const std::string script = (tmp / "plot.gp").string();
  {
    std::ofstream g(script);
    const std::string size = std::to_string(640 * cols) + "," + std::to_string(420 * rows);
    g << "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
      << "  set terminal pngcairo noenhanced size " << size << " font 'sans,10'\n"
      << "} else {\n"
      << "  set terminal png noenhanced size " << size << "\n"
      << "}\n"
      << "set output " << GpQuote(png) << "\n"
      << "set grid\nset key top right\nset xlabel 'step'\nset format y '%g'\n"
      << "set offsets graph 0, graph 0, graph 0.05, graph 0.05\n"
      << "set multiplot layout " << rows << "," << cols;
    if (flags.Has("title")) g << " title " << GpQuote(flags.Get("title"));
    g << "\n";
    for (const auto& [metric, series] : panels) {
      g << "set title " << GpQuote(metric) << "\nplot ";
      for (size_t i = 0; i < series.size(); ++i) {
        g << (i ? ", \\\n     " : "") << GpQuote(series[i].file) << " using 1:2 with lines lw 1.5 "
          << "title " << GpQuote(series[i].label);
      }
      g << "\n";
    }
    g << "unset multiplot\nset output\n";
    if (!g) Fail(script, ": write failed");
  }
  const std::string log = (tmp / "gnuplot.log").string();
  const int rc = RunProgram(gnuplot, script, log);
  std::error_code ec;
  if (rc != 0 || !fs::exists(png) || fs::file_size(png, ec) == 0) {
    std::ifstream lf(log);
    std::stringstream msg;
    msg << lf.rdbuf();
    Fail("gnuplot (", gnuplot, ") failed with status ", rc, "; script and data kept in ",
         tmp.string(), "; its output:\n", msg.str());
  }
  const fs::path outp(out);
  if (outp.has_parent_path()) fs::create_directories(outp.parent_path(), ec);
  fs::copy_file(png, outp, fs::copy_options::overwrite_existing, ec);
  if (ec) Fail(out, ": cannot write the PNG: ", ec.message());
  if (flags.GetBool("keep")) {
    std::cout << "gnuplot script and data kept in " << tmp.string() << "\n";
  } else {
    fs::remove_all(tmp, ec);
  }
  std::cout << "wrote " << out << " (" << np << " panel" << (np == 1 ? "" : "s") << ", "
            << runs.size() << " run" << (runs.size() == 1 ? "" : "s") << ")\n";
  return 0;
}

RegisterCommand reg(
    "plot", "plot training curves of run dirs (metrics.jsonl) to a PNG via gnuplot",
    "roformer plot RUN_DIR... --out FILE.png [--metrics "
    "loss,eval_mlm_loss,mlm_acc,lr,tokens_per_s]\n"
    "              [--title TEXT] [--keep]\n"
    "Reads RUN_DIR/metrics.jsonl of each run and draws one panel per metric (x = step), one line\n"
    "per run labelled with the run directory's name. Any numeric key of the records can be a\n"
    "metric (loss, mlm_loss, mlm_acc, sop_loss, lr, grad_norm, tokens_per_s, mfu, eval_mlm_loss,\n"
    "eval_mlm_acc, ...); metrics no run has are skipped with a warning. When a resumed run logged\n"
    "a step twice the later record wins. Needs gnuplot in PATH (Debian: gnuplot-nox); uses the\n"
    "pngcairo terminal when available, else png. --keep leaves the generated gnuplot script and\n"
    "data files in the temp dir it prints.",
    &RunPlot);

}  // namespace
}  // namespace roformer
