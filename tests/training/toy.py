"""A small classification task for the loop's tests: an MLP on a fixed random dataset, fed by grain.

Run as a script (`python -m tests.training.toy WORKDIR [key=value ...]`) it trains in a fresh process, which
is how the kill and SIGTERM tests use it.
"""

import json
from pathlib import Path
import sys

import grain
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from jaxlab import nn as jnn
from jaxlab import training
from jaxlab.data import pipeline
from jaxlab.training import metrics

NUM_EXAMPLES, FEATURES, CLASSES = 256, 16, 4


class MLP(nn.Module):
  hidden: int = 32
  extra_layers: int = 0

  @nn.compact
  def __call__(self, x, train: bool = False):
    # No bias before batch norm: its gradient is zero up to rounding, which Adam would amplify.
    x = jnn.dense(self.hidden, ("embed", "mlp"), use_bias=False, name="fc1")(x)
    x = jnn.batch_norm(name="bn")(x, use_running_average=not train)
    x = nn.Dropout(0.1, deterministic=not train)(nn.relu(x))
    for i in range(self.extra_layers):
      x = nn.relu(jnn.dense(self.hidden, ("mlp", None), name=f"extra_{i}")(x))
    return jnn.dense(CLASSES, ("mlp", "classes"), name="fc2")(x)


def dataset():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(NUM_EXAMPLES, FEATURES)).astype(np.float32)
  w = rng.normal(size=(FEATURES, CLASSES))
  y = (x @ w).argmax(-1).astype(np.int32)
  return [{"x": x[i], "y": y[i]} for i in range(NUM_EXAMPLES)]


def config(**overrides):
  c = training.base_config()
  c.total_steps = 8
  c.batch_size = 16
  c.log_every = 2
  c.checkpoint_every = 4
  c.async_checkpointing = True
  c.compilation_cache_dir = ""
  c.hidden = 32
  c.extra_layers = 0
  c.learning_rate = 1e-2
  c.poison_from_example = -1  # >= 0: examples from this position on carry NaNs (non-finite loss test)
  c.update(overrides)
  return c


def make_task(c) -> training.Task:
  model = MLP(hidden=c.hidden, extra_layers=c.extra_layers)

  def train_data():
    def noisy(example, rng: np.random.Generator):
      return {"x": example["x"] + 0.01 * rng.normal(size=FEATURES).astype(np.float32), "y": example["y"]}
    ds = grain.MapDataset.source(dataset()).shuffle(seed=c.seed).repeat().random_map(noisy, seed=c.seed)
    if c.poison_from_example >= 0:
      ds = ds.map_with_index(
          lambda i, ex: dict(ex, x=ex["x"] * np.nan) if i >= c.poison_from_example else ex)
    return pipeline.process_batches(ds, c.batch_size).to_iter_dataset()

  def init_variables(rng):
    return model.init(rng, jnp.zeros((1, FEATURES)))

  def loss_fn(params, model_state, frozen, batch, rng):
    logits, updates = model.apply({"params": params, **model_state}, batch["x"], train=True,
                                  rngs={"dropout": rng}, mutable=["batch_stats"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
    return loss, ({"accuracy": (logits.argmax(-1) == batch["y"]).mean()}, updates)

  return training.Task(init_variables=init_variables, loss_fn=loss_fn, optimizer=optax.adam(c.learning_rate),
                       train_data=train_data)


def logged_steps(workdir) -> tuple[list[int], dict[str, list[int]]]:
  """The steps of the train records in metrics.jsonl, and the steps of each TensorBoard tag."""
  records = [json.loads(line) for line in (Path(workdir) / "metrics.jsonl").read_text().splitlines()]
  tags: dict[str, list[int]] = {}
  for event in metrics.read_events(Path(workdir) / "tensorboard"):
    for value in event.summary.value:
      tags.setdefault(value.tag, []).append(event.step)
  return [r["step"] for r in records if "train/loss" in r], tags


if __name__ == "__main__":
  from jaxlab import parallel
  parallel.initialize()  # several processes when the cluster variables say so (tests/multiprocess.py)
  workdir, *items = sys.argv[1:]
  c = config()
  for item in items:
    training.config.apply_override(c, item)
  print(training.train(make_task(c), c, workdir), flush=True)
