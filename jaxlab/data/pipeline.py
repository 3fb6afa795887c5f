"""grain pipelines over random-access sources (`tfds.data_source` splits, lists): training and evaluation.

Training: this process' slice of the source, reshuffled every epoch, a seeded per-example transform, batched;
the iterator's position is checkpointed by the loop. Evaluation: every example exactly once, in order, in
fixed-size batches padded at the end and marked by a `mask`, the same number of batches on every process.
"""

from collections.abc import Callable, Iterator
import math

import grain
import jax
import numpy as np

from jaxlab.errors import UserError


def per_process_batch(global_batch: int) -> int:
  if global_batch % jax.process_count():
    raise UserError(f"batch size {global_batch} does not split over {jax.process_count()} processes")
  return global_batch // jax.process_count()


def training_dataset(source, transform: Callable, *, batch_size: int, seed: int, workers: int = 0,
                     threads: int = 8) -> grain.IterDataset:
  """Infinite batches of `transform(example, rng)` over this process' slice of `source`.

  `batch_size` is global. `workers` > 0 decodes in that many processes (grain multiprocessing).
  """
  ds = grain.MapDataset.source(source)[jax.process_index()::jax.process_count()]
  if len(ds) == 0:
    raise UserError("the training split is empty on this process")
  ds = ds.shuffle(seed=seed).repeat().random_map(transform, seed=seed)
  ds = ds.batch(per_process_batch(batch_size), drop_remainder=True)
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 * threads))
  if workers > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
  return it


def eval_batches(source, transform: Callable, *, batch_size: int, threads: int = 8) -> Iterator[dict]:
  """This process' share of `source`, each example once, as batches with a boolean `mask` of real rows."""
  n = len(source)
  count, index = jax.process_count(), jax.process_index()
  local = per_process_batch(batch_size)
  num_batches = math.ceil(math.ceil(n / count) / local)  # equal on every process, so collectives match
  indices = list(range(index, n, count))
  ds = grain.MapDataset.source(source)[index::count].map(transform)
  it = iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 * threads)))
  for b in range(num_batches):
    rows = [next(it) for _ in indices[b * local:(b + 1) * local]]
    real = len(rows)
    if real == 0:
      rows = [transform(source[0])]  # a process with nothing left still joins the step
    rows += [rows[-1]] * (local - len(rows))
    batch = jax.tree.map(lambda *xs: np.stack(xs), *rows)
    batch["mask"] = np.arange(local) < real
    yield batch
