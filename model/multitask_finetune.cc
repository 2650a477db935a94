#include "model/multitask_finetune.h"

#include <glog/logging.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <span>

#include "data/clue/clue_features.h"
#include "data/clue/clue_submission.h"
#include "data/clue/clue_tasks.h"
#include "data/clue/hungarian.h"
#include "data/tokenizer/tokenizer.h"
#include "kernels/cpu/dropout.h"
#include "model/finetune.h"
#include "model/finetune_batch.h"
#include "model/heads/classifier_head.h"
#include "model/heads/head_params.h"
#include "model/heads/multiple_choice_head.h"
#include "model/hf_interop.h"
#include "model/loss_weighting.h"
#include "model/lr_schedule.h"
#include "model/multitask.h"
#include "model/optimizer.h"
#include "model/roformer_model.h"
#include "runtime/checkpoint.h"
#include "runtime/comm_task.h"
#include "runtime/error.h"
#include "runtime/grad_reducer.h"
#include "runtime/json.h"

namespace roformer {
namespace {

namespace fs = std::filesystem;

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

bool IsPretrainOnly(const ParamInfo& info) {
  return info.name.rfind("cls.", 0) == 0 || info.name.rfind("sop.", 0) == 0;
}

struct Task {
  const ClueTaskInfo* info = nullptr;
  std::string dir, split;
  ClueDataset train, dev, test;
  bool has_dev = false, has_test = false;
  std::vector<Feature> train_f, dev_f, test_f;
  // One of the two: classification (C labels) or multiple choice (C3, ChID: per-choice scores).
  std::unique_ptr<ClassifierHead> cls;
  std::unique_ptr<MultipleChoiceHead> mc;
  int classes = 0;  // C, or the most choices of a training example (log K for init / absent)
  std::vector<float> enc_grad, head_grad;  // this step's gradient of the task alone
  // Since the last log line / this epoch.
  double loss_sum = 0;
  int64_t count = 0, correct = 0;
};

struct Accum {
  double loss = 0;
  int64_t count = 0, correct = 0;
};

class MultitaskSession {
 public:
  explicit MultitaskSession(const MultitaskFinetuneArgs& args) : args_(args) {}
  MultitaskFinetuneSummary Run();

 private:
  void BuildModel();
  void ReadData();
  // Forward (and backward when training) of task t on its features idx[begin, end).
  // scores (optional): row idx[i] * width receives feature idx[i]'s logits / choice scores.
  Accum Pass(Task& t, const std::vector<Feature>& feats, const std::vector<int64_t>& idx,
             size_t begin, size_t end, bool train, float grad_scale, uint32_t micro, float* scores,
             int width);
  // Scores of every feature ([n, width], width = C or the most choices), in eval_batch chunks;
  // with `split`, chunk k runs on rank k mod world and the rows are all-reduced (a row has one
  // non-zero contributor, so the sum is exact and every chunk is the single-process one).
  // loss (optional): {loss sum, count}, all-reduced with `split`.
  std::vector<float> Scores(Task& t, const std::vector<Feature>& feats, bool split, int* width,
                            double* loss);
  // Predicted label / choice per example (ChID CLUE format: Hungarian decoding of each passage's
  // blanks when chid_hungarian, as `roformer finetune`).
  std::vector<int> Decode(const Task& t, const ClueDataset& ds, const std::vector<Feature>& feats,
                          const std::vector<float>& scores, int width) const;
  // Dev accuracy (percent) of task t; eval_batch chunks are dealt to the DP ranks and the integer
  // counts all-reduced, so every rank gets the same value.
  double DevAccuracy(Task& t, double* dev_loss);
  SaveOptions BaseSaveOptions() const;
  void SaveBest(int epoch, double metric);
  void LoadBest();
  // Resumable checkpoint of step cur_step_ (encoder + heads + Adam state + session state).
  void SaveResumable();
  // Restores the newest resumable checkpoint under <out>/checkpoints; false when there is none.
  bool TryResume(int64_t steps_per_epoch, LossWeighting* weighting);
  Json SessionState() const;
  void RestoreSessionState(const Json& j, const std::string& origin);
  // Keeps the metrics records of steps <= `step` (a crashed run may have logged past its last
  // checkpoint), then reopens the file for appending.
  void TruncateMetrics(int64_t step);
  void PredictTest(MultitaskFinetuneSummary* sum);
  void Log(const Json& j) {
    if (rank_ != 0) return;
    metrics_ << j.Dump() << "\n";
    metrics_.flush();
  }

  const MultitaskFinetuneArgs& args_;
  config::FinetuneConfig cfg_;
  config::ModelConfig mc_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<RoFormerModel> model_;
  ParamStore head_store_;
  std::vector<Task> tasks_;
  std::vector<char> shared_;  // encoder store index -> trainable encoder tensor
  std::vector<std::pair<int64_t, int64_t>> enc_ranges_;
  std::vector<float> d_seq_;
  Batch batch_;
  std::vector<int32_t> labels_, offsets_;
  std::ofstream metrics_;
  uint64_t cur_step_ = 0;
  // Data parallelism (size 1 without mpirun).
  std::unique_ptr<Communicator> local_dp_;
  Communicator* dp_ = nullptr;
  int rank_ = 0, world_ = 1;
  std::unique_ptr<GradReducer> enc_reducer_, head_reducer_;
  std::string ckpt_root_;
  LossWeighting* weighting_ = nullptr;
  // Training state carried by resumable checkpoints.
  std::vector<double> losses_, norms_, w_;
  std::vector<Accum> window_;
  int64_t skipped_ = 0;
  double best_ = -1;
  int best_epoch_ = 0;
  std::vector<double> best_dev_;
  bool have_best_ = false;
};

void MultitaskSession::BuildModel() {
  if (args_.init.empty()) Fail("multitask: give --init CKPT (a pretrained checkpoint)");
  LoadedCheckpoint ck = LoadCheckpoint(args_.init, /*with_optimizer=*/false);
  if (!ck.manifest.has_model()) Fail(ck.dir, ": checkpoint manifest has no model config");
  mc_ = ck.manifest.model();
  ApplyRunTimeModelOptions(cfg_, &mc_);
  std::string vocab_path = args_.vocab;
  if (vocab_path.empty()) {
    vocab_path = ck.manifest.vocab().path();
    if (vocab_path.empty() || !fs::exists(vocab_path))
      Fail("multitask: ", ck.dir, " records no usable vocab path ('", vocab_path,
           "'); give --vocab FILE");
  }
  Vocab vocab = Vocab::Load(vocab_path);
  if (mc_.vocab_size() != vocab.size())
    Fail("multitask: ", args_.init, " was trained with vocab_size ", mc_.vocab_size(), " but ",
         vocab_path, " has ", vocab.size(), " entries");
  const std::string& hash = ck.manifest.vocab().tokens_hash();
  if (!hash.empty() && VocabTokensHash(vocab.tokens()) != hash)
    Fail("multitask: ", vocab_path, " is not the vocab ", args_.init, " was trained with");
  if (cfg_.hidden_dropout() != -1) mc_.set_hidden_dropout_prob(cfg_.hidden_dropout());
  if (cfg_.attention_dropout() != -1)
    mc_.set_attention_probs_dropout_prob(cfg_.attention_dropout());
  ConfigForModel(mc_, ck.dir);
  if (cfg_.max_len() > mc_.max_position_embeddings())
    cfg_.set_max_len(mc_.max_position_embeddings());
  model_ = std::make_unique<RoFormerModel>(mc_, TpRegion(), /*with_optimizer_state=*/true);
  RestoreInto(ck, &model_->store(), /*with_optimizer=*/false, /*allow_unused=*/true);
  tok_ = std::make_unique<Tokenizer>(std::move(vocab), cfg_.do_lower_case());
  const auto& infos = model_->store().infos();
  shared_.assign(infos.size(), 0);
  for (size_t i = 0; i < infos.size(); ++i) {
    const ParamInfo& info = infos[i];
    if (IsPretrainOnly(info) || info.numel == 0) continue;
    shared_[i] = 1;
    if (!enc_ranges_.empty() && enc_ranges_.back().second == info.offset) {
      enc_ranges_.back().second += info.numel;
    } else {
      enc_ranges_.push_back({info.offset, info.offset + info.numel});
    }
  }
}

void MultitaskSession::ReadData() {
  const size_t n = args_.tasks.size();
  tasks_.resize(n);
  FeatureOptions fo;
  fo.max_len = cfg_.max_len();
  fo.pair_segment_b = cfg_.pair_segment_b();
  if (cfg_.pair_segment_b() >= mc_.type_vocab_size())
    Fail("multitask: pair_segment_b ", cfg_.pair_segment_b(), " needs type_vocab_size > it");
  const int H = model_->dims().hidden;
  for (size_t i = 0; i < n; ++i) {
    Task& t = tasks_[i];
    t.info = &GetClueTask(args_.tasks[i]);
    for (size_t j = 0; j < i; ++j)
      if (tasks_[j].info == t.info) Fail("multitask: task ", t.info->name, " given twice");
    if (t.info->type == ClueTaskType::kSpan)
      Fail("multitask: ", t.info->name, " is a ", ClueTaskTypeName(t.info->type),
           " task; multi-task fine-tuning supports classification and multiple-choice tasks only "
           "(use `roformer finetune` for it)");
    t.dir = args_.data_dirs[i];
    t.split = args_.train_splits.empty() ? cfg_.train_split() : args_.train_splits[i];
    if (ResolveSplitFiles(*t.info, t.dir, t.split).empty())
      Fail("multitask: no ", t.info->name, " split '", t.split, "' in ", t.dir,
           "; available: ", DescribeAvailableSplits(*t.info, t.dir));
    t.train = ReadClueSplit(*t.info, t.dir, t.split);
    if (cfg_.max_train_examples() > 0 &&
        static_cast<int64_t>(t.train.examples.size()) > cfg_.max_train_examples())
      t.train.examples.resize(cfg_.max_train_examples());
    for (const Example& ex : t.train.examples)
      if (ex.label < 0)
        Fail(t.dir, ": ", t.info->name, " training example ", ex.id, " has no label");
    if (t.train.examples.empty()) Fail("multitask: ", t.info->name, " training split is empty");
    t.has_dev = !ResolveSplitFiles(*t.info, t.dir, cfg_.dev_split()).empty();
    if (t.has_dev) {
      t.dev = ReadClueSplit(*t.info, t.dir, cfg_.dev_split());
      if (cfg_.max_eval_examples() > 0 &&
          static_cast<int64_t>(t.dev.examples.size()) > cfg_.max_eval_examples())
        t.dev.examples.resize(cfg_.max_eval_examples());
    }
    // An explicitly named test split must exist; the default "test" may be absent (no
    // submission for that task) and "" turns prediction off.
    t.has_test =
        !cfg_.test_split().empty() && !ResolveSplitFiles(*t.info, t.dir, cfg_.test_split()).empty();
    if (!t.has_test && !cfg_.test_split().empty() && cfg_.test_split() != "test")
      Fail("multitask: test_split '", cfg_.test_split(), "': no such ", t.info->name, " split in ",
           t.dir, "; available: ", DescribeAvailableSplits(*t.info, t.dir));
    if (t.has_test) {
      t.test = ReadClueSplit(*t.info, t.dir, cfg_.test_split());
      if (cfg_.max_eval_examples() > 0 &&
          static_cast<int64_t>(t.test.examples.size()) > cfg_.max_eval_examples()) {
        LOG(WARNING) << "multitask: max_eval_examples " << cfg_.max_eval_examples()
                     << " also cuts the " << t.info->name
                     << " test split: its submission file is incomplete for CLUE";
        t.test.examples.resize(cfg_.max_eval_examples());
      }
    }
    t.train_f = BuildFeatures(*t.info, t.train.examples, *tok_, fo);
    if (t.has_dev) t.dev_f = BuildFeatures(*t.info, t.dev.examples, *tok_, fo);
    if (t.has_test) t.test_f = BuildFeatures(*t.info, t.test.examples, *tok_, fo);
    if (t.info->type == ClueTaskType::kMultipleChoice) {
      t.mc = std::make_unique<MultipleChoiceHead>(H, "heads." + t.info->name);
      t.mc->Declare(&head_store_);
      for (const Feature& f : t.train_f)
        t.classes = std::max(t.classes, static_cast<int>(f.ids.size()));
    } else {
      t.cls = std::make_unique<ClassifierHead>(H, static_cast<int>(t.info->labels.size()),
                                               "heads." + t.info->name);
      t.cls->Declare(&head_store_);
      t.classes = static_cast<int>(t.info->labels.size());
    }
    std::string files;
    for (const std::string& p : t.train.paths)
      files += (files.empty() ? "" : " + ") + fs::path(p).filename().string();
    LOG(INFO) << "multitask: " << t.info->name << " train " << files << " " << t.train_f.size()
              << " examples, dev " << t.dev_f.size() << ", test " << t.test_f.size() << ", "
              << t.classes << (t.mc ? " choices at most" : " labels");
  }
  head_store_.Allocate(/*with_optimizer=*/true);
  InitHeadParams(&head_store_, cfg_.seed(), cfg_.head_init_std());
  for (Task& t : tasks_) {
    t.enc_grad.resize(model_->store().grads().size());
    t.head_grad.resize(head_store_.grads().size());
  }
}

Accum MultitaskSession::Pass(Task& t, const std::vector<Feature>& feats,
                             const std::vector<int64_t>& idx, size_t begin, size_t end, bool train,
                             float grad_scale, uint32_t micro, float* scores, int width) {
  PackFeatureRows(feats, idx, begin, end, tok_->vocab().pad_id(), &batch_, &offsets_);
  const int rows = batch_.batch, L = batch_.seq_len;
  labels_.clear();
  for (size_t i = begin; i < end; ++i) labels_.push_back(feats[idx[i]].label);
  const EncodedMicroBatch enc =
      EncodeMicroBatch(model_.get(), cfg_, batch_, train, cur_step_, micro, &d_seq_);
  const float* seq = enc.seq;
  float* dseq = enc.d_seq;
  const DropoutSpec& hd = enc.head;
  Accum acc;
  const bool labelled = std::all_of(labels_.begin(), labels_.end(), [](int l) { return l >= 0; });
  if (t.cls) {
    t.cls->Forward(head_store_, seq, rows, L, hd);
    if (train || labelled) {
      const CrossEntropyStats st = t.cls->Backward(&head_store_, labels_.data(), grad_scale, dseq);
      acc = {st.loss_sum, st.count, st.correct};
    }
    if (scores) {
      const int C = t.cls->num_labels();
      for (size_t i = begin; i < end; ++i) {
        const float* row = t.cls->logits().data() + (i - begin) * C;
        std::copy(row, row + C, scores + idx[i] * width);
      }
    }
  } else {
    t.mc->Forward(head_store_, seq, L, offsets_, hd);
    if (train || labelled) {
      const CrossEntropyStats st = t.mc->Backward(&head_store_, labels_.data(), grad_scale, dseq);
      acc = {st.loss_sum, st.count, st.correct};
    }
    if (scores) {
      const int K = t.mc->max_choices();
      for (size_t i = begin; i < end; ++i) {
        const size_t q = i - begin;
        const float* row = t.mc->scores().data() + q * K;
        std::copy(row, row + (offsets_[q + 1] - offsets_[q]), scores + idx[i] * width);
      }
    }
  }
  if (train) model_->EncoderBackward(dseq, 1.0f);
  return acc;
}

std::vector<float> MultitaskSession::Scores(Task& t, const std::vector<Feature>& feats, bool split,
                                            int* width, double* loss) {
  int w = t.cls ? t.cls->num_labels() : 1;
  if (t.mc)
    for (const Feature& f : feats) w = std::max(w, static_cast<int>(f.ids.size()));
  *width = w;
  std::vector<float> out(feats.size() * static_cast<size_t>(w), 0.0f);
  std::vector<int64_t> idx(feats.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int64_t>(i);
  double st[2] = {0, 0};
  const size_t eb = static_cast<size_t>(cfg_.eval_batch());
  size_t chunk = 0;
  for (size_t b = 0; b < idx.size(); b += eb, ++chunk) {
    if (split && static_cast<int>(chunk % world_) != rank_) continue;
    const Accum a =
        Pass(t, feats, idx, b, std::min(idx.size(), b + eb), false, 1.0f, 0, out.data(), w);
    st[0] += a.loss;
    st[1] += static_cast<double>(a.count);
  }
  if (split && world_ > 1) {
    dp_->AllReduce(std::span<float>(out));
    dp_->AllReduce(std::span<double>(st, 2));
  }
  if (loss) loss[0] = st[0], loss[1] = st[1];
  return out;
}

std::vector<int> MultitaskSession::Decode(const Task& t, const ClueDataset& ds,
                                          const std::vector<Feature>& feats,
                                          const std::vector<float>& scores, int width) const {
  // Classification and multiple choice have one feature per example.
  const size_t n = ds.examples.size();
  if (feats.size() != n) Fail("multitask: ", t.info->name, ": features do not match examples");
  std::vector<int> labels(n);
  auto choices = [&](size_t i) { return t.cls ? width : static_cast<int>(feats[i].ids.size()); };
  for (size_t i = 0; i < n; ++i) {
    const float* row = scores.data() + i * width;
    labels[i] = static_cast<int>(std::max_element(row, row + choices(i)) - row);
  }
  if (t.info->format == ClueFormat::kChid && cfg_.chid_hungarian()) {
    // CLUE format: the blanks of one JSON line share the candidates and take distinct idioms.
    std::map<int64_t, std::vector<size_t>> groups;
    for (size_t i = 0; i < n; ++i)
      if (ds.examples[i].blank_marker != "#idiom#") groups[ds.examples[i].line].push_back(i);
    for (const auto& [line, members] : groups) {
      if (members.size() < 2) continue;
      const int K = choices(members[0]);
      bool same = true;
      for (size_t m : members) same &= choices(m) == K;
      if (!same) continue;
      std::vector<double> score(members.size() * K);
      for (size_t r = 0; r < members.size(); ++r)
        for (int c = 0; c < K; ++c) score[r * K + c] = scores[members[r] * width + c];
      const std::vector<int> a = MaxScoreAssignment(score, static_cast<int>(members.size()), K);
      for (size_t r = 0; r < members.size(); ++r)
        if (a[r] >= 0) labels[members[r]] = a[r];
    }
  }
  return labels;
}

double MultitaskSession::DevAccuracy(Task& t, double* dev_loss) {
  int width = 0;
  double loss[2];
  const std::vector<float> sc = Scores(t, t.dev_f, /*split=*/true, &width, loss);
  const std::vector<int> pred = Decode(t, t.dev, t.dev_f, sc, width);
  int64_t ok = 0, labelled = 0;
  for (size_t i = 0; i < pred.size(); ++i) {
    if (t.dev.examples[i].label < 0) continue;
    ++labelled;
    ok += pred[i] == t.dev.examples[i].label;
  }
  *dev_loss = loss[1] > 0 ? loss[0] / loss[1] : 0;
  return labelled > 0 ? 100.0 * static_cast<double>(ok) / static_cast<double>(labelled) : 0;
}

SaveOptions MultitaskSession::BaseSaveOptions() const {
  SaveOptions o;
  o.rank = rank_;
  o.world = world_;
  if (world_ > 1) {
    Communicator* dp = dp_;
    o.all_ok = [dp](bool ok) {
      int32_t flag = ok ? 1 : 0;
      dp->AllReduce(std::span<int32_t>(&flag, 1), ReduceOp::kMin);
      return flag != 0;
    };
  }
  o.vocab.path = tok_->vocab().path();
  o.vocab.size = tok_->vocab().size();
  o.vocab.padded_size = model_->dims().vocab_padded;
  o.vocab.tokens_hash = VocabTokensHash(tok_->vocab().tokens());
  o.metadata["source"] = "roformer multitask";
  std::string names;
  for (const Task& t : tasks_) names += (names.empty() ? "" : ",") + t.info->name;
  o.metadata["tasks"] = names;
  return o;
}

void MultitaskSession::SaveBest(int epoch, double metric) {
  if (!cfg_.save_best()) return;
  const config::Config cfg = ConfigForModel(mc_, "multitask");
  TrainState st;
  st.step = static_cast<int64_t>(cur_step_);
  st.seed = cfg_.seed();
  SaveOptions o = BaseSaveOptions();
  o.with_optimizer = false;
  o.keep = 1;
  o.metadata["epoch"] = std::to_string(epoch);
  o.metadata["mean_dev_metric"] = std::to_string(metric);
  SaveCheckpoint(args_.out_dir + "/best/encoder", model_->store(), cfg, st, o);
  std::string heads;
  for (const Task& t : tasks_)
    heads +=
        (heads.empty() ? "" : ",") + t.info->name + ":" + (t.mc ? "multiple_choice" : "classifier");
  o.metadata["heads"] = heads;
  SaveCheckpoint(args_.out_dir + "/best/head", head_store_, cfg, st, o);
  have_best_ = true;
}

void MultitaskSession::LoadBest() {
  if (!have_best_) return;
  RestoreInto(LoadCheckpoint(args_.out_dir + "/best/encoder", false), &model_->store(), false);
  RestoreInto(LoadCheckpoint(args_.out_dir + "/best/head", false), &head_store_, false);
}

namespace {
Json DoubleArray(const std::vector<double>& v) {
  Json a = Json::Array();
  for (double x : v) a.push_back(x);
  return a;
}
std::vector<double> ReadDoubles(const Json& j, const std::string& key, size_t n,
                                const std::string& origin) {
  const Json& a = j.at(key);
  if (a.size() != n)
    Fail(origin, ": multitask_session.", key, " has ", a.size(), " entries, want ", n);
  std::vector<double> v;
  for (size_t i = 0; i < n; ++i) v.push_back(a.at(i).as_double());
  return v;
}
}  // namespace

Json MultitaskSession::SessionState() const {
  // Doubles round-trip exactly through the JSON text (shortest representation).
  std::vector<double> el, ec, eo, wl, wc, wo;
  Json names = Json::Array();
  for (size_t i = 0; i < tasks_.size(); ++i) {
    names.push_back(tasks_[i].info->name);
    el.push_back(tasks_[i].loss_sum);
    ec.push_back(static_cast<double>(tasks_[i].count));
    eo.push_back(static_cast<double>(tasks_[i].correct));
    wl.push_back(window_[i].loss);
    wc.push_back(static_cast<double>(window_[i].count));
    wo.push_back(static_cast<double>(window_[i].correct));
  }
  Json j = Json::Object();
  j.set("tasks", std::move(names))
      .set("losses", DoubleArray(losses_))
      .set("norms", DoubleArray(norms_))
      .set("w", DoubleArray(w_))
      .set("epoch_loss", DoubleArray(el))
      .set("epoch_count", DoubleArray(ec))
      .set("epoch_correct", DoubleArray(eo))
      .set("window_loss", DoubleArray(wl))
      .set("window_count", DoubleArray(wc))
      .set("window_correct", DoubleArray(wo))
      .set("skipped", skipped_)
      .set("best", best_)
      .set("best_epoch", best_epoch_)
      .set("best_dev", DoubleArray(best_dev_))
      .set("have_best", have_best_);
  return j;
}

void MultitaskSession::RestoreSessionState(const Json& j, const std::string& origin) {
  const size_t n = tasks_.size();
  const Json& names = j.at("tasks");
  std::string want, got;
  for (const Task& t : tasks_) want += (want.empty() ? "" : ",") + t.info->name;
  for (size_t i = 0; i < names.size(); ++i) got += (i ? "," : "") + names.at(i).as_string();
  if (want != got)
    Fail(origin, " was saved for tasks ", got, ", not ", want,
         "; use another --out (or delete its checkpoints/) to start afresh");
  losses_ = ReadDoubles(j, "losses", n, origin);
  norms_ = ReadDoubles(j, "norms", n, origin);
  w_ = ReadDoubles(j, "w", n, origin);
  const auto el = ReadDoubles(j, "epoch_loss", n, origin);
  const auto ec = ReadDoubles(j, "epoch_count", n, origin);
  const auto eo = ReadDoubles(j, "epoch_correct", n, origin);
  const auto wl = ReadDoubles(j, "window_loss", n, origin);
  const auto wc = ReadDoubles(j, "window_count", n, origin);
  const auto wo = ReadDoubles(j, "window_correct", n, origin);
  for (size_t i = 0; i < n; ++i) {
    tasks_[i].loss_sum = el[i];
    tasks_[i].count = static_cast<int64_t>(ec[i]);
    tasks_[i].correct = static_cast<int64_t>(eo[i]);
    window_[i] = {wl[i], static_cast<int64_t>(wc[i]), static_cast<int64_t>(wo[i])};
  }
  skipped_ = j.at("skipped").as_int();
  best_ = j.at("best").as_double();
  best_epoch_ = static_cast<int>(j.at("best_epoch").as_int());
  best_dev_.clear();
  for (const Json& x : j.at("best_dev").as_array()) best_dev_.push_back(x.as_double());
  have_best_ = j.at("have_best").as_bool();
}

void MultitaskSession::SaveResumable() {
  const config::Config cfg = ConfigForModel(mc_, "multitask");
  TrainState st;
  st.step = static_cast<int64_t>(cur_step_);
  st.seed = cfg_.seed();
  st.skipped_steps = skipped_;
  SaveOptions o = BaseSaveOptions();
  o.with_optimizer = true;
  o.keep = cfg_.checkpoint_keep();
  o.metadata["multitask_session"] = SessionState().Dump();
  // Head first: the encoder checkpoint of step N is what marks the pair complete for resuming.
  SaveCheckpoint(ckpt_root_ + "/head", head_store_, cfg, st, o);
  o.metadata["multitask_state"] = weighting_->SerializeState();
  const std::string dir = SaveCheckpoint(ckpt_root_ + "/encoder", model_->store(), cfg, st, o);
  if (rank_ == 0) LOG(INFO) << "multitask: checkpoint " << dir;
}

bool MultitaskSession::TryResume(int64_t steps_per_epoch, LossWeighting* weighting) {
  const std::string dir = FindLatestCheckpoint(ckpt_root_ + "/encoder");
  if (dir.empty()) return false;
  LoadedCheckpoint enc = LoadCheckpoint(dir, /*with_optimizer=*/true);
  const int64_t step = enc.state.step;
  const std::string head_dir = CheckpointStepDir(ckpt_root_ + "/head", step);
  if (!fs::exists(head_dir))
    Fail("multitask: ", dir, " has no matching head checkpoint ", head_dir, "; delete ", ckpt_root_,
         " to start afresh");
  LoadedCheckpoint head = LoadCheckpoint(head_dir, /*with_optimizer=*/true);
  if (head.state.step != step) Fail(head_dir, ": step ", head.state.step, ", want ", step);
  const auto& meta = enc.manifest.metadata();
  for (const char* key : {"multitask_session", "multitask_state"})
    if (meta.find(key) == meta.end())
      Fail(dir, ": no ", key, " metadata (not a roformer multitask checkpoint)");
  const int64_t total = steps_per_epoch * cfg_.epochs();
  if (step > total)
    Fail("multitask: ", dir, " is at step ", step, " but this run has only ", total,
         " steps (different data, batch or epochs?)");
  RestoreSessionState(Json::Parse(meta.at("multitask_session"), dir), dir);
  weighting->RestoreState(meta.at("multitask_state"));
  RestoreInto(enc, &model_->store(), /*with_optimizer=*/true);
  RestoreInto(head, &head_store_, /*with_optimizer=*/true);
  if (enc.state.seed != cfg_.seed())
    Fail("multitask: ", dir, " was saved with seed ", enc.state.seed, ", this run has ",
         cfg_.seed());
  cur_step_ = static_cast<uint64_t>(step);
  if (rank_ == 0) LOG(INFO) << "multitask: resuming from " << dir << " (step " << step << ")";
  return true;
}

void MultitaskSession::TruncateMetrics(int64_t step) {
  if (rank_ != 0) return;
  const std::string path = args_.out_dir + "/metrics.jsonl";
  std::vector<std::string> keep;
  {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      try {
        const Json j = Json::Parse(line, path);
        const Json* s = j.find("step");
        const Json* e = j.find("event");
        if (!s || !e || s->as_int() > step) continue;
        const std::string& ev = e->as_string();
        if (ev == "test" || ev == "done") continue;
        keep.push_back(line);
      } catch (const Error&) {
        // A line cut by the crash: dropped.
      }
    }
  }
  metrics_.open(path, std::ios::trunc);
  if (!metrics_) Fail("multitask: cannot write ", path);
  for (const std::string& l : keep) metrics_ << l << "\n";
  metrics_.flush();
}

void MultitaskSession::PredictTest(MultitaskFinetuneSummary* sum) {
  // Submissions come from the weights the run kept (the best epoch's when save_best), read back
  // from disk like `roformer finetune` does. Rank 0 only: the other ranks hold the same weights.
  if (rank_ != 0) return;
  LoadBest();
  for (Task& t : tasks_) {
    if (!t.has_test) continue;
    int width = 0;
    const std::vector<float> sc = Scores(t, t.test_f, /*split=*/false, &width, nullptr);
    const std::vector<int> pred = Decode(t, t.test, t.test_f, sc, width);
    const std::string dir = args_.out_dir + "/" + t.info->name;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) Fail("multitask: cannot create ", dir, ": ", ec.message());
    // FewCLUE-format ChID data (single #idiom# blanks) gets FewCLUE's file name, as in finetune.
    const bool fewclue_chid = t.info->format == ClueFormat::kChid && !t.test.examples.empty() &&
                              t.test.examples[0].blank_marker == "#idiom#" &&
                              !t.info->fewclue_submission_file.empty();
    const std::string path =
        dir + "/" + (fewclue_chid ? t.info->fewclue_submission_file : t.info->submission_file);
    WriteClueSubmission(*t.info, t.test.examples, pred, path);
    const int64_t entries = ValidateSubmission(*t.info, path, &t.test.examples);
    Json j = Json::Object();
    j.set("event", "test")
        .set("step", static_cast<int64_t>(cur_step_))
        .set("task", t.info->name)
        .set("submission", path)
        .set("entries", entries)
        .set("best_epoch", best_epoch_)
        .set("validated", true);
    Log(j);
    LOG(INFO) << "wrote " << path << " (" << entries << " entries, validated)";
    sum->submissions.push_back(path);
  }
}

MultitaskFinetuneSummary MultitaskSession::Run() {
  const auto t0 = std::chrono::steady_clock::now();
  const size_t n = args_.tasks.size();
  if (n < 1) Fail("multitask: give --tasks A,B,...");
  if (args_.data_dirs.size() != n)
    Fail("multitask: ", n, " tasks but ", args_.data_dirs.size(), " --data directories");
  if (!args_.train_splits.empty() && args_.train_splits.size() != n)
    Fail("multitask: ", n, " tasks but ", args_.train_splits.size(), " --train-splits");
  ValidateFinetuneConfig(args_.cfg);
  cfg_ = ResolveTaskDefaults(args_.tasks[0], args_.cfg);
  if (cfg_.optimizer() != "adamw") Fail("multitask: optimizer must be adamw");
  if (cfg_.checkpoint_every() < 0)
    Fail("multitask: checkpoint_every must be >= 0, got ", cfg_.checkpoint_every());
  if (args_.dp) {
    dp_ = args_.dp;
  } else {
    local_dp_ = MakeLocalCommunicator("dp", 0);
    dp_ = local_dp_.get();
  }
  rank_ = dp_->rank();
  world_ = dp_->size();
  ckpt_root_ = args_.out_dir + "/checkpoints";
  std::error_code ec;
  fs::create_directories(args_.out_dir, ec);
  if (ec) Fail("multitask: cannot create ", args_.out_dir, ": ", ec.message());
  BuildModel();
  ReadData();

  const config::MultitaskConfig& mt = cfg_.multitask();
  std::vector<int64_t> sizes;
  std::vector<int> classes;
  std::vector<std::vector<double>> priors;
  int64_t total_examples = 0;
  for (const Task& t : tasks_) {
    sizes.push_back(static_cast<int64_t>(t.train_f.size()));
    total_examples += sizes.back();
    // Multiple choice: K = the most choices, the prior is over choice positions.
    classes.push_back(t.classes);
    std::vector<double> counts(t.classes, 0.0);
    for (const Feature& f : t.train_f) counts[f.label] += 1;
    priors.push_back(counts);
  }
  TaskSampler sampler(mt.sampling(), ParseNumberList(mt.ratios(), "multitask.ratios"), sizes,
                      cfg_.batch(), cfg_.seed());
  if (sampler.mode() != TaskSampler::Mode::kMixed && mt.weighting() == "init" &&
      mt.init_batches() > 0)
    Fail("multitask.weighting = init with init_batches > 0 needs multitask.sampling = mixed ",
         "(every task's initial loss must be seen in the first steps); or set init_batches = 0");
  LossWeighting weighting(static_cast<int>(n),
                          MakeLossWeightingOptions(mt, static_cast<int>(n), classes, priors));
  weighting_ = &weighting;

  const FinetuneSteps plan = PlanFinetuneSteps(cfg_, total_examples);
  const int64_t steps_per_epoch = plan.per_epoch, total = plan.total;
  const LrSchedule& sched = plan.lr;

  // Absent tasks keep their last loss / norm as the weighting's input (before their first step:
  // log K, the loss of a uniform prediction, and 1).
  losses_.assign(n, 0.0);
  norms_.assign(n, 1.0);
  w_.assign(n, 0.0);
  window_.assign(n, Accum());
  for (size_t i = 0; i < n; ++i) losses_[i] = std::log(static_cast<double>(classes[i]));
  for (Task& t : tasks_) t.loss_sum = 0, t.count = 0, t.correct = 0;
  MultitaskFinetuneSummary sum;
  if (TryResume(steps_per_epoch, &weighting)) {
    sum.resumed_from = static_cast<int64_t>(cur_step_);
    TruncateMetrics(sum.resumed_from);
    Json j = Json::Object();
    j.set("event", "resume").set("step", sum.resumed_from).set("dp", world_);
    Log(j);
  } else if (rank_ == 0) {
    metrics_.open(args_.out_dir + "/metrics.jsonl", std::ios::trunc);
    if (!metrics_) Fail("multitask: cannot write ", args_.out_dir, "/metrics.jsonl");
    Json j = Json::Object();
    std::string text;
    google::protobuf::TextFormat::Printer pr;
    pr.SetSingleLineMode(true);
    pr.PrintToString(cfg_, &text);
    Json names = Json::Array(), ratios = Json::Array(), train_n = Json::Array();
    for (size_t i = 0; i < n; ++i) {
      names.push_back(tasks_[i].info->name);
      ratios.push_back(sampler.ratios()[i]);
      train_n.push_back(sizes[i]);
    }
    // Every record carries "step" so `roformer plot` can read the file. The DP size is not
    // recorded: a DP run's records equal the single-process ones (tests compare them).
    j.set("event", "config")
        .set("step", 0)
        .set("tasks", std::move(names))
        .set("init", args_.init)
        .set("weighting", mt.weighting())
        .set("sampling", mt.sampling())
        .set("ratios", std::move(ratios))
        .set("train_examples", std::move(train_n))
        .set("finetune_config", text)
        .set("steps_per_epoch", steps_per_epoch)
        .set("total_steps", total)
        .set("warmup_steps", sched.warmup_steps);
    Log(j);
  }
  if (rank_ == 0)
    LOG(INFO) << "multitask: " << n << " tasks, " << cfg_.epochs() << " epochs x "
              << steps_per_epoch << " steps (batch " << cfg_.batch() << ", " << mt.sampling()
              << " sampling, " << mt.weighting() << " weighting, lr " << cfg_.lr() << ", dp "
              << world_ << ")";

  ParamStore& enc = model_->store();
  // Sums (not averages) over the DP ranks: every micro-batch already carries the 1/c_i scale.
  GradReducerOptions ro;
  ro.average = false;
  enc_reducer_ = std::make_unique<GradReducer>(&enc, dp_, ro);
  head_reducer_ = std::make_unique<GradReducer>(&head_store_, dp_, ro);
  std::vector<int> counts;
  std::vector<int64_t> cursors;
  sampler.CursorsAt(static_cast<int64_t>(cur_step_), &cursors);
  std::vector<int64_t> idx;
  std::vector<double> stats(3 * n);
  const int mb = cfg_.micro_batch();
  double lr = 0;
  while (static_cast<int64_t>(cur_step_) < total) {
    // --max-steps: checked before the step, so a rerun that resumes at or past K stops at once
    // (its checkpoint is the one it resumed from) instead of taking one more step.
    if (args_.max_steps > 0 && static_cast<int64_t>(cur_step_) >= args_.max_steps) {
      sum.stopped = true;
      if (rank_ == 0)
        LOG(INFO) << "multitask: stopped after " << cur_step_ << " of " << total
                  << " steps (--max-steps); run again with the same --out to continue";
      break;
    }
    const int epoch = static_cast<int>(static_cast<int64_t>(cur_step_) / steps_per_epoch) + 1;
    if (static_cast<int64_t>(cur_step_) % steps_per_epoch == 0)
      for (Task& t : tasks_) t.loss_sum = 0, t.count = 0, t.correct = 0;
    sampler.CountsAt(static_cast<int64_t>(cur_step_), &counts);
    std::fill(stats.begin(), stats.end(), 0.0);
    // The step's micro-batches, over the tasks in order, dealt round-robin to the DP ranks.
    int unit = 0;
    for (size_t i = 0; i < n; ++i) {
      if (counts[i] == 0) continue;
      Task& t = tasks_[i];
      enc.ZeroGrads();
      head_store_.ZeroGrads();
      idx.resize(counts[i]);
      for (int k = 0; k < counts[i]; ++k) idx[k] = sampler.ExampleAt(i, cursors[i] + k);
      cursors[i] += counts[i];
      const float scale = 1.0f / static_cast<float>(counts[i]);
      for (int m = 0; m < counts[i]; m += mb, ++unit) {
        if (unit % world_ != rank_) continue;
        // Dropout stream per (task, micro-batch): tasks never share masks within a step, and a
        // micro-batch draws the same masks whichever rank runs it.
        const uint32_t micro = static_cast<uint32_t>(i * 4096 + m / mb);
        const Accum p =
            Pass(t, t.train_f, idx, m, std::min(counts[i], m + mb), true, scale, micro, nullptr, 0);
        stats[3 * i] += p.loss;
        stats[3 * i + 1] += static_cast<double>(p.count);
        stats[3 * i + 2] += static_cast<double>(p.correct);
      }
      enc_reducer_->FinishBackward();
      head_reducer_->FinishBackward();
      norms_[i] = SharedGradNorm(enc, shared_, *enc_reducer_, false, nullptr, nullptr);
      std::copy(enc.grads().begin(), enc.grads().end(), t.enc_grad.begin());
      std::copy(head_store_.grads().begin(), head_store_.grads().end(), t.head_grad.begin());
    }
    if (world_ > 1) dp_->AllReduce(std::span<double>(stats));
    bool finite = true;
    for (size_t i = 0; i < n; ++i) {
      if (counts[i] == 0) continue;
      Task& t = tasks_[i];
      const double loss = stats[3 * i];
      const auto cnt = static_cast<int64_t>(stats[3 * i + 1]);
      const auto ok = static_cast<int64_t>(stats[3 * i + 2]);
      losses_[i] = cnt > 0 ? loss / cnt : 0;
      finite = finite && std::isfinite(losses_[i]) && std::isfinite(norms_[i]);
      t.loss_sum += loss;
      t.count += cnt;
      t.correct += ok;
      window_[i].loss += loss;
      window_[i].count += cnt;
      window_[i].correct += ok;
    }
    lr = sched.At(static_cast<int64_t>(cur_step_));
    if (finite) {
      w_ = weighting.Step(losses_, norms_);
      // Σ_i w_i g_i over the tasks of this step.
      float* ge = enc.grads().data();
      float* gh = head_store_.grads().data();
      std::fill(enc.grads().begin(), enc.grads().end(), 0.0f);
      std::fill(head_store_.grads().begin(), head_store_.grads().end(), 0.0f);
      for (size_t i = 0; i < n; ++i) {
        if (counts[i] == 0) continue;
        const float wi = static_cast<float>(w_[i]);
        const float* te = tasks_[i].enc_grad.data();
        const float* th = tasks_[i].head_grad.data();
        for (size_t j = 0; j < enc.grads().size(); ++j) ge[j] += wi * te[j];
        for (size_t j = 0; j < head_store_.grads().size(); ++j) gh[j] += wi * th[j];
      }
      // A multiple-choice head's bias shifts every choice score of a question alike, so the
      // softmax cancels it: its exact gradient is 0 and the float one is rounding noise, which
      // Adam would turn into a random walk (harmless to predictions, but it makes runs differ in
      // that tensor by summation order alone). Keep it fixed.
      for (const Task& t : tasks_) {
        if (!t.mc) continue;
        const ParamInfo& b = head_store_.info("heads." + t.info->name + ".bias");
        std::fill_n(gh + b.offset, b.numel, 0.0f);
      }
      const GradCheck ce = CheckGradients(enc);
      const GradCheck ch = CheckGradients(head_store_);
      finite = ce.finite && ch.finite;
      if (finite) {
        AdamWOptions o;
        o.beta1 = cfg_.adam_beta1();
        o.beta2 = cfg_.adam_beta2();
        o.eps = cfg_.adam_eps();
        o.weight_decay = cfg_.weight_decay();
        o.grad_clip = cfg_.grad_clip();
        const double norm = std::sqrt(ce.norm * ce.norm + ch.norm * ch.norm);
        const int64_t t = static_cast<int64_t>(cur_step_) + 1 - skipped_;
        for (const auto& [b, e] : enc_ranges_) AdamWStepRange(&enc, o, lr, t, norm, b, e);
        AdamWStep(&head_store_, o, lr, t, norm);
      }
    }
    if (!finite) {
      ++skipped_;
      LOG(WARNING) << "multitask: step " << cur_step_ << " skipped: non-finite loss or gradient";
      if (skipped_ > 5) Fail("multitask: more than 5 non-finite steps; lower --lr");
    }
    ++cur_step_;
    if (cfg_.log_every() > 0 && cur_step_ % cfg_.log_every() == 0) {
      Json j = Json::Object();
      j.set("event", "step").set("step", static_cast<int64_t>(cur_step_)).set("lr", lr);
      std::string line =
          "multitask step " + std::to_string(cur_step_) + "/" + std::to_string(total);
      char buf[160];
      for (size_t i = 0; i < n; ++i) {
        const std::string& name = tasks_[i].info->name;
        const Accum& a = window_[i];
        const double wl = a.count > 0 ? a.loss / a.count : 0;
        const double wa = a.count > 0 ? 100.0 * a.correct / a.count : 0;
        j.set(name + "_loss", wl)
            .set(name + "_acc", wa)
            .set("w_" + name, w_[i])
            .set("gnorm_" + name, norms_[i]);
        std::snprintf(buf, sizeof(buf), " | %s loss %.4f acc %.1f w %.4g gnorm %.3g", name.c_str(),
                      wl, wa, w_[i], norms_[i]);
        line += buf;
      }
      Log(j);
      if (rank_ == 0) LOG(INFO) << line;
      window_.assign(n, Accum());
    }
    if (static_cast<int64_t>(cur_step_) % steps_per_epoch == 0) {
      Json j = Json::Object();
      j.set("event", "epoch").set("epoch", epoch).set("step", static_cast<int64_t>(cur_step_));
      double mean = 0;
      int with_dev = 0;
      std::string line = "epoch " + std::to_string(epoch) + ": dev accuracy";
      std::vector<double> devs;
      for (size_t i = 0; i < n; ++i) {
        Task& t = tasks_[i];
        const std::string& name = t.info->name;
        j.set(name + "_train_loss", t.count ? t.loss_sum / t.count : 0)
            .set(name + "_train_accuracy", t.count ? 100.0 * t.correct / t.count : 0)
            .set("w_" + name, w_[i]);
        if (!t.has_dev) continue;
        double dl = 0;
        const double acc = DevAccuracy(t, &dl);
        j.set(name + "_dev_accuracy", acc).set(name + "_dev_loss", dl);
        devs.push_back(acc);
        mean += acc;
        ++with_dev;
        line += " " + name + " " + std::to_string(acc);
      }
      const bool improved = with_dev == 0 || mean / with_dev > best_;
      if (with_dev > 0) {
        mean /= with_dev;
        j.set("mean_dev_accuracy", mean);
        line += " mean " + std::to_string(mean);
      }
      if (improved) {
        best_ = with_dev > 0 ? mean : 0;
        best_epoch_ = epoch;
        best_dev_ = devs;
        SaveBest(epoch, best_);
      }
      j.set("best", improved).set("elapsed_s", Seconds(t0));
      Log(j);
      if (rank_ == 0) LOG(INFO) << line << (improved ? " (best)" : "");
    }
    const int64_t done = static_cast<int64_t>(cur_step_);
    const bool stop = args_.max_steps > 0 && done >= args_.max_steps && done < total;
    // With checkpoint_every, the last step is saved too: a rerun of a finished run only predicts.
    if (stop ||
        (cfg_.checkpoint_every() > 0 && (done % cfg_.checkpoint_every() == 0 || done == total)))
      SaveResumable();
  }
  sum.best_epoch = best_epoch_;
  sum.best_dev = best_dev_;
  sum.best_mean_dev = std::max(best_, 0.0);
  sum.steps = static_cast<int64_t>(cur_step_);
  sum.final_w = w_;
  if (sum.stopped) return sum;
  PredictTest(&sum);
  Json d = Json::Object();
  d.set("event", "done")
      .set("step", sum.steps)
      .set("best_epoch", sum.best_epoch)
      .set("best_mean_dev_accuracy", sum.best_mean_dev)
      .set("steps", sum.steps)
      .set("elapsed_s", Seconds(t0));
  Log(d);
  return sum;
}

}  // namespace

MultitaskFinetuneSummary RunMultitaskFinetune(const MultitaskFinetuneArgs& args) {
  MultitaskSession s(args);
  return s.Run();
}

}  // namespace roformer
