"""`jaxlab bench stin`: the boxes-only STIN train step beside a PyTorch STIN of the same config and batch.

No PyTorch package provides STIN, so the reference side is `torch_stin` below: a small PyTorch module written
from the architecture's description (not from the original code), with the original's module names so that its
state dict converts with `jaxlab.models.stin.variables_from_torch` (the parity test uses that). Both sides run a
full step: forward in training mode, cross-entropy, backward, gradient clipping and an SGD update with
momentum and weight decay, as the method trains.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxlab import training
from jaxlab.bench import common
from jaxlab.models import stin

SIZES = {
    "tiny": dict(config=stin.variant_config("stin_oie_nl", num_classes=5, coord_feature_dim=16), batch_size=8),
    "small": dict(config=stin.variant_config("stin_oie_nl", coord_feature_dim=128), batch_size=72),
    # The paper's STIN+OIE+NL: d=256, 4 boxes x 8 frames, 174 classes, batch 72.
    "paper": dict(config=stin.variant_config("stin_oie_nl", coord_feature_dim=256), batch_size=72),
}


def torch_stin(c: stin.STINConfig):
  """A PyTorch STIN (`forward(boxes [B,T,N,4], categories [B,T,N]) -> logits`) for `c`."""
  import torch
  from torch import nn

  d = c.coord_feature_dim

  def linear_bn_relu(*widths):
    layers = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
      layers += [nn.Linear(n_in, n_out, bias=False), nn.BatchNorm1d(n_out), nn.ReLU()]
    return nn.Sequential(*layers)

  class NonLocal(nn.Module):
    """Softmax attention across boxes on `[B, C, N]`, projected back, layer-normed, added to the input."""

    def __init__(self):
      super().__init__()
      self.conv_theta, self.conv_phi, self.conv_g = (nn.Conv1d(d, d // 2, 1) for _ in range(3))
      self.conv_out = nn.Conv1d(d // 2, d, 1)
      self.ln = nn.GroupNorm(1, d, affine=False)

    def forward(self, x):
      query, key, value = self.conv_theta(x), self.conv_phi(x), self.conv_g(x)
      weights = torch.softmax(query.transpose(1, 2) @ key * (d // 2) ** -0.5, dim=-1)   # [B, N, N]
      return x + self.ln(self.conv_out(value @ weights.transpose(1, 2)))

  class STIN(nn.Module):
    def __init__(self):
      super().__init__()
      self.coord_to_feature = linear_bn_relu(4, d // 2, d)
      if c.identity_embedding:
        self.category_embed_layer = nn.Embedding(3, d // 2, padding_idx=0, scale_grad_by_freq=True)
        self.coord_category_fusion = linear_bn_relu(d + d // 2, d)
      self.spatial_node_fusion = linear_bn_relu(2 * d, d, d)
      self.box_feature_fusion = linear_bn_relu(c.num_frames * d, d, d)
      self.nonlocal_fusion = nn.ModuleList(
          nn.Sequential(NonLocal(), nn.Conv1d(d, d, 1, bias=False), nn.BatchNorm1d(d), nn.ReLU())
          for _ in range(c.nonlocal_layers))
      self.classifier = nn.Sequential(nn.Linear(d + c.appearance_dim, d), nn.ReLU(), nn.Linear(d, 512), nn.ReLU(),
                                      nn.Linear(512, c.num_classes))

    def forward(self, boxes, categories):
      b, t, n, _ = boxes.shape
      x = self.coord_to_feature(boxes.transpose(1, 2).reshape(-1, 4))
      if c.identity_embedding:
        ids = categories.transpose(1, 2).reshape(-1).long()
        x = self.coord_category_fusion(torch.cat([x, self.category_embed_layer(ids)], dim=1))
      x = x.view(b, n, t, d)
      message = (x.sum(dim=1, keepdim=True) - x) / (n - 1)
      x = self.spatial_node_fusion(torch.cat([x, message], dim=3).view(-1, 2 * d))
      x = self.box_feature_fusion(x.view(b * n, t * d)).view(b, n, d).transpose(1, 2)   # [B, d, N]
      for block in self.nonlocal_fusion:
        x = block(x)
      return self.classifier(x.mean(dim=2))

  return STIN()


def random_batch(c: stin.STINConfig, batch_size: int, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  return {"boxes": rng.random((batch_size, c.num_frames, c.num_boxes, 4)).astype(np.float32),
          "categories": rng.integers(0, 3, (batch_size, c.num_frames, c.num_boxes)).astype(np.int32),
          "label": rng.integers(0, c.num_classes, batch_size).astype(np.int32)}


def _method_optimizer():
  from jaxlab.methods import something_else
  recipe = ml_collections.ConfigDict(dict(lr=0.01, lr_steps=(24, 35, 45), lr_decay=0.1, momentum=0.9,
                                          weight_decay=1e-4, grad_clip=5.0))
  return something_else.optimizer(recipe, steps_per_epoch=1000)[0]


def _task(module: stin.STIN, batch: dict) -> training.Task:
  def init_variables(rng):
    return module.init(rng, batch["boxes"][:1], batch["categories"][:1])

  def loss_fn(params, model_state, frozen, batch, rng):
    logits, updates = module.apply({"params": params, **model_state}, batch["boxes"], batch["categories"],
                                   train=True, mutable=["batch_stats"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean(), ({}, updates)

  return training.Task(init_variables=init_variables, loss_fn=loss_fn, optimizer=_method_optimizer(),
                       train_data=lambda: None)


def _torch_step(c: stin.STINConfig, batch: dict, dtype: str):
  """The PyTorch STIN's train step as one blocking call, a function giving its peak memory, and the device."""
  import torch
  device = common.torch_device()
  model = torch_stin(c).to(device).train()
  opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
  boxes, categories, labels = (torch.from_numpy(batch[k]).to(device) for k in ("boxes", "categories", "label"))
  loss = lambda: torch.nn.functional.cross_entropy(model(boxes, categories).float(), labels.long())
  one, memory = common.torch_train_step(loss, model, opt, device, dtype, clip_norm=5.0)
  return one, memory, device


def run(batch_size=None, steps=10, dtype="float32", reference=True, config="small",
        out_dir=common.OUT_DIR) -> dict:
  size = common.size(SIZES, config, "stin")
  c = size["config"]
  batch_size = batch_size or size["batch_size"]
  module = stin.STIN(c, dtype=jnp.dtype(dtype))
  batch = random_batch(c, batch_size)
  setup = {"model": f"STIN+OIE+NL {config}: d={c.coord_feature_dim}, {c.num_boxes} boxes x {c.num_frames} "
                    f"frames, {c.nonlocal_layers} non-local blocks, {c.num_classes} classes",
           "step": "forward + backward + clip + SGD (momentum, weight decay)"}
  return common.side_by_side(
      "stin train step", setup, steps=steps, batch_size=batch_size, dtype=dtype,
      ours=("jaxlab STIN (jit)", _task(module, batch), batch),
      reference=("PyTorch STIN, written here", "no PyTorch package has STIN; same FLOPs assumed as ours",
                 functools.partial(_torch_step, c, batch, dtype)) if reference else None,
      out_dir=out_dir)
