"""The text-to-video UNet of ModelScope / ZeroScope, matching diffusers' `UNet3DConditionModel`.

The 2D UNet's blocks run on every frame (frames are rows of the batch, as in diffusers), with diffusers' 3D
additions from `jaxlab.models.diffusers_blocks`: a `TemporalConvLayer` after every ResNet, a
`TransformerTemporalModel` (attention across frames, no positional encoding) after every spatial transformer, and
one more (`transformer_in`, 8 heads) after `conv_in`. The text and the time embedding are shared by all frames.

Naming quirk kept from diffusers: `attention_head_dim` is the head *size* here (its 3D blocks pass it where the 2D
blocks take a head count), so a block of C channels has C // attention_head_dim heads; `transformer_in` has 8.

  apply(v, sample [B,F,H,W,C], timesteps [B] or scalar, encoder_hidden_states [B,L,D]) -> [B,F,H,W,out_channels]

`deterministic=False` (with a `dropout` rng) turns on the temporal convs' dropout (0.1), as diffusers' `train()`.
"""

import dataclasses
import functools
from typing import Any

import jax.numpy as jnp
from flax import linen as nn

from jaxlab import nn as jnn
from jaxlab.errors import UserError
from jaxlab.models import unet2d, weights
from jaxlab.models.diffusers_blocks import (BlockOptions, BlockSpec, TimestepEmbedding, TransformerTemporalModel,
                                           UNetBlock, UNetMidBlock, remat, timestep_embedding)

DOWN_TYPES = ("CrossAttnDownBlock3D", "DownBlock3D")
UP_TYPES = ("CrossAttnUpBlock3D", "UpBlock3D")
TRANSFORMER_IN_HEADS = 8


@dataclasses.dataclass(frozen=True)
class UNet3DConfig:
  """The fields of diffusers' `UNet3DConditionModel` config (defaults: text-to-video-ms-1.7b's)."""
  sample_size: int | None = None
  in_channels: int = 4
  out_channels: int = 4
  down_block_types: tuple[str, ...] = ("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",)
  up_block_types: tuple[str, ...] = ("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3
  block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
  layers_per_block: int = 2
  downsample_padding: int = 1
  mid_block_scale_factor: float = 1.0
  act_fn: str = "silu"
  norm_num_groups: int = 32
  norm_eps: float = 1e-5
  cross_attention_dim: int = 1024
  attention_head_dim: int = 64  # the head size (see the module docstring)

  @property
  def block_options(self) -> BlockOptions:
    return BlockOptions(self.norm_num_groups, self.norm_eps, self.act_fn, use_linear_projection=True,
                        downsample_padding=self.downsample_padding, mid_block_scale_factor=self.mid_block_scale_factor)

  def spec(self, channels: int, num_layers: int, kind: str) -> BlockSpec:
    heads = channels // self.attention_head_dim
    return BlockSpec(channels, num_layers, kind.startswith("CrossAttn"), heads, self.attention_head_dim,
                     (1,) * num_layers)


class UNet3DConditionModel(nn.Module):
  """`apply(v, sample [B,F,H,W,C], timesteps, encoder_hidden_states [B,L,D]) -> [B,F,H,W,out_channels]`."""
  config: UNet3DConfig = UNet3DConfig()
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat_policy: str | None = None  # a `jax.checkpoint_policies` name applied to every ResNet and transformer
  scan_layers: bool = False  # each block's runs of alike layers as scans (`UNetBlock`)

  @nn.compact
  def __call__(self, sample, timesteps, encoder_hidden_states, deterministic: bool = True):
    c = self.config
    b, f, h, w, _ = sample.shape
    x = sample.astype(self.dtype).reshape(b * f, h, w, c.in_channels)
    timesteps = jnp.broadcast_to(jnp.asarray(timesteps), (b,))
    temb = timestep_embedding(timesteps, c.block_out_channels[0], flip_sin_to_cos=True, freq_shift=0)
    temb = TimestepEmbedding(4 * c.block_out_channels[0], c.act_fn, dtype=self.dtype, param_dtype=self.param_dtype,
                             name="time_embedding")(temb.astype(self.dtype))
    temb = jnp.repeat(temb, f, axis=0)  # every frame of a video shares its time and text
    context = jnp.repeat(encoder_hidden_states.astype(self.dtype), f, axis=0)

    x = jnn.conv(c.block_out_channels[0], (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
                 param_dtype=self.param_dtype, name="conv_in")(x)
    x = remat(TransformerTemporalModel, self.remat_policy)(
        TRANSFORMER_IN_HEADS, c.attention_head_dim, c.norm_num_groups, f, dtype=self.dtype,
        param_dtype=self.param_dtype, name="transformer_in")(x)

    block = functools.partial(UNetBlock, options=c.block_options, remat_policy=self.remat_policy, num_frames=f,
                              deterministic=deterministic, dtype=self.dtype, param_dtype=self.param_dtype,
                              scan_layers=self.scan_layers)
    skips, last = [x], len(c.block_out_channels) - 1
    for i, (channels, kind) in enumerate(zip(c.block_out_channels, c.down_block_types)):
      x, outputs = block(c.spec(channels, c.layers_per_block, kind), direction="down", resample=i < last,
                         name=f"down_blocks_{i}")(x, temb, context)
      skips += outputs

    x = UNetMidBlock(c.spec(c.block_out_channels[-1], 1, "CrossAttn"), c.block_options, self.remat_policy, f,
                     deterministic, dtype=self.dtype, param_dtype=self.param_dtype, name="mid_block")(x, temb, context)

    for i, (channels, kind) in enumerate(zip(reversed(c.block_out_channels), c.up_block_types)):
      n = c.layers_per_block + 1
      block_skips, skips = skips[-n:], skips[:-n]
      size = skips[-1].shape[1:3] if i < last else None
      x, _ = block(c.spec(channels, n, kind), direction="up", resample=i < last, name=f"up_blocks_{i}")(
          x, temb, context, block_skips, size)

    x = jnn.group_norm(c.norm_num_groups, epsilon=c.norm_eps, dtype=self.dtype, param_dtype=self.param_dtype,
                       name="conv_norm_out")(x)
    x = jnn.conv(c.out_channels, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, param_dtype=self.param_dtype,
                 name="conv_out")(nn.silu(x))  # SiLU whatever `act_fn` says, as diffusers
    return x.reshape(b, f, h, w, c.out_channels).astype(jnp.float32)


# ------------------------------------------------------------------------------------ reference layout

# diffusers options that its UNet3DConditionModel only accepts at these values.
_FIXED = {"num_attention_heads": None, "time_cond_proj_dim": None}

# `TemporalConvLayer.convK` is an `nn.Sequential(GroupNorm, SiLU, [Dropout,] Conv3d)`: PyTorch names its parts by
# position (the conv is 2 in conv1, which has no dropout, and 3 in the others).
NAMING = weights.Naming(
    unet2d.LAYER_LISTS | {"temp_convs", "temp_attentions"}, runs=unet2d.NAMING.runs,
    renames=tuple(pair for k in range(1, 5)
                  for pair in ((f"conv{k}.norm", f"conv{k}.0"), (f"conv{k}.conv", f"conv{k}.{2 if k == 1 else 3}"))))


def _from_config(config: dict, dtype=jnp.float32, param_dtype=jnp.float32) -> UNet3DConditionModel:
  for key, expected in _FIXED.items():
    if config.get(key, expected) != expected:
      raise UserError(f"UNet3DConditionModel with {key}={config[key]!r} is not supported (diffusers refuses it too)")
  fields = {f.name: config[f.name] for f in dataclasses.fields(UNet3DConfig) if f.name in config}
  for key in ("down_block_types", "up_block_types", "block_out_channels"):
    if key in fields:
      fields[key] = tuple(fields[key])
  c = UNet3DConfig(**fields)
  bad = [t for t in c.down_block_types if t not in DOWN_TYPES] + [t for t in c.up_block_types if t not in UP_TYPES]
  if bad:
    raise UserError(f"UNet3DConditionModel blocks {bad} are not supported; jaxlab has "
                    f"{', '.join(DOWN_TYPES + UP_TYPES)}")
  if not isinstance(c.attention_head_dim, int) or not isinstance(c.layers_per_block, int):
    raise UserError("UNet3DConditionModel: attention_head_dim and layers_per_block must be single numbers")
  if c.norm_num_groups is None:
    raise UserError("UNet3DConditionModel with norm_num_groups=None is not supported")
  if {len(c.block_out_channels), len(c.up_block_types)} != {len(c.down_block_types)}:
    raise UserError("UNet3DConditionModel config: block_out_channels, down_block_types and up_block_types differ "
                    "in length")
  return UNet3DConditionModel(c, dtype=dtype, param_dtype=param_dtype)


def _to_config(module: UNet3DConditionModel) -> dict:
  config = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(module.config).items()}
  config.update(_class_name="UNet3DConditionModel", _diffusers_version="0.42.1")
  return config


def _dummy_inputs(module: UNet3DConditionModel):
  c = module.config
  size = 2 ** (len(c.block_out_channels) - 1)
  return (jnp.zeros((1, 1, size, size, c.in_channels), module.dtype), jnp.zeros((1,), jnp.int32),
          jnp.zeros((1, 1, c.cross_attention_dim), module.dtype))


FAMILY = weights.register(weights.Family(
    class_names=("UNet3DConditionModel",),
    module_types=(UNet3DConditionModel,),
    from_config=_from_config,
    to_config=_to_config,
    dummy_inputs=_dummy_inputs,
    naming=NAMING,
    weights_name="diffusion_pytorch_model.safetensors",
))
