"""3D convolutional video networks: the 3D ResNeXt family of Hara et al. and the I3D ResNet of Wang et al.

Hara, Kataoka, Satoh, "Can Spatiotemporal 3D CNNs Retrace the History of 2D CNNs and ImageNet?" (CVPR 2018):
a 7x7x7 stem (stride 1,2,2) and max pool, four stages of ResNeXt bottlenecks (1x1x1 -> grouped 3x3x3 ->
1x1x1, expansion 2, projection shortcuts), global average pooling and a linear classifier (AirLetters'
strongest models).

The same network with `block='inflated'` is the I3D ResNet of the non-local networks paper (Wang et al., CVPR
2018) that Something-Else fuses with its box model: plain bottlenecks (cardinality 1, expansion 4) whose first
1x1 convolution is inflated in time on a per-block pattern (`temporal_kernels`), spatial-only 1x3x3 middle
convolutions, a 5x7x7 stem, a 1x3x3 max pool, time halved by a max pool after the first stage, and a last stage
of stride 1 (`I3D_RESNET50`). Inputs are channels-last videos `[B, T, H, W, C]`, already normalised.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxlab import nn as jnn

DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3), 200: (3, 24, 36, 3)}


@dataclasses.dataclass(frozen=True)
class ResNeXt3DConfig:
  layers: tuple[int, ...] = DEPTHS[101]
  widths: tuple[int, ...] = (128, 256, 512, 1024)   # `planes` of each stage; output is widths * expansion
  cardinality: int = 32
  expansion: int = 2
  stem_width: int = 64
  stem_kernel: tuple[int, int, int] = (7, 7, 7)
  stem_stride: tuple[int, int, int] = (1, 2, 2)
  max_pool: bool = True
  pool_window: tuple[int, int, int] = (3, 3, 3)
  pool_stride: tuple[int, int, int] = (2, 2, 2)
  pool_padding: tuple[int, int, int] = (1, 1, 1)
  num_labels: int = 400                             # 0: no head; the network returns its last feature map
  dropout: float = 0.0
  block: str = "resnext"                            # 'resnext' (Hara et al.) or 'inflated' (I3D)
  stage_strides: tuple[int, ...] = (1, 2, 2, 2)
  # 'inflated' only: the temporal kernel of each block's first convolution, per stage and block (1 = 2D).
  temporal_kernels: tuple[tuple[int, ...], ...] | None = None
  stage1_temporal_pool: int = 1                     # max-pools time by this factor after the first stage

  @classmethod
  def depth(cls, depth: int, **kwargs) -> "ResNeXt3DConfig":
    return cls(layers=DEPTHS[depth], **kwargs)


# The Kinetics I3D ResNet-50 that Something-Else fuses with STIN: 2048 x T/2 x 14 x 14 features for T x 224².
I3D_RESNET50 = ResNeXt3DConfig(
    layers=DEPTHS[50], widths=(64, 128, 256, 512), cardinality=1, expansion=4, stem_width=64,
    stem_kernel=(5, 7, 7), stem_stride=(1, 2, 2), pool_window=(1, 3, 3), pool_stride=(1, 2, 2),
    pool_padding=(0, 0, 0), num_labels=0, block="inflated", stage_strides=(1, 2, 2, 1),
    temporal_kernels=((3, 3, 3), (3, 1, 3, 1), (3, 1, 3, 1, 3, 1), (1, 3, 1)), stage1_temporal_pool=2)


class Bottleneck(nn.Module):
  """A bottleneck with a projection skip when the shape changes.

  `temporal_kernel` 0 (ResNeXt): 1x1x1 reduce, grouped 3x3x3 (carries the stride in space and time), 1x1x1
  expand. `temporal_kernel` k >= 1 (inflated, I3D): kx1x1 reduce to `planes`, 1x3x3 (spatial stride), 1x1x1.
  """
  planes: int
  cardinality: int
  expansion: int
  stride: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  temporal_kernel: int = 0

  @nn.compact
  def __call__(self, x, train: bool):
    if self.temporal_kernel:
      mid, stride = self.planes, (1, self.stride, self.stride)
      kernel1, kernel2 = (self.temporal_kernel, 1, 1), (1, 3, 3)
    else:
      mid = self.cardinality * (self.planes // 32) if self.planes >= 32 else self.planes
      stride, kernel1, kernel2 = (self.stride,) * 3, (1, 1, 1), (3, 3, 3)
    out_features = self.planes * self.expansion
    conv = lambda f, k, s=1, g=1, name=None: jnn.conv(
        f, k, strides=s, padding=[(kk // 2, kk // 2) for kk in k], use_bias=False, feature_group_count=g,
        dtype=self.dtype, param_dtype=self.param_dtype, kernel_init=nn.initializers.kaiming_normal(), name=name)
    norm = lambda name, zero=False: jnn.batch_norm(dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    y = nn.relu(norm("bn1")(conv(mid, kernel1, name="conv1")(x), use_running_average=not train))
    y = conv(mid, kernel2, stride, self.cardinality, name="conv2")(y)
    y = nn.relu(norm("bn2")(y, use_running_average=not train))
    y = norm("bn3")(conv(out_features, (1, 1, 1), name="conv3")(y), use_running_average=not train)
    if x.shape[-1] != out_features or self.stride != 1:
      x = conv(out_features, (1, 1, 1), stride, name="downsample_conv")(x)
      x = norm("downsample_bn")(x, use_running_average=not train)
    return nn.relu(x + y)


class ResNeXt3D(nn.Module):
  """`apply(v, pixel_values [B,T,H,W,C], train=False, mutable=['batch_stats'] when training) -> logits`.

  With `config.num_labels == 0` it returns the last stage's feature map `[B, T', H', W', C']` instead.
  """
  config: ResNeXt3DConfig = ResNeXt3DConfig()
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat_policy: str | None = None

  @nn.compact
  def __call__(self, pixel_values, train: bool = False):
    c = self.config
    x = pixel_values.astype(self.dtype)
    x = jnn.conv(c.stem_width, c.stem_kernel, strides=c.stem_stride, padding=[(k // 2, k // 2) for k in c.stem_kernel],
                 use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype,
                 kernel_init=nn.initializers.kaiming_normal(), name="conv1")(x)
    x = nn.relu(jnn.batch_norm(dtype=self.dtype, param_dtype=self.param_dtype, name="bn1")(
        x, use_running_average=not train))
    if c.max_pool:
      x = nn.max_pool(x, c.pool_window, strides=c.pool_stride, padding=[(p, p) for p in c.pool_padding])
    block = Bottleneck
    if self.remat_policy is not None:
      block = nn.remat(Bottleneck, policy=getattr(jax.checkpoint_policies, self.remat_policy), static_argnums=(2,))
    inflated = c.block == "inflated"
    if c.block not in ("resnext", "inflated"):
      raise ValueError(f"block must be 'resnext' or 'inflated', not {c.block!r}")
    for stage, (count, planes) in enumerate(zip(c.layers, c.widths)):
      for i in range(count):
        stride = c.stage_strides[stage] if i == 0 else 1
        temporal_kernel = c.temporal_kernels[stage][i] if inflated else 0
        x = block(planes, c.cardinality, c.expansion, stride, self.dtype, self.param_dtype, temporal_kernel,
                  name=f"layer{stage + 1}_{i}")(x, train)
      if stage == 0 and c.stage1_temporal_pool > 1:
        window = (c.stage1_temporal_pool, 1, 1)
        x = nn.max_pool(x, window, strides=window)
      x = jnn.constrain(x, ("activation_batch", "activation_frames", "activation_height", "activation_width",
                            "activation_channels"))
    if not c.num_labels:
      return x
    x = x.mean(axis=(1, 2, 3))
    x = nn.Dropout(c.dropout, deterministic=not train)(x)
    logits = jnn.dense(c.num_labels, ("embed", "classes"), dtype=self.dtype, param_dtype=self.param_dtype,
                       name="fc")(x)
    return logits.astype(jnp.float32)
