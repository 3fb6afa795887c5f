"""Full-weight subsets: partial fine-tuning of a model in the diffusers layout, without copying it.

A rule picks parameters by their diffusers names (`down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.
weight`), the names users know from PyTorch. `split` cuts any tree shaped like the params (values, logical
specs) into the selected leaves and the rest; the train step keeps the base tree frozen and `merge`s the small
trainable tree over it. `Subset` is that as an adapter (`jaxlab.diffusion.adapters`). The changed tensors are
saved, and loaded back onto a base model, as a safetensors file keyed by diffusers names (what
`unet.load_state_dict(..., strict=False)` reads).
"""

from collections.abc import Callable, Mapping
import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import traverse_util
from safetensors.numpy import save_file

from jaxlab.errors import UserError
from jaxlab.models import weights

ParamPath = tuple[str, ...]


def diffusers_names(params: Mapping, layer_lists=frozenset()) -> dict[ParamPath, str]:
  """Each leaf's path -> its PyTorch state-dict key."""
  return {path: weights.torch_key(path, layer_lists) for path in traverse_util.flatten_dict(params)}


def select(params: Mapping, rule: Callable[[str], bool], layer_lists=frozenset()) -> frozenset[ParamPath]:
  """The paths of the leaves whose diffusers name satisfies `rule`."""
  return frozenset(path for path, name in diffusers_names(params, layer_lists).items() if rule(name))


def split(tree: Mapping, selected: frozenset[ParamPath]) -> tuple[dict, dict]:
  """(the selected leaves, the others) as two nested dicts; `tree` may hold values or logical specs."""
  flat = traverse_util.flatten_dict(tree)
  chosen = {p: v for p, v in flat.items() if p in selected}
  rest = {p: v for p, v in flat.items() if p not in selected}
  return traverse_util.unflatten_dict(chosen), traverse_util.unflatten_dict(rest)


def merge(trainable: Mapping, base: Mapping) -> dict:
  """`base` with the leaves of `trainable` put in (or over) their places; traceable, nothing is copied."""
  flat = traverse_util.flatten_dict(base)
  flat.update(traverse_util.flatten_dict(trainable))
  return traverse_util.unflatten_dict(flat)


def save_subset(path, subset: Mapping, layer_lists=frozenset()) -> Path:
  """A safetensors file of `subset` keyed by diffusers names, in PyTorch's tensor layouts."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  save_file(weights.flax_to_torch(subset, layer_lists), str(path), metadata={"format": "pt"})
  return path


def load_subset(params: Mapping, source, layer_lists=frozenset(), name: str | None = None) -> dict:
  """`params` with the tensors of a diffusers-named state dict (a safetensors path, or a dict read from `name`)
  put in place."""
  state = weights.read_safetensors_file(source) if isinstance(source, (str, Path)) else dict(source)
  source = name or source
  names = diffusers_names(params, layer_lists)
  by_name = {name: path for path, name in names.items()}
  unknown = sorted(set(state) - set(by_name))
  if unknown:
    raise UserError(f"{source if isinstance(source, (str, Path)) else 'state dict'} has {len(unknown)} tensors the "
                    f"model lacks, e.g. {', '.join(unknown[:3])}; was it made for this model?")
  flat = traverse_util.flatten_dict(params)
  abstract = traverse_util.unflatten_dict({by_name[k]: flat[by_name[k]] for k in state})
  dtype = next(iter(flat.values())).dtype if flat else np.float32
  return merge(weights.torch_to_flax(state, abstract, layer_lists, dtype, name=str(source)), params)


@dataclasses.dataclass(frozen=True)
class Subset:
  """A full-weight adapter: the base leaves whose path `trains` accepts are trained in place of the base's.

  Attributes:
    trains: `path -> bool` on leaf paths (`finetune.select(...).__contains__` for a rule on diffusers names).
    boxed: the base's abstract params with logical names, which `init` and `specs` take the subset's from; not
      needed to `split` or `apply`.
  """
  trains: Callable[[ParamPath], bool]
  boxed: Mapping | None = None

  def split(self, tree: Mapping) -> tuple[dict, dict]:
    """(the trained leaves, the frozen ones) of any tree shaped like the base (values, specs, shapes)."""
    flat = traverse_util.flatten_dict(tree)
    return split(tree, frozenset(p for p in flat if self.trains(p)))

  def init(self, rng=None) -> dict:
    """Zeros in the subset's shapes, with its logical names: the loop places them, then `Task.pretrained`
    puts `initial(base)` in (a jitted init must not hold the base's values as constants)."""
    trained, _ = self.split(self.boxed)
    return jax.tree.map(lambda b: b.replace_boxed(jnp.zeros(b.value.shape, b.value.dtype)), trained,
                        is_leaf=lambda x: isinstance(x, nn.Partitioned))

  def initial(self, base: Mapping) -> dict:
    """The trained leaves' starting values: the base's own."""
    return self.split(base)[0]

  @property
  def specs(self) -> dict:
    return nn.get_partition_spec(self.split(self.boxed)[0])

  def apply(self, params: Mapping, base: Mapping, scale=1.0, fold: bool = True) -> dict:
    """`base` with the trained leaves in place; a `scale` other than the literal 1 gives
    `base + scale * (trained - base)` (0: the base, bit for bit), traceable like the rest. (A subset is
    always folded into the base's leaves; `fold` is the adapters' common signature.)"""
    if isinstance(scale, (int, float)) and scale == 1:
      return merge(params, base)  # the trained values themselves, not base + (trained - base), which rounds
    flat = traverse_util.flatten_dict(base)
    moved = {p: flat[p] + scale * (v - flat[p]) for p, v in traverse_util.flatten_dict(params).items()}
    return merge(traverse_util.unflatten_dict(moved), base)
