"""`jaxlab bench unet3d` on a toy 3D UNet: both motion train steps run, train the same subset, and are timed."""

import jax
import numpy as np
import pytest

from jaxlab.bench import common
from jaxlab.bench import unet3d as bench
from jaxlab.diffusion import finetune
from jaxlab.diffusion.pipeline import random_params
from jaxlab.methods import motion
from jaxlab.models import unet3d

pytest.importorskip("diffusers")


def test_both_steps_run_on_the_same_subset():
  size = bench.SIZES["tiny"]  # one level and the mid block: every kind of trained layer
  c = size["config"]
  batch = bench.random_batch(size, 2)
  module = unet3d.UNet3DConditionModel(c)
  base = random_params(module, *unet3d.FAMILY.dummy_inputs(module))
  selected = finetune.select(base, motion.trainable_rule(bench.MODULES), unet3d.NAMING)
  ours, flops, _ = common.jax_train_step(bench._task(module, base, selected), batch)
  theirs, _, device, their_trained = bench._reference_step(c, batch, "float32")
  assert their_trained == sum(int(np.prod(v.shape)) for v in jax.tree.leaves(finetune.split(base, selected)[0]))
  times = common.time_in_turns(2, ours, theirs)
  assert [len(t) for t in times] == [2, 2] and flops > 0 and device in ("cpu", "cuda")
  assert np.all(np.array(times) > 0)
