"""The adapter layer's full-weight kind, restoring an adapter from a workdir, the pipeline's one-time placement,
and the shared tuning pieces."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import traverse_util
from jax.sharding import PartitionSpec

from jaxlab.diffusion import adapters, finetune, pipeline, tuning
from jaxlab.errors import UserError
from jaxlab.training.checkpoint import Checkpointer


class Tiny(nn.Module):
  @nn.compact
  def __call__(self, x):
    from jaxlab import nn as jnn
    x = jnn.dense(8, ("embed", "mlp"), name="attn1")(x)
    return jnn.dense(4, ("mlp", "embed"), name="attn2")(x)


def boxed_tiny():
  return adapters.abstract_params(Tiny(), jnp.zeros((1, 4)))


def test_subset_layout_and_scales():
  boxed = boxed_tiny()
  subset = finetune.Subset(finetune.select(boxed, lambda name: "attn2" in name).__contains__, boxed)
  assert subset.specs == {"attn2": {"kernel": PartitionSpec("mlp", "embed"), "bias": PartitionSpec("embed")}}
  init = nn.meta.unbox(subset.init(jax.random.key(0)))
  assert jax.tree.map(np.shape, init) == {"attn2": {"kernel": (8, 4), "bias": (4,)}}
  assert not np.any(init["attn2"]["kernel"])
  base = jax.tree.map(lambda s: np.random.default_rng(0).normal(size=s.shape).astype(np.float32), nn.meta.unbox(boxed))
  trained = jax.tree.map(lambda v: v + 1.0, subset.initial(base))
  np.testing.assert_array_equal(subset.initial(base)["attn2"]["kernel"], base["attn2"]["kernel"])
  applied = {s: subset.apply(trained, base, s) for s in (1, 0.0, 0.5)}
  assert applied[1]["attn2"]["kernel"] is trained["attn2"]["kernel"]
  assert applied[1]["attn1"]["kernel"] is base["attn1"]["kernel"]
  np.testing.assert_array_equal(applied[0.0]["attn2"]["kernel"], base["attn2"]["kernel"])
  np.testing.assert_allclose(applied[0.5]["attn2"]["kernel"], base["attn2"]["kernel"] + 0.5, rtol=1e-6)


def test_restore_from_a_workdir_reads_only_the_params(tmp_path):
  boxed = boxed_tiny()
  subset = finetune.Subset(lambda path: path[0] == "attn2", boxed)
  params = {"attn2": {"kernel": np.arange(32, dtype=np.float32).reshape(8, 4), "bias": np.ones(4, np.float32)}}
  checkpointer = Checkpointer(tmp_path / "checkpoints", asynchronous=False)
  state = {"step": jnp.int32(7), "params": params, "opt_state": {"mu": jnp.zeros((1000,))}, "rng": jnp.zeros(2)}
  checkpointer.save(7, state)
  checkpointer.wait()
  checkpointer.close()
  restored, step = adapters.restore(tmp_path, subset)
  assert step == 7 and isinstance(restored["attn2"]["kernel"], np.ndarray)
  jax.tree.map(np.testing.assert_array_equal, restored, params)
  with pytest.raises(UserError, match="no checkpoint"):
    adapters.restore(tmp_path / "elsewhere", subset)


@pytest.fixture(scope="module")
def tiny_pipe(tmp_path_factory):
  return pipeline.StableDiffusion.load(pipeline.write_tiny_random(tmp_path_factory.mktemp("sd") / "pipe",
                                                                  sample_size=8))


def test_params_are_placed_once(tiny_pipe):
  leaves = jax.tree.leaves(tiny_pipe.params)
  assert all(isinstance(x, jax.Array) for x in leaves)
  noise = pipeline.latent_noise(0, tiny_pipe.latent_shape(1))
  # Any implicit host-to-device transfer (params sent again, or a numpy input) raises here.
  with jax.transfer_guard_host_to_device("disallow"):
    first = tiny_pipe.generate(["a cat"], noise, num_steps=2)
    second = tiny_pipe.generate(["a cat"], noise, num_steps=2)
  np.testing.assert_array_equal(first, second)
  assert all(a is b for a, b in zip(leaves, jax.tree.leaves(tiny_pipe.params)))


def test_tuning_pieces(tmp_path):
  assert tuning.pipeline_folder("/models/sd14", tmp_path, 8).name == "sd14"
  with pytest.raises(UserError, match="pretrained"):
    tuning.pipeline_folder("", tmp_path, 8)
  rows = [[np.full((2, 3, 3), 10 * (i + j), np.uint8) for j in range(4)] for i in range(2)]
  grid = np.asarray(tuning.image_grid(rows, scale=2))
  assert grid.shape == (8, 24, 3) and grid[0, 0, 0] == 0 and grid[-1, -1, 0] == 40
  assert tuning.loss_curve([(1, 2.0), (2, 1.0)], tmp_path / "loss.png", "t").stat().st_size > 0
  # x_t of any latent rank: a video-shaped batch, each example after its own number of steps.
  schedule = tiny_pipe_schedule()
  chain = tuning.ddim_chain(schedule, 4)
  np.testing.assert_array_equal(chain[0], schedule.timesteps(4))
  unet = _Identity()
  x = tuning.partial_sample(unet, {}, jnp.zeros((2, 1, 1)), jnp.zeros((2, 1, 1)), 3.0, schedule, chain,
                            jnp.array([0, 4]), (2, 3, 4, 4, 2), jax.random.key(0))
  x_T = jax.random.normal(jax.random.key(0), (2, 3, 4, 4, 2))
  assert x.shape == (2, 3, 4, 4, 2)
  np.testing.assert_array_equal(x[0], x_T[0])
  assert np.abs(x[1] - x_T[1]).max() > 1e-3


def tiny_pipe_schedule():
  from jaxlab.diffusion.schedules import NoiseSchedule
  return NoiseSchedule.from_config(pipeline.SD_SCHEDULER_CONFIG)


class _Identity:
  """A stand-in denoiser predicting zero noise, for the shapes of partial sampling."""

  def apply(self, variables, x, t, context):
    return jnp.zeros_like(x)
