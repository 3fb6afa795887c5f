"""The one weight converter's naming: ModuleLists, scanned stacks told by their `layers` axis, renames both ways."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import traverse_util

from jaxlab import nn as jnn
from jaxlab.models import weights


class _Layer(nn.Module):
  @nn.compact
  def __call__(self, x):
    return jnn.dense(4, ("embed", "mlp"), name="fc")(x), None


class _Model(nn.Module):
  """A scanned stack `layers`, and a plain conv named `conv1` although `conv1` is also a ModuleList name."""

  @nn.compact
  def __call__(self, x):
    x = jnn.repeat_layers(_Layer, 3, x, name="layers")
    return jnn.conv(4, (1,), name="conv1")(x[:, None])


def test_a_stack_is_told_by_its_layers_axis_not_by_its_name():
  naming = weights.Naming(frozenset({"layers", "conv1"}))
  boxed = jax.eval_shape(_Model().init, jax.random.key(0), jnp.zeros((1, 4)))["params"]
  stacked = weights.stacked_paths(boxed)
  assert stacked == {("layers", "fc", "kernel"): 1, ("layers", "fc", "bias"): 1}
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), nn.meta.unbox(boxed))
  state = weights.flax_to_torch(params, naming, stacked)
  assert sorted(state) == ["conv1.bias", "conv1.weight"] + [f"layers.{i}.fc.{leaf}" for i in range(3)
                                                            for leaf in ("bias", "weight")]
  np.testing.assert_array_equal(state["layers.2.fc.weight"], params["layers"]["fc"]["kernel"][2].T)
  back = weights.torch_to_flax(state, nn.meta.unbox(boxed), naming, stacked=stacked)
  jax.tree.map(np.testing.assert_array_equal, back, params)


def test_a_run_counts_from_its_first_index_and_a_stack_in_a_stack_takes_two_rows():
  # A UNet up block whose layers 1-2 are the scanned run `run_1`, each with two scanned transformer blocks.
  naming = weights.Naming(frozenset({"resnets", "attentions", "transformer_blocks"}), runs=frozenset({"run"}))
  params = {"resnets_0": {"conv1": {"bias": np.zeros(2, np.float32)}},
            "run_1": {"resnets": {"conv1": {"bias": np.arange(4.0, dtype=np.float32).reshape(2, 2)}},
                      "attentions": {"transformer_blocks": {"ff": {"bias": np.arange(8.0).reshape(2, 2, 2)}}}}}
  stacked = {("run_1", "resnets", "conv1", "bias"): 1, ("run_1", "attentions", "transformer_blocks", "ff", "bias"): 2}
  state = weights.flax_to_torch(params, naming, stacked)
  assert sorted(state) == [f"attentions.{i}.transformer_blocks.{k}.ff.bias" for i in (1, 2) for k in (0, 1)] + \
      [f"resnets.{i}.conv1.bias" for i in range(3)]
  np.testing.assert_array_equal(state["resnets.2.conv1.bias"], [2.0, 3.0])
  np.testing.assert_array_equal(state["attentions.2.transformer_blocks.0.ff.bias"], [4.0, 5.0])
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), params)
  back = weights.torch_to_flax(state, abstract, naming, stacked=stacked)
  jax.tree.map(np.testing.assert_array_equal, back, params)
  with pytest.raises(ValueError, match="no ModuleList name"):
    weights.flax_to_torch(params, naming, {**stacked, ("resnets_0", "conv1", "bias"): 1})


def test_renames_apply_when_saving_and_loading():
  # TemporalConvLayer's `conv1 = nn.Sequential(GroupNorm, SiLU, Conv3d)` beside a ResNet's plain `conv1`.
  naming = weights.Naming(frozenset({"resnets", "temp_convs"}),
                          renames=(("conv1.norm", "conv1.0"), ("conv1.conv", "conv1.2")))
  params = {"resnets_0": {"conv1": {"kernel": np.ones((3, 3, 2, 2), np.float32)}},
            "temp_convs_0": {"conv1": {"norm": {"scale": np.arange(2.0, dtype=np.float32)},
                                       "conv": {"kernel": np.ones((3, 1, 1, 2, 2), np.float32)}}}}
  state = weights.flax_to_torch(params, naming)
  assert sorted(state) == ["resnets.0.conv1.weight", "temp_convs.0.conv1.0.weight", "temp_convs.0.conv1.2.weight"]
  assert state["temp_convs.0.conv1.2.weight"].shape == (2, 2, 3, 1, 1)
  back = weights.torch_to_flax(state, jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), params),
                               naming)
  assert traverse_util.flatten_dict(back).keys() == traverse_util.flatten_dict(params).keys()
  np.testing.assert_array_equal(back["temp_convs_0"]["conv1"]["norm"]["scale"], [0.0, 1.0])


def test_a_naming_that_maps_two_paths_to_one_key_is_refused():
  with pytest.raises(ValueError, match="one to one"):
    weights.Naming(renames=(("a.norm", "a.0"), ("b.norm", "a.0")))
  params = {"conv1": {"norm": {"scale": np.ones(2)}}, "conv1_norm": {"scale": np.ones(2)}}
  with pytest.raises(ValueError, match="both map to"):
    weights.flax_to_torch(params, weights.Naming(renames=(("conv1.norm", "conv1_norm"),)))
