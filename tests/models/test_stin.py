"""STIN against a PyTorch STIN and the I3D ResNet against a PyTorch I3D (the benches', written from the
architectures), and the original's pooling of the fusion models."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn

torch = pytest.importorskip("torch")
from torch import nn as tnn  # noqa: E402

from jaxlab.bench.cnn3d import torch_resnet3d  # noqa: E402
from jaxlab.bench.stin import torch_stin  # noqa: E402
from jaxlab.models import cnn3d, stin  # noqa: E402


def box_inputs(c: stin.STINConfig, batch: int, seed: int):
  rng = np.random.default_rng(seed)
  categories = rng.integers(0, 3, (batch, c.num_frames, c.num_boxes)).astype(np.int32)
  boxes = rng.random((batch, c.num_frames, c.num_boxes, 4)).astype(np.float32) * (categories > 0)[..., None]
  return boxes, categories


def to_torch(*arrays):
  return [torch.from_numpy(a) for a in arrays]


def trained_torch_stin(c: stin.STINConfig):
  """A PyTorch STIN with non-trivial batch-norm affine terms and running statistics."""
  torch.manual_seed(0)
  model = torch_stin(c)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, tnn.BatchNorm1d):
        module.weight.uniform_(0.5, 1.5)
        module.bias.uniform_(-0.2, 0.2)
    model.train()
    for seed in range(3):
      model(*to_torch(*box_inputs(c, 6, 100 + seed)))
  return model


@pytest.mark.parametrize("variant", list(stin.VARIANTS))
def test_parity_with_pytorch(variant):
  c = stin.variant_config(variant, num_classes=7, num_boxes=4, num_frames=4, coord_feature_dim=16)
  reference = trained_torch_stin(c)
  module = stin.STIN(c)
  boxes, categories = box_inputs(c, 5, 0)
  state = {k: v.numpy() for k, v in reference.state_dict().items()}
  variables = stin.variables_from_torch(state, module, boxes, categories)

  reference.eval()
  with torch.no_grad():
    expected = reference(*to_torch(boxes, categories)).numpy()
  ours = np.asarray(module.apply(variables, boxes, categories))
  assert np.abs(ours - expected).max() <= 1e-4 * np.abs(expected).max()

  # Training mode: batch statistics, and the gradients of the loss (the OIE embedding's gradient is scaled by
  # each id's frequency and zero for id 0, as PyTorch's scale_grad_by_freq / padding_idx do).
  labels = np.arange(5) % 7
  reference.train()
  reference.zero_grad()
  logits = reference(*to_torch(boxes, categories))
  torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels)).backward()

  def loss(params):
    out, _ = module.apply({**variables, "params": params}, boxes, categories, train=True,
                          mutable=["batch_stats"])
    return optax.softmax_cross_entropy_with_integer_labels(out, labels).mean(), out

  grads, out = jax.grad(loss, has_aux=True)(variables["params"])
  assert np.abs(np.asarray(out) - logits.detach().numpy()).max() <= 1e-4 * np.abs(logits.detach().numpy()).max()
  ours_grads = stin.variables_to_torch({"params": grads})
  assert set(ours_grads) == {k for k, p in reference.named_parameters()}
  for name, p in reference.named_parameters():
    theirs = p.grad.numpy()
    assert np.abs(ours_grads[name] - theirs).max() <= 1e-4 * max(np.abs(theirs).max(), 1e-3), name

  # Round trip: our weights load into the PyTorch module and give the same outputs.
  fresh = torch_stin(c)
  fresh.load_state_dict({k: torch.from_numpy(v) for k, v in stin.variables_to_torch(variables).items()},
                        strict=False)
  fresh.eval()
  missing = set(fresh.state_dict()) - set(stin.variables_to_torch(variables))
  assert all(k.endswith("num_batches_tracked") for k in missing)
  with torch.no_grad():
    np.testing.assert_allclose(fresh(*to_torch(boxes, categories)).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_spatial_message_is_mean_of_other_slots():
  """The spatial fusion's first layer sees [x_i, (sum_j x_j - x_i) / (N - 1)] for each slot i."""
  c = stin.variant_config("stin", num_classes=3, num_boxes=3, num_frames=2, coord_feature_dim=8)
  module = stin.STIN(c)
  boxes, categories = box_inputs(c, 2, 1)
  variables = nn.meta.unbox(module.init(jax.random.key(0), boxes, categories))
  _, intermediates = module.apply(variables, boxes, categories, capture_intermediates=True,
                                  mutable=["intermediates"])
  features = intermediates["intermediates"]["coord_to_feature_4"]["__call__"][0]        # [B, N, T, d]
  x = np.maximum(np.asarray(features), 0)
  expected_message = np.stack([(x.sum(1) - x[:, i]) / 2 for i in range(3)], axis=1)
  kernel = np.asarray(variables["params"]["spatial_node_fusion_0"]["kernel"])
  dense_out = np.concatenate([x, expected_message], axis=-1) @ kernel
  np.testing.assert_allclose(intermediates["intermediates"]["spatial_node_fusion_0"]["__call__"][0], dense_out,
                             rtol=1e-5, atol=1e-5)


def test_original_pooling_views_channels_as_time():
  features = np.arange(2 * 4 * 1 * 1 * 8, dtype=np.float32).reshape(2, 4, 1, 1, 8)   # [B, T', H, W, C]
  channels_first = torch.from_numpy(features[:, :, 0, 0]).transpose(1, 2).contiguous()  # [B, C, T']
  expected = channels_first.view(2, 4, 8).mean(1).numpy()
  np.testing.assert_array_equal(np.asarray(stin._pool_like_original(jnp.asarray(features))), expected)


# ----------------------------------------------------------------------------------------------- I3D

TINY_I3D = dataclasses.replace(cnn3d.I3D_RESNET50, layers=(1, 1, 1, 1), widths=(4, 8, 8, 16), stem_width=4,
                               temporal_kernels=((3,), (3,), (1,), (3,)))


def test_i3d_matches_pytorch():
  torch.manual_seed(0)
  reference = torch_resnet3d(TINY_I3D)
  with torch.no_grad():
    for module in reference.modules():
      if isinstance(module, tnn.BatchNorm3d):
        for tensor, low, high in ((module.weight, 0.5, 1.5), (module.bias, -0.2, 0.2),
                                  (module.running_mean, -0.2, 0.2), (module.running_var, 0.5, 1.5)):
          tensor.uniform_(low, high)
  reference.eval()
  video = np.random.default_rng(0).normal(size=(2, 4, 32, 32, 3)).astype(np.float32)
  with torch.no_grad():
    expected = reference(torch.from_numpy(video).permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1).numpy()
  state = {f"module.i3D.{k}": v.numpy() for k, v in reference.state_dict().items()}
  variables = stin.i3d_variables_from_torch(state, TINY_I3D, frames=4, size=32)
  ours = np.asarray(jax.jit(cnn3d.ResNeXt3D(TINY_I3D).apply)(variables, video))
  assert ours.shape == expected.shape == (2, 2, 2, 2, 64)
  assert np.abs(ours - expected).max() <= 1e-4 * np.abs(expected).max()

  # The fusion model takes the same I3D variables under `i3D`, and with a frozen backbone no gradient reaches it.
  c = stin.variant_config("stin_oie", num_classes=5, num_frames=2, coord_feature_dim=8)
  fusion = stin.AppearanceSTIN(c, TINY_I3D, appearance_width=6, frozen_backbone=True)
  boxes, categories = box_inputs(c, 2, 0)
  init = nn.meta.unbox(jax.jit(fusion.init)(jax.random.key(0), video, boxes, categories))
  params = {**init["params"], "i3D": variables["params"]}
  stats = {**init["batch_stats"], "i3D": variables["batch_stats"]}

  def loss(params):
    logits, _ = fusion.apply({"params": params, "batch_stats": stats}, video, boxes, categories, train=True,
                             mutable=["batch_stats"])
    return logits.sum()

  grads = jax.jit(jax.grad(loss))(params)
  assert all(not np.any(g) for g in jax.tree.leaves(grads["i3D"]))
  assert any(np.any(g) for g in jax.tree.leaves(grads["conv"]))


def test_resnext3d_keeps_its_layout():
  config = cnn3d.ResNeXt3DConfig(layers=(1, 1, 1, 1), widths=(16, 32, 64, 128), cardinality=4, stem_width=16,
                                 num_labels=5)
  video = jnp.zeros((1, 8, 32, 32, 3))
  variables = nn.meta.unbox(jax.eval_shape(cnn3d.ResNeXt3D(config).init, jax.random.key(0), video))
  shapes = variables["params"]
  assert shapes["conv1"]["kernel"].shape == (7, 7, 7, 3, 16)
  assert shapes["layer2_0"]["conv1"]["kernel"].shape == (1, 1, 1, 32, 4)
  assert shapes["layer2_0"]["conv2"]["kernel"].shape == (3, 3, 3, 1, 4)     # grouped, cardinality 4
  assert shapes["layer4_0"]["downsample_conv"]["kernel"].shape == (1, 1, 1, 128, 256)
  assert jax.eval_shape(cnn3d.ResNeXt3D(config).apply, variables, video).shape == (1, 5)
