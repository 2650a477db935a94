// Offsets of the model's named tensors (HF parameter names) in a ParamStore, resolved once, so the
// CPU model and the CUDA port index the flat parameter/gradient buffers through one table.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/error.h"
#include "runtime/param_store.h"

namespace roformer {

struct LayerRefs {
  int64_t q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b, lna_g, lna_b, f1_w, f1_b, f2_w, f2_b, lnf_g,
      lnf_b;
};

struct ParamRefs {
  int64_t word = 0, type = 0, emb_ln_g = 0, emb_ln_b = 0, proj_w = -1, proj_b = -1;
  std::vector<LayerRefs> layer;
  int64_t final_g = -1, final_b = -1;  // Pre-LN only
  int64_t head_w = 0, head_b = 0, head_ln_g = 0, head_ln_b = 0, dec_bias = 0;
  int64_t sop_w = 0, sop_b = 0, cls_w = 0, cls_b = 0;

  // Error naming `who` and the tensor when the store lacks one.
  void ResolveOffsets(const ParamStore& store, int layers, bool embedding_projection, bool pre_ln,
                      const char* who) {
    auto off = [&](const std::string& name) {
      if (!store.has(name)) Fail(who, ": the parameter store has no tensor '", name, "'");
      return static_cast<int64_t>(store.info(name).offset);
    };
    word = off("roformer.embeddings.word_embeddings.weight");
    type = off("roformer.embeddings.token_type_embeddings.weight");
    emb_ln_g = off("roformer.embeddings.LayerNorm.weight");
    emb_ln_b = off("roformer.embeddings.LayerNorm.bias");
    if (embedding_projection) {
      proj_w = off("roformer.embeddings_project.weight");
      proj_b = off("roformer.embeddings_project.bias");
    }
    layer.resize(layers);
    for (int l = 0; l < layers; ++l) {
      const std::string p = "roformer.encoder.layer." + std::to_string(l) + ".";
      LayerRefs& x = layer[l];
      x.q_w = off(p + "attention.self.query.weight");
      x.q_b = off(p + "attention.self.query.bias");
      x.k_w = off(p + "attention.self.key.weight");
      x.k_b = off(p + "attention.self.key.bias");
      x.v_w = off(p + "attention.self.value.weight");
      x.v_b = off(p + "attention.self.value.bias");
      x.o_w = off(p + "attention.output.dense.weight");
      x.o_b = off(p + "attention.output.dense.bias");
      x.lna_g = off(p + "attention.output.LayerNorm.weight");
      x.lna_b = off(p + "attention.output.LayerNorm.bias");
      x.f1_w = off(p + "intermediate.dense.weight");
      x.f1_b = off(p + "intermediate.dense.bias");
      x.f2_w = off(p + "output.dense.weight");
      x.f2_b = off(p + "output.dense.bias");
      x.lnf_g = off(p + "output.LayerNorm.weight");
      x.lnf_b = off(p + "output.LayerNorm.bias");
    }
    if (pre_ln) {
      final_g = off("roformer.encoder.final_layer_norm.weight");
      final_b = off("roformer.encoder.final_layer_norm.bias");
    }
    head_w = off("cls.predictions.transform.dense.weight");
    head_b = off("cls.predictions.transform.dense.bias");
    head_ln_g = off("cls.predictions.transform.LayerNorm.weight");
    head_ln_b = off("cls.predictions.transform.LayerNorm.bias");
    dec_bias = off("cls.predictions.bias");
    sop_w = off("sop.pooler.dense.weight");
    sop_b = off("sop.pooler.dense.bias");
    cls_w = off("sop.classifier.weight");
    cls_b = off("sop.classifier.bias");
  }
};

}  // namespace roformer
