// AdamW over a ParamStore's flat buffers: decoupled weight decay (skipped for tensors declared
// without decay: LayerNorm weights and biases), bias-corrected moments, global grad-norm clipping,
// and the non-finite guard (a step with a NaN/Inf loss or gradient is skipped and the first
// offending tensor is named).
#pragma once

#include <cstdint>
#include <string>

#include "runtime/param_store.h"

namespace roformer {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-6, weight_decay = 0.01;
  double grad_clip = 1.0;  // 0 = off
};

struct GradCheck {
  double norm = 0;  // global L2 norm of the gradients (before clipping)
  bool finite = true;
  std::string first_bad;  // name of the first tensor with a non-finite gradient
};

// Global gradient L2 norm in double, in a fixed summation order (bit-reproducible), plus the name
// of the first tensor with a NaN/Inf gradient. Replicated tensors count once (this is per rank; the
// distributed layer combines ranks).
GradCheck CheckGradients(const ParamStore& store);

// One AdamW update with learning rate `lr`; `step` is the 1-based update count for bias correction.
// Gradients are scaled by min(1, clip / norm) first when clipping is on.
void AdamWStep(ParamStore* store, const AdamWOptions& opt, double lr, int64_t step,
               double grad_norm);

// The same update restricted to the flat-buffer elements [begin, end) (ZeRO-1: a rank's owned
// range). The range may cut through tensors; each element gets its own tensor's weight-decay flag.
// AdamWStep is this over [0, size()), so both give bit-identical results on the elements they
// share.
void AdamWStepRange(ParamStore* store, const AdamWOptions& opt, double lr, int64_t step,
                    double grad_norm, int64_t begin, int64_t end);

}  // namespace roformer
