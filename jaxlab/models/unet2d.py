"""The Stable Diffusion 1.x / 2.x UNet, matching diffusers' `UNet2DConditionModel`.

Down blocks of ResNet blocks (each optionally followed by a spatial transformer with self- and cross-attention),
a middle block, and up blocks that consume the down path's skip connections; a sinusoidal timestep embedding
feeds every ResNet block. Both SD variants are covered: 1x1-conv or linear transformer projections
(`use_linear_projection`), per-block head counts (`attention_head_dim` as int or list, which diffusers reads as
the number of heads), and any cross-attention width (768 for CLIP ViT-L, 1024 for OpenCLIP ViT-H).

The ResNet, attention and resampling layers here are shared with the VAE (`jaxlab.models.vae`).
Inputs are channels-last: `apply(v, sample [B,H,W,C], timesteps [B] or scalar, encoder_hidden_states [B,L,D])`.
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
from jaxlab.models import weights

_IMAGE_AXES = ("activation_batch", "activation_height", "activation_width", "activation_channels")
_TOKEN_AXES = ("activation_batch", "activation_length", "activation_embed")


def _remat(module_type, policy: str | None):
  """`module_type` recomputed in the backward pass under a named `jax.checkpoint_policies` policy."""
  if policy is None:
    return module_type
  if not hasattr(jax.checkpoint_policies, policy):
    raise UserError(f"unknown remat policy {policy!r}; use a jax.checkpoint_policies name, e.g. "
                    "'nothing_saveable' or 'dots_with_no_batch_dims_saveable'")
  return nn.remat(module_type, policy=getattr(jax.checkpoint_policies, policy))


# ------------------------------------------------------------------------------------------ shared layers

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
    return jnn.constrain((x + h) / self.output_scale_factor, _IMAGE_AXES)


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


# --------------------------------------------------------------------------------------------- the UNet

@dataclasses.dataclass(frozen=True)
class UNet2DConfig:
  """The fields of diffusers' `UNet2DConditionModel` config that SD 1.x / 2.x use; per-block fields are tuples."""
  sample_size: int = 64
  in_channels: int = 4
  out_channels: int = 4
  center_input_sample: bool = False
  flip_sin_to_cos: bool = True
  freq_shift: int = 0
  down_block_types: tuple[str, ...] = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                       "DownBlock2D")
  mid_block_type: str | None = "UNetMidBlock2DCrossAttn"
  up_block_types: tuple[str, ...] = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")
  only_cross_attention: tuple[bool, ...] = (False, False, False, False)
  block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
  layers_per_block: tuple[int, ...] = (2, 2, 2, 2)
  downsample_padding: int = 1
  mid_block_scale_factor: float = 1.0
  act_fn: str = "silu"
  norm_num_groups: int = 32
  norm_eps: float = 1e-5
  cross_attention_dim: tuple[int, ...] = (768, 768, 768, 768)
  transformer_layers_per_block: tuple[int, ...] = (1, 1, 1, 1)
  attention_head_dim: tuple[int, ...] = (8, 8, 8, 8)  # diffusers reads these as head counts (issue #2011)
  use_linear_projection: bool = False
  upcast_attention: bool = False
  resnet_time_scale_shift: str = "default"
  time_embedding_dim: int | None = None
  time_embedding_act_fn: str | None = None
  timestep_post_act: str | None = None
  conv_in_kernel: int = 3
  conv_out_kernel: int = 3

  @property
  def time_embed_dim(self) -> int:
    return self.time_embedding_dim or 4 * self.block_out_channels[0]


class _Transformer2D(nn.Module):
  """diffusers' `Transformer2DModel` on continuous inputs: GroupNorm, proj_in, transformer blocks, proj_out,
  plus the input."""
  heads: int
  head_dim: int
  num_layers: int
  groups: int
  use_linear_projection: bool
  only_cross_attention: bool
  upcast: bool
  dtype: Any
  param_dtype: Any

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
    for i in range(self.num_layers):
      y = _BasicTransformerBlock(self.heads, self.head_dim, self.only_cross_attention, self.upcast, self.dtype,
                                 self.param_dtype, name=f"transformer_blocks_{i}")(y, context)
    if self.use_linear_projection:
      y = jnn.dense(c, ("mlp", "embed"), dtype=self.dtype, param_dtype=self.param_dtype,
                    name="proj_out")(y).reshape(b, h, w, c)
    else:
      y = jnn.conv(c, (1, 1), padding="VALID", dtype=self.dtype, param_dtype=self.param_dtype,
                   name="proj_out")(y.reshape(b, h, w, inner))
    return jnn.constrain(y + x, _IMAGE_AXES)


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


class _BasicTransformerBlock(nn.Module):
  """Pre-LN self-attention (`attn1`), cross-attention on the text (`attn2`), GEGLU feed-forward (`ff`)."""
  heads: int
  head_dim: int
  only_cross_attention: bool
  upcast: bool
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x, context):
    norm = functools.partial(jnn.layer_norm, epsilon=1e-5, dtype=self.dtype, param_dtype=self.param_dtype)
    attn = functools.partial(Attention, self.heads, self.head_dim, upcast=self.upcast, dtype=self.dtype,
                             param_dtype=self.param_dtype)
    x = attn(name="attn1")(norm(name="norm1")(x), context if self.only_cross_attention else None) + x
    x = attn(name="attn2")(norm(name="norm2")(x), context) + x
    x = _FeedForward(self.dtype, self.param_dtype, name="ff")(norm(name="norm3")(x)) + x
    return jnn.constrain(x, _TOKEN_AXES)


@dataclasses.dataclass(frozen=True)
class _BlockSpec:
  """What one down / up block needs from the config."""
  out_channels: int
  num_layers: int
  attention: bool
  heads: int
  transformer_layers: int
  only_cross_attention: bool


class _Block(nn.Module):
  """A down block (`resnets`, `attentions`, `downsamplers`) or an up block (`resnets` on the concatenated skip
  connections, `attentions`, `upsamplers`) of diffusers' UNet; `attentions` only for the CrossAttn kinds."""
  spec: _BlockSpec
  config: UNet2DConfig
  direction: str  # 'down' | 'up'
  resample: bool
  remat_policy: str | None
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x, temb, context, skips=(), upsample_size=None):
    c, s = self.config, self.spec
    resnet = _remat(ResnetBlock2D, self.remat_policy)
    transformer = _remat(_Transformer2D, self.remat_policy)
    outputs, skips = [], list(skips)
    for j in range(s.num_layers):
      if self.direction == "up":
        x = jnp.concatenate([x, skips.pop()], axis=-1)
      x = resnet(s.out_channels, c.norm_num_groups, c.norm_eps, c.act_fn, c.resnet_time_scale_shift,
                 dtype=self.dtype, param_dtype=self.param_dtype, name=f"resnets_{j}")(x, temb)
      if s.attention:
        x = transformer(s.heads, s.out_channels // s.heads, s.transformer_layers, c.norm_num_groups,
                        c.use_linear_projection, s.only_cross_attention, c.upcast_attention, self.dtype,
                        self.param_dtype, name=f"attentions_{j}")(x, context)
      outputs.append(x)
    if self.resample and self.direction == "down":
      x = downsample(x, c.downsample_padding, self.dtype, self.param_dtype, name="downsamplers_0")
      outputs.append(x)
    if self.resample and self.direction == "up":
      x = upsample(x, upsample_size, self.dtype, self.param_dtype, name="upsamplers_0")
    return x, outputs


class _MidBlock(nn.Module):
  """diffusers' `UNetMidBlock2DCrossAttn`: resnet, then (transformer, resnet)."""
  config: UNet2DConfig
  remat_policy: str | None
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x, temb, context):
    c = self.config
    channels, heads = c.block_out_channels[-1], c.attention_head_dim[-1]
    resnet = functools.partial(_remat(ResnetBlock2D, self.remat_policy), channels, c.norm_num_groups, c.norm_eps,
                               c.act_fn, c.resnet_time_scale_shift, c.mid_block_scale_factor, dtype=self.dtype,
                               param_dtype=self.param_dtype)
    x = resnet(name="resnets_0")(x, temb)
    x = _remat(_Transformer2D, self.remat_policy)(
        heads, channels // heads, c.transformer_layers_per_block[-1], c.norm_num_groups,
        c.use_linear_projection, False, c.upcast_attention, self.dtype, self.param_dtype,
        name="attentions_0")(x, context)
    return resnet(name="resnets_1")(x, temb)


class UNet2DConditionModel(nn.Module):
  """`apply(v, sample [B,H,W,C], timesteps, encoder_hidden_states [B,L,D]) -> [B,H,W,out_channels]` (float32)."""
  config: UNet2DConfig = UNet2DConfig()
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat_policy: str | None = None  # a `jax.checkpoint_policies` name applied to every ResNet and transformer

  @nn.compact
  def __call__(self, sample, timesteps, encoder_hidden_states):
    c = self.config
    act = jnn.ACTIVATIONS[c.act_fn]
    x = sample.astype(self.dtype)
    if c.center_input_sample:
      x = 2 * x - 1.0
    context = encoder_hidden_states.astype(self.dtype)
    timesteps = jnp.broadcast_to(jnp.asarray(timesteps), (x.shape[0],))

    temb = timestep_embedding(timesteps, c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift)
    temb = _TimestepEmbedding(c.time_embed_dim, c.act_fn, c.timestep_post_act, self.dtype, self.param_dtype,
                              name="time_embedding")(temb.astype(self.dtype))
    if c.time_embedding_act_fn is not None:
      temb = jnn.ACTIVATIONS[c.time_embedding_act_fn](temb)

    k_in = c.conv_in_kernel
    x = jnn.conv(c.block_out_channels[0], (k_in, k_in), padding=[((k_in - 1) // 2,) * 2] * 2, dtype=self.dtype,
                 param_dtype=self.param_dtype, name="conv_in")(x)
    skips = [x]
    blocks = functools.partial(_Block, config=c, remat_policy=self.remat_policy, dtype=self.dtype,
                               param_dtype=self.param_dtype)
    last = len(c.block_out_channels) - 1
    for i, spec in enumerate(down_specs(c)):
      x, outputs = blocks(spec, direction="down", resample=i < last, name=f"down_blocks_{i}")(x, temb, context)
      skips += outputs

    if c.mid_block_type is not None:
      x = _MidBlock(c, self.remat_policy, self.dtype, self.param_dtype, name="mid_block")(x, temb, context)

    for i, spec in enumerate(up_specs(c)):
      n = spec.num_layers
      block_skips, skips = skips[-n:], skips[:-n]
      size = skips[-1].shape[1:3] if i < last else None
      x, _ = blocks(spec, direction="up", resample=i < last, name=f"up_blocks_{i}")(
          x, temb, context, block_skips, size)

    x = act(jnn.group_norm(c.norm_num_groups, epsilon=c.norm_eps, dtype=self.dtype, param_dtype=self.param_dtype,
                           name="conv_norm_out")(x))
    k_out = c.conv_out_kernel
    x = jnn.conv(c.out_channels, (k_out, k_out), padding=[((k_out - 1) // 2,) * 2] * 2, dtype=self.dtype,
                 param_dtype=self.param_dtype, name="conv_out")(x)
    return x.astype(jnp.float32)


class _TimestepEmbedding(nn.Module):
  features: int
  act: str
  post_act: str | None
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x):
    dense = functools.partial(jnn.dense, self.features, dtype=self.dtype, param_dtype=self.param_dtype)
    x = jnn.ACTIVATIONS[self.act](dense(("embed", "mlp"), name="linear_1")(x))
    x = dense(("mlp", "embed"), name="linear_2")(x)
    return jnn.ACTIVATIONS[self.post_act](x) if self.post_act else x


def down_specs(c: UNet2DConfig) -> list[_BlockSpec]:
  return [_BlockSpec(c.block_out_channels[i], c.layers_per_block[i], kind.startswith("CrossAttn"),
                     c.attention_head_dim[i], c.transformer_layers_per_block[i], c.only_cross_attention[i])
          for i, kind in enumerate(c.down_block_types)]


def up_specs(c: UNet2DConfig) -> list[_BlockSpec]:
  rev = lambda t: tuple(reversed(t))
  return [_BlockSpec(rev(c.block_out_channels)[i], rev(c.layers_per_block)[i] + 1, kind.startswith("CrossAttn"),
                     rev(c.attention_head_dim)[i], rev(c.transformer_layers_per_block)[i],
                     rev(c.only_cross_attention)[i])
          for i, kind in enumerate(c.up_block_types)]


# ------------------------------------------------------------------------------------ reference layout

_DOWN_TYPES = ("CrossAttnDownBlock2D", "DownBlock2D")
_UP_TYPES = ("CrossAttnUpBlock2D", "UpBlock2D")
_MID_TYPES = ("UNetMidBlock2DCrossAttn", None)
# diffusers options SD 1.x / 2.x leave at these values; other values would need layers this port lacks.
_FIXED = {
    "class_embed_type": None, "addition_embed_type": None, "encoder_hid_dim": None, "encoder_hid_dim_type": None,
    "num_class_embeds": None, "time_cond_proj_dim": None, "dual_cross_attention": False,
    "attention_type": "default", "time_embedding_type": "positional", "resnet_skip_time_act": False,
    "resnet_out_scale_factor": 1.0, "cross_attention_norm": None, "reverse_transformer_layers_per_block": None,
    "num_attention_heads": None, "mid_block_only_cross_attention": None, "dropout": 0.0,
}
_PER_BLOCK = ("only_cross_attention", "layers_per_block", "cross_attention_dim", "transformer_layers_per_block",
              "attention_head_dim")


def _from_config(config: dict, dtype=jnp.float32, param_dtype=jnp.float32) -> UNet2DConditionModel:
  for key, expected in _FIXED.items():
    value = config.get(key, expected)
    if value != expected and not (key == "mid_block_only_cross_attention" and value is False):
      raise UserError(f"UNet2DConditionModel with {key}={value!r} is not supported (jaxlab ports SD 1.x/2.x)")
  fields = {f.name: config[f.name] for f in dataclasses.fields(UNet2DConfig) if f.name in config}
  n = len(fields.get("down_block_types", UNet2DConfig.down_block_types))
  for key in _PER_BLOCK:
    if key in fields:
      value = fields[key]
      if isinstance(value, (list, tuple)) and any(isinstance(v, (list, tuple)) for v in value):
        raise UserError(f"UNet2DConditionModel: nested {key} is not supported")
      fields[key] = tuple(value) if isinstance(value, (list, tuple)) else (value,) * n
  for key in ("down_block_types", "up_block_types", "block_out_channels"):
    if key in fields:
      fields[key] = tuple(fields[key])
  if isinstance(fields.get("sample_size"), (list, tuple)):
    fields["sample_size"] = fields["sample_size"][0]
  c = UNet2DConfig(**fields)
  bad = [t for t in c.down_block_types if t not in _DOWN_TYPES] + [t for t in c.up_block_types if t not in _UP_TYPES]
  if bad or c.mid_block_type not in _MID_TYPES:
    raise UserError(f"UNet2DConditionModel blocks {bad or [c.mid_block_type]} are not supported; jaxlab has "
                    f"{', '.join(_DOWN_TYPES + _UP_TYPES + _MID_TYPES[:1])}")
  if c.norm_num_groups is None:
    raise UserError("UNet2DConditionModel with norm_num_groups=None is not supported")
  lengths = {len(c.block_out_channels), len(c.up_block_types), *(len(getattr(c, k)) for k in _PER_BLOCK)}
  if lengths != {len(c.down_block_types)}:
    raise UserError("UNet2DConditionModel config: per-block lists differ in length from down_block_types")
  return UNet2DConditionModel(c, dtype=dtype, param_dtype=param_dtype)


def _to_config(module: UNet2DConditionModel) -> dict:
  config = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(module.config).items()}
  for key in _PER_BLOCK:
    if len(set(config[key])) == 1:
      config[key] = config[key][0]
  config.update(_class_name="UNet2DConditionModel", _diffusers_version="0.42.1")
  return config


def _dummy_inputs(module: UNet2DConditionModel):
  c = module.config
  size = 2 ** (len(c.block_out_channels) - 1)
  return (jnp.zeros((1, size, size, c.in_channels), module.dtype), jnp.zeros((1,), jnp.int32),
          jnp.zeros((1, 1, c.cross_attention_dim[0]), module.dtype))


LAYER_LISTS = frozenset({"down_blocks", "up_blocks", "resnets", "attentions", "transformer_blocks",
                         "downsamplers", "upsamplers", "to_out", "net"})

FAMILY = weights.register(weights.Family(
    class_names=("UNet2DConditionModel",),
    module_types=(UNet2DConditionModel,),
    from_config=_from_config,
    to_config=_to_config,
    dummy_inputs=_dummy_inputs,
    layer_lists=LAYER_LISTS,
    weights_name="diffusion_pytorch_model.safetensors",
))
