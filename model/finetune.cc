#include "model/finetune.h"

#include <glog/logging.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <span>
#include <sstream>
#include <tuple>

#include "data/clue/can.h"
#include "data/clue/clue_features.h"
#include "data/clue/clue_metrics.h"
#include "data/clue/clue_submission.h"
#include "data/clue/clue_tasks.h"
#include "data/clue/hungarian.h"
#include "data/tokenizer/tokenizer.h"
#include "kernels/cpu/dropout.h"
#include "model/adafactor.h"
#include "model/finetune_batch.h"
#include "model/heads/classifier_head.h"
#include "model/heads/head_params.h"
#include "model/heads/multiple_choice_head.h"
#include "model/heads/span_head.h"
#include "model/hf_interop.h"
#include "model/lr_schedule.h"
#include "model/optimizer.h"
#include "model/roformer_model.h"
#include "runtime/checkpoint.h"
#include "runtime/comm.h"
#include "runtime/comm_task.h"
#include "runtime/config.h"
#include "runtime/error.h"
#include "runtime/json.h"
#include "runtime/philox.h"

namespace roformer {

namespace pb = google::protobuf;
namespace fs = std::filesystem;

// ------------------------------------------------------------------------------------ config

config::FinetuneConfig LoadFinetuneConfig(const std::string& path) {
  config::FinetuneConfig cfg;
  ParseTextProtoFile(path, &cfg);
  return cfg;
}

void ApplyFinetuneOverride(config::FinetuneConfig* cfg, const std::string& assignment) {
  ApplyOverrideTo(cfg, assignment);
}

void ValidateFinetuneConfig(const config::FinetuneConfig& c) {
  auto bad = [](const std::string& field, const auto& v, const char* why) {
    Fail("finetune config: ", field, " = ", v, ": ", why);
  };
  if (c.epochs() < 0) bad("epochs", c.epochs(), "must be >= 0 (0 = task default)");
  if (c.batch() < 0) bad("batch", c.batch(), "must be >= 0 (0 = task default)");
  if (c.micro_batch() < 0) bad("micro_batch", c.micro_batch(), "must be >= 0");
  if (c.max_len() != 0 && c.max_len() < 8) bad("max_len", c.max_len(), "must be 0 or >= 8");
  if (c.optimizer() != "adamw" && c.optimizer() != "adafactor")
    bad("optimizer", c.optimizer(), "must be adamw or adafactor");
  if (!(c.lr() >= 0)) bad("lr", c.lr(), "must be >= 0 (0 = default)");
  if (c.warmup_proportion() != -1 && !(c.warmup_proportion() >= 0 && c.warmup_proportion() <= 1))
    bad("warmup_proportion", c.warmup_proportion(), "must be in [0, 1] (-1 = default)");
  if (!c.lr_decay().empty() && c.lr_decay() != "linear" && c.lr_decay() != "cosine" &&
      c.lr_decay() != "constant")
    bad("lr_decay", c.lr_decay(), "must be linear, cosine or constant");
  if (!(c.weight_decay() >= 0)) bad("weight_decay", c.weight_decay(), "must be >= 0");
  if (!(c.grad_clip() >= 0)) bad("grad_clip", c.grad_clip(), "must be >= 0");
  if (!(c.head_dropout() >= 0 && c.head_dropout() < 1))
    bad("head_dropout", c.head_dropout(), "must be in [0, 1)");
  for (auto [n, v] : {std::pair<const char*, float>{"hidden_dropout", c.hidden_dropout()},
                      {"attention_dropout", c.attention_dropout()}}) {
    if (v != -1 && !(v >= 0 && v < 1)) bad(n, v, "must be in [0, 1) (-1 = keep)");
  }
  if (c.pair_segment_b() != 0 && c.pair_segment_b() != 1)
    bad("pair_segment_b", c.pair_segment_b(), "must be 0 or 1");
  if (c.doc_stride() < 0) bad("doc_stride", c.doc_stride(), "must be >= 0 (0 = max_len / 4)");
  if (c.max_query_len() < 1) bad("max_query_len", c.max_query_len(), "must be >= 1");
  if (c.max_answer_len() < 1) bad("max_answer_len", c.max_answer_len(), "must be >= 1");
  if (c.max_train_examples() < 0) bad("max_train_examples", c.max_train_examples(), "must be >= 0");
  if (c.max_eval_examples() < 0) bad("max_eval_examples", c.max_eval_examples(), "must be >= 0");
  if (c.eval_batch() < 0) bad("eval_batch", c.eval_batch(), "must be >= 0");
  if (c.can().k() < 1) bad("can.k", c.can().k(), "must be >= 1");
  if (!(c.can().tau() >= 0 && c.can().tau() <= 1))
    bad("can.tau", c.can().tau(), "must be in [0, 1]");
  if (c.can().iters() < 1) bad("can.iters", c.can().iters(), "must be >= 1");
  if (!(c.can().alpha() > 0)) bad("can.alpha", c.can().alpha(), "must be > 0");
  if (!(c.adafactor().decay_rate() > 0))
    bad("adafactor.decay_rate", c.adafactor().decay_rate(), "must be > 0");
  if (!(c.adafactor().beta1() >= 0 && c.adafactor().beta1() < 1))
    bad("adafactor.beta1", c.adafactor().beta1(), "must be in [0, 1)");
}

config::FinetuneConfig ResolveTaskDefaults(const std::string& task_name,
                                           const config::FinetuneConfig& in) {
  const ClueTaskInfo& task = GetClueTask(task_name);
  config::FinetuneConfig c = in;
  // seeds.md §5.2: maxlen / batch / epochs / gradient accumulation per task.
  int max_len = 128, batch = 32, micro = 32, epochs = 10;
  if (task.format == ClueFormat::kWsc) epochs = 30;
  if (task.format == ClueFormat::kCmrc2018) max_len = 512, batch = 32, micro = 16;  // 16 x accum 2
  if (task.format == ClueFormat::kC3) max_len = 512, batch = 16, micro = 4;         // 4 q x accum 4
  if (task.format == ClueFormat::kChid) max_len = 64, batch = 24, micro = 12, epochs = 5;
  if (c.epochs() == 0) c.set_epochs(epochs);
  if (c.max_len() == 0) c.set_max_len(max_len);
  if (c.batch() == 0) {
    c.set_batch(batch);
    if (c.micro_batch() == 0) c.set_micro_batch(micro);
  }
  if (c.micro_batch() == 0 || c.micro_batch() > c.batch()) c.set_micro_batch(c.batch());
  const bool ada = c.optimizer() == "adafactor";
  if (c.lr() == 0) c.set_lr(ada ? 5e-4f : 2e-5f);
  if (c.warmup_proportion() == -1) c.set_warmup_proportion(ada ? 0.0f : 0.1f);
  if (c.lr_decay().empty()) c.set_lr_decay(ada ? "constant" : "linear");
  if (ada) c.set_weight_decay(0);
  if (c.doc_stride() == 0) c.set_doc_stride(DefaultDocStride(c.max_len()));
  if (c.eval_batch() == 0) c.set_eval_batch(c.micro_batch());
  return c;
}

std::vector<int64_t> ShuffledOrder(int64_t n, uint64_t seed, uint64_t epoch) {
  std::vector<int64_t> order(n);
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  for (int64_t i = n - 1; i > 0; --i) {
    const double u =
        Uniform01(seed ^ 0x6674736875666666ull /* "ftshuff" */, epoch, static_cast<uint64_t>(i));
    const int64_t j = std::min<int64_t>(i, static_cast<int64_t>(u * static_cast<double>(i + 1)));
    std::swap(order[i], order[j]);
  }
  return order;
}

// ------------------------------------------------------------------------------ the session

namespace {

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

bool IsPretrainOnly(const ParamInfo& info) {
  return info.name.rfind("cls.", 0) == 0 || info.name.rfind("sop.", 0) == 0;
}

// Per-feature model outputs of an inference pass.
struct FeatureOutput {
  std::vector<float> scores;  // classification logits [C] / choice scores [K_f]
  SpanChoice span;            // CMRC2018 window: best span (token positions) and its score
  int char_begin = -1, char_end = -1;
};

// Per-example predictions (after decoding).
struct Predictions {
  std::vector<int> labels;         // class / choice index (classification, C3, ChID)
  std::vector<double> probs;       // classification: [n, C] softmax
  std::vector<std::string> texts;  // CMRC2018 answers
};

struct Accum {
  double loss = 0;
  int64_t count = 0, correct = 0;
};

class Session {
 public:
  Session(const FinetuneArgs& args, const ClueTaskInfo& task, config::FinetuneConfig cfg)
      : args_(args), task_(task), cfg_(std::move(cfg)) {
    if (args_.dp != nullptr) {
      dp_ = args_.dp;
    } else {
      local_dp_ = MakeLocalCommunicator("dp", 0);
      dp_ = local_dp_.get();
    }
    rank_ = dp_->rank();
    world_ = dp_->size();
  }

  FinetuneSummary Run();

 private:
  void BuildModel();
  void ReadData();
  void BuildHead();
  // One forward (and backward when training) over features [begin, end) of `feats` (indices).
  Accum Pass(const std::vector<Feature>& feats, const std::vector<int64_t>& idx, size_t begin,
             size_t end, bool train, float grad_scale, uint32_t micro,
             std::vector<FeatureOutput>* out);
  // Every rank calls it; eval_batch chunks are dealt round-robin to the DP ranks and the outputs
  // (and loss sums) all-reduced, so every rank returns the same outputs.
  std::vector<FeatureOutput> Infer(const std::vector<Feature>& feats, Accum* loss);
  // This rank's part of the step [b0, b1) of the shuffled order (see DP in finetune.h): forward +
  // backward of its micro-batches, gradients summed over DP afterwards. Returns the step's loss
  // and accuracy sums over all ranks.
  Accum TrainStep(const std::vector<int64_t>& order, size_t b0, size_t b1);
  Predictions Decode(const ClueDataset& ds, const std::vector<Feature>& feats,
                     const std::vector<FeatureOutput>& outs) const;
  // Primary metric (percent) and, for CMRC2018, F1; labelled examples only.
  std::pair<double, double> Score(const ClueDataset& ds, const Predictions& p) const;
  void OptimizerStep(int64_t step, double lr, int64_t* skipped);
  void SaveBest(int epoch, double metric);
  void LoadBest();
  void Log(const Json& j);

  const FinetuneArgs& args_;
  const ClueTaskInfo& task_;
  config::FinetuneConfig cfg_;
  std::unique_ptr<Communicator> local_dp_;  // one process: a size-1 communicator
  Communicator* dp_ = nullptr;
  int rank_ = 0, world_ = 1;
  config::ModelConfig mc_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<RoFormerModel> model_;
  ParamStore head_store_;
  std::unique_ptr<ClassifierHead> cls_head_;
  std::unique_ptr<MultipleChoiceHead> mc_head_;
  std::unique_ptr<SpanHead> span_head_;
  std::unique_ptr<AdaFactor> ada_enc_, ada_head_;
  std::vector<std::pair<int64_t, int64_t>> enc_ranges_;  // trainable encoder flat ranges
  ClueDataset train_, dev_, test_;
  bool has_dev_ = false, has_test_ = false;
  std::vector<Feature> train_f_, dev_f_, test_f_;
  std::vector<float> d_seq_;
  Batch batch_;
  std::vector<int32_t> labels_, labels2_;
  std::vector<uint8_t> allowed_;
  std::vector<int32_t> offsets_;
  std::vector<CommHandle> pending_;  // gradient all-reduces of a step (capacity reserved once)
  std::ofstream metrics_;
  std::string best_root_;
  bool have_best_ = false;
  uint64_t cur_step_ = 0;
  Predictions best_dev_pred_;  // dev predictions of the kept epoch (written as dev_<submission>)
};

void Session::Log(const Json& j) {
  if (rank_ != 0) return;
  metrics_ << j.Dump() << "\n";
  metrics_.flush();
}

void Session::BuildModel() {
  std::string vocab_path = args_.vocab;
  std::string tokens_hash;
  std::unique_ptr<LoadedCheckpoint> ck;
  if (args_.from_scratch) {
    if (!args_.init.empty()) Fail("finetune: --from-scratch and --init exclude each other");
    if (vocab_path.empty()) Fail("finetune: --from-scratch needs --vocab FILE");
    mc_ = cfg_.model();
  } else {
    if (args_.init.empty()) Fail("finetune: give --init CKPT (or --from-scratch --vocab FILE)");
    ck = std::make_unique<LoadedCheckpoint>(LoadCheckpoint(args_.init, /*with_optimizer=*/false));
    if (!ck->manifest.has_model()) Fail(ck->dir, ": checkpoint manifest has no model config");
    mc_ = ck->manifest.model();
    ApplyRunTimeModelOptions(cfg_, &mc_);
    if (vocab_path.empty()) {
      vocab_path = ck->manifest.vocab().path();
      if (vocab_path.empty() || !fs::exists(vocab_path)) {
        Fail("finetune: ", ck->dir, " records no usable vocab path ('", vocab_path,
             "'); give --vocab FILE");
      }
    }
    tokens_hash = ck->manifest.vocab().tokens_hash();
  }
  Vocab vocab = Vocab::Load(vocab_path);
  if (args_.from_scratch) {
    if (mc_.vocab_size() != 0 && mc_.vocab_size() != vocab.size())
      Fail("finetune: model.vocab_size ", mc_.vocab_size(), " but ", vocab_path, " has ",
           vocab.size(), " entries");
    mc_.set_vocab_size(vocab.size());
  } else {
    if (mc_.vocab_size() != vocab.size()) {
      Fail("finetune: ", args_.init, " was trained with vocab_size ", mc_.vocab_size(), " but ",
           vocab_path, " has ", vocab.size(), " entries");
    }
    if (!tokens_hash.empty() && VocabTokensHash(vocab.tokens()) != tokens_hash) {
      Fail("finetune: ", vocab_path, " is not the vocab ", args_.init,
           " was trained with (token hash differs)");
    }
  }
  if (cfg_.hidden_dropout() != -1) mc_.set_hidden_dropout_prob(cfg_.hidden_dropout());
  if (cfg_.attention_dropout() != -1)
    mc_.set_attention_probs_dropout_prob(cfg_.attention_dropout());
  ConfigForModel(mc_, args_.from_scratch ? "finetune model config" : ck->dir);  // range checks
  if (cfg_.max_len() > mc_.max_position_embeddings()) {
    LOG(WARNING) << "finetune: max_len " << cfg_.max_len() << " clamped to the model's "
                 << "max_position_embeddings " << mc_.max_position_embeddings();
    cfg_.set_max_len(mc_.max_position_embeddings());
    if (cfg_.doc_stride() > cfg_.max_len()) cfg_.set_doc_stride(DefaultDocStride(cfg_.max_len()));
  }
  const bool adam = cfg_.optimizer() == "adamw";
  model_ = std::make_unique<RoFormerModel>(mc_, TpRegion(), /*with_optimizer_state=*/adam);
  if (args_.from_scratch) {
    model_->InitWeights(cfg_.seed());
  } else {
    RestoreInto(*ck, &model_->store(), /*with_optimizer=*/false, /*allow_unused=*/true);
  }
  tok_ = std::make_unique<Tokenizer>(std::move(vocab), cfg_.do_lower_case());
  // Trainable encoder ranges: every tensor but the pretraining heads, merged when adjacent.
  for (const ParamInfo& info : model_->store().infos()) {
    if (IsPretrainOnly(info) || info.numel == 0) continue;
    if (!enc_ranges_.empty() && enc_ranges_.back().second == info.offset) {
      enc_ranges_.back().second += info.numel;
    } else {
      enc_ranges_.push_back({info.offset, info.offset + info.numel});
    }
  }
}

void Session::ReadData() {
  const std::string& dir = args_.data_dir;
  // A split is a name of the task's table ("train", "dev", "test", "trial") or a file stem of the
  // directory ("train.3k"); the errors list what the directory offers (DescribeAvailableSplits).
  auto missing = [&](const std::string& field, const std::string& split) {
    Fail("finetune: ", field, " '", split, "': no such ", task_.name, " split in ", dir,
         "; available splits: ", DescribeAvailableSplits(task_, dir),
         task_.format == ClueFormat::kCmrc2018 && split == "train"
             ? " (CMRC2018 without train: --set train_split=trial)"
             : "");
  };
  if (ResolveSplitFiles(task_, dir, cfg_.train_split()).empty())
    missing("train_split", cfg_.train_split());
  // A dev/test split named explicitly must exist; the default names may be absent, and an empty
  // name turns the split off (e.g. no test prediction in an experiment that only needs dev).
  for (const auto& [field, split, dflt] :
       {std::tuple<const char*, std::string, const char*>{"dev_split", cfg_.dev_split(), "dev"},
        {"test_split", cfg_.test_split(), "test"}}) {
    if (!split.empty() && split != dflt && ResolveSplitFiles(task_, dir, split).empty())
      missing(field, split);
  }
  train_ = ReadClueSplit(task_, dir, cfg_.train_split());
  auto cap = [](ClueDataset* ds, int64_t n) {
    if (n > 0 && static_cast<int64_t>(ds->examples.size()) > n) ds->examples.resize(n);
  };
  cap(&train_, cfg_.max_train_examples());
  for (const Example& ex : train_.examples) {
    if (ex.label < 0 && task_.format != ClueFormat::kCmrc2018)
      Fail(train_.paths.empty() ? dir : train_.paths[0], ": training example ", ex.id, " (line ",
           ex.line, ") has no label");
  }
  if (train_.examples.empty()) Fail("finetune: the ", cfg_.train_split(), " split is empty");
  has_dev_ = !ResolveSplitFiles(task_, dir, cfg_.dev_split()).empty();
  if (has_dev_) {
    dev_ = ReadClueSplit(task_, dir, cfg_.dev_split());
    cap(&dev_, cfg_.max_eval_examples());
  } else if (cfg_.dev_split().empty()) {
    LOG(INFO) << "finetune: dev_split is empty: no evaluation; the last epoch is kept";
  } else {
    LOG(WARNING) << "finetune: no " << cfg_.dev_split() << " split in " << dir
                 << ": no evaluation; the last epoch is kept";
  }
  has_test_ = !ResolveSplitFiles(task_, dir, cfg_.test_split()).empty();
  if (has_test_) {
    test_ = ReadClueSplit(task_, dir, cfg_.test_split());
    if (cfg_.max_eval_examples() > 0 &&
        static_cast<int64_t>(test_.examples.size()) > cfg_.max_eval_examples()) {
      LOG(WARNING) << "finetune: max_eval_examples " << cfg_.max_eval_examples()
                   << " also cuts the test split: the submission file is incomplete for CLUE";
    }
    cap(&test_, cfg_.max_eval_examples());
  } else if (cfg_.test_split().empty()) {
    LOG(INFO) << "finetune: test_split is empty: no submission file";
  } else {
    LOG(WARNING) << "finetune: no " << cfg_.test_split() << " split in " << dir
                 << ": no submission file";
  }
  FeatureOptions fo;
  fo.max_len = cfg_.max_len();
  fo.pair_segment_b = cfg_.pair_segment_b();
  fo.doc_stride = cfg_.doc_stride();
  fo.max_query_len = cfg_.max_query_len();
  if (cfg_.pair_segment_b() >= mc_.type_vocab_size())
    Fail("finetune: pair_segment_b ", cfg_.pair_segment_b(),
         " needs type_vocab_size > it (model has ", mc_.type_vocab_size(), ")");
  auto build = [&](const ClueDataset& ds, const char* name) {
    FeatureStats st;
    std::vector<Feature> f = BuildFeatures(task_, ds.examples, *tok_, fo, &st);
    std::string files;
    for (const std::string& p : ds.paths)
      files += (files.empty() ? "" : " + ") + fs::path(p).filename().string();
    LOG(INFO) << "finetune: " << name << " (" << files << "): " << st.examples << " examples -> "
              << st.features << " features, " << st.sequences << " sequences (longest "
              << st.max_tokens << " tokens, " << st.truncated << " truncated"
              << (task_.format == ClueFormat::kCmrc2018
                      ? ", " + std::to_string(st.windows_with_answer) + " windows with answer, " +
                            std::to_string(st.answers_not_in_any_window) + " answers in no window"
                      : std::string())
              << ")";
    return f;
  };
  train_f_ = build(train_, "train");
  if (has_dev_) dev_f_ = build(dev_, "dev");
  if (has_test_) test_f_ = build(test_, "test");
}

void Session::BuildHead() {
  const int H = model_->dims().hidden;
  switch (task_.type) {
    case ClueTaskType::kSingleSentence:
    case ClueTaskType::kSentencePair:
      cls_head_ = std::make_unique<ClassifierHead>(H, static_cast<int>(task_.labels.size()));
      cls_head_->Declare(&head_store_);
      break;
    case ClueTaskType::kMultipleChoice:
      mc_head_ = std::make_unique<MultipleChoiceHead>(H);
      mc_head_->Declare(&head_store_);
      break;
    case ClueTaskType::kSpan:
      span_head_ = std::make_unique<SpanHead>(H);
      span_head_->Declare(&head_store_);
      break;
  }
  const bool adam = cfg_.optimizer() == "adamw";
  head_store_.Allocate(/*with_optimizer=*/adam);
  InitHeadParams(&head_store_, cfg_.seed(), cfg_.head_init_std());
  if (!adam) {
    const auto& a = cfg_.adafactor();
    AdaFactorOptions o;
    o.beta1 = a.beta1();
    o.decay_rate = a.decay_rate();
    o.eps1 = a.eps1();
    o.eps2 = a.eps2();
    o.clipping_threshold = a.clipping_threshold();
    o.multiply_by_parameter_scale = a.multiply_by_parameter_scale();
    o.min_dim_size_to_factor = a.min_dim_size_to_factor();
    ada_enc_ = std::make_unique<AdaFactor>(model_->store(), o,
                                           [](const ParamInfo& i) { return !IsPretrainOnly(i); });
    ada_head_ = std::make_unique<AdaFactor>(head_store_, o);
    LOG(INFO) << "finetune: adafactor state " << ada_enc_->StateFloats() + ada_head_->StateFloats()
              << " floats";
  }
}

Accum Session::Pass(const std::vector<Feature>& feats, const std::vector<int64_t>& idx,
                    size_t begin, size_t end, bool train, float grad_scale, uint32_t micro,
                    std::vector<FeatureOutput>* out) {
  PackFeatureRows(feats, idx, begin, end, tok_->vocab().pad_id(), &batch_, &offsets_);
  const int rows = batch_.batch, L = batch_.seq_len;
  const size_t n = static_cast<size_t>(rows) * L;
  labels_.clear();
  labels2_.clear();
  const bool span = span_head_ != nullptr;
  if (span) allowed_.assign(n, 0);
  for (size_t i = begin; i < end; ++i) {
    const Feature& f = feats[idx[i]];
    if (span) {
      const size_t o = static_cast<size_t>(offsets_[i - begin]) * L;  // one window per feature
      allowed_[o] = 1;  // [CLS]: the "no answer in this window" label
      for (size_t t = 0; t < f.char_begin.size(); ++t)
        if (f.char_begin[t] >= 0) allowed_[o + t] = 1;
      labels_.push_back(f.start);
      labels2_.push_back(f.end);
    } else {
      labels_.push_back(f.label);
    }
  }
  const EncodedMicroBatch enc =
      EncodeMicroBatch(model_.get(), cfg_, batch_, train, cur_step_, micro, &d_seq_);
  const float* seq = enc.seq;
  float* dseq = enc.d_seq;
  const DropoutSpec& hd = enc.head;
  const bool labelled = std::all_of(labels_.begin(), labels_.end(), [](int l) { return l >= 0; });
  Accum acc;
  if (cls_head_) {
    cls_head_->Forward(head_store_, seq, rows, L, hd);
    if (train || labelled) {
      const CrossEntropyStats st =
          cls_head_->Backward(&head_store_, labels_.data(), grad_scale, dseq);
      acc = {st.loss_sum, st.count, st.correct};
    }
    if (out) {
      const int C = cls_head_->num_labels();
      for (int b = 0; b < rows; ++b)
        out->push_back({std::vector<float>(cls_head_->logits().begin() + b * C,
                                           cls_head_->logits().begin() + (b + 1) * C),
                        {}});
    }
  } else if (mc_head_) {
    mc_head_->Forward(head_store_, seq, L, offsets_, hd);
    if (train || labelled) {
      const CrossEntropyStats st =
          mc_head_->Backward(&head_store_, labels_.data(), grad_scale, dseq);
      acc = {st.loss_sum, st.count, st.correct};
    }
    if (out) {
      const int K = mc_head_->max_choices();
      for (size_t q = 0; q + 1 < offsets_.size(); ++q) {
        const auto row = mc_head_->scores().begin() + q * K;
        out->push_back({std::vector<float>(row, row + (offsets_[q + 1] - offsets_[q])), {}});
      }
    }
  } else {
    span_head_->Forward(head_store_, seq, rows, L, allowed_.data());
    if (train) {
      const SpanLossStats st =
          span_head_->Backward(&head_store_, labels_.data(), labels2_.data(), grad_scale, dseq);
      acc = {st.loss_sum, st.count, 0};
    }
    if (out) {
      for (int b = 0; b < rows; ++b) {
        const size_t o = static_cast<size_t>(b) * L;
        FeatureOutput fo;
        fo.span =
            BestSpan(span_head_->start_logits().data() + o, span_head_->end_logits().data() + o,
                     allowed_.data() + o, L, cfg_.max_answer_len());
        if (fo.span.start > 0) {
          const Feature& f = feats[idx[begin + b]];
          fo.char_begin = f.char_begin[fo.span.start];
          fo.char_end = f.char_end[fo.span.end];
        }
        out->push_back(std::move(fo));
      }
    }
  }
  if (train) model_->EncoderBackward(dseq, 1.0f);
  return acc;
}

std::vector<FeatureOutput> Session::Infer(const std::vector<Feature>& feats, Accum* loss) {
  std::vector<FeatureOutput> out;
  out.reserve(feats.size());
  std::vector<int64_t> idx(feats.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int64_t>(i);
  const size_t eb = static_cast<size_t>(cfg_.eval_batch());
  Accum total;
  // Chunk k runs on rank k mod world: the chunks are the single-process ones, so each feature's
  // outputs are bit-identical whatever the DP size.
  const auto mine = [&](size_t feature) {
    return static_cast<int>((feature / eb) % static_cast<size_t>(world_)) == rank_;
  };
  for (size_t b = 0; b < feats.size(); b += eb) {
    const size_t e = std::min(feats.size(), b + eb);
    if (!mine(b)) {
      out.resize(e);  // filled by the all-reduce below
      continue;
    }
    const Accum a = Pass(feats, idx, b, e, false, 1.0f, 0, &out);
    total.loss += a.loss;
    total.count += a.count;
    total.correct += a.correct;
  }
  CHECK_EQ(out.size(), feats.size());
  if (world_ > 1) {
    // One flat slot per feature (classification: C logits; multiple choice: one score per choice
    // sequence; span: start, end, score, char_begin, char_end), zero on the ranks that did not
    // compute it, so a sum all-reduce gathers the outputs everywhere (x + 0 == x exactly).
    const auto width = [&](size_t i) -> size_t {
      if (span_head_) return 5;
      if (cls_head_) return static_cast<size_t>(cls_head_->num_labels());
      return feats[i].ids.size();
    };
    std::vector<size_t> off(feats.size() + 1, 0);
    for (size_t i = 0; i < feats.size(); ++i) off[i + 1] = off[i] + width(i);
    std::vector<double> buf(off.back() + 3, 0.0);
    for (size_t i = 0; i < feats.size(); ++i) {
      if (!mine(i)) continue;
      double* d = buf.data() + off[i];
      const FeatureOutput& o = out[i];
      if (span_head_) {
        d[0] = o.span.start;
        d[1] = o.span.end;
        d[2] = o.span.score;
        d[3] = o.char_begin;
        d[4] = o.char_end;
      } else {
        CHECK_EQ(o.scores.size(), width(i));
        std::copy(o.scores.begin(), o.scores.end(), d);
      }
    }
    double* t = buf.data() + off.back();
    t[0] = total.loss;
    t[1] = static_cast<double>(total.count);
    t[2] = static_cast<double>(total.correct);
    dp_->AllReduce(std::span<double>(buf));
    for (size_t i = 0; i < feats.size(); ++i) {
      const double* d = buf.data() + off[i];
      FeatureOutput& o = out[i];
      if (span_head_) {
        o.span.start = static_cast<int>(d[0]);
        o.span.end = static_cast<int>(d[1]);
        o.span.score = static_cast<float>(d[2]);
        o.char_begin = static_cast<int>(d[3]);
        o.char_end = static_cast<int>(d[4]);
      } else {
        o.scores.assign(d, d + width(i));
      }
    }
    total.loss = t[0];
    total.count = std::llround(t[1]);
    total.correct = std::llround(t[2]);
  }
  if (loss) *loss = total;
  return out;
}

Accum Session::TrainStep(const std::vector<int64_t>& order, size_t b0, size_t b1) {
  model_->store().ZeroGrads();
  head_store_.ZeroGrads();
  const size_t n = b1 - b0, mb = static_cast<size_t>(cfg_.micro_batch());
  // Every micro-batch, whichever rank runs it, is scaled by 1 / (the step's examples): the sum
  // over ranks is then the single-process mean even when n does not divide by the DP size.
  const float scale = 1.0f / static_cast<float>(n);
  Accum acc;
  const auto run = [&](size_t m0, size_t m1, uint32_t micro) {
    if (m0 >= m1) return;
    const Accum a = Pass(train_f_, order, m0, m1, true, scale, micro, nullptr);
    acc.loss += a.loss;
    acc.count += a.count;
    acc.correct += a.correct;
  };
  const size_t M = (n + mb - 1) / mb, W = static_cast<size_t>(world_),
               r = static_cast<size_t>(rank_);
  if (M >= W) {
    // Whole single-process micro-batches (same rows, same dropout stream id k).
    for (size_t k = M * r / W; k < M * (r + 1) / W; ++k)
      run(b0 + k * mb, std::min(b1, b0 + (k + 1) * mb), static_cast<uint32_t>(k));
  } else {
    // Fewer micro-batches than ranks (e.g. batch == micro_batch): near-equal contiguous shares,
    // one micro-batch each (<= mb rows since n < W * mb), so every rank works.
    const size_t q = n / W, extra = n % W, s0 = b0 + r * q + std::min(r, extra);
    run(s0, s0 + q + (r < extra ? 1 : 0), static_cast<uint32_t>(r));
  }
  if (world_ > 1) {
    // Sum (not average: the 1/n scale is already in) the trainable gradients; the pretraining-only
    // tensors have none. All launched before the first wait, then one small all-reduce of the sums.
    pending_.clear();
    std::vector<float>& eg = model_->store().grads();
    for (const auto& [b, e] : enc_ranges_)
      pending_.push_back(dp_->AllReduceAsync(std::span<float>(eg.data() + b, e - b)));
    pending_.push_back(dp_->AllReduceAsync(std::span<float>(head_store_.grads())));
    for (CommHandle& h : pending_) h.Wait();
    double st[3] = {acc.loss, static_cast<double>(acc.count), static_cast<double>(acc.correct)};
    dp_->AllReduce(std::span<double>(st, 3));
    acc.loss = st[0];
    acc.count = std::llround(st[1]);
    acc.correct = std::llround(st[2]);
  }
  return acc;
}

Predictions Session::Decode(const ClueDataset& ds, const std::vector<Feature>& feats,
                            const std::vector<FeatureOutput>& outs) const {
  Predictions p;
  const size_t n = ds.examples.size();
  if (cls_head_) {
    const int C = cls_head_->num_labels();
    p.labels.resize(n);
    p.probs.resize(n * C);
    for (size_t i = 0; i < n; ++i) {
      const std::vector<float>& z = outs[i].scores;
      const float mx = *std::max_element(z.begin(), z.end());
      double sum = 0;
      for (int c = 0; c < C; ++c) sum += std::exp(static_cast<double>(z[c] - mx));
      for (int c = 0; c < C; ++c)
        p.probs[i * C + c] = std::exp(static_cast<double>(z[c] - mx)) / sum;
      p.labels[i] = static_cast<int>(std::max_element(z.begin(), z.end()) - z.begin());
    }
  } else if (mc_head_) {
    p.labels.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const std::vector<float>& z = outs[i].scores;
      p.labels[i] = static_cast<int>(std::max_element(z.begin(), z.end()) - z.begin());
    }
    if (task_.format == ClueFormat::kChid && cfg_.chid_hungarian()) {
      // CLUE format: the blanks of one JSON line share the candidates and take distinct idioms.
      std::map<int64_t, std::vector<size_t>> groups;
      for (size_t i = 0; i < n; ++i)
        if (ds.examples[i].blank_marker != "#idiom#") groups[ds.examples[i].line].push_back(i);
      for (const auto& [line, members] : groups) {
        if (members.size() < 2) continue;
        const int K = static_cast<int>(outs[members[0]].scores.size());
        bool same = true;
        for (size_t m : members) same &= static_cast<int>(outs[m].scores.size()) == K;
        if (!same) continue;
        std::vector<double> score(members.size() * K);
        for (size_t r = 0; r < members.size(); ++r)
          for (int c = 0; c < K; ++c) score[r * K + c] = outs[members[r]].scores[c];
        const std::vector<int> a = MaxScoreAssignment(score, static_cast<int>(members.size()), K);
        for (size_t r = 0; r < members.size(); ++r)
          if (a[r] >= 0) p.labels[members[r]] = a[r];
      }
    }
  } else {
    p.texts.assign(n, "");
    std::vector<float> best(n, -std::numeric_limits<float>::infinity());
    for (size_t f = 0; f < feats.size(); ++f) {
      const FeatureOutput& o = outs[f];
      const size_t e = static_cast<size_t>(feats[f].example);
      if (o.span.start <= 0 || !(o.span.score > best[e])) continue;
      best[e] = o.span.score;
      const std::string& ctx = ds.examples[e].context;
      const int64_t b = Utf8ByteOffset(ctx, o.char_begin), en = Utf8ByteOffset(ctx, o.char_end);
      p.texts[e] = (b >= 0 && en >= b) ? ctx.substr(b, en - b) : "";
    }
  }
  return p;
}

std::pair<double, double> Session::Score(const ClueDataset& ds, const Predictions& p) const {
  if (span_head_) {
    std::vector<std::vector<std::string>> refs;
    std::vector<std::string> texts;
    for (size_t i = 0; i < ds.examples.size(); ++i) {
      if (ds.examples[i].answers.empty()) continue;
      std::vector<std::string> r;
      for (const CmrcAnswer& a : ds.examples[i].answers) r.push_back(a.text);
      refs.push_back(std::move(r));
      texts.push_back(p.texts[i]);
    }
    const CmrcScore s = CmrcEvaluate(refs, texts);
    return {s.em, s.f1};
  }
  std::vector<int> gold;
  for (const Example& ex : ds.examples) gold.push_back(ex.label);
  return {100.0 * Accuracy(p.labels, gold), 0.0};
}

void Session::OptimizerStep(int64_t step, double lr, int64_t* skipped) {
  const GradCheck ge = CheckGradients(model_->store());
  const GradCheck gh = CheckGradients(head_store_);
  if (!ge.finite || !gh.finite) {
    ++*skipped;
    LOG(WARNING) << "finetune: step " << step << " skipped: non-finite gradient in "
                 << (ge.finite ? gh.first_bad : ge.first_bad);
    if (*skipped > 5) Fail("finetune: more than 5 steps with non-finite gradients; lower --lr");
    return;
  }
  if (cfg_.optimizer() == "adamw") {
    AdamWOptions o;
    o.beta1 = cfg_.adam_beta1();
    o.beta2 = cfg_.adam_beta2();
    o.eps = cfg_.adam_eps();
    o.weight_decay = cfg_.weight_decay();
    o.grad_clip = cfg_.grad_clip();
    const double norm = std::sqrt(ge.norm * ge.norm + gh.norm * gh.norm);
    const int64_t t = step + 1 - *skipped;
    for (const auto& [b, e] : enc_ranges_) AdamWStepRange(&model_->store(), o, lr, t, norm, b, e);
    AdamWStep(&head_store_, o, lr, t, norm);
  } else {
    ada_enc_->Step(&model_->store(), lr);
    ada_head_->Step(&head_store_, lr);
  }
}

void Session::SaveBest(int epoch, double metric) {
  if (!cfg_.save_best()) return;
  have_best_ = true;       // on every rank: LoadBest is collective
  if (rank_ != 0) return;  // every rank holds the same parameters
  const config::Config cfg = ConfigForModel(mc_, "finetune");
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
  o.metadata["source"] = "roformer finetune";
  o.metadata["task"] = task_.name;
  o.metadata["epoch"] = std::to_string(epoch);
  o.metadata["dev_metric"] = std::to_string(metric);
  SaveCheckpoint(best_root_ + "/encoder", model_->store(), cfg, st, o);
  o.metadata["head"] = cls_head_ ? "classifier" : mc_head_ ? "multiple_choice" : "span";
  std::string labels;
  for (const std::string& l : task_.labels) labels += (labels.empty() ? "" : ",") + l;
  o.metadata["labels"] = labels;
  SaveCheckpoint(best_root_ + "/head", head_store_, cfg, st, o);
}

void Session::LoadBest() {
  if (!have_best_) return;
  // Rank 0 reads back what it wrote (the checkpoint, not a memory copy, is what gets predicted
  // with) and sends it to the others, which need no shared filesystem.
  if (rank_ == 0) {
    RestoreInto(LoadCheckpoint(best_root_ + "/encoder", false), &model_->store(), false);
    RestoreInto(LoadCheckpoint(best_root_ + "/head", false), &head_store_, false);
  }
  if (world_ > 1) {
    dp_->Broadcast(std::span<float>(model_->store().params()), 0);
    dp_->Broadcast(std::span<float>(head_store_.params()), 0);
  }
}

FinetuneSummary Session::Run() {
  const auto t0 = std::chrono::steady_clock::now();
  best_root_ = args_.out_dir + "/best";
  if (rank_ == 0) {  // the only rank that writes files
    std::error_code ec;
    fs::create_directories(args_.out_dir, ec);
    if (ec) Fail("finetune: cannot create ", args_.out_dir, ": ", ec.message());
    metrics_.open(args_.out_dir + "/metrics.jsonl", std::ios::trunc);
    if (!metrics_) Fail("finetune: cannot write ", args_.out_dir, "/metrics.jsonl");
  }
  if (cfg_.can().enabled() && task_.labels.empty())
    Fail("finetune: --can applies to classification tasks only (", task_.name, " is ",
         ClueTaskTypeName(task_.type), ")");

  BuildModel();
  ReadData();
  BuildHead();
  pending_.reserve(enc_ranges_.size() + 1);
  if (world_ > 1)
    LOG(INFO) << "finetune: data parallel over " << world_ << " ranks (rank 0 writes "
              << args_.out_dir << ")";

  const int64_t n_train = static_cast<int64_t>(train_f_.size());
  const FinetuneSteps plan = PlanFinetuneSteps(cfg_, n_train);
  const int64_t steps_per_epoch = plan.per_epoch, total = plan.total;
  const LrSchedule& sched = plan.lr;
  {
    Json j = Json::Object();
    j.set("event", "config")
        .set("task", task_.name)
        .set("init", args_.from_scratch ? "scratch" : args_.init);
    std::string text;
    pb::TextFormat::Printer pr;
    pr.SetSingleLineMode(true);
    pr.PrintToString(cfg_, &text);
    Json files = Json::Array();
    for (const std::string& f : train_.paths) files.push_back(fs::path(f).filename().string());
    j.set("finetune_config", text)
        .set("train_files", std::move(files))
        .set("train_examples", static_cast<int64_t>(train_.examples.size()))
        .set("train_features", n_train)
        .set("steps_per_epoch", steps_per_epoch)
        .set("total_steps", total)
        .set("warmup_steps", sched.warmup_steps)
        .set("hidden", model_->dims().hidden)
        .set("layers", model_->dims().layers)
        .set("dp", world_);
    Log(j);
    LOG(INFO) << "finetune " << task_.name << ": " << cfg_.epochs() << " epochs x "
              << steps_per_epoch << " steps (batch " << cfg_.batch() << ", micro "
              << cfg_.micro_batch() << ", max_len " << cfg_.max_len() << ", " << cfg_.optimizer()
              << " lr " << cfg_.lr() << ")";
  }

  FinetuneSummary sum;
  const std::string metric_name = span_head_ ? "dev_em" : "dev_accuracy";
  double best = -1, best_f1 = -1;
  int64_t skipped = 0;
  for (int epoch = 1; epoch <= cfg_.epochs(); ++epoch) {
    const std::vector<int64_t> order = ShuffledOrder(n_train, cfg_.seed(), epoch);
    Accum ep;
    Accum window;
    double lr = 0;
    for (int64_t s = 0; s < steps_per_epoch; ++s) {
      const size_t b0 = static_cast<size_t>(s * cfg_.batch());
      const size_t b1 = std::min(order.size(), b0 + cfg_.batch());
      const Accum a = TrainStep(order, b0, b1);
      for (Accum* x : {&ep, &window}) {
        x->loss += a.loss;
        x->count += a.count;
        x->correct += a.correct;
      }
      lr = sched.At(static_cast<int64_t>(cur_step_));
      OptimizerStep(static_cast<int64_t>(cur_step_), lr, &skipped);
      ++cur_step_;
      if (cfg_.log_every() > 0 && cur_step_ % cfg_.log_every() == 0) {
        const double wl = window.loss / std::max<int64_t>(1, window.count);
        LOG(INFO) << "epoch " << epoch << " step " << cur_step_ << "/" << total << " loss " << wl
                  << " lr " << lr;
        Json js = Json::Object();
        js.set("event", "step")
            .set("epoch", epoch)
            .set("step", static_cast<int64_t>(cur_step_))
            .set("loss", wl)
            .set("examples", window.count)
            .set("lr", lr);
        Log(js);
        window = Accum();
      }
    }
    Json j = Json::Object();
    j.set("event", "epoch")
        .set("epoch", epoch)
        .set("step", static_cast<int64_t>(cur_step_))
        .set("lr", lr)
        .set("train_loss", ep.loss / std::max<int64_t>(1, ep.count));
    if (!span_head_) j.set("train_accuracy", 100.0 * ep.correct / std::max<int64_t>(1, ep.count));
    bool improved = !has_dev_;
    if (has_dev_) {
      Accum dl;
      const std::vector<FeatureOutput> outs = Infer(dev_f_, &dl);
      const Predictions p = Decode(dev_, dev_f_, outs);
      const auto [m, f1] = Score(dev_, p);
      j.set(metric_name, m);
      if (span_head_) j.set("dev_f1", f1);
      if (dl.count > 0) j.set("dev_loss", dl.loss / dl.count);
      j.set("dev_count", static_cast<int64_t>(dev_.examples.size()));
      improved = m > best || (m == best && f1 > best_f1);
      if (improved) {
        best = m;
        best_f1 = f1;
        sum.best_epoch = epoch;
        best_dev_pred_ = p;
      }
      LOG(INFO) << "epoch " << epoch << ": dev " << (span_head_ ? "EM " : "accuracy ") << m
                << (span_head_ ? " F1 " + std::to_string(f1) : std::string()) << " (best " << best
                << " @ epoch " << sum.best_epoch << ")";
    }
    if (improved) SaveBest(epoch, best);
    j.set("best", improved).set("elapsed_s", Seconds(t0));
    Log(j);
  }
  sum.steps = static_cast<int64_t>(cur_step_);
  sum.best_dev = std::max(best, 0.0);
  sum.best_dev_f1 = std::max(best_f1, 0.0);
  LoadBest();

  // The kept epoch's dev predictions in submission format, so `roformer evaluate` can re-score
  // dev independently (e.g. CMRC2018 EM/F1) without another inference pass. Without CAN.
  const auto submission_name = [&](const ClueDataset& ds) {
    const bool fewclue_chid = task_.format == ClueFormat::kChid && !ds.examples.empty() &&
                              ds.examples[0].blank_marker == "#idiom#";
    return fewclue_chid && !task_.fewclue_submission_file.empty() ? task_.fewclue_submission_file
                                                                  : task_.submission_file;
  };
  if (has_dev_ && sum.best_epoch > 0 && cfg_.write_dev_predictions() && rank_ == 0) {
    const std::string path = args_.out_dir + "/dev_" + submission_name(dev_);
    if (span_head_) {
      WriteCmrc2018Submission(dev_.examples, best_dev_pred_.texts, path);
    } else {
      WriteClueSubmission(task_, dev_.examples, best_dev_pred_.labels, path);
    }
    const int64_t n = ValidateSubmission(task_, path, &dev_.examples);
    Json j = Json::Object();
    j.set("event", "dev_predictions")
        .set("path", path)
        .set("entries", n)
        .set("epoch", sum.best_epoch);
    Log(j);
    LOG(INFO) << "wrote " << path << " (dev predictions of epoch " << sum.best_epoch << ", " << n
              << " entries)";
  }

  // CAN (classification): prior from the training labels; dev before/after; test with it.
  std::vector<double> prior;
  const bool can = cfg_.can().enabled() && cls_head_ != nullptr;
  CanOptions co;
  co.k = cfg_.can().k();
  co.tau = cfg_.can().tau();
  co.iterations = cfg_.can().iters();
  co.alpha = cfg_.can().alpha();
  const int C = cls_head_ ? cls_head_->num_labels() : 0;
  if (can) {
    std::vector<int> tl;
    for (const Example& ex : train_.examples) tl.push_back(ex.label);
    prior = PriorFromLabels(tl, C);
    if (has_dev_) {
      const Predictions p = Decode(dev_, dev_f_, Infer(dev_f_, nullptr));
      const CanResult r =
          ApplyCan(p.probs, static_cast<int64_t>(dev_.examples.size()), C, prior, co);
      std::vector<int> gold;
      for (const Example& ex : dev_.examples) gold.push_back(ex.label);
      const CanReport rep = CanAccuracy(p.probs, r, gold);
      Json j = Json::Object();
      j.set("event", "can")
          .set("k", co.k)
          .set("tau", co.tau)
          .set("iters", co.iterations)
          .set("alpha", co.alpha)
          .set("dev_count", rep.count)
          .set("confident", rep.confident)
          .set("uncertain", rep.uncertain)
          .set("dev_accuracy_before", 100 * rep.acc_before)
          .set("dev_accuracy_after", 100 * rep.acc_after)
          .set("dev_accuracy_confident", 100 * rep.acc_confident)
          .set("dev_accuracy_uncertain_before", 100 * rep.acc_uncertain_before)
          .set("dev_accuracy_uncertain_after", 100 * rep.acc_uncertain_after)
          .set("changed", rep.changed);
      Log(j);
      sum.can_ran = true;
      sum.can_before = 100 * rep.acc_before;
      sum.can_after = 100 * rep.acc_after;
      LOG(INFO) << "CAN on dev: accuracy " << sum.can_before << " -> " << sum.can_after << " ("
                << rep.confident << " confident at " << 100 * rep.acc_confident << ", "
                << rep.uncertain << " uncertain " << 100 * rep.acc_uncertain_before << " -> "
                << 100 * rep.acc_uncertain_after << ")";
    }
  }

  if (has_test_) {
    const Predictions p = Decode(test_, test_f_, Infer(test_f_, nullptr));
    sum.submission = args_.out_dir + "/" + submission_name(test_);
    if (rank_ != 0) {
      // Rank 0 writes and validates the same predictions.
    } else if (span_head_) {
      WriteCmrc2018Submission(test_.examples, p.texts, sum.submission);
    } else if (can) {
      const CanResult r =
          ApplyCan(p.probs, static_cast<int64_t>(test_.examples.size()), C, prior, co);
      WriteClueSubmission(task_, test_.examples,
                          ArgmaxRows(r.probs, static_cast<int64_t>(test_.examples.size()), C),
                          sum.submission);
    } else {
      WriteClueSubmission(task_, test_.examples, p.labels, sum.submission);
    }
    if (rank_ == 0)
      sum.submission_entries = ValidateSubmission(task_, sum.submission, &test_.examples);
    Json j = Json::Object();
    j.set("event", "test")
        .set("submission", sum.submission)
        .set("entries", sum.submission_entries)
        .set("can", can)
        .set("validated", true);
    Log(j);
    LOG(INFO) << "wrote " << sum.submission << " (" << sum.submission_entries
              << " entries, validated)";
  }
  Json j = Json::Object();
  j.set("event", "done")
      .set("best_epoch", sum.best_epoch)
      .set("steps", sum.steps)
      .set("elapsed_s", Seconds(t0));
  if (has_dev_) {
    j.set("best_" + metric_name, sum.best_dev);
    if (span_head_) j.set("best_dev_f1", sum.best_dev_f1);
  }
  if (have_best_) j.set("best_checkpoint", best_root_);
  Log(j);
  return sum;
}

}  // namespace

FinetuneSummary RunFinetune(const FinetuneArgs& args) {
  const ClueTaskInfo& task = GetClueTask(args.task);
  ValidateFinetuneConfig(args.cfg);
  config::FinetuneConfig cfg = ResolveTaskDefaults(task.name, args.cfg);
  Session s(args, task, std::move(cfg));
  return s.Run();
}

}  // namespace roformer
