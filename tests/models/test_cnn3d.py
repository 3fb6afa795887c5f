"""The 3D ResNeXt: Hara et al.'s parameter counts, batch-norm state, remat."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxlab.models import cnn3d
from jaxlab.nn import convolution


def _count(params):
  return sum(x.size for x in jax.tree.leaves(nn.meta.unbox(params)))


def _expected_resnext_params(layers, widths=(128, 256, 512, 1024), cardinality=32, classes=400):
  """Counted by hand from the paper's architecture (bias-free convs, BN scale+shift, linear classifier)."""
  total = 7 * 7 * 7 * 3 * 64 + 2 * 64  # stem conv + BN
  inplanes = 64
  for count, planes in zip(layers, widths):
    mid, out = cardinality * (planes // 32), planes * 2
    for i in range(count):
      total += inplanes * mid + 2 * mid                       # 1x1x1 reduce + BN
      total += 27 * (mid // cardinality) * mid + 2 * mid       # grouped 3x3x3 + BN
      total += mid * out + 2 * out                             # 1x1x1 expand + BN
      if i == 0:
        total += inplanes * out + 2 * out                      # projection shortcut + BN
      inplanes = out
  return total + inplanes * classes + classes


def test_resnext_parameter_counts_match_the_architecture():
  for depth in (50, 101):
    model = cnn3d.ResNeXt3D(cnn3d.ResNeXt3DConfig.depth(depth, num_labels=400))
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 16, 112, 112, 3)))
    assert _count(shapes["params"]) == _expected_resnext_params(cnn3d.DEPTHS[depth])
  # ResNeXt-101 (Kinetics head) is the 48.3M-parameter model of Hara et al.
  assert abs(_expected_resnext_params(cnn3d.DEPTHS[101]) / 1e6 - 48.34) < 0.01


def test_batch_norm_updates_only_in_training_and_remat_changes_nothing():
  # Plain XLA convolutions: the CPU rewrites (tested in tests/nn/) cost compile time and change no BN or remat.
  with convolution.plain_convolutions():
    _batch_norm_and_remat()


def _batch_norm_and_remat():
  config = cnn3d.ResNeXt3DConfig(layers=(1, 1, 1, 1), widths=(16, 32, 64, 128), cardinality=4, stem_width=8,
                                 num_labels=5)
  model = cnn3d.ResNeXt3D(config)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 2, 8, 8, 3)), jnp.float32)
  variables = nn.meta.unbox(jax.jit(model.init)(jax.random.key(0), x))
  logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
  assert logits.shape == (2, 5)
  moved = jax.tree.map(lambda a, b: not np.allclose(a, b), variables["batch_stats"], updates["batch_stats"])
  assert all(jax.tree.leaves(moved))
  eval_logits = model.apply(variables, x)  # running averages, no update
  assert eval_logits.shape == (2, 5)

  def loss(params, m):
    out, _ = m.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
    return (out ** 2).sum()

  g_plain = jax.jit(jax.grad(loss), static_argnums=1)(variables["params"], model)
  g_remat = jax.jit(jax.grad(loss), static_argnums=1)(variables["params"], model.clone(remat_policy="nothing_saveable"))
  for a, b in zip(jax.tree.leaves(g_plain), jax.tree.leaves(g_remat)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
