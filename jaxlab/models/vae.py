"""Stable Diffusion's VAE, matching diffusers' `AutoencoderKL`.

Encoder: conv, down blocks of ResNet blocks with strided-conv downsampling, a middle block with one spatial
self-attention, then the Gaussian's mean and log-variance (through `quant_conv`). Decoder: the mirror image
with nearest upsampling. Checkpoints with the legacy attention names (`query`, `key`, `value`, `proj_attn`)
load as well. Images are channels-last in [-1, 1]; latents are unscaled (multiply by
`config.scaling_factor` for the UNet, as diffusers pipelines do).

  apply(v, x, method='encode') -> (mean, logvar)      apply(v, z, method='decode') -> image
"""

import dataclasses
import functools
import re
from typing import Any

import jax.numpy as jnp
from flax import linen as nn

from jaxlab import nn as jnn
from jaxlab.errors import UserError
from jaxlab.models import weights
from jaxlab.models.diffusers_blocks import RUN, Attention, ResnetBlock2D, downsample, upsample


@dataclasses.dataclass(frozen=True)
class VAEConfig:
  """The fields of diffusers' `AutoencoderKL` config."""
  in_channels: int = 3
  out_channels: int = 3
  down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",) * 4
  up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",) * 4
  block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
  layers_per_block: int = 2
  act_fn: str = "silu"
  latent_channels: int = 4
  norm_num_groups: int = 32
  sample_size: int = 512
  scaling_factor: float = 0.18215
  shift_factor: float | None = None
  force_upcast: bool = True
  use_quant_conv: bool = True
  use_post_quant_conv: bool = True
  mid_block_add_attention: bool = True


class _MidBlock(nn.Module):
  """diffusers' `UNetMidBlock2D` without a time embedding: resnet, single-head self-attention, resnet."""
  config: VAEConfig
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x):
    c = self.config
    channels = x.shape[-1]
    x = _resnet(channels, c, self.dtype, self.param_dtype, "resnets_0")(x)
    if c.mid_block_add_attention:
      x = Attention(1, channels, qkv_bias=True, group_norm_groups=c.norm_num_groups, eps=1e-6, dtype=self.dtype,
                    param_dtype=self.param_dtype, name="attentions_0")(x)
    return _resnet(channels, c, self.dtype, self.param_dtype, "resnets_1")(x)


def _resnet(channels: int, c: VAEConfig, dtype, param_dtype, name: str) -> ResnetBlock2D:
  return ResnetBlock2D(channels, c.norm_num_groups, 1e-6, c.act_fn, dtype=dtype, param_dtype=param_dtype, name=name)


class _RunResnet(nn.Module):
  """A ResNet of a scanned run (`resnets` under `run_k`), as a `repeat_layers` layer: `x -> (x, None)`."""
  out_channels: int
  config: VAEConfig
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x):
    return _resnet(self.out_channels, self.config, self.dtype, self.param_dtype, "resnets")(x), None


def _resnets(x, count: int, out_channels: int, c: VAEConfig, scan: bool, dtype, param_dtype):
  """A block's `count` ResNets (`resnets_j`); with `scan`, those after the first that keep the width, when two or
  more, as one scanned run `run_k` (inside the calling module)."""
  first = 0 if x.shape[-1] == out_channels else 1
  scanned = scan and count - first > 1
  for j in range(first if scanned else count):
    x = _resnet(out_channels, c, dtype, param_dtype, f"resnets_{j}")(x)
  if not scanned:
    return x
  return jnn.repeat_layers(_RunResnet, count - first, x, name=f"{RUN}_{first}", out_channels=out_channels, config=c,
                           dtype=dtype, param_dtype=param_dtype)


class _DownEncoderBlock(nn.Module):
  out_channels: int
  config: VAEConfig
  add_downsample: bool
  dtype: Any
  param_dtype: Any
  scan_layers: bool = False

  @nn.compact
  def __call__(self, x):
    x = _resnets(x, self.config.layers_per_block, self.out_channels, self.config, self.scan_layers, self.dtype,
                 self.param_dtype)
    if self.add_downsample:
      x = downsample(x, 0, self.dtype, self.param_dtype, name="downsamplers_0")
    return x


class _UpDecoderBlock(nn.Module):
  out_channels: int
  config: VAEConfig
  add_upsample: bool
  dtype: Any
  param_dtype: Any
  scan_layers: bool = False

  @nn.compact
  def __call__(self, x):
    x = _resnets(x, self.config.layers_per_block + 1, self.out_channels, self.config, self.scan_layers, self.dtype,
                 self.param_dtype)
    if self.add_upsample:
      x = upsample(x, None, self.dtype, self.param_dtype, name="upsamplers_0")
    return x


def _conv3(features, dtype, param_dtype, name):
  return jnn.conv(features, (3, 3), padding=((1, 1), (1, 1)), dtype=dtype, param_dtype=param_dtype, name=name)


def _out_stage(x, c: VAEConfig, features, dtype, param_dtype):
  x = jnn.group_norm(c.norm_num_groups, epsilon=1e-6, dtype=dtype, param_dtype=param_dtype, name="conv_norm_out")(x)
  return _conv3(features, dtype, param_dtype, "conv_out")(jnn.ACTIVATIONS[c.act_fn](x))


class _Encoder(nn.Module):
  config: VAEConfig
  dtype: Any
  param_dtype: Any
  scan_layers: bool

  @nn.compact
  def __call__(self, x):
    c = self.config
    x = _conv3(c.block_out_channels[0], self.dtype, self.param_dtype, "conv_in")(x)
    last = len(c.block_out_channels) - 1
    for i, channels in enumerate(c.block_out_channels):
      x = _DownEncoderBlock(channels, c, i < last, self.dtype, self.param_dtype, self.scan_layers,
                            name=f"down_blocks_{i}")(x)
    x = _MidBlock(c, self.dtype, self.param_dtype, name="mid_block")(x)
    return _out_stage(x, c, 2 * c.latent_channels, self.dtype, self.param_dtype)


class _Decoder(nn.Module):
  config: VAEConfig
  dtype: Any
  param_dtype: Any
  scan_layers: bool

  @nn.compact
  def __call__(self, z):
    c = self.config
    x = _conv3(c.block_out_channels[-1], self.dtype, self.param_dtype, "conv_in")(z)
    x = _MidBlock(c, self.dtype, self.param_dtype, name="mid_block")(x)
    last = len(c.block_out_channels) - 1
    for i, channels in enumerate(reversed(c.block_out_channels)):
      x = _UpDecoderBlock(channels, c, i < last, self.dtype, self.param_dtype, self.scan_layers,
                          name=f"up_blocks_{i}")(x)
    return _out_stage(x, c, c.out_channels, self.dtype, self.param_dtype)


class AutoencoderKL(nn.Module):
  """`encode(x [B,H,W,3]) -> (mean, logvar)`, `decode(z) -> x`; `__call__` is decode(encode(x).mean)."""
  config: VAEConfig = VAEConfig()
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  scan_layers: bool = False  # the ResNets of a block that keep its width, as one scan (`run_k`)

  def setup(self):
    c = self.config
    self.encoder = _Encoder(c, self.dtype, self.param_dtype, self.scan_layers)
    self.decoder = _Decoder(c, self.dtype, self.param_dtype, self.scan_layers)
    one_by_one = functools.partial(jnn.conv, kernel_size=(1, 1), padding="VALID", dtype=self.dtype,
                                   param_dtype=self.param_dtype)
    self.quant_conv = one_by_one(2 * c.latent_channels) if c.use_quant_conv else None
    self.post_quant_conv = one_by_one(c.latent_channels) if c.use_post_quant_conv else None

  def encode(self, x):
    h = self.encoder(x.astype(self.dtype))
    if self.quant_conv is not None:
      h = self.quant_conv(h)
    mean, logvar = jnp.split(h.astype(jnp.float32), 2, axis=-1)
    return mean, jnp.clip(logvar, -30.0, 20.0)

  def decode(self, z):
    z = z.astype(self.dtype)
    if self.post_quant_conv is not None:
      z = self.post_quant_conv(z)
    return self.decoder(z).astype(jnp.float32)

  def __call__(self, x):
    mean, _ = self.encode(x)
    return self.decode(mean)


# ------------------------------------------------------------------------------------ reference layout

_LEGACY_ATTENTION = re.compile(r"(.*mid_block\.attentions\.\d+)\.(query|key|value|proj_attn)\.(weight|bias)")
_LEGACY_NAMES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def _rename_in(key: str) -> str:
  # diffusers before 0.14 named the VAE's attention layers query/key/value/proj_attn.
  match = _LEGACY_ATTENTION.fullmatch(key)
  if match is None:
    return key
  return f"{match.group(1)}.{_LEGACY_NAMES[match.group(2)]}.{match.group(3)}"


def _from_config(config: dict, dtype=jnp.float32, param_dtype=jnp.float32) -> AutoencoderKL:
  fields = {f.name: config[f.name] for f in dataclasses.fields(VAEConfig) if f.name in config}
  for key in ("down_block_types", "up_block_types", "block_out_channels"):
    if key in fields:
      fields[key] = tuple(fields[key])
  if isinstance(fields.get("sample_size"), (list, tuple)):
    fields["sample_size"] = fields["sample_size"][0]
  c = VAEConfig(**fields)
  if set(c.down_block_types) != {"DownEncoderBlock2D"} or set(c.up_block_types) != {"UpDecoderBlock2D"}:
    raise UserError(f"AutoencoderKL blocks {c.down_block_types} / {c.up_block_types} are not supported; jaxlab "
                    "has DownEncoderBlock2D and UpDecoderBlock2D")
  return AutoencoderKL(c, dtype=dtype, param_dtype=param_dtype)


def _to_config(module: AutoencoderKL) -> dict:
  config = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(module.config).items()}
  config.update(_class_name="AutoencoderKL", _diffusers_version="0.42.1")
  return config


def _dummy_inputs(module: AutoencoderKL):
  size = 2 ** (len(module.config.block_out_channels) - 1)
  return (jnp.zeros((1, size, size, module.config.in_channels), module.dtype),)


FAMILY = weights.register(weights.Family(
    class_names=("AutoencoderKL",),
    module_types=(AutoencoderKL,),
    from_config=_from_config,
    to_config=_to_config,
    dummy_inputs=_dummy_inputs,
    naming=weights.Naming(frozenset({"down_blocks", "up_blocks", "resnets", "attentions", "downsamplers",
                                     "upsamplers", "to_out"}), runs=frozenset({RUN})),
    weights_name="diffusion_pytorch_model.safetensors",
    rename_in=_rename_in,
))
