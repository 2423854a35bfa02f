"""The classifiers: a pretrained backbone, a pooling and a named Dense head; and the seams that split them for caching."""

from typing import Sequence

import keras

from tfft.model.layers import Grayscale, ImagePreprocessing

POOLED = "pooled"
BACKBONE = "backbone"


@keras.saving.register_keras_serializable(package="tfft")
class BackboneCall(keras.layers.Layer):
  """Calls the backbone in inference mode unless `train_mode` is set and `inference_only` is not.

  A `training=False` given when a functional model is built does not hold in Keras 3: the model passes its own
  `training` to every node that takes one. This layer decides instead. Frozen, the backbone is a pure function
  (no dropout, BatchNorm statistics untouched), so its features can be cached; fine-tuned, text backbones train
  with their dropout, as in the BERT recipe. Image backbones under --bn=frozen are `inference_only`: even while
  their weights train, BatchNorm normalises with its moving statistics and never updates them. Set `train_mode`
  between phases, then compile.
  """

  def __init__(self, backbone, inference_only: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.backbone = backbone
    self.inference_only = inference_only
    self.train_mode = False

  def call(self, inputs, training=None):
    return self.backbone(inputs, training=bool(training) and self.train_mode and not self.inference_only)

  def get_config(self):
    return {**super().get_config(), "backbone": keras.saving.serialize_keras_object(self.backbone),
            "inference_only": self.inference_only}

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
    return cls(**config)


def sequence_output(outputs):
  """The per-token hidden states of a text backbone: encoders return a dict, decoders (LlamaBackbone) the tensor."""
  return outputs["sequence_output"] if isinstance(outputs, dict) else outputs


def build_text_classifier(backbone, *, num_classes: int, pooling: str, head_units: Sequence[int] = (),
                          dropout: float = 0.1, l1: float = 0.0, l2: float = 0.0) -> keras.Model:
  """Puts a new head on a keras-hub text backbone.

  Args:
    backbone: a keras-hub Backbone whose outputs are, or include, "sequence_output".
    num_classes: width of the output layer.
    pooling: "cls" (first token), "mean" (over unpadded tokens) or "last" (the last unpadded token, for decoders
      padded on the right).
    head_units: widths of hidden Dense layers before the output layer.
    dropout: rate of the Dropout before each head Dense.
    l1: L1 strength on head kernels.
    l2: L2 strength on head kernels.

  Returns:
    A functional keras.Model mapping the preprocessor's feature dict to float32 logits.
  """
  inputs = {name: keras.Input(shape=(None,), dtype=tensor.dtype, name=name)
            for name, tensor in backbone.input.items()}
  sequence = sequence_output(BackboneCall(backbone, name=BACKBONE)(inputs))
  x = _pool(sequence, inputs["padding_mask"], pooling)
  return keras.Model(inputs, _head(x, num_classes=num_classes, head_units=head_units, dropout=dropout, l1=l1, l2=l2),
                     name="tfft_classifier")


def _head(x, *, num_classes: int, head_units: Sequence[int], dropout: float, l1: float, l2: float):
  """The named head on pooled features: [Dropout, Dense(gelu)] per hidden width, Dropout, float32 logits."""
  x = keras.layers.Identity(name=POOLED)(x)  # the seam between encoder and head, see split_at_pooling
  regularizer = keras.regularizers.L1L2(l1=l1, l2=l2) if (l1 or l2) else None
  for i, units in enumerate(head_units):
    x = keras.layers.Dropout(dropout, name=f"head_dropout_{i}")(x)
    x = keras.layers.Dense(units, activation="gelu", kernel_regularizer=regularizer, name=f"head_dense_{i}")(x)
  x = keras.layers.Dropout(dropout, name="head_dropout")(x)
  # Logits stay float32 under any mixed-precision policy.
  return keras.layers.Dense(num_classes, kernel_regularizer=regularizer, dtype="float32", name="logits")(x)



def build_image_classifier(backbone, *, num_classes: int, image_size: int, preprocessing: dict,
                           augmentation: Sequence = (), bn_frozen: bool = True, head_units: Sequence[int] = (),
                           dropout: float = 0.1, l1: float = 0.0, l2: float = 0.0, channels: int = 3) -> keras.Model:
  """Puts augmentation, the backbone's own preprocessing, and a new head around an image backbone.

  Args:
    backbone: a headless image model mapping [N, H, W, `channels`] to a feature map ([N, h, w, C]), tokens
      ([N, T, C]) or pooled features ([N, C]).
    num_classes: width of the output layer.
    image_size: input height and width.
    preprocessing: keyword arguments of ImagePreprocessing for this backbone (tfft.model.image_backbones.preprocessing).
    augmentation: layers from build_augmentation, applied before the preprocessing; inert at inference.
    bn_frozen: call the backbone in inference mode in every phase (--bn=frozen).
    head_units, dropout, l1, l2: as build_text_classifier.
    channels: what the backbone reads: 3 (RGB), or 1 (the RGB input becomes grayscale in the model, after the
      augmentation and before the preprocessing).

  Returns:
    A functional keras.Model mapping float32 RGB pixels in [0, 255] ("image") to float32 logits.
  """
  inputs = keras.Input(shape=(image_size, image_size, 3), dtype="float32", name="image")
  x = inputs
  for layer in augmentation:
    x = layer(x)
  if channels == 1:
    x = Grayscale(name="grayscale")(x)
  x = ImagePreprocessing(**preprocessing, name="preprocessing")(x)
  features = BackboneCall(backbone, inference_only=bn_frozen, name=BACKBONE)(x)
  if len(features.shape) == 2:  # a saved model cut after its own pooling
    x = keras.layers.Identity(name="avg_pool")(features)
  else:
    pool = keras.layers.GlobalAveragePooling2D if len(features.shape) == 4 else keras.layers.GlobalAveragePooling1D
    x = pool(name="avg_pool")(features)
  return keras.Model(inputs, _head(x, num_classes=num_classes, head_units=head_units, dropout=dropout, l1=l1, l2=l2),
                     name="tfft_image_classifier")


@keras.saving.register_keras_serializable(package="tfft")
class LastTokenPooling(keras.layers.Layer):
  """The hidden state at each row's last real token, position sum(padding_mask) - 1 (rows padded on the right).

  A causal decoder's last token is the only one that has attended to the whole text. Right padding puts it at the
  same position whatever the batch is padded to, so fixed and dynamic padding pool the same state.
  """

  def call(self, sequence, padding_mask):
    last = keras.ops.sum(keras.ops.cast(padding_mask, "int32"), axis=1) - 1
    last = keras.ops.maximum(last, 0)  # an all-padding row (never packed by tfft) reads position 0
    return keras.ops.take_along_axis(sequence, last[:, None, None], axis=1)[:, 0, :]

  def compute_output_shape(self, sequence_shape, padding_mask_shape=None):
    return (sequence_shape[0], sequence_shape[2])


def _pool(sequence, padding_mask, pooling: str):
  if pooling == "mean":
    return keras.layers.GlobalAveragePooling1D(name="mean_pool")(sequence, mask=padding_mask)
  if pooling == "last":
    return LastTokenPooling(name="last_pool")(sequence, padding_mask)
  if pooling == "cls":
    return sequence[:, 0, :]
  raise ValueError(f"unknown pooling {pooling!r}")


def pooling_of(model: keras.Model) -> str:
  names = {layer.name for layer in model.layers}
  return "mean" if "mean_pool" in names else "last" if "last_pool" in names else "cls"


def split_at_pooling(model: keras.Model):
  """Splits the classifier into an encoder (inputs -> pooled features) and a head (features -> logits).

  Both share their layers with `model`, so training the head trains the classifier's head. With a frozen
  backbone run in inference mode the encoder is a pure function, so its outputs can be computed once.

  Returns:
    (encoder, head) keras Models.
  """
  pooled = model.get_layer(POOLED)
  encoder = keras.Model(model.inputs, pooled.output, name="encoder")
  x = features = keras.Input(shape=pooled.output.shape[1:], name="pooled_features")
  names = [layer.name for layer in model.layers]
  for layer in model.layers[names.index(POOLED) + 1:]:
    x = layer(x)
  return encoder, keras.Model(features, x, name="head")


def split_at_block(model: keras.Model, backbone, blocks, k: int):
  """Splits the classifier before its top `k` transformer blocks, for a top_k phase whose lower part is frozen.

  Returns:
    (lower, upper, upper_encoder): `lower` maps the token features to the hidden states entering block -k;
    `upper` maps {"hidden", "padding_mask" (int32)} through the top k blocks, the pooling and the head to logits, and
    `upper_encoder` stops at the pooled features. All share their layers with `model`. None when the backbone
    is not a plain stack whose last block gives "sequence_output" (then nothing is cached).
  """
  if not blocks or not 1 <= k <= len(blocks):
    return None
  if sequence_output(backbone.output)._keras_history.operation is not blocks[-1]:
    return None
  node = blocks[-k]._inbound_nodes[0]
  if list(node.arguments.kwargs) != ["padding_mask"]:
    return None
  hidden = node.arguments.args[0]
  lower = keras.Model(backbone.input, hidden, name="lower")
  # The mask comes in as int32: under MirroredStrategy, a bool model input breaks the gradient aggregation (AddN).
  inputs = {"hidden": keras.Input(shape=hidden.shape[1:], dtype=hidden.dtype, name="hidden"),
            "padding_mask": keras.Input(shape=(None,), dtype="int32", name="padding_mask")}
  mask = keras.ops.cast(inputs["padding_mask"], "bool")
  x = inputs["hidden"]
  for block in blocks[-k:]:
    x = block(x, padding_mask=mask)
  pooled = _pool(x, mask, pooling_of(model))
  _, head = split_at_pooling(model)
  upper = keras.Model(inputs, head(pooled), name="upper")
  return lower, upper, keras.Model(inputs, pooled, name="upper_encoder")
