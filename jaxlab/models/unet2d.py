"""The Stable Diffusion 1.x / 2.x / XL UNet, matching diffusers' `UNet2DConditionModel`.

Down blocks of ResNet blocks (each optionally followed by a spatial transformer with self- and cross-attention),
a middle block, and up blocks that consume the down path's skip connections; a sinusoidal timestep embedding
feeds every ResNet block. Both SD variants are covered: 1x1-conv or linear transformer projections
(`use_linear_projection`), per-block head counts (`attention_head_dim` as int or list, which diffusers reads as
the number of heads), and any cross-attention width (768 for CLIP ViT-L, 1024 for OpenCLIP ViT-H). SDXL adds
per-block (or per-layer) transformer depths (`transformer_layers_per_block`) and `addition_embed_type='text_time'`:
the pooled text embedding and the size/crop `time_ids` (as sinusoids) through `add_embedding`, added to the time
embedding.

The layers and blocks are diffusers' shared building blocks (`jaxlab.models.diffusers_blocks`).
Inputs are channels-last: `apply(v, sample [B,H,W,C], timesteps [B] or scalar, encoder_hidden_states [B,L,D])`,
plus `added_cond_kwargs={'text_embeds': [B,P], 'time_ids': [B,K]}` for SDXL, as in diffusers.
"""

import dataclasses
import functools
from typing import Any

import jax.numpy as jnp
from flax import linen as nn

from jaxlab import nn as jnn
from jaxlab.errors import UserError
from jaxlab.models import weights
from jaxlab.models.diffusers_blocks import (RUN, BlockOptions, BlockSpec, TimestepEmbedding, UNetBlock,
                                           UNetMidBlock, timestep_embedding)


@dataclasses.dataclass(frozen=True)
class UNet2DConfig:
  """The fields of diffusers' `UNet2DConditionModel` config that SD 1.x / 2.x / XL use; per-block fields are
  tuples. `transformer_layers_per_block[i]` is a depth for every layer of block i, or a tuple of per-layer depths
  (then `reverse_transformer_layers_per_block` gives the up blocks' depths, as diffusers requires)."""
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
  transformer_layers_per_block: tuple[int | tuple[int, ...], ...] = (1, 1, 1, 1)
  reverse_transformer_layers_per_block: tuple[tuple[int, ...], ...] | None = None
  attention_head_dim: tuple[int, ...] = (8, 8, 8, 8)  # diffusers reads these as head counts (issue #2011)
  use_linear_projection: bool = False
  upcast_attention: bool = False
  resnet_time_scale_shift: str = "default"
  time_embedding_dim: int | None = None
  time_embedding_act_fn: str | None = None
  timestep_post_act: str | None = None
  conv_in_kernel: int = 3
  conv_out_kernel: int = 3
  addition_embed_type: str | None = None  # None | 'text_time' (SDXL)
  addition_time_embed_dim: int | None = None
  projection_class_embeddings_input_dim: int | None = None

  @property
  def time_embed_dim(self) -> int:
    return self.time_embedding_dim or 4 * self.block_out_channels[0]

  @property
  def block_options(self) -> BlockOptions:
    return BlockOptions(self.norm_num_groups, self.norm_eps, self.act_fn, self.resnet_time_scale_shift,
                        self.use_linear_projection, self.upcast_attention, self.downsample_padding,
                        self.mid_block_scale_factor)


class UNet2DConditionModel(nn.Module):
  """`apply(v, sample [B,H,W,C], timesteps, encoder_hidden_states [B,L,D], added_cond_kwargs=None)
  -> [B,H,W,out_channels]` (float32)."""
  config: UNet2DConfig = UNet2DConfig()
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat_policy: str | None = None  # a `jax.checkpoint_policies` name applied to every ResNet and transformer
  scan_layers: bool = False  # each block's runs of alike layers, and transformer blocks, as scans (`UNetBlock`)

  @nn.compact
  def __call__(self, sample, timesteps, encoder_hidden_states, added_cond_kwargs=None):
    c = self.config
    act = jnn.ACTIVATIONS[c.act_fn]
    x = sample.astype(self.dtype)
    if c.center_input_sample:
      x = 2 * x - 1.0
    context = encoder_hidden_states.astype(self.dtype)
    timesteps = jnp.broadcast_to(jnp.asarray(timesteps), (x.shape[0],))

    temb = timestep_embedding(timesteps, c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift)
    temb = TimestepEmbedding(c.time_embed_dim, c.act_fn, c.timestep_post_act, self.dtype, self.param_dtype,
                             name="time_embedding")(temb.astype(self.dtype))
    if c.addition_embed_type == "text_time":
      temb = temb + self._text_time_embedding(added_cond_kwargs, x.shape[0])
    if c.time_embedding_act_fn is not None:
      temb = jnn.ACTIVATIONS[c.time_embedding_act_fn](temb)

    k_in = c.conv_in_kernel
    x = jnn.conv(c.block_out_channels[0], (k_in, k_in), padding=[((k_in - 1) // 2,) * 2] * 2, dtype=self.dtype,
                 param_dtype=self.param_dtype, name="conv_in")(x)
    skips = [x]
    blocks = functools.partial(UNetBlock, options=c.block_options, remat_policy=self.remat_policy,
                               dtype=self.dtype, param_dtype=self.param_dtype, scan_layers=self.scan_layers)
    last = len(c.block_out_channels) - 1
    for i, spec in enumerate(down_specs(c)):
      x, outputs = blocks(spec, direction="down", resample=i < last, name=f"down_blocks_{i}")(x, temb, context)
      skips += outputs

    if c.mid_block_type is not None:
      x = UNetMidBlock(mid_spec(c), c.block_options, self.remat_policy, dtype=self.dtype,
                       param_dtype=self.param_dtype, scan_layers=self.scan_layers, name="mid_block")(x, temb, context)

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

  @nn.nowrap
  def _text_time_embedding(self, added_cond_kwargs, batch: int):
    """SDXL's `add_embedding` of [pooled text embedding, sinusoids of each time id]."""
    c = self.config
    if not added_cond_kwargs or not {"text_embeds", "time_ids"} <= set(added_cond_kwargs):
      raise ValueError("this SDXL UNet (addition_embed_type='text_time') needs "
                       "added_cond_kwargs={'text_embeds': ..., 'time_ids': ...}")
    text_embeds, time_ids = added_cond_kwargs["text_embeds"], added_cond_kwargs["time_ids"]
    time_embeds = timestep_embedding(jnp.reshape(time_ids, (-1,)), c.addition_time_embed_dim, c.flip_sin_to_cos,
                                     c.freq_shift).reshape(batch, -1)
    embeds = jnp.concatenate([text_embeds.astype(jnp.float32), time_embeds], axis=-1)
    return TimestepEmbedding(c.time_embed_dim, dtype=self.dtype, param_dtype=self.param_dtype,
                             name="add_embedding")(embeds.astype(self.dtype))


def _layer_depths(depth: int | tuple[int, ...], num_layers: int) -> tuple[int, ...]:
  return tuple(depth) if isinstance(depth, tuple) else (depth,) * num_layers


def down_specs(c: UNet2DConfig) -> list[BlockSpec]:
  return [BlockSpec(c.block_out_channels[i], c.layers_per_block[i], kind.startswith("CrossAttn"),
                    c.attention_head_dim[i], c.block_out_channels[i] // c.attention_head_dim[i],
                    _layer_depths(c.transformer_layers_per_block[i], c.layers_per_block[i]),
                    c.only_cross_attention[i])
          for i, kind in enumerate(c.down_block_types)]


def up_specs(c: UNet2DConfig) -> list[BlockSpec]:
  rev = lambda t: tuple(reversed(t))
  channels, heads, layers = rev(c.block_out_channels), rev(c.attention_head_dim), rev(c.layers_per_block)
  depths = c.reverse_transformer_layers_per_block or rev(c.transformer_layers_per_block)
  return [BlockSpec(channels[i], layers[i] + 1, kind.startswith("CrossAttn"), heads[i], channels[i] // heads[i],
                    _layer_depths(depths[i], layers[i] + 1), rev(c.only_cross_attention)[i])
          for i, kind in enumerate(c.up_block_types)]


def mid_spec(c: UNet2DConfig) -> BlockSpec:
  channels, heads = c.block_out_channels[-1], c.attention_head_dim[-1]
  depth = _layer_depths(c.transformer_layers_per_block[-1], 1)[0]  # a per-layer tuple's first, as diffusers
  return BlockSpec(channels, 1, True, heads, channels // heads, (depth,))


# ------------------------------------------------------------------------------------ reference layout

_DOWN_TYPES = ("CrossAttnDownBlock2D", "DownBlock2D")
_UP_TYPES = ("CrossAttnUpBlock2D", "UpBlock2D")
_MID_TYPES = ("UNetMidBlock2DCrossAttn", None)
_ADDITION_TYPES = (None, "text_time")
# diffusers options SD 1.x / 2.x / XL leave at these values; other values would need layers this port lacks.
_FIXED = {
    "class_embed_type": None, "encoder_hid_dim": None, "encoder_hid_dim_type": None, "num_class_embeds": None,
    "time_cond_proj_dim": None, "dual_cross_attention": False, "class_embeddings_concat": False,
    "attention_type": "default", "time_embedding_type": "positional", "resnet_skip_time_act": False,
    "resnet_out_scale_factor": 1.0, "cross_attention_norm": None, "num_attention_heads": None,
    "mid_block_only_cross_attention": None, "dropout": 0.0,
}
# diffusers' defaults for the per-block options, for configs that leave one out.
_PER_BLOCK = {"only_cross_attention": False, "layers_per_block": 2, "cross_attention_dim": 1280,
              "transformer_layers_per_block": 1, "attention_head_dim": 8}


def _from_config(config: dict, dtype=jnp.float32, param_dtype=jnp.float32) -> UNet2DConditionModel:
  for key, expected in _FIXED.items():
    value = config.get(key, expected)
    if value != expected and not (key == "mid_block_only_cross_attention" and value is False):
      raise UserError(f"UNet2DConditionModel with {key}={value!r} is not supported (jaxlab ports SD 1.x/2.x/XL)")
  if config.get("addition_embed_type") not in _ADDITION_TYPES:
    raise UserError(f"UNet2DConditionModel with addition_embed_type={config['addition_embed_type']!r} is not "
                    "supported; jaxlab has None and 'text_time' (SDXL)")
  fields = {f.name: config[f.name] for f in dataclasses.fields(UNet2DConfig) if f.name in config}
  n = len(fields.get("down_block_types", UNet2DConfig.down_block_types))
  nested = lambda v: tuple(nested(x) for x in v) if isinstance(v, (list, tuple)) else v
  for key, default in _PER_BLOCK.items():
    value = fields.get(key, default)
    if key != "transformer_layers_per_block" and isinstance(value, (list, tuple)) and \
        any(isinstance(v, (list, tuple)) for v in value):
      raise UserError(f"UNet2DConditionModel: nested {key} is not supported")
    fields[key] = nested(value) if isinstance(value, (list, tuple)) else (value,) * n
  if fields.get("reverse_transformer_layers_per_block") is not None:
    fields["reverse_transformer_layers_per_block"] = nested(fields["reverse_transformer_layers_per_block"])
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
  if c.addition_embed_type == "text_time" and None in (c.addition_time_embed_dim,
                                                        c.projection_class_embeddings_input_dim):
    raise UserError("UNet2DConditionModel with addition_embed_type='text_time' needs addition_time_embed_dim and "
                    "projection_class_embeddings_input_dim")
  lengths = {len(c.block_out_channels), len(c.up_block_types), *(len(getattr(c, k)) for k in _PER_BLOCK)}
  if lengths != {len(c.down_block_types)}:
    raise UserError("UNet2DConditionModel config: per-block lists differ in length from down_block_types")
  return UNet2DConditionModel(c, dtype=dtype, param_dtype=param_dtype)


def _as_lists(value):
  return [_as_lists(v) for v in value] if isinstance(value, tuple) else value


def _to_config(module: UNet2DConditionModel) -> dict:
  config = {k: _as_lists(v) for k, v in dataclasses.asdict(module.config).items()}
  for key in _PER_BLOCK:
    if not isinstance(config[key][0], list) and len(set(config[key])) == 1:
      config[key] = config[key][0]
  config.update(_class_name="UNet2DConditionModel", _diffusers_version="0.42.1")
  return config


def _dummy_inputs(module: UNet2DConditionModel):
  c = module.config
  size = 2 ** (len(c.block_out_channels) - 1)
  added = None
  if c.addition_embed_type == "text_time":  # one time id: only the concatenated width shapes the params
    added = {"text_embeds": jnp.zeros((1, c.projection_class_embeddings_input_dim - c.addition_time_embed_dim)),
             "time_ids": jnp.zeros((1, 1))}
  return (jnp.zeros((1, size, size, c.in_channels), module.dtype), jnp.zeros((1,), jnp.int32),
          jnp.zeros((1, 1, c.cross_attention_dim[0]), module.dtype), added)


LAYER_LISTS = frozenset({"down_blocks", "up_blocks", "resnets", "attentions", "transformer_blocks",
                         "downsamplers", "upsamplers", "to_out", "net"})
NAMING = weights.Naming(LAYER_LISTS, runs=frozenset({RUN}))

FAMILY = weights.register(weights.Family(
    class_names=("UNet2DConditionModel",),
    module_types=(UNet2DConditionModel,),
    from_config=_from_config,
    to_config=_to_config,
    dummy_inputs=_dummy_inputs,
    naming=NAMING,
    weights_name="diffusion_pytorch_model.safetensors",
))
