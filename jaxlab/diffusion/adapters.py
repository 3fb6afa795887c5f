"""The adapter layer: a small trainable tree over a frozen base tree, for every "train a little" method.

An adapter is made from the base model's abstract params (`abstract_params`: shapes and logical axis names), so
its own shapes and logical specs follow the base's. Every kind has

  init(rng)                  its params with logical names: a `Task`'s `init_variables` (and so its shardings)
  specs                      their logical PartitionSpecs
  apply(params, base, scale) the params the model reads; traceable, `scale` may be a traced scalar;
                             `fold=True` merges the adapter into the base's own leaves (for sampling)

and saves to the files its users exchange. The kinds:

  finetune.Subset  a full-weight subset chosen by a rule on diffusers names (ESD) or on paths (Something-Else's
                   frozen I3D); `diffusers_names`-keyed safetensors (`save_subset`, `load_subset`)
  lora.LoRA        low-rank factors for chosen Dense / Conv layers; diffusers/PEFT and kohya files

The base is never copied or rebuilt: a step takes it as frozen input and applies the adapter inside.
"""

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxlab.errors import UserError
from jaxlab.training.checkpoint import restore_for_eval


class Adapter(Protocol):
  """What the loop, samplers and exporters rely on; see the module docstring."""

  def init(self, rng) -> dict: ...

  @property
  def specs(self) -> dict: ...

  def apply(self, params: Mapping, base: Mapping, scale=1.0, fold: bool = False) -> dict: ...


def abstract_params(module: nn.Module, *inputs) -> dict:
  """The module's params as `nn.Partitioned` boxes of `ShapeDtypeStruct`s: shapes and logical names, no values."""
  return jax.eval_shape(module.init, jax.random.key(0), *inputs)["params"]


def apply_all(base: Mapping, adapted: Sequence[tuple[Adapter, Mapping, Any]], fold: bool = False) -> dict:
  """`base` under several adapters, `(adapter, params, scale)` each, applied in order (several LoRAs add up)."""
  params = base
  for adapter, adapter_params, scale in adapted:
    params = adapter.apply(adapter_params, params, scale, fold=fold)
  return params


def at_timestep(base: Mapping, adapted: Sequence[tuple[Adapter, Mapping, Any]], start_noise=None):
  """`t -> params` for a sampler: `base` under `adapted` (merged), each scale 0 while `t > start_noise` and its
  own after (the sliders' `start_noise`, on both guidance branches); `start_noise` may be traced, None keeps
  every scale on."""
  if start_noise is None:
    return lambda t: apply_all(base, adapted, fold=True)
  return lambda t: apply_all(base, [(a, p, jnp.where(t > start_noise, 0.0, s)) for a, p, s in adapted], fold=True)


def restore(workdir, adapter: Adapter, step: int | None = None) -> tuple[dict, int]:
  """(the adapter's params as host arrays, their step) from the latest (or `step`'s) checkpoint of a training
  run in `workdir`, read from its abstract params alone: no Task, no optimiser state. Every process gets them
  whole."""
  restored = restore_for_eval(workdir, {"params": nn.meta.unbox(jax.eval_shape(adapter.init, jax.random.key(0)))},
                              step)
  if restored is None:
    raise UserError(f"{workdir} holds no checkpoint; train first")
  state, step = restored
  return jax.tree.map(np.asarray, state["params"]), int(step)
