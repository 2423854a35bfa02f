"""The causal LM a generate run trains: a decoder backbone with its tied output layer, LoRA on it by default, the
response-only loss, and LoRA merged back into the base weights for export."""

import keras
import numpy as np
from tfft.model import gguf_classes


def build_causal_lm(backbone, *, lora_rank: int):
  """keras-hub's causal LM (logits through the tied or separate output embedding, cached generation) on `backbone`.

  Args:
    backbone: a GGUFLlamaBackbone.
    lora_rank: > 0 freezes the backbone and trains rank-`lora_rank` adapters on the attention's query and value
      projections (keras-hub's Backbone.enable_lora); 0 fine-tunes every weight.

  Returns:
    A GGUFLlamaCausalLM without a preprocessor: it maps {"token_ids", "padding_mask"} to next-token logits; its
    generate_step decodes greedily.
  """
  import keras_hub  # pylint: disable=g-import-not-at-top
  if lora_rank:
    backbone.enable_lora(lora_rank)
  model = gguf_classes.GGUFLlamaCausalLM(backbone=backbone, preprocessor=None)
  model.sampler = keras_hub.samplers.GreedySampler()
  return model


def compile_causal_lm(model, *, learning_rate: float, weight_decay: float, clipnorm: float):
  """AdamW on the mean cross-entropy of the weighted (response) tokens; logits are float32."""
  model.compile(optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay,
                                                 clipnorm=clipnorm or None), sampler="greedy",
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="token_accuracy")])


def response_nll(model, dataset) -> float:
  """Mean negative log-likelihood per response token (its exp is the perplexity) over a dataset of (x, y, w)."""
  total, count = 0.0, 0.0
  loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
  for x, y, w in dataset:
    nll = keras.ops.convert_to_numpy(loss(y, model(x, training=False)))
    w = keras.ops.convert_to_numpy(w)
    total += float((nll * w).sum())
    count += float(w.sum())
  return total / max(count, 1.0)


def merged_backbone(backbone):
  """A copy of `backbone` without LoRA: each adapted kernel replaced by kernel + (alpha / rank) * A @ B.

  TF Serving has no notion of adapters, so the export carries plain weights (PITFALLS: LoRA at export). Without
  LoRA the copy holds the same weights.
  """
  merged = {}
  for layer in backbone._flatten_layers(include_self=False):  # pylint: disable=protected-access
    if getattr(layer, "lora_enabled", False):
      merged[layer._kernel.path] = keras.ops.convert_to_numpy(layer.kernel)  # pylint: disable=protected-access
  copy = type(backbone).from_config(backbone.get_config())
  source = {v.path: v for v in backbone.weights}
  for variable in copy.weights:
    value = merged.get(variable.path)
    variable.assign(value if value is not None else source[variable.path])
  lora = [v.path for v in copy.weights if "lora" in v.path]
  if lora or len(copy.weights) + 2 * len(merged) != len(backbone.weights):
    raise AssertionError(f"merging LoRA left {lora} or missed variables")
  return copy


def lora_parameter_count(backbone) -> int:
  """Trainable parameters of the adapters (0 without LoRA)."""
  return int(sum(np.prod(v.shape) for v in backbone.trainable_weights if "lora" in v.path))
