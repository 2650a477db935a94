#include "model/multitask_finetune.h"

#include <glog/logging.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>

#include "data/clue/clue_features.h"
#include "data/clue/clue_tasks.h"
#include "data/tokenizer/tokenizer.h"
#include "kernels/cpu/dropout.h"
#include "model/finetune.h"
#include "model/heads/classifier_head.h"
#include "model/heads/head_params.h"
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
  ClueDataset train, dev;
  bool has_dev = false;
  std::vector<Feature> train_f, dev_f;
  std::unique_ptr<ClassifierHead> head;
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
  Accum Pass(Task& t, const std::vector<Feature>& feats, const std::vector<int64_t>& idx,
             size_t begin, size_t end, bool train, float grad_scale, uint32_t micro,
             std::vector<int>* predictions);
  double DevAccuracy(Task& t, double* dev_loss);
  void SaveBest(int epoch, double metric);
  void Log(const Json& j) {
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
  std::vector<int32_t> labels_;
  std::ofstream metrics_;
  uint64_t cur_step_ = 0;
};

void MultitaskSession::BuildModel() {
  if (args_.init.empty()) Fail("multitask: give --init CKPT (a pretrained checkpoint)");
  LoadedCheckpoint ck = LoadCheckpoint(args_.init, /*with_optimizer=*/false);
  if (!ck.manifest.has_model()) Fail(ck.dir, ": checkpoint manifest has no model config");
  mc_ = ck.manifest.model();
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
    if (t.info->type != ClueTaskType::kSingleSentence &&
        t.info->type != ClueTaskType::kSentencePair)
      Fail("multitask: ", t.info->name, " is a ", ClueTaskTypeName(t.info->type),
           " task; multi-task fine-tuning supports classification tasks only");
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
    t.train_f = BuildFeatures(*t.info, t.train.examples, *tok_, fo);
    if (t.has_dev) t.dev_f = BuildFeatures(*t.info, t.dev.examples, *tok_, fo);
    t.head = std::make_unique<ClassifierHead>(H, static_cast<int>(t.info->labels.size()),
                                              "heads." + t.info->name);
    t.head->Declare(&head_store_);
    std::string files;
    for (const std::string& p : t.train.paths)
      files += (files.empty() ? "" : " + ") + fs::path(p).filename().string();
    LOG(INFO) << "multitask: " << t.info->name << " train " << files << " " << t.train_f.size()
              << " examples, dev " << t.dev_f.size() << ", " << t.info->labels.size() << " labels";
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
                             float grad_scale, uint32_t micro, std::vector<int>* predictions) {
  int rows = static_cast<int>(end - begin), L = 1;
  for (size_t i = begin; i < end; ++i)
    L = std::max(L, static_cast<int>(feats[idx[i]].ids[0].size()));
  const int32_t pad = tok_->vocab().pad_id();
  batch_.batch = rows;
  batch_.seq_len = L;
  const size_t n = static_cast<size_t>(rows) * L;
  batch_.input_ids.assign(n, pad);
  batch_.token_type_ids.assign(n, 0);
  batch_.attention_mask.assign(n, 0);
  labels_.clear();
  for (size_t i = begin; i < end; ++i) {
    const Feature& f = feats[idx[i]];
    const size_t o = (i - begin) * L;
    std::copy(f.ids[0].begin(), f.ids[0].end(), batch_.input_ids.begin() + o);
    std::copy(f.types[0].begin(), f.types[0].end(), batch_.token_type_ids.begin() + o);
    std::fill_n(batch_.attention_mask.begin() + o, f.ids[0].size(), 1);
    labels_.push_back(f.label);
  }
  DropoutContext dc;
  dc.enabled = train;
  dc.seed = cfg_.seed();
  dc.step = cur_step_;
  dc.micro = micro;
  const float* seq = model_->EncoderForward(batch_, dc);
  const int H = model_->dims().hidden;
  const DropoutSpec hd = train ? HeadDropoutSpec(cfg_.head_dropout(), cfg_.seed(),
                                                 DropoutStreamId(cur_step_, micro, 0xFFFFu, 100), H)
                               : DropoutSpec();
  float* dseq = nullptr;
  if (train) {
    d_seq_.resize(n * H);
    dseq = d_seq_.data();
  }
  t.head->Forward(head_store_, seq, rows, L, hd);
  Accum acc;
  const bool labelled = std::all_of(labels_.begin(), labels_.end(), [](int l) { return l >= 0; });
  if (train || labelled) {
    const CrossEntropyStats st = t.head->Backward(&head_store_, labels_.data(), grad_scale, dseq);
    acc = {st.loss_sum, st.count, st.correct};
  }
  if (predictions) {
    const int C = t.head->num_labels();
    const std::vector<float>& lg = t.head->logits();
    for (int b = 0; b < rows; ++b) {
      const float* row = lg.data() + static_cast<size_t>(b) * C;
      predictions->push_back(static_cast<int>(std::max_element(row, row + C) - row));
    }
  }
  if (train) model_->EncoderBackward(dseq, 1.0f);
  return acc;
}

double MultitaskSession::DevAccuracy(Task& t, double* dev_loss) {
  std::vector<int64_t> idx(t.dev_f.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int64_t>(i);
  std::vector<int> pred;
  Accum total;
  const size_t eb = static_cast<size_t>(cfg_.eval_batch());
  for (size_t b = 0; b < idx.size(); b += eb) {
    const Accum a = Pass(t, t.dev_f, idx, b, std::min(idx.size(), b + eb), false, 1.0f, 0, &pred);
    total.loss += a.loss;
    total.count += a.count;
  }
  int64_t ok = 0, n = 0;
  for (size_t i = 0; i < pred.size(); ++i) {
    if (t.dev_f[i].label < 0) continue;
    ++n;
    ok += pred[i] == t.dev_f[i].label;
  }
  *dev_loss = total.count > 0 ? total.loss / total.count : 0;
  return n > 0 ? 100.0 * ok / n : 0;
}

void MultitaskSession::SaveBest(int epoch, double metric) {
  if (!cfg_.save_best()) return;
  const config::Config cfg = ConfigForModel(mc_, "multitask");
  TrainState st;
  st.step = static_cast<int64_t>(cur_step_);
  st.seed = cfg_.seed();
  SaveOptions o;
  o.with_optimizer = false;
  o.keep = 1;
  o.vocab.path = tok_->vocab().path();
  o.vocab.size = tok_->vocab().size();
  o.vocab.padded_size = model_->dims().vocab_padded;
  o.vocab.tokens_hash = VocabTokensHash(tok_->vocab().tokens());
  o.metadata["source"] = "roformer multitask";
  std::string names;
  for (const Task& t : tasks_) names += (names.empty() ? "" : ",") + t.info->name;
  o.metadata["tasks"] = names;
  o.metadata["epoch"] = std::to_string(epoch);
  o.metadata["mean_dev_metric"] = std::to_string(metric);
  SaveCheckpoint(args_.out_dir + "/best/encoder", model_->store(), cfg, st, o);
  o.metadata["head"] = "classifier";
  SaveCheckpoint(args_.out_dir + "/best/head", head_store_, cfg, st, o);
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
  std::error_code ec;
  fs::create_directories(args_.out_dir, ec);
  if (ec) Fail("multitask: cannot create ", args_.out_dir, ": ", ec.message());
  metrics_.open(args_.out_dir + "/metrics.jsonl", std::ios::trunc);
  if (!metrics_) Fail("multitask: cannot write ", args_.out_dir, "/metrics.jsonl");
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
    classes.push_back(static_cast<int>(t.info->labels.size()));
    std::vector<double> counts(t.info->labels.size(), 0.0);
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

  const int64_t steps_per_epoch = (total_examples + cfg_.batch() - 1) / cfg_.batch();
  const int64_t total = steps_per_epoch * cfg_.epochs();
  LrSchedule sched;
  sched.peak = cfg_.lr();
  sched.total_steps = std::max<int64_t>(1, total);
  sched.warmup_steps = static_cast<int64_t>(std::llround(cfg_.warmup_proportion() * total));
  sched.decay = cfg_.lr_decay();
  {
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
    // Every record carries "step" so `roformer plot` can read the file.
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
    LOG(INFO) << "multitask: " << n << " tasks, " << cfg_.epochs() << " epochs x "
              << steps_per_epoch << " steps (batch " << cfg_.batch() << ", " << mt.sampling()
              << " sampling, " << mt.weighting() << " weighting, lr " << cfg_.lr() << ")";
  }

  ParamStore& enc = model_->store();
  // Absent tasks keep their last loss / norm as the weighting's input (before their first step:
  // log K, the loss of a uniform prediction, and 1).
  std::vector<double> losses(n), norms(n, 1.0), w(n, 0.0);
  for (size_t i = 0; i < n; ++i) losses[i] = std::log(static_cast<double>(classes[i]));
  auto local = MakeLocalCommunicator("dp", 0);
  GradReducer norm_ranges(&enc, local.get());  // only for its (whole-buffer) owned ranges
  std::vector<int> counts;
  std::vector<int64_t> cursors;
  sampler.CursorsAt(0, &cursors);
  std::vector<int64_t> idx;
  MultitaskFinetuneSummary sum;
  double best = -1;
  int64_t skipped = 0;
  for (int epoch = 1; epoch <= cfg_.epochs(); ++epoch) {
    for (Task& t : tasks_) t.loss_sum = 0, t.count = 0, t.correct = 0;
    std::vector<Accum> window(n);
    double lr = 0;
    for (int64_t s = 0; s < steps_per_epoch; ++s) {
      sampler.CountsAt(static_cast<int64_t>(cur_step_), &counts);
      bool finite = true;
      for (size_t i = 0; i < n; ++i) {
        if (counts[i] == 0) continue;
        Task& t = tasks_[i];
        enc.ZeroGrads();
        head_store_.ZeroGrads();
        idx.resize(counts[i]);
        for (int k = 0; k < counts[i]; ++k) idx[k] = sampler.ExampleAt(i, cursors[i] + k);
        cursors[i] += counts[i];
        Accum a;
        const float scale = 1.0f / static_cast<float>(counts[i]);
        for (int m = 0; m < counts[i]; m += cfg_.micro_batch()) {
          // Dropout stream per (task, micro-batch): tasks never share masks within a step.
          const uint32_t micro = static_cast<uint32_t>(i * 4096 + m / cfg_.micro_batch());
          const Accum p = Pass(t, t.train_f, idx, m, std::min(counts[i], m + cfg_.micro_batch()),
                               true, scale, micro, nullptr);
          a.loss += p.loss;
          a.count += p.count;
          a.correct += p.correct;
        }
        losses[i] = a.count > 0 ? a.loss / a.count : 0;
        norms[i] = SharedGradNorm(enc, shared_, norm_ranges, false, nullptr, nullptr);
        finite = finite && std::isfinite(losses[i]) && std::isfinite(norms[i]);
        std::copy(enc.grads().begin(), enc.grads().end(), t.enc_grad.begin());
        std::copy(head_store_.grads().begin(), head_store_.grads().end(), t.head_grad.begin());
        t.loss_sum += a.loss;
        t.count += a.count;
        t.correct += a.correct;
        window[i].loss += a.loss;
        window[i].count += a.count;
        window[i].correct += a.correct;
      }
      lr = sched.At(static_cast<int64_t>(cur_step_));
      if (finite) {
        w = weighting.Step(losses, norms);
        // Σ_i w_i g_i over the tasks of this step.
        float* ge = enc.grads().data();
        float* gh = head_store_.grads().data();
        std::fill(enc.grads().begin(), enc.grads().end(), 0.0f);
        std::fill(head_store_.grads().begin(), head_store_.grads().end(), 0.0f);
        for (size_t i = 0; i < n; ++i) {
          if (counts[i] == 0) continue;
          const float wi = static_cast<float>(w[i]);
          const float* te = tasks_[i].enc_grad.data();
          const float* th = tasks_[i].head_grad.data();
          for (size_t j = 0; j < enc.grads().size(); ++j) ge[j] += wi * te[j];
          for (size_t j = 0; j < head_store_.grads().size(); ++j) gh[j] += wi * th[j];
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
          const int64_t t = static_cast<int64_t>(cur_step_) + 1 - skipped;
          for (const auto& [b, e] : enc_ranges_) AdamWStepRange(&enc, o, lr, t, norm, b, e);
          AdamWStep(&head_store_, o, lr, t, norm);
        }
      }
      if (!finite) {
        ++skipped;
        LOG(WARNING) << "multitask: step " << cur_step_ << " skipped: non-finite loss or gradient";
        if (skipped > 5) Fail("multitask: more than 5 non-finite steps; lower --lr");
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
          const double wl = window[i].count > 0 ? window[i].loss / window[i].count : 0;
          const double wa = window[i].count > 0 ? 100.0 * window[i].correct / window[i].count : 0;
          j.set(name + "_loss", wl)
              .set(name + "_acc", wa)
              .set("w_" + name, w[i])
              .set("gnorm_" + name, norms[i]);
          std::snprintf(buf, sizeof(buf), " | %s loss %.4f acc %.1f w %.4g gnorm %.3g",
                        name.c_str(), wl, wa, w[i], norms[i]);
          line += buf;
        }
        Log(j);
        LOG(INFO) << line;
        window.assign(n, Accum());
      }
    }
    Json j = Json::Object();
    j.set("event", "epoch").set("epoch", epoch).set("step", static_cast<int64_t>(cur_step_));
    double mean = 0;
    int with_dev = 0;
    std::string line = "epoch " + std::to_string(epoch) + ": dev accuracy";
    for (size_t i = 0; i < n; ++i) {
      Task& t = tasks_[i];
      const std::string& name = t.info->name;
      j.set(name + "_train_loss", t.count ? t.loss_sum / t.count : 0)
          .set(name + "_train_accuracy", t.count ? 100.0 * t.correct / t.count : 0)
          .set("w_" + name, w[i]);
      if (!t.has_dev) continue;
      double dl = 0;
      const double acc = DevAccuracy(t, &dl);
      j.set(name + "_dev_accuracy", acc).set(name + "_dev_loss", dl);
      mean += acc;
      ++with_dev;
      line += " " + name + " " + std::to_string(acc);
    }
    const bool improved = with_dev == 0 || mean / with_dev > best;
    if (with_dev > 0) {
      mean /= with_dev;
      j.set("mean_dev_accuracy", mean);
      line += " mean " + std::to_string(mean);
    }
    if (improved) {
      best = with_dev > 0 ? mean : 0;
      sum.best_epoch = epoch;
      sum.best_dev.clear();
      for (Task& t : tasks_)
        if (t.has_dev) sum.best_dev.push_back(j.at(t.info->name + "_dev_accuracy").as_double());
      SaveBest(epoch, best);
    }
    j.set("best", improved).set("elapsed_s", Seconds(t0));
    Log(j);
    LOG(INFO) << line << (improved ? " (best)" : "");
  }
  sum.best_mean_dev = std::max(best, 0.0);
  sum.steps = static_cast<int64_t>(cur_step_);
  sum.final_w = w;
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
