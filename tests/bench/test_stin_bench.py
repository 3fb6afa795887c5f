"""`jaxlab bench stin` on a toy STIN: both train steps run and are timed in turns."""

import numpy as np
import pytest

from jaxlab.bench import common
from jaxlab.bench import stin as stin_bench
from jaxlab.models import stin

pytest.importorskip("torch")


def test_both_steps_run():
  c = stin.variant_config("stin_oie_nl", num_classes=5, coord_feature_dim=16)
  batch = stin_bench.random_batch(c, 8)
  ours, flops, _ = common.jax_train_step(stin_bench._task(stin.STIN(c), batch), batch)
  theirs, _, device = stin_bench._torch_step(c, batch, "float32")
  times = common.time_in_turns(2, ours, theirs)
  assert [len(t) for t in times] == [2, 2] and flops > 0 and device == "cpu"
  assert np.all(np.array(times) > 0)
