"""diffusers' UNet building blocks in Flax, shared by the 2D UNet, the 3D UNet and the VAE.

Layers: `Attention`, `ResnetBlock2D`, `Transformer2DModel` (with `BasicTransformerBlock` and its GEGLU
feed-forward), `downsample` / `upsample` (diffusers' `Downsample2D` / `Upsample2D` with a conv), the
sinusoidal `timestep_embedding` and its `TimestepEmbedding` MLP, and the video layers `TemporalConvLayer` and
`TransformerTemporalModel`. Blocks: `UNetBlock` (the down and up block types, with or without cross-attention)
and `UNetMidBlock`; given `num_frames` they are diffusers' 3D blocks, each ResNet followed by a temporal conv and
each spatial transformer by a temporal one. Flax module names are PyTorch's with `_` for `.` (`resnets_0`,
`to_out_0`), so `jaxlab.models.weights` maps them one to one (the temporal convs' `nn.Sequential` positions
are renamed by the 3D UNet's `Naming`).

Everything is channels-last: images `[N, H, W, C]`, tokens `[N, L, D]`; a video's frames are consecutive rows
of `N = batch * frames`, as in diffusers.
"""

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxlab import nn as jnn
from jaxlab.errors import UserError

RUN = "run"  # the name of a scanned run of layers, `run_{first layer}`
IMAGE_AXES = ("activation_batch", "activation_height", "activation_width", "activation_channels")
TOKEN_AXES = ("activation_batch", "activation_length", "activation_embed")


def remat(module_type, policy: str | None):
  """`module_type` recomputed in the backward pass under a named `jax.checkpoint_policies` policy."""
  if policy is None:
    return module_type
  if not hasattr(jax.checkpoint_policies, policy):
    raise UserError(f"unknown remat policy {policy!r}; use a jax.checkpoint_policies name, e.g. "
                    "'nothing_saveable' or 'dots_with_no_batch_dims_saveable'")
  return nn.remat(module_type, policy=getattr(jax.checkpoint_policies, policy))


# ---------------------------------------------------------------------------------------------- layers

class Attention(nn.Module):
  """diffusers' `Attention`: q/k/v projections, multi-head attention, `to_out.0`.

  With `group_norm_groups` it is the VAE's spatial self-attention: a GroupNorm first and the input added back.
  """
  heads: int
  head_dim: int
  qkv_bias: bool = False
  upcast: bool = False
  group_norm_groups: int | None = None
  eps: float = 1e-6
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, context=None):
    residual, shape = x, x.shape
    out_features = x.shape[-1]
    if self.group_norm_groups is not None:
      x = jnn.group_norm(self.group_norm_groups, epsilon=self.eps, dtype=self.dtype, param_dtype=self.param_dtype,
                         name="group_norm")(x)
    x = x.reshape(shape[0], -1, out_features)
    context = x if context is None else context
    inner = self.heads * self.head_dim
    proj = functools.partial(jnn.dense, inner, ("embed", "heads"), use_bias=self.qkv_bias, dtype=self.dtype,
                             param_dtype=self.param_dtype)
    split = lambda t: t.reshape(t.shape[:-1] + (self.heads, self.head_dim))
    q, k, v = split(proj(name="to_q")(x)), split(proj(name="to_k")(context)), split(proj(name="to_v")(context))
    # `upcast` (float32 logits and softmax) holds for every implementation of the attention function, so
    # half-precision inputs go in as they are and the kernels keep the float32 logits internal.
    out = jnn.dot_product_attention(q, k, v).astype(self.dtype)
    out = out.reshape(out.shape[:-2] + (inner,))
    out = jnn.dense(out_features, ("heads", "embed"), dtype=self.dtype, param_dtype=self.param_dtype,
                    name="to_out_0")(out)
    if self.group_norm_groups is not None:
      return out.reshape(shape) + residual
    return out


class ResnetBlock2D(nn.Module):
  """diffusers' `ResnetBlock2D`: two GroupNorm-act-conv stages, the time embedding added (or used as a
  scale and shift) in between, and a 1x1 conv on the shortcut when the width changes."""
  out_channels: int
  groups: int = 32
  eps: float = 1e-6
  act: str = "silu"
  time_embedding_norm: str = "default"  # 'default' (add) | 'scale_shift'
  output_scale_factor: float = 1.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, temb=None):
    act = jnn.ACTIVATIONS[self.act]
    norm = functools.partial(jnn.group_norm, self.groups, epsilon=self.eps, dtype=self.dtype,
                             param_dtype=self.param_dtype)
    conv = functools.partial(jnn.conv, self.out_channels, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
                             param_dtype=self.param_dtype)
    h = conv(name="conv1")(act(norm(name="norm1")(x)))
    if temb is None:
      h = norm(name="norm2")(h)
    else:
      width = 2 * self.out_channels if self.time_embedding_norm == "scale_shift" else self.out_channels
      t = jnn.dense(width, ("embed", "mlp"), dtype=self.dtype, param_dtype=self.param_dtype,
                    name="time_emb_proj")(act(temb))[:, None, None, :]
      if self.time_embedding_norm == "scale_shift":
        scale, shift = jnp.split(t, 2, axis=-1)
        h = norm(name="norm2")(h) * (1 + scale) + shift
      else:
        h = norm(name="norm2")(h + t)
    h = conv(name="conv2")(act(h))
    if x.shape[-1] != self.out_channels:
      x = jnn.conv(self.out_channels, (1, 1), padding="VALID", dtype=self.dtype, param_dtype=self.param_dtype,
                   name="conv_shortcut")(x)
    return jnn.constrain((x + h) / self.output_scale_factor, IMAGE_AXES)


class _Resample(nn.Module):
  """A 3x3 conv named `conv`, as inside diffusers' `Downsample2D` / `Upsample2D`."""
  features: int
  strides: int
  padding: Any
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x):
    return jnn.conv(self.features, (3, 3), strides=self.strides, padding=self.padding, dtype=self.dtype,
                    param_dtype=self.param_dtype, name="conv")(x)


def downsample(x, padding: int, dtype, param_dtype, name: str):
  """diffusers' `Downsample2D` with a conv: stride 2, symmetric padding, or (0, 1) padding when `padding == 0`."""
  pad = ((0, 1), (0, 1)) if padding == 0 else ((padding, padding), (padding, padding))
  return _Resample(x.shape[-1], 2, pad, dtype, param_dtype, name=name)(x)


def resize_nearest(x, size: tuple[int, int]):
  """PyTorch's `interpolate(mode='nearest')` to `size`: source index floor(i * in / out)."""
  rows = (jnp.arange(size[0]) * x.shape[1]) // size[0]
  cols = (jnp.arange(size[1]) * x.shape[2]) // size[1]
  return x[:, rows][:, :, cols]


def upsample(x, size: tuple[int, int] | None, dtype, param_dtype, name: str):
  """diffusers' `Upsample2D` with a conv: nearest upsampling (2x, or to the skip connection's size), 3x3 conv."""
  if size is None or tuple(size) == (2 * x.shape[1], 2 * x.shape[2]):
    x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
  else:
    x = resize_nearest(x, size)
  return _Resample(x.shape[-1], 1, ((1, 1), (1, 1)), dtype, param_dtype, name=name)(x)


def timestep_embedding(timesteps, dim: int, flip_sin_to_cos: bool, freq_shift: float, max_period: int = 10000):
  """diffusers' `get_timestep_embedding` (float32): sin/cos of t at geometrically spaced frequencies."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - freq_shift))
  args = timesteps.astype(jnp.float32)[:, None] * freqs[None, :]
  emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
  if flip_sin_to_cos:
    emb = jnp.concatenate([emb[:, half:], emb[:, :half]], axis=-1)
  if dim % 2:
    emb = jnp.pad(emb, ((0, 0), (0, 1)))
  return emb


class TimestepEmbedding(nn.Module):
  """diffusers' `TimestepEmbedding`: `linear_1`, activation, `linear_2` (and an optional activation after)."""
  features: int
  act: str = "silu"
  post_act: str | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    dense = functools.partial(jnn.dense, self.features, dtype=self.dtype, param_dtype=self.param_dtype)
    x = jnn.ACTIVATIONS[self.act](dense(("embed", "mlp"), name="linear_1")(x))
    x = dense(("mlp", "embed"), name="linear_2")(x)
    return jnn.ACTIVATIONS[self.post_act](x) if self.post_act else x


class _GEGLU(nn.Module):
  features: int
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x):
    hidden, gate = jnp.split(jnn.dense(2 * self.features, ("embed", "mlp"), dtype=self.dtype,
                                       param_dtype=self.param_dtype, name="proj")(x), 2, axis=-1)
    return hidden * jnn.ACTIVATIONS["gelu"](gate)


class _FeedForward(nn.Module):
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x):
    dim = x.shape[-1]
    h = _GEGLU(4 * dim, self.dtype, self.param_dtype, name="net_0")(x)
    h = jnn.constrain(h, ("activation_batch", "activation_length", "activation_mlp"))
    return jnn.dense(dim, ("mlp", "embed"), dtype=self.dtype, param_dtype=self.param_dtype, name="net_2")(h)


class BasicTransformerBlock(nn.Module):
  """Pre-LN self-attention (`attn1`), attention on `context` (`attn2`; self-attention again when `context` is
  None, diffusers' `double_self_attention`), GEGLU feed-forward (`ff`). A `repeat_layers` layer:
  `(x, context) -> (x, None)`."""
  heads: int
  head_dim: int
  only_cross_attention: bool = False
  upcast: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, context=None):
    norm = functools.partial(jnn.layer_norm, epsilon=1e-5, dtype=self.dtype, param_dtype=self.param_dtype)
    attn = functools.partial(Attention, self.heads, self.head_dim, upcast=self.upcast, dtype=self.dtype,
                             param_dtype=self.param_dtype)
    x = attn(name="attn1")(norm(name="norm1")(x), context if self.only_cross_attention else None) + x
    x = attn(name="attn2")(norm(name="norm2")(x), context) + x
    x = _FeedForward(self.dtype, self.param_dtype, name="ff")(norm(name="norm3")(x)) + x
    return jnn.constrain(x, TOKEN_AXES), None


class Transformer2DModel(nn.Module):
  """diffusers' `Transformer2DModel` on continuous inputs: GroupNorm, proj_in, transformer blocks (with
  `scan_layers` and more than one, a scanned stack `transformer_blocks`), proj_out, plus the input."""
  heads: int
  head_dim: int
  num_layers: int
  groups: int
  use_linear_projection: bool
  only_cross_attention: bool
  upcast: bool
  dtype: Any
  param_dtype: Any
  scan_layers: bool = False

  @nn.compact
  def __call__(self, x, context):
    b, h, w, c = x.shape
    inner = self.heads * self.head_dim
    y = jnn.group_norm(self.groups, epsilon=1e-6, dtype=self.dtype, param_dtype=self.param_dtype, name="norm")(x)
    if self.use_linear_projection:
      y = jnn.dense(inner, ("embed", "mlp"), dtype=self.dtype, param_dtype=self.param_dtype,
                    name="proj_in")(y.reshape(b, h * w, c))
    else:
      y = jnn.conv(inner, (1, 1), padding="VALID", dtype=self.dtype, param_dtype=self.param_dtype,
                   name="proj_in")(y).reshape(b, h * w, inner)
    y = jnn.repeat_layers(BasicTransformerBlock, self.num_layers, y, context, name="transformer_blocks",
                          scan=self.scan_layers and self.num_layers > 1, heads=self.heads, head_dim=self.head_dim,
                          only_cross_attention=self.only_cross_attention, upcast=self.upcast, dtype=self.dtype,
                          param_dtype=self.param_dtype)
    if self.use_linear_projection:
      y = jnn.dense(c, ("mlp", "embed"), dtype=self.dtype, param_dtype=self.param_dtype,
                    name="proj_out")(y).reshape(b, h, w, c)
    else:
      y = jnn.conv(c, (1, 1), padding="VALID", dtype=self.dtype, param_dtype=self.param_dtype,
                   name="proj_out")(y.reshape(b, h, w, inner))
    return jnn.constrain(y + x, IMAGE_AXES)


class _TemporalConvStage(nn.Module):
  """One `nn.Sequential(GroupNorm, SiLU, [Dropout,] Conv3d)` of `TemporalConvLayer`, on `[B, F, H, W, C]`."""
  groups: int
  dropout: float
  deterministic: bool
  zero_init: bool
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x):
    x = jnn.group_norm(self.groups, epsilon=1e-5, dtype=self.dtype, param_dtype=self.param_dtype, name="norm")(x)
    x = nn.Dropout(self.dropout)(nn.silu(x), deterministic=self.deterministic)
    init = nn.initializers.zeros_init() if self.zero_init else nn.initializers.lecun_normal()
    return jnn.conv(x.shape[-1], (3, 1, 1), padding=((1, 1), (0, 0), (0, 0)), kernel_init=init, dtype=self.dtype,
                    param_dtype=self.param_dtype, name="conv")(x)


class TemporalConvLayer(nn.Module):
  """diffusers' `TemporalConvLayer` (ModelScope's): four GroupNorm-SiLU-Conv3d(3x1x1) stages over frames plus the
  input. Its GroupNorms take statistics over all frames of a video; the last conv starts at zero (identity).

  Input `[B * num_frames, H, W, C]`; dropout (diffusers: 0.1 before convs 2-4) acts unless `deterministic`.
  """
  groups: int
  num_frames: int
  dropout: float = 0.1
  deterministic: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    n, h, w, c = x.shape
    video = x.reshape(n // self.num_frames, self.num_frames, h, w, c)
    y = video
    for k in range(1, 5):
      y = _TemporalConvStage(self.groups, 0.0 if k == 1 else self.dropout, self.deterministic, k == 4, self.dtype,
                             self.param_dtype, name=f"conv{k}")(y)
    return jnn.constrain((video + y).reshape(n, h, w, c), IMAGE_AXES)


class TransformerTemporalModel(nn.Module):
  """diffusers' `TransformerTemporalModel`: a GroupNorm over all frames of a video, then each pixel's sequence of
  frames through proj_in, transformer blocks with self-attention twice (no positional encoding), proj_out, plus
  the input. Input `[B * num_frames, H, W, C]`."""
  heads: int
  head_dim: int
  groups: int
  num_frames: int
  num_layers: int = 1
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    n, h, w, c = x.shape
    b, f = n // self.num_frames, self.num_frames
    y = jnn.group_norm(self.groups, epsilon=1e-6, dtype=self.dtype, param_dtype=self.param_dtype,
                       name="norm")(x.reshape(b, f, h, w, c))
    y = y.transpose(0, 2, 3, 1, 4).reshape(b * h * w, f, c)
    y = jnn.dense(self.heads * self.head_dim, ("embed", "mlp"), dtype=self.dtype, param_dtype=self.param_dtype,
                  name="proj_in")(y)
    y = jnn.repeat_layers(BasicTransformerBlock, self.num_layers, y, None, name="transformer_blocks", scan=False,
                          heads=self.heads, head_dim=self.head_dim, dtype=self.dtype, param_dtype=self.param_dtype)
    y = jnn.dense(c, ("mlp", "embed"), dtype=self.dtype, param_dtype=self.param_dtype, name="proj_out")(y)
    y = y.reshape(b, h, w, f, c).transpose(0, 3, 1, 2, 4).reshape(n, h, w, c)
    return jnn.constrain(y + x, IMAGE_AXES)


# ---------------------------------------------------------------------------------------------- blocks

@dataclasses.dataclass(frozen=True)
class BlockOptions:
  """What every block of one UNet shares (diffusers passes these to each of its `get_*_block` calls)."""
  norm_num_groups: int = 32
  norm_eps: float = 1e-5
  act_fn: str = "silu"
  resnet_time_scale_shift: str = "default"
  use_linear_projection: bool = False
  upcast_attention: bool = False
  downsample_padding: int = 1
  mid_block_scale_factor: float = 1.0


@dataclasses.dataclass(frozen=True)
class BlockSpec:
  """One down, mid or up block: its width, ResNet count, and the spatial transformers after the ResNets
  (`transformer_layers[j]` transformer blocks after ResNet j) when it is a CrossAttn kind."""
  out_channels: int
  num_layers: int
  attention: bool
  heads: int
  head_dim: int
  transformer_layers: tuple[int, ...]
  only_cross_attention: bool = False


class _Block(nn.Module):
  """What a down, up and mid block share: their layer kinds, spatial and (with `num_frames`) temporal.

  Layer `j` is named `resnets_j`, `attentions_j`, ...; `j` None is a layer of a scanned run, named `resnets`,
  `attentions`, ... under the run (`jaxlab.models.weights` adds the row to the run's first index).
  """
  spec: BlockSpec
  options: BlockOptions
  remat_policy: str | None = None
  num_frames: int | None = None  # None: diffusers' 2D blocks; else its 3D blocks over this many frames per video
  deterministic: bool = True  # the temporal convs' dropout
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  scan_layers: bool = False  # runs of alike layers, and transformer blocks, as `nn.scan`s over stacked params

  @nn.nowrap
  def resnet(self, x, temb, j: int | None, output_scale_factor: float = 1.0):
    """ResNet `j`, then (3D) temporal conv `j`."""
    o = self.options
    x = remat(ResnetBlock2D, self.remat_policy)(
        self.spec.out_channels, o.norm_num_groups, o.norm_eps, o.act_fn, o.resnet_time_scale_shift,
        output_scale_factor, dtype=self.dtype, param_dtype=self.param_dtype, name=_item("resnets", j))(x, temb)
    if self.num_frames is None:
      return x
    return remat(TemporalConvLayer, self.remat_policy)(
        o.norm_num_groups, self.num_frames, deterministic=self.deterministic, dtype=self.dtype,
        param_dtype=self.param_dtype, name=_item("temp_convs", j))(x)

  @nn.nowrap
  def transformer(self, x, context, j: int | None, depth: int | None = None):
    """Spatial transformer `j` (of `depth` blocks; by default the spec's depth of layer `j`), then (3D) temporal
    transformer `j`."""
    o, s = self.options, self.spec
    x = remat(Transformer2DModel, self.remat_policy)(
        s.heads, s.head_dim, s.transformer_layers[j] if depth is None else depth, o.norm_num_groups,
        o.use_linear_projection, s.only_cross_attention, o.upcast_attention, self.dtype, self.param_dtype,
        self.scan_layers, name=_item("attentions", j))(x, context)
    if self.num_frames is None:
      return x
    return remat(TransformerTemporalModel, self.remat_policy)(
        s.heads, s.head_dim, o.norm_num_groups, self.num_frames, dtype=self.dtype, param_dtype=self.param_dtype,
        name=_item("temp_attentions", j))(x)

  @nn.nowrap
  def fields(self) -> dict:
    """This block's settings, for a module that shares them."""
    return {f.name: getattr(self, f.name) for f in dataclasses.fields(_Block) if f.name not in ("parent", "name")}


def _item(name: str, j: int | None) -> str:
  return name if j is None else f"{name}_{j}"


class UNetBlock(_Block):
  """A down block (`resnets`, `attentions`, `downsamplers`) or an up block (`resnets` on the concatenated skip
  connections, `attentions`, `upsamplers`) of diffusers' UNet; `attentions` only for the CrossAttn kinds.

  `__call__(x, temb, context, skips=(), upsample_size=None) -> (x, outputs)`: a down block returns the states
  the up path will consume; an up block pops its `skips` from the end. With `scan_layers`, each run of two or more
  alike layers (`_runs`) is one scanned stack `run_{first layer}`.
  """
  direction: str = "down"  # 'down' | 'up'
  resample: bool = False

  @nn.compact
  def __call__(self, x, temb, context, skips=(), upsample_size=None):
    outputs, skips = [], list(skips)
    for first, count in self._runs(x, skips):
      if self.scan_layers and count > 1:
        rows = jnp.stack([skips.pop() for _ in range(count)]) if self.direction == "up" else None
        depth = self.spec.transformer_layers[first] if self.spec.attention else None
        x, ys = jnn.repeat_layers(_RunLayer, count, x, temb, context, rows=rows, name=f"{RUN}_{first}",
                                  stack_outputs=True, depth=depth, **self.fields())
        outputs.extend(ys[i] for i in range(count))
        continue
      for j in range(first, first + count):
        if self.direction == "up":
          x = jnp.concatenate([x, skips.pop()], axis=-1)
        x = self.resnet(x, temb, j)
        if self.spec.attention:
          x = self.transformer(x, context, j)
        outputs.append(x)
    if self.resample and self.direction == "down":
      x = downsample(x, self.options.downsample_padding, self.dtype, self.param_dtype, name="downsamplers_0")
      outputs.append(x)
    if self.resample and self.direction == "up":
      x = upsample(x, upsample_size, self.dtype, self.param_dtype, name="upsamplers_0")
    return x, outputs

  @nn.nowrap
  def _runs(self, x, skips) -> list[list[int]]:
    """[first layer, count] of each run of consecutive layers alike (input width, skip connection shape and
    transformer depth): all but the first of a block keep the width, so alike layers can share one scan."""
    s, n = self.spec, self.spec.num_layers
    kinds = zip([x.shape[-1]] + [s.out_channels] * (n - 1),
                [t.shape for t in reversed(skips)] if self.direction == "up" else [None] * n,
                s.transformer_layers if s.attention else [None] * n)
    runs, previous = [], None
    for j, kind in enumerate(kinds):
      if j and kind == previous:
        runs[-1][1] += 1
      else:
        runs.append([j, 1])
      previous = kind
    return runs


class _RunLayer(_Block):
  """One layer of a scanned run: (skip connection,) ResNet, (transformer of `depth` blocks); `(x, y)` = its
  output twice (a down block's outputs are the up path's skip connections)."""
  depth: int | None = None

  @nn.compact
  def __call__(self, x, temb, context, skip=None):
    if skip is not None:
      x = jnp.concatenate([x, skip], axis=-1)
    x = self.resnet(x, temb, None)
    if self.spec.attention:
      x = self.transformer(x, context, None, self.depth)
    return x, x


class UNetMidBlock(_Block):
  """diffusers' `UNetMidBlock2DCrossAttn` (`UNetMidBlock3DCrossAttn`): resnet, then (transformer, resnet)
  `spec.num_layers` times; its ResNets divide by `mid_block_scale_factor`."""

  @nn.compact
  def __call__(self, x, temb, context):
    scale = self.options.mid_block_scale_factor
    x = self.resnet(x, temb, 0, scale)
    for j in range(self.spec.num_layers):
      x = self.resnet(self.transformer(x, context, j), temb, j + 1, scale)
    return x
