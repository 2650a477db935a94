// Multi-task loss weighting (seeds.md §8, after Su Jianlin's post 8870 and its sequel 8896).
//
// Setup: tasks i = 1..n share parameters θ; L = Σ_i α_i L_i. Every scheme below is expressed as the
// effective per-task weight w_i = ∂L/∂L_i (with sg(·) = stop_gradient treated as a constant), i.e.
// the factor the trainer multiplies task i's loss gradient by before summing:
//   ∇_θ L = Σ_i w_i ∇_θ L_i.
//
//   fixed        L = Σ α_i L_i                         w_i = α_i (empty α: 1/n, "equal weighting")
//   init         L = Σ L_i / L_i^(init)                w_i = 1 / L_i^(init)
//                L_i^(init) = log K_i for K_i-way cross-entropy (uniform output at init), else the
//                mean loss of the first `init_batches` steps (running mean while still estimating).
//   prior        L = Σ L_i / L_i^(prior)               w_i = 1 / H(p_i),  H(p) = -Σ_k p_k log p_k
//   realtime     L = Σ L_i / sg(L_i)                   w_i = 1 / L_i
//                ∇(L_i/sg(L_i)) = ∇L_i / L_i = ∇ log L_i, so this is gradient-equivalent to
//                Σ log L_i = n log (Π L_i)^{1/n} (the geometric mean's direction). The author's
//                recommended baseline.
//   genmean      L(γ) = ((1/n) Σ L_i^γ)^{1/γ} =: G      w_i = (1/n) (L_i / G)^{γ-1}
//                γ=1 arithmetic mean (w_i = 1/n); γ→0 geometric mean (γ=0 is handled exactly:
//                G = (Π L_i)^{1/n}, w_i = G / (n L_i)); γ→+∞ max; γ→−∞ min.
//   gradnorm     L = Σ L_i / sg(‖∇_θ L_i‖)              w_i = 1 / ‖g_i‖,  g_i = ∇_θ L_i over the
//                SHARED parameters θ only, so ∇_θ L = Σ g_i/‖g_i‖ (scale- and shift-invariant;
//                the author's choice when both invariances are wanted). ‖g_i‖ = 0 gives w_i = 0.
//   uncertainty  (Kendall et al.; not in 8870) L = Σ exp(-s_i) L_i + s_i, s_i = log σ_i² learned.
//                w_i = exp(-s_i),  ∂L/∂s_i = 1 - exp(-s_i) L_i; at the optimum exp(s_i) = L_i it
//                reduces to n + Σ log L_i, i.e. the realtime / log-sum scheme.
//
// Scale invariance (multiplying one L_k and its gradient by c): init (estimated L^(init); not with
// a theoretical log K), realtime and gradnorm leave Σ w_i ∇L_i unchanged; genmean with γ=0 leaves
// its direction unchanged (the magnitude scales by c^{1/n}). fixed and prior are not invariant.
//
// Losses must be finite, and >= 0 for every scheme except fixed and uncertainty (floored at `eps`
// before dividing or taking logs); bad inputs throw roformer::Error naming the task.
#pragma once

#include <string>
#include <vector>

namespace roformer {

enum class WeightingScheme { kFixed, kInit, kPrior, kRealtime, kGenMean, kGradNorm, kUncertainty };

// "fixed" | "init" | "prior" | "realtime" | "genmean" | "gradnorm" | "uncertainty".
WeightingScheme ParseWeightingScheme(const std::string& name);
const char* WeightingSchemeName(WeightingScheme scheme);

struct LossWeightingOptions {
  WeightingScheme scheme = WeightingScheme::kRealtime;
  std::vector<double> fixed_weights;  // kFixed: α_i >= 0; empty = 1/n each.
  int init_batches = 1;               // kInit: batches averaged for an estimated L_i^(init).
  std::vector<int> num_classes;       // kInit: K_i >= 2 → L_i^(init) = log K_i; 0 → estimate.
  std::vector<std::vector<double>> label_priors;  // kPrior: label prior p_i per task.
  double gamma = 1.0;                             // kGenMean: finite γ (0 = geometric mean).
  // kUncertainty: initial s_i (empty = 0) and the optimiser for s.
  std::vector<double> init_log_var;
  bool uncertainty_adam = true;  // false: plain SGD, s -= lr * ∂L/∂s.
  double uncertainty_lr = 1e-2;
  double adam_beta1 = 0.9, adam_beta2 = 0.999, adam_eps = 1e-8;
  double eps = 1e-12;  // floor for L_i, L_i^(init) in divisions.
};

class LossWeighting {
 public:
  // Throws roformer::Error on inconsistent options (sizes, negative weights, degenerate priors).
  LossWeighting(int num_tasks, LossWeightingOptions options);

  // One training step: returns w_i (size n) for these losses. `grad_norms` (‖g_i‖ over the shared
  // parameters) is required for kGradNorm and ignored otherwise. Advances the state: the kInit
  // estimate, and for kUncertainty one optimiser step on s after computing w from the current s.
  // Allocates nothing after construction; the reference is valid until the next call.
  const std::vector<double>& Step(const std::vector<double>& losses,
                                  const std::vector<double>& grad_norms = {});

  // The weights Step would return, without advancing any state.
  const std::vector<double>& Weights(const std::vector<double>& losses,
                                     const std::vector<double>& grad_norms = {});

  // Whether the weights of the next Step depend on that step's own losses (realtime, genmean,
  // init while still estimating) or on the per-task shared-gradient norms (gradnorm). When neither
  // holds the trainer knows w before the forward pass and can apply it in a single backward.
  bool NeedsCurrentLosses() const;
  bool NeedsGradNorms() const { return opt_.scheme == WeightingScheme::kGradNorm; }
  // The weights of the next Step when they depend on neither (Fail otherwise); no state change.
  const std::vector<double>& LossFreeWeights();

  // The objective value, for logging, whose ∂/∂L_i is the weight above: realtime logs Σ log L_i
  // (the value of Σ L_i/sg(L_i) is always n); gradnorm uses the norms of the last Step (1 before).
  double CombinedLoss(const std::vector<double>& losses) const;

  // kUncertainty: s_i = log σ_i² and ∂L/∂s_i = 1 - exp(-s_i) L_i at the current s.
  const std::vector<double>& log_var() const { return s_; }
  std::vector<double> LogVarGrad(const std::vector<double>& losses) const;

  // The evolving state (steps, init estimates, uncertainty's s and Adam moments, gradnorm's last
  // norms) as text with exact (%.17g) doubles, for checkpoints: a resumed run restores it and
  // continues bit-identically. RestoreState throws roformer::Error on text from another scheme or
  // task count.
  std::string SerializeState() const;
  void RestoreState(const std::string& text);

  int num_tasks() const { return n_; }
  WeightingScheme scheme() const { return opt_.scheme; }
  // kInit: the current L_i^(init) (running estimate while steps < init_batches).
  const std::vector<double>& init_losses() const { return init_; }

 private:
  void CheckLosses(const std::vector<double>& losses) const;
  void ComputeWeights(const std::vector<double>& losses, const std::vector<double>& grad_norms);

  int n_;
  LossWeightingOptions opt_;
  long steps_ = 0;
  std::vector<double> weights_;
  std::vector<double> ones_;             // placeholder losses for LossFreeWeights
  std::vector<double> init_, init_sum_;  // kInit
  std::vector<double> prior_entropy_;    // kPrior
  std::vector<double> last_norms_;       // kGradNorm, for CombinedLoss
  std::vector<double> s_, m_, v_;        // kUncertainty
};

}  // namespace roformer
