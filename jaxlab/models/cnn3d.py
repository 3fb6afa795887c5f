"""3D convolutional video classifiers: the 3D ResNeXt family of Hara et al. (AirLetters' strongest models).

Hara, Kataoka, Satoh, "Can Spatiotemporal 3D CNNs Retrace the History of 2D CNNs and ImageNet?" (CVPR 2018):
a 7x7x7 stem (stride 1,2,2) and max pool, four stages of ResNeXt bottlenecks (1x1x1 -> grouped 3x3x3 ->
1x1x1, expansion 2, projection shortcuts), global average pooling and a linear classifier. Inputs are
channels-last videos `[B, T, H, W, C]`, already normalised.
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
  num_labels: int = 400
  dropout: float = 0.0

  @classmethod
  def depth(cls, depth: int, **kwargs) -> "ResNeXt3DConfig":
    return cls(layers=DEPTHS[depth], **kwargs)


class Bottleneck(nn.Module):
  """ResNeXt bottleneck: 1x1x1 reduce, grouped 3x3x3 (carries the stride), 1x1x1 expand, projection skip."""
  planes: int
  cardinality: int
  expansion: int
  stride: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    mid = self.cardinality * (self.planes // 32) if self.planes >= 32 else self.planes
    out_features = self.planes * self.expansion
    conv = lambda f, k, s=1, g=1, name=None: jnn.conv(
        f, k, strides=s, padding=[(kk // 2, kk // 2) for kk in k], use_bias=False, feature_group_count=g,
        dtype=self.dtype, param_dtype=self.param_dtype, kernel_init=nn.initializers.kaiming_normal(), name=name)
    norm = lambda name, zero=False: jnn.batch_norm(dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    y = nn.relu(norm("bn1")(conv(mid, (1, 1, 1), name="conv1")(x), use_running_average=not train))
    y = conv(mid, (3, 3, 3), self.stride, self.cardinality, name="conv2")(y)
    y = nn.relu(norm("bn2")(y, use_running_average=not train))
    y = norm("bn3")(conv(out_features, (1, 1, 1), name="conv3")(y), use_running_average=not train)
    if x.shape[-1] != out_features or self.stride != 1:
      x = conv(out_features, (1, 1, 1), self.stride, name="downsample_conv")(x)
      x = norm("downsample_bn")(x, use_running_average=not train)
    return nn.relu(x + y)


class ResNeXt3D(nn.Module):
  """`apply(v, pixel_values [B,T,H,W,C], train=False, mutable=['batch_stats'] when training) -> logits`."""
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
      x = nn.max_pool(x, (3, 3, 3), strides=(2, 2, 2), padding=((1, 1),) * 3)
    block = Bottleneck
    if self.remat_policy is not None:
      block = nn.remat(Bottleneck, policy=getattr(jax.checkpoint_policies, self.remat_policy), static_argnums=(2,))
    for stage, (count, planes) in enumerate(zip(c.layers, c.widths)):
      for i in range(count):
        stride = 2 if stage > 0 and i == 0 else 1
        x = block(planes, c.cardinality, c.expansion, stride, self.dtype, self.param_dtype,
                  name=f"layer{stage + 1}_{i}")(x, train)
      x = jnn.constrain(x, ("activation_batch", "activation_frames", "activation_height", "activation_width",
                            "activation_channels"))
    x = x.mean(axis=(1, 2, 3))
    x = nn.Dropout(c.dropout, deterministic=not train)(x)
    logits = jnn.dense(c.num_labels, ("embed", "classes"), dtype=self.dtype, param_dtype=self.param_dtype,
                       name="fc")(x)
    return logits.astype(jnp.float32)
