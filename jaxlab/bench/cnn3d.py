"""`jaxlab bench cnn3d`: the 3D ResNeXt of AirLetters (Hara et al.) or the I3D ResNet-50 of Something-Else,
beside a PyTorch network of the same config and batch.

No PyTorch package provides these 3D ResNets, so the reference is `torch_resnet3d` below, written from the
architectures' descriptions with the original I3D's module names (its state dict converts with
`jaxlab.models.stin.i3d_variables_from_torch`, which the parity tests use). Both sides run a full step: forward in
training mode (batch statistics), cross-entropy, backward and SGD with momentum.
"""

import dataclasses
import functools

import jax.numpy as jnp
import numpy as np
import optax

from jaxlab import training
from jaxlab.bench import common
from jaxlab.models import cnn3d

_TINY = dict(layers=(1, 1, 1, 1), stem_width=8, num_labels=10)
SIZES = {
    "tiny": dict(config=cnn3d.ResNeXt3DConfig(widths=(32, 32, 64, 64), cardinality=8, **_TINY), frames=4, size=32,
                 batch_size=2),
    # The CPU size of AirLetters' `tiny_cnn`: a narrow ResNeXt, 16 frames of 64 px.
    "small": dict(config=cnn3d.ResNeXt3DConfig(layers=(1, 1, 1, 1), widths=(32, 64, 128, 256), cardinality=8,
                                               stem_width=32, num_labels=10), frames=16, size=64, batch_size=4),
    # AirLetters' `resnext101`: 3D ResNeXt-101, 32 frames of 112 px.
    "paper": dict(config=cnn3d.ResNeXt3DConfig.depth(101, num_labels=10), frames=32, size=112, batch_size=8),
    "tiny_i3d": dict(config=dataclasses.replace(cnn3d.I3D_RESNET50, widths=(8, 8, 16, 16),
                                                temporal_kernels=((3,), (1,), (3,), (1,)), **_TINY),
                     frames=4, size=32, batch_size=2),
    "small_i3d": dict(config=dataclasses.replace(cnn3d.I3D_RESNET50, widths=(16, 32, 64, 128), stem_width=16,
                                                 layers=(1, 1, 1, 1), temporal_kernels=((3,), (3,), (3,), (1,)),
                                                 num_labels=174), frames=8, size=112, batch_size=2),
    # Something-Else's I3D ResNet-50 baseline: 16 frames of 224 px, 174 classes.
    "paper_i3d": dict(config=dataclasses.replace(cnn3d.I3D_RESNET50, num_labels=174), frames=16, size=224,
                      batch_size=8),
}


def torch_resnet3d(c: cnn3d.ResNeXt3DConfig):
  """A PyTorch 3D ResNet for `c` (NCTHW): the ResNeXt bottleneck or the inflated I3D one, as `cnn3d.ResNeXt3D`;
  it returns logits, or with `c.num_labels == 0` the last stage's features."""
  import torch
  from torch import nn

  def conv_bn(n_in, n_out, kernel, stride=(1, 1, 1), groups=1):
    return nn.Sequential(nn.Conv3d(n_in, n_out, kernel, stride, [k // 2 for k in kernel], groups=groups,
                                   bias=False), nn.BatchNorm3d(n_out))

  inflated = c.block == "inflated"

  class Block(nn.Module):
    def __init__(self, n_in, planes, stride, temporal_kernel):
      super().__init__()
      n_out = planes * c.expansion
      if inflated:
        mid, groups, strides = planes, 1, (1, stride, stride)
        kernel1, kernel2 = (temporal_kernel, 1, 1), (1, 3, 3)
      else:
        mid = c.cardinality * (planes // 32) if planes >= 32 else planes
        groups, strides, kernel1, kernel2 = c.cardinality, (stride,) * 3, (1, 1, 1), (3, 3, 3)
      self.conv1 = conv_bn(n_in, mid, kernel1)
      self.conv2 = conv_bn(mid, mid, kernel2, strides, groups)
      self.conv3 = conv_bn(mid, n_out, (1, 1, 1))
      self.shortcut = conv_bn(n_in, n_out, (1, 1, 1), strides) if n_in != n_out or stride > 1 else None

    def forward(self, x):
      y = self.conv3(torch.relu(self.conv2(torch.relu(self.conv1(x)))))
      return torch.relu(y + (self.shortcut(x) if self.shortcut is not None else x))

  class ResNet3D(nn.Module):
    def __init__(self):
      super().__init__()
      self.conv1 = nn.Conv3d(3, c.stem_width, c.stem_kernel, c.stem_stride, [k // 2 for k in c.stem_kernel],
                             bias=False)
      self.bn1 = nn.BatchNorm3d(c.stem_width)
      n_in = c.stem_width
      for stage, (count, planes) in enumerate(zip(c.layers, c.widths)):
        blocks = []
        for i in range(count):
          kernel = c.temporal_kernels[stage][i] if inflated else 0
          blocks.append(Block(n_in, planes, c.stage_strides[stage] if i == 0 else 1, kernel))
          n_in = planes * c.expansion
        setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
      self.fc = nn.Linear(n_in, c.num_labels) if c.num_labels else None

    def forward(self, x):
      x = torch.relu(self.bn1(self.conv1(x)))
      if c.max_pool:
        x = nn.functional.max_pool3d(x, c.pool_window, c.pool_stride, c.pool_padding)
      x = self.layer1(x)
      if c.stage1_temporal_pool > 1:
        window = (c.stage1_temporal_pool, 1, 1)
        x = nn.functional.max_pool3d(x, window, window)
      x = self.layer4(self.layer3(self.layer2(x)))
      return x if self.fc is None else self.fc(x.mean(dim=(2, 3, 4)))

  return ResNet3D()


def _task(module: cnn3d.ResNeXt3D, video: np.ndarray) -> training.Task:
  def init_variables(rng):
    return module.init(rng, jnp.asarray(video[:1]))

  def loss_fn(params, model_state, frozen, batch, rng):
    logits, updates = module.apply({"params": params, **model_state}, batch["video"], train=True,
                                   mutable=["batch_stats"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean(), ({}, updates)

  return training.Task(init_variables=init_variables, loss_fn=loss_fn, optimizer=optax.sgd(0.01, momentum=0.9),
                       train_data=lambda: None)


def _torch_step(c: cnn3d.ResNeXt3DConfig, video: np.ndarray, labels: np.ndarray, dtype: str):
  """The PyTorch network's train step as one blocking call, a function giving its peak memory, and the device."""
  import torch
  device = common.torch_device()
  model = torch_resnet3d(c).to(device).train()
  opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
  x = torch.from_numpy(video).permute(0, 4, 1, 2, 3).contiguous().to(device)  # [B, C, T, H, W]
  y = torch.from_numpy(labels).long().to(device)
  loss = lambda: torch.nn.functional.cross_entropy(model(x).float(), y)
  one, memory = common.torch_train_step(loss, model, opt, device, dtype)
  return one, memory, device


def run(batch_size=None, steps=10, dtype="float32", reference=True, config="small",
        out_dir=common.OUT_DIR) -> dict:
  size = common.size(SIZES, config, "cnn3d")
  c, frames, pixels = size["config"], size["frames"], size["size"]
  batch_size = batch_size or size["batch_size"]
  rng = np.random.default_rng(0)
  video = rng.normal(size=(batch_size, frames, pixels, pixels, 3)).astype(np.float32)
  labels = rng.integers(0, c.num_labels, size=batch_size).astype(np.int32)
  module = cnn3d.ResNeXt3D(c, dtype=jnp.dtype(dtype))
  kind = "I3D ResNet" if c.block == "inflated" else "3D ResNeXt"
  setup = {"model": f"{kind} {config}: stages {c.layers}, widths {c.widths}, {frames}x{pixels}² clips",
           "step": "forward (batch statistics) + cross-entropy + backward + SGD (momentum)"}
  return common.side_by_side(
      f"cnn3d train step ({config})", setup, steps=steps, batch_size=batch_size, dtype=dtype,
      ours=(f"jaxlab {kind} (jit)", _task(module, video), {"video": video, "label": labels}),
      reference=("PyTorch 3D ResNet, written here", "no PyTorch package has it; same FLOPs assumed as ours",
                 functools.partial(_torch_step, c, video, labels, dtype)) if reference else None,
      out_dir=out_dir)
