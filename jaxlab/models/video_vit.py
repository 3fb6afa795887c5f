"""A VideoMAE-style video ViT classifier, matching transformers' `VideoMAEForVideoClassification`.

Tubelet embedding (a strided Conv3d), fixed sinusoidal positions, pre-LN transformer layers (GELU MLP,
query/value biases, no key bias), then mean pooling + LayerNorm (or the final LayerNorm and the first token)
and a linear classifier. Inputs are channels-last videos `[B, T, H, W, C]`, already normalised.
"""

import dataclasses
import functools
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxlab import nn as jnn
from jaxlab.models import weights


@dataclasses.dataclass(frozen=True)
class VideoViTConfig:
  """The fields of transformers' `VideoMAEConfig` that define the classifier."""
  image_size: int = 224
  patch_size: int = 16
  num_channels: int = 3
  num_frames: int = 16
  tubelet_size: int = 2
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = "gelu"
  hidden_dropout_prob: float = 0.0
  layer_norm_eps: float = 1e-12
  qv_bias: bool = True
  use_mean_pooling: bool = True
  num_labels: int = 400

  @property
  def num_patches(self) -> int:
    return (self.num_frames // self.tubelet_size) * (self.image_size // self.patch_size) ** 2


def sinusoid_table(num_positions: int, dim: int) -> np.ndarray:
  """VideoMAE's fixed position table: sin on even channels, cos on odd, 10000^(2i/d) wavelengths."""
  exponent = 2 * (np.arange(dim) // 2) / dim
  angles = np.arange(num_positions)[:, None] / np.power(10000.0, exponent)[None, :]
  table = np.empty_like(angles)
  table[:, 0::2] = np.sin(angles[:, 0::2])
  table[:, 1::2] = np.cos(angles[:, 1::2])
  return table.astype(np.float32)


class _SelfAttention(nn.Module):
  config: VideoViTConfig
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x):
    c = self.config
    heads, head_dim = c.num_attention_heads, c.hidden_size // c.num_attention_heads
    proj = functools.partial(jnn.dense, c.hidden_size, ("embed", "heads"), dtype=self.dtype,
                             param_dtype=self.param_dtype)
    split = lambda t: t.reshape(t.shape[:-1] + (heads, head_dim))
    q = split(proj(use_bias=c.qv_bias, name="query")(x))
    k = split(proj(use_bias=False, name="key")(x))
    v = split(proj(use_bias=c.qv_bias, name="value")(x))
    out = jnn.dot_product_attention(q, k, v)
    return out.reshape(out.shape[:-2] + (c.hidden_size,))


class _Output(nn.Module):
  """A Linear named `dense` inside a module, as transformers nests it."""
  features: int
  axes: tuple
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x):
    return jnn.dense(self.features, self.axes, dtype=self.dtype, param_dtype=self.param_dtype, name="dense")(x)


class _Attention(nn.Module):
  config: VideoViTConfig
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x):
    x = _SelfAttention(self.config, self.dtype, self.param_dtype, name="attention")(x)
    return _Output(self.config.hidden_size, ("heads", "embed"), self.dtype, self.param_dtype, name="output")(x)


class VideoViTLayer(nn.Module):
  """One pre-LN transformer layer; `x -> (x, None)` so that `nn.scan` can stack it."""
  config: VideoViTConfig
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  deterministic: bool = True

  @nn.compact
  def __call__(self, x):
    c = self.config
    norm = functools.partial(jnn.layer_norm, epsilon=c.layer_norm_eps, dtype=self.dtype,
                             param_dtype=self.param_dtype)
    dropout = nn.Dropout(c.hidden_dropout_prob, deterministic=self.deterministic)
    h = _Attention(c, self.dtype, self.param_dtype, name="attention")(norm(name="layernorm_before")(x))
    x = x + dropout(h)
    h = norm(name="layernorm_after")(x)
    h = _Output(c.intermediate_size, ("embed", "mlp"), self.dtype, self.param_dtype, name="intermediate")(h)
    h = jnn.constrain(jnn.ACTIVATIONS[c.hidden_act](h), ("activation_batch", "activation_length", "activation_mlp"))
    h = _Output(c.hidden_size, ("mlp", "embed"), self.dtype, self.param_dtype, name="output")(h)
    x = x + dropout(h)
    return jnn.constrain(x, ("activation_batch", "activation_length", "activation_embed")), None


class _PatchEmbeddings(nn.Module):
  config: VideoViTConfig
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x):
    c = self.config
    kernel = (c.tubelet_size, c.patch_size, c.patch_size)
    return jnn.conv(c.hidden_size, kernel, strides=kernel, padding="VALID", dtype=self.dtype,
                    param_dtype=self.param_dtype, name="projection")(x)


class _Embeddings(nn.Module):
  config: VideoViTConfig
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, pixel_values):
    c = self.config
    b, t, h, w, ch = pixel_values.shape
    if (t, h, w, ch) != (c.num_frames, c.image_size, c.image_size, c.num_channels):
      raise ValueError(f"video of shape {(t, h, w, ch)} does not match the model's "
                       f"{(c.num_frames, c.image_size, c.image_size, c.num_channels)} (frames, height, width, "
                       "channels)")
    x = _PatchEmbeddings(c, self.dtype, self.param_dtype, name="patch_embeddings")(pixel_values.astype(self.dtype))
    x = x.reshape(b, -1, c.hidden_size)
    return x + jnp.asarray(sinusoid_table(c.num_patches, c.hidden_size), self.dtype)


class _Encoder(nn.Module):
  """The layer stack: one scanned (and optionally rematerialised) layer, or a Python loop of layers."""
  config: VideoViTConfig
  dtype: Any
  param_dtype: Any
  scan_layers: bool
  remat_policy: str | None

  @nn.compact
  def __call__(self, x, train: bool):
    c = self.config
    return jnn.repeat_layers(VideoViTLayer, c.num_hidden_layers, x, name="layer", scan=self.scan_layers,
                             remat_policy=self.remat_policy, config=c, dtype=self.dtype,
                             param_dtype=self.param_dtype, deterministic=not train)


class _Backbone(nn.Module):
  """transformers' `VideoMAEModel`: embeddings, encoder, and the final LayerNorm when not mean pooling."""
  config: VideoViTConfig
  dtype: Any
  param_dtype: Any
  scan_layers: bool
  remat_policy: str | None

  @nn.compact
  def __call__(self, pixel_values, train: bool):
    c = self.config
    x = _Embeddings(c, self.dtype, self.param_dtype, name="embeddings")(pixel_values)
    x = jnn.constrain(x, ("activation_batch", "activation_length", "activation_embed"))
    x = _Encoder(c, self.dtype, self.param_dtype, self.scan_layers, self.remat_policy, name="encoder")(x, train)
    if not c.use_mean_pooling:
      x = jnn.layer_norm(epsilon=c.layer_norm_eps, dtype=self.dtype, param_dtype=self.param_dtype,
                         name="layernorm")(x)
    return x


class VideoViTClassifier(nn.Module):
  """`apply(v, pixel_values [B,T,H,W,C], train=False) -> logits [B, num_labels]`."""
  config: VideoViTConfig = VideoViTConfig()
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  scan_layers: bool = True
  remat_policy: str | None = None  # a `jax.checkpoint_policies` name, e.g. 'nothing_saveable'

  @nn.compact
  def __call__(self, pixel_values, train: bool = False):
    c = self.config
    x = _Backbone(c, self.dtype, self.param_dtype, self.scan_layers, self.remat_policy, name="videomae")(
        pixel_values, train)
    if c.use_mean_pooling:
      # transformers builds fc_norm with LayerNorm's default eps (1e-5), not config.layer_norm_eps.
      x = jnn.layer_norm(epsilon=1e-5, dtype=self.dtype, param_dtype=self.param_dtype, name="fc_norm")(
          x.mean(axis=1))
    else:
      x = x[:, 0]
    logits = jnn.dense(c.num_labels, ("embed", "classes"), dtype=self.dtype, param_dtype=self.param_dtype,
                       kernel_init=nn.initializers.truncated_normal(0.02), name="classifier")(x)
    return logits.astype(jnp.float32)


# ------------------------------------------------------------------------------------ reference layout

_CONFIG_FIELDS = [f.name for f in dataclasses.fields(VideoViTConfig)]


def _from_config(config: dict, dtype=jnp.float32, param_dtype=jnp.float32) -> VideoViTClassifier:
  fields = {k: config[k] for k in _CONFIG_FIELDS if k in config and k != "num_labels"}
  for key in ("image_size", "patch_size"):
    if isinstance(fields.get(key), (list, tuple)):
      if len(set(fields[key])) != 1:
        raise ValueError(f"non-square {key} {fields[key]} is not supported")
      fields[key] = fields[key][0]
  if "qkv_bias" in config and "qv_bias" not in config:
    fields["qv_bias"] = config["qkv_bias"]
  num_labels = len(config["id2label"]) if config.get("id2label") else config.get("num_labels", 2)
  return VideoViTClassifier(VideoViTConfig(**fields, num_labels=num_labels), dtype=dtype, param_dtype=param_dtype)


def _to_config(module: VideoViTClassifier) -> dict:
  config = dataclasses.asdict(module.config)
  num_labels = config.pop("num_labels")
  config.update(
      architectures=["VideoMAEForVideoClassification"], model_type="videomae",
      id2label={str(i): f"LABEL_{i}" for i in range(num_labels)},
      label2id={f"LABEL_{i}": i for i in range(num_labels)})
  return config


def _rename_in(key: str) -> str | None:
  # Checkpoints from the original release name the query/value biases `q_bias` / `v_bias`.
  return key.replace("attention.attention.q_bias", "attention.attention.query.bias").replace(
      "attention.attention.v_bias", "attention.attention.value.bias")


def _dummy_inputs(module: VideoViTClassifier):
  c = module.config
  return (jnp.zeros((1, c.num_frames, c.image_size, c.image_size, c.num_channels), module.dtype),)


FAMILY = weights.register(weights.Family(
    class_names=("VideoMAEForVideoClassification",),
    module_types=(VideoViTClassifier,),
    from_config=_from_config,
    to_config=_to_config,
    dummy_inputs=_dummy_inputs,
    naming=weights.Naming(frozenset({"layer"})),
    rename_in=_rename_in,
))
