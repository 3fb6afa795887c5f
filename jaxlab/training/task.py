"""What a method hands to the one train loop."""

from collections.abc import Callable, Mapping
import dataclasses
from typing import Any

import optax


@dataclasses.dataclass(frozen=True)
class Task:
  """A method's model, loss, optimiser and data, in the form the loop consumes.

  Attributes:
    init_variables: `rng -> {'params': ..., <other collections>}`, traced under `jax.jit`. Parameters may carry
      logical-axis metadata (`nn.with_logical_partitioning`); the loop derives their shardings from it. For
      partial fine-tuning `params` holds only the trainable subset (or the LoRA weights).
    loss_fn: `(params, model_state, frozen, batch, rng) -> (loss, (metrics, new_model_state))`, where
      `model_state` holds the non-trainable collections (`batch_stats`) and `frozen` the frozen base weights.
    optimizer: the optax transformation applied to `params`.
    train_data: `() -> grain.IterDataset` of this process' slices of the global batches (numpy leaves,
      leading axis = batch). Its iterator state is checkpointed with the model.
    batch_axes: logical axes of batch leaves by path (`'video'`, `'cond/ids'`); unnamed leaves are sharded on
      their leading (batch) axis only.
    frozen: frozen weights that every step reads but never changes (not checkpointed), or None.
    frozen_specs: logical PartitionSpecs for `frozen` (same tree), or None to replicate it.
    pretrained: `() -> params` read from disk to replace the random initialisation, or None.
    learning_rate: `step -> lr`, logged beside the loss.
    evaluate: `(params, model_state, step) -> {name: scalar}`, run every `eval_every` steps and at the end.
  """

  init_variables: Callable[[Any], Mapping[str, Any]]
  loss_fn: Callable[..., tuple]
  optimizer: optax.GradientTransformation
  train_data: Callable[[], Any]
  batch_axes: Mapping[str, tuple] = dataclasses.field(default_factory=dict)
  frozen: Any = None
  frozen_specs: Any = None
  pretrained: Callable[[], Any] | None = None
  learning_rate: Callable[[Any], Any] | None = None
  evaluate: Callable[..., Mapping[str, float]] | None = None
