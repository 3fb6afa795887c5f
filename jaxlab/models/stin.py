"""STIN: the Spatial-Temporal Interaction Network of Something-Else (Materzynska et al., CVPR 2020).

A video is N box slots (objects and hands) over T frames, each box `(cx, cy, w, h)` in [0, 1] and a category
(0 none, 1 hand, 2 object). Per box and frame: a coordinate embedding (and with OIE an identity embedding of the
category); per frame: spatial message passing (each box sees the mean of the other slots); per box: temporal
fusion of its T frame features; with NL: non-local blocks across the N box vectors; then the mean over boxes and
a 3-layer classifier. Batch norm everywhere (statistics over batch, boxes and frames). The paper's names:

  'stin'         STIN            (the original code's `coord`)
  'stin_oie'     STIN + OIE      (`coord_latent`)
  'stin_oie_nl'  STIN + OIE + NL (`coord_latent_nl`); unlike the original code, its batch norms train

`AppearanceSTIN` adds the I3D ResNet-50 branch (`global_coord_latent[_nl]`, the paper's "I3D + STIN + OIE (+NL)"):
I3D features -> 1x1x1 conv to 512 -> pooled, concatenated with the box vector before the classifier.
`I3DClassifier` is the I3D baseline (`global_i3d`). Submodule names follow the original PyTorch modules
(`coord_to_feature_0` for `coord_to_feature.0`), so its checkpoints convert with `variables_from_torch`.
"""

import dataclasses
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxlab import nn as jnn
from jaxlab.models import cnn3d
from jaxlab.models import weights

@dataclasses.dataclass(frozen=True)
class STINConfig:
  num_classes: int = 174
  num_boxes: int = 4
  num_frames: int = 8                 # box frames (the original's num_frames // 2)
  coord_feature_dim: int = 256
  identity_embedding: bool = True     # OIE
  nonlocal_layers: int = 3            # NL blocks across boxes; 0 for none
  appearance_dim: int = 0             # width of appearance features concatenated before the classifier


VARIANTS = {
    "stin": dict(identity_embedding=False, nonlocal_layers=0),
    "stin_oie": dict(identity_embedding=True, nonlocal_layers=0),
    "stin_oie_nl": dict(identity_embedding=True, nonlocal_layers=3),
}


def variant_config(variant: str, **fields) -> STINConfig:
  if variant not in VARIANTS:
    raise ValueError(f"STIN variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
  return STINConfig(**VARIANTS[variant], **fields)


def _scale_grad_by_frequency(rows, ids, num_ids: int):
  """`rows` (embeddings of `ids`) whose gradients are divided by how often each id occurs in `ids`, and zero
  for id 0: PyTorch's `Embedding(padding_idx=0, scale_grad_by_freq=True)`, which the original OIE uses."""
  counts = jnp.zeros(num_ids, rows.dtype).at[ids.ravel()].add(1)[ids][..., None]
  rows = jax.lax.stop_gradient(rows) + (rows - jax.lax.stop_gradient(rows)) / counts
  return rows * (ids != 0)[..., None].astype(rows.dtype)


class Nonlocal(nn.Module):
  """Non-local block over the box axis of `[B, N, C]`: softmax attention (one head, inner width `inner`,
  logits scaled by inner^-0.5), a projection back to C, layer norm without affine terms, and the residual."""
  inner: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    conv = lambda f, name: jnn.conv(f, (1,), dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    theta, phi, g = (conv(self.inner, name)(x)[:, :, None] for name in ("conv_theta", "conv_phi", "conv_g"))
    y = jnn.dot_product_attention(theta, phi, g)[:, :, 0]
    y = conv(x.shape[-1], "conv_out")(y)
    # The original's GroupNorm(1, C, affine=False): statistics over boxes and channels of each video.
    y = jnn.group_norm(1, use_bias=False, use_scale=False, dtype=self.dtype, param_dtype=self.param_dtype,
                       name="ln")(y)
    return x + y


class STIN(nn.Module):
  """`apply(v, boxes [B,T,N,4], categories [B,T,N] int, appearance=None, train=False) -> logits [B, C]`.

  Training passes `mutable=['batch_stats']`.
  """
  config: STINConfig = STINConfig()
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def _linear(self, features, name, axes=("embed", "mlp"), use_bias=False):
    return jnn.dense(features, axes, use_bias=use_bias, dtype=self.dtype, param_dtype=self.param_dtype, name=name)

  def _norm(self, name):
    return jnn.batch_norm(dtype=self.dtype, param_dtype=self.param_dtype, name=name)

  def _mlp(self, x, name, widths, train):
    """Linear-BN-ReLU blocks named like the original `nn.Sequential`: `name_0`, `name_1`, `name_3`, ..."""
    for i, width in enumerate(widths):
      x = self._linear(width, f"{name}_{3 * i}")(x)
      x = nn.relu(self._norm(f"{name}_{3 * i + 1}")(x, use_running_average=not train))
    return x

  @nn.compact
  def __call__(self, boxes, categories, appearance=None, train: bool = False):
    c = self.config
    d = c.coord_feature_dim
    batch, frames, slots, _ = boxes.shape
    if (frames, slots) != (c.num_frames, c.num_boxes):
      raise ValueError(f"boxes {boxes.shape} do not match {c.num_frames} frames x {c.num_boxes} boxes")
    layout = ("activation_batch", None, None, "activation_embed")
    x = jnp.swapaxes(boxes, 1, 2).astype(self.dtype)                     # [B, N, T, 4]
    x = self._mlp(x, "coord_to_feature", (d // 2, d), train)
    if c.identity_embedding:
      ids = jnp.swapaxes(categories, 1, 2).astype(jnp.int32)
      embed = jnn.embed(3, d // 2, axes=(None, "embed"), embedding_init=nn.initializers.normal(1.0),
                        dtype=self.dtype, param_dtype=self.param_dtype, name="category_embed_layer")
      x = jnp.concatenate([x, _scale_grad_by_frequency(embed(ids), ids, 3)], axis=-1)
      x = self._mlp(x, "coord_category_fusion", (d,), train)
    x = jnn.constrain(x, layout)
    # Spatial interaction: each slot's message is the mean of the other slots (empty slots included).
    message = (x.sum(axis=1, keepdims=True) - x) / (slots - 1)
    x = self._mlp(jnp.concatenate([x, message], axis=-1), "spatial_node_fusion", (d, d), train)
    # Temporal interaction: each slot's T frame features, concatenated in frame order.
    x = self._mlp(x.reshape(batch, slots, frames * d), "box_feature_fusion", (d, d), train)
    for i in range(c.nonlocal_layers):
      x = Nonlocal(d // 2, self.dtype, self.param_dtype, name=f"nonlocal_fusion_{i}_0")(x)
      x = jnn.conv(d, (1,), use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype,
                   name=f"nonlocal_fusion_{i}_1")(x)
      x = nn.relu(self._norm(f"nonlocal_fusion_{i}_2")(x, use_running_average=not train))
    video = x.mean(axis=1)
    if c.appearance_dim:
      video = jnp.concatenate([appearance.astype(self.dtype), video], axis=-1)
    video = nn.relu(self._linear(d, "classifier_0", use_bias=True)(video))
    video = nn.relu(self._linear(512, "classifier_2", ("mlp", "embed"), use_bias=True)(video))
    logits = self._linear(c.num_classes, "classifier_4", ("embed", "classes"), use_bias=True)(video)
    return logits.astype(jnp.float32)


def _i3d_features(i3d_config, video, train, frozen, dtype, param_dtype, parent_name="i3D"):
  backbone = cnn3d.ResNeXt3D(i3d_config, dtype=dtype, param_dtype=param_dtype, name=parent_name)
  features = backbone(video, train=train and not frozen)
  return jax.lax.stop_gradient(features) if frozen else features


class AppearanceSTIN(nn.Module):
  """STIN with the I3D branch: `apply(v, video [B,T,H,W,3], boxes, categories, train=False) -> logits`.

  The I3D sees T RGB frames; its `[B, T/2, H', W', 2048]` features go through a 1x1x1 conv to
  `appearance_width` channels and are averaged over space and time. `frozen_backbone` runs the I3D in inference
  mode without gradients (its weights then live outside the trained parameters).
  """
  stin: STINConfig
  i3d: cnn3d.ResNeXt3DConfig = cnn3d.I3D_RESNET50
  appearance_width: int = 512
  frozen_backbone: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, video, boxes, categories, train: bool = False):
    features = _i3d_features(self.i3d, video, train, self.frozen_backbone, self.dtype, self.param_dtype)
    features = jnn.conv(self.appearance_width, (1, 1, 1), dtype=self.dtype, param_dtype=self.param_dtype,
                        name="conv")(features)
    appearance = _pool_like_original(features)
    stin = dataclasses.replace(self.stin, appearance_dim=self.appearance_width)
    return STIN(stin, self.dtype, self.param_dtype, name="stin")(boxes, categories, appearance, train)


def _pool_like_original(features):
  """`[B, T', H', W', C]` -> `[B, C]` the way the original pools: a spatial mean gives `[B, C, T']`, which is
  *viewed* (not transposed) as `[B, T', C]` and averaged over its first axis. Output channel j thus averages
  channels j // T' + k * C / T' at time j mod T'. Kept so that released fusion checkpoints mean the same."""
  batch, time = features.shape[:2]
  channels_first = jnp.swapaxes(features.mean(axis=(2, 3)), 1, 2)        # [B, C, T']
  return channels_first.reshape(batch, time, -1).mean(axis=1)


class I3DClassifier(nn.Module):
  """The I3D baseline: `apply(v, video [B,T,H,W,3], train=False) -> logits` (1x1x1 conv to 512, average pool,
  dropout 0.3, linear)."""
  num_classes: int = 174
  i3d: cnn3d.ResNeXt3DConfig = cnn3d.I3D_RESNET50
  appearance_width: int = 512
  frozen_backbone: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, video, train: bool = False):
    features = _i3d_features(self.i3d, video, train, self.frozen_backbone, self.dtype, self.param_dtype)
    features = jnn.conv(self.appearance_width, (1, 1, 1), dtype=self.dtype, param_dtype=self.param_dtype,
                        name="conv")(features)
    pooled = nn.Dropout(0.3, deterministic=not train)(features.mean(axis=(1, 2, 3)))
    logits = jnn.dense(self.num_classes, ("embed", "classes"), dtype=self.dtype, param_dtype=self.param_dtype,
                       name="fc")(pooled)
    return logits.astype(jnp.float32)


# ------------------------------------------------------------------------------------- PyTorch checkpoints

# Our I3D block names <-> the original's `conv1.0` (conv) / `conv1.1` (its batch norm) / `shortcut.0|1`.
_I3D_NAMES = [(r"(layer\d_\d+\.)conv(\d)\.", r"\1conv\2.0."), (r"(layer\d_\d+\.)bn(\d)\.", r"\1conv\2.1."),
              (r"\.downsample_conv\.", ".shortcut.0."), (r"\.downsample_bn\.", ".shortcut.1.")]
# The fusion models prefix the box branch's modules with `c_` (not the embedding or the classifier).
_FUSION_PREFIXED = ("coord_to_feature", "coord_category_fusion", "spatial_node_fusion", "box_feature_fusion",
                    "nonlocal_fusion")


def _to_torch_name(key: str) -> str:
  """`stin.nonlocal_fusion_0_1.weight` -> `c_nonlocal_fusion.0.1.weight`, `i3D.layer1_0.bn2.weight` ->
  `i3D.layer1.0.conv2.1.weight`: list indices become path components."""
  for pattern, replacement in _I3D_NAMES:
    key = re.sub(pattern, replacement, key)
  key = re.sub(r"_(\d+)(?=[._])", r".\1", key)
  if key.startswith("stin."):
    key = key[len("stin."):]
    key = "c_" + key if key.startswith(_FUSION_PREFIXED) else key
  return key


def _from_torch_name(key: str, fusion: bool) -> str:
  key = key.removeprefix("module.")
  if fusion and not key.startswith(("i3D.", "conv.")):
    key = "stin." + key.removeprefix("c_")
  key = re.sub(r"(?<=[a-z0-9])\.(\d+)(?=\.)", r"_\1", key)
  key = re.sub(r"(layer\d_\d+\.)conv(\d)_0\.", r"\1conv\2.", key)
  key = re.sub(r"(layer\d_\d+\.)conv(\d)_1\.", r"\1bn\2.", key)
  return key.replace(".shortcut_0.", ".downsample_conv.").replace(".shortcut_1.", ".downsample_bn.")


_UNUSED = ("num_batches_tracked", "i3D.classifier.", "i3D.dropout.")  # counters; the I3D's own Kinetics head


def variables_from_torch(state, module: nn.Module, *example_inputs) -> dict:
  """`{'params', 'batch_stats'}` for `module` from a PyTorch state dict of the original Something-Else code
  (`VideoModelCoord*`, `VideoModelGlobalCoordLatent*`, `VideoGlobalModel`; DataParallel's `module.` prefix is
  dropped) or of its Kinetics I3D (`i3D.*` keys). Every leaf of `module` must be found."""
  abstract = jax.eval_shape(lambda: nn.meta.unbox(module.init(jax.random.key(0), *example_inputs)))
  fusion = isinstance(module, AppearanceSTIN)
  state = {_from_torch_name(k, fusion): np.asarray(v) for k, v in state.items()
           if not any(u in k for u in _UNUSED)}
  is_stat = lambda key: key.endswith(("running_mean", "running_var"))
  variables = {"params": weights.torch_to_flax({k: v for k, v in state.items() if not is_stat(k)},
                                               abstract["params"], name="state dict")}
  if abstract.get("batch_stats"):
    variables["batch_stats"] = weights.torch_to_flax({k: v for k, v in state.items() if is_stat(k)},
                                                     abstract["batch_stats"], name="state dict")
  return variables


def variables_to_torch(variables) -> dict[str, np.ndarray]:
  """The state dict the original code's module of the same kind loads (inverse of `variables_from_torch`)."""
  state = {}
  for collection in ("params", "batch_stats"):
    for key, value in weights.flax_to_torch(variables.get(collection, {})).items():
      state[_to_torch_name(key)] = value
  return state


def i3d_variables_from_torch(state, config: cnn3d.ResNeXt3DConfig = cnn3d.I3D_RESNET50, frames: int = 16,
                             size: int = 224) -> dict:
  """The I3D backbone's `{'params', 'batch_stats'}` from a Kinetics checkpoint's state dict (keys `conv1.*`,
  `layer1.0.conv1.0.*`, ..., with or without the `module.` / `i3D.` prefixes)."""
  state = {"i3D." + k.removeprefix("module.").removeprefix("i3D."): v for k, v in state.items()}
  variables = variables_from_torch(state, _Backbone(config), jnp.zeros((1, frames, size, size, 3)))
  return {collection: tree["i3D"] for collection, tree in variables.items()}


class _Backbone(nn.Module):
  """Only the I3D, under the name the fusion models give it."""
  config: cnn3d.ResNeXt3DConfig

  @nn.compact
  def __call__(self, video):
    return cnn3d.ResNeXt3D(self.config, name="i3D")(video)
