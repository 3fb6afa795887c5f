"""grain pipelines over random-access sources (`tfds.data_source` splits, lists): training and evaluation.

Training: the source reshuffled every epoch, a seeded per-example transform, and this process' rows of each
global batch; the iterator's position is checkpointed by the loop. Evaluation: every example exactly once, in
order, in fixed-size batches padded at the end and marked by a `mask`, the same number of batches on every
process.
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


def process_batches(ds: grain.MapDataset, global_batch: int) -> grain.MapDataset:
  """This process' rows of each global batch, where global batch k is `ds[k * global_batch:(k + 1) * global_batch]`.

  Process p reads rows p * local ... (p + 1) * local - 1 of each global batch (and decodes only those), so
  every global batch holds the same examples on any number of processes: the loss curve does not depend on
  how many hosts run it. `jax.make_array_from_process_local_data` places them on the process' devices.
  """
  local = ds.batch(per_process_batch(global_batch), drop_remainder=True)
  return local[jax.process_index()::jax.process_count()]


def training_dataset(source, transform: Callable, *, batch_size: int, seed: int, workers: int = 0,
                     threads: int = 8) -> grain.IterDataset:
  """Infinite batches of `transform(example, rng)` over `source`: this process' rows of each global batch.

  `batch_size` is global. `workers` > 0 decodes in that many processes (grain multiprocessing).
  """
  if len(source) == 0:
    raise UserError("the training split is empty")
  ds = grain.MapDataset.source(source).shuffle(seed=seed).repeat().random_map(transform, seed=seed)
  it = process_batches(ds, batch_size).to_iter_dataset(
      grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 * threads))
  if workers > 0:
    from absl import flags
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()  # grain's workers read absl flags, which jaxlab's own command line never parses
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
