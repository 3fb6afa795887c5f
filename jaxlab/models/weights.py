"""One weight converter for every family: reference-library folders (transformers / diffusers) <-> Flax params.

A family (`Family`) says how its reference config maps to our module and how its parameter paths are spelled
in PyTorch (`Naming`): which module names are lists (`layer.3` in PyTorch is `layer_3` in Flax, or row 3 of a
scanned `layer` stack, told apart by the stack's `layers` logical axis; a stack inside a stack has two), which
modules are scanned runs that start part-way down a list (`run_2/resnets` row 1 is `resnets.3`), and which pieces
are renamed (positions in an `nn.Sequential`). Everything else follows one rule set, driven by the Flax parameter tree:

  Flax leaf    PyTorch key    tensor
  kernel       weight         Linear: [in, out] <-> [out, in]; ConvNd: [*k, in, out] <-> [out, in, *k]
  scale        weight         as is (norms)
  embedding    weight         as is
  mean / var   running_mean / running_var (batch_stats)
  other        same name      as is

Weights are read from safetensors only; pickle checkpoints are refused, never unpickled.
"""

from collections.abc import Callable, Mapping
import dataclasses
from types import MappingProxyType
import importlib
import json
import os
from pathlib import Path
import re
from typing import Any
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import traverse_util
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from jaxlab.errors import UserError, read_json
from jaxlab.nn.stack import LAYERS_AXIS

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# The module that defines each reference class; imported on first use.
CLASS_MODULES = {
    "VideoMAEForVideoClassification": "jaxlab.models.video_vit",
    "VideoMAEModel": "jaxlab.models.video_vit",
    "CLIPModel": "jaxlab.models.clip",
    "CLIPTextModel": "jaxlab.models.clip",
    "CLIPTextModelWithProjection": "jaxlab.models.clip",
    "CLIPVisionModel": "jaxlab.models.clip",
    "CLIPVisionModelWithProjection": "jaxlab.models.clip",
    "UNet2DConditionModel": "jaxlab.models.unet2d",
    "AutoencoderKL": "jaxlab.models.vae",
    "UNet3DConditionModel": "jaxlab.models.unet3d",
}
_REGISTRY: dict[str, "Family"] = {}
_BY_MODULE_TYPE: dict[type, "Family"] = {}


_LEAF_TO_TORCH = {"kernel": "weight", "scale": "weight", "embedding": "weight", "mean": "running_mean",
                  "var": "running_var"}


@dataclasses.dataclass(frozen=True)
class Naming:
  """How one family spells Flax parameter paths as PyTorch state-dict keys, the same way for loading and saving.

  Attributes:
    lists: PyTorch ModuleList names. `resnets_3` is `resnets.3`; a scanned stack (parameters whose first logical
      axis is `layers`) under a list's name is rows `layers.0`, `layers.1`, ... Each list name without an index
      on a stacked leaf's path takes the next of its rows (outer stack first).
    runs: names of scanned runs that hold rows `k, k+1, ...` of the lists inside them: `run_k` is left out of the
      key and its first list counts from `k` (`run_2/resnets` row 1 is `resnets.3`).
    renames: (ours, theirs) pairs of dotted key pieces for PyTorch names that are no Flax module name, such as
      positions in an `nn.Sequential` (`conv1.norm` is `conv1.0`). Each side's pieces are distinct, so a key
      maps back to one path (`finetune` looks paths up by diffusers name).
  """
  lists: frozenset[str] = frozenset()
  renames: tuple[tuple[str, str], ...] = ()
  runs: frozenset[str] = frozenset()

  def __post_init__(self):
    ours, theirs = [a for a, _ in self.renames], [b for _, b in self.renames]
    if len(set(ours)) != len(ours) or len(set(theirs)) != len(theirs) or set(ours) & set(theirs):
      raise ValueError(f"renames {self.renames} do not map one to one")

  @classmethod
  def of(cls, naming: "Naming | frozenset[str]") -> "Naming":
    """A `Naming`, or the ModuleList names of a family that renames nothing."""
    return naming if isinstance(naming, Naming) else cls(lists=frozenset(naming))

  def torch_key(self, path: tuple[str, ...], rows: tuple[int, ...] = ()) -> str:
    """The PyTorch key of a Flax leaf path; `rows` index its scanned stacks, outer first."""
    *modules, leaf = path
    parts, rows, offset = [], list(rows), 0
    for component in modules:
      run = re.fullmatch(r"(.+)_(\d+)", component)
      if run and run.group(1) in self.runs:
        offset = int(run.group(2))
        continue
      parts.append(self._list_item(component))
      if rows and component in self.lists:
        parts.append(str(offset + rows.pop(0)))
        offset = 0
    if rows:
      raise ValueError(f"{'/'.join(path)} is a scanned stack under no ModuleList name of {sorted(self.lists)}")
    key = ".".join(parts + [_LEAF_TO_TORCH.get(leaf, leaf)])
    for ours, theirs in self.renames:
      key = re.sub(rf"(^|\.){re.escape(ours)}\.", rf"\g<1>{theirs}.", key)
    return key

  def _list_item(self, component: str) -> str:
    match = re.fullmatch(r"(.+)_(\d+)", component)
    if match and match.group(1) in self.lists:
      return f"{match.group(1)}.{match.group(2)}"
    return component


@dataclasses.dataclass(frozen=True)
class Family:
  """How one reference class maps onto one of our modules.

  Attributes:
    class_names: the reference classes (`architectures[0]` / `_class_name`) this family reads and writes.
    module_types: our Flax module classes that this family saves.
    from_config: `(reference config dict, dtype, param_dtype) -> module`.
    to_config: `module -> reference config dict` (what `from_pretrained` reads back).
    dummy_inputs: `module -> args` for `module.init`, to get the parameter shapes.
    naming: how parameter paths are spelled as PyTorch keys (ModuleList names, renamed pieces).
    weights_name: the safetensors file the reference library writes.
    rename_in: optional `torch_key -> torch_key | None`, applied when loading: legacy names to current ones,
      None for keys to drop (stale buffers).
    init_method: the module method `dummy_inputs` are for, when not `__call__`.
  """

  class_names: tuple[str, ...]
  module_types: tuple[type, ...]
  from_config: Callable[..., nn.Module]
  to_config: Callable[[nn.Module], dict]
  dummy_inputs: Callable[[nn.Module], tuple]
  naming: Naming = Naming()
  weights_name: str = "model.safetensors"
  rename_in: Callable[[str], str | None] | None = None
  init_method: str | None = None

  def boxed_variables(self, module: nn.Module) -> dict:
    """The module's variables as shapes, with their logical-axis boxes (`nn.Partitioned`)."""
    init = module.init if self.init_method is None else \
        lambda rng, *a: module.init(rng, *a, method=self.init_method)
    return jax.eval_shape(init, jax.random.key(0), *self.dummy_inputs(module))

  def abstract_variables(self, module: nn.Module) -> dict:
    return nn.meta.unbox(self.boxed_variables(module))


def register(family: Family) -> Family:
  for name in family.class_names:
    _REGISTRY[name] = family
  for module_type in family.module_types:
    _BY_MODULE_TYPE[module_type] = family
  return family


def family_for(class_name: str) -> Family:
  if class_name not in _REGISTRY and class_name in CLASS_MODULES:
    importlib.import_module(CLASS_MODULES[class_name])
  if class_name not in _REGISTRY:
    raise UserError(f"no jaxlab model reads {class_name}; supported: {', '.join(sorted(CLASS_MODULES))}")
  return _REGISTRY[class_name]


def family_of(module: nn.Module) -> Family:
  """The family that saves modules of `module`'s type."""
  family = _BY_MODULE_TYPE.get(type(module))
  if family is None:
    raise UserError(f"{type(module).__name__} has no reference-library layout to save to")
  return family


# ----------------------------------------------------------------------------------------------- key mapping

def torch_key(path: tuple[str, ...], naming: Naming | frozenset[str] = frozenset(), rows: tuple[int, ...] = ()) -> str:
  """The PyTorch state-dict key of a Flax leaf path under a family's `naming` (or just its list names)."""
  return Naming.of(naming).torch_key(path, rows)


NOT_STACKED = MappingProxyType({})


def stacked_paths(boxed: Mapping) -> dict[tuple[str, ...], int]:
  """The leaf paths of a boxed tree (`init` / `eval_shape` output) that are scanned stacks (first logical axis
  `layers`), each with its number of leading `layers` axes (2 for a stack inside a stack)."""
  depths = {}
  for path, leaf in traverse_util.flatten_dict(boxed).items():
    names = leaf.names if isinstance(leaf, nn.Partitioned) else ()
    depth = next((i for i, name in enumerate(names) if name != LAYERS_AXIS), len(names))
    if depth:
      depths[path] = depth
  return depths


def _torch_keys(path, naming: Naming, stack_shape: tuple[int, ...]) -> list[str]:
  """The keys of a leaf's rows (`stack_shape` its leading stacked axes; () for one tensor), in row-major order."""
  return [naming.torch_key(path, rows) for rows in np.ndindex(*stack_shape)]


def _check_one_to_one(keys_by_path: dict) -> None:
  seen = {}
  for path, keys in keys_by_path.items():
    for key in keys:
      if key in seen:
        raise ValueError(f"{'/'.join(seen[key])} and {'/'.join(path)} both map to {key}; fix the family's Naming")
      seen[key] = path


def _torch_axes(leaf: str, ndim: int) -> tuple[int, ...]:
  """The permutation from a Flax leaf's layout to PyTorch's: Linear [in, out] -> [out, in], ConvNd
  [*k, in, out] -> [out, in, *k]; anything else as is."""
  if leaf != "kernel" or ndim < 2:
    return tuple(range(ndim))
  return (ndim - 1, ndim - 2) + tuple(range(ndim - 2))


def _to_flax_layout(leaf: str, w: np.ndarray) -> np.ndarray:
  return np.transpose(w, np.argsort(_torch_axes(leaf, w.ndim)))


def _to_torch_layout(leaf: str, w: np.ndarray) -> np.ndarray:
  return np.transpose(w, _torch_axes(leaf, w.ndim))


def torch_shapes(abstract: Mapping, naming: Naming | frozenset[str] = frozenset(),
                 stacked: Mapping[tuple[str, ...], int] = NOT_STACKED) -> dict[str, tuple[int, ...]]:
  """The key and shape of every tensor `flax_to_torch` writes for a tree of this shape, without any memory (to
  check a model of full size against the reference's state dict)."""
  naming = Naming.of(naming)
  flat = traverse_util.flatten_dict(abstract)
  keys_by_path = {path: _torch_keys(path, naming, leaf.shape[:stacked.get(path, 0)]) for path, leaf in flat.items()}
  _check_one_to_one(keys_by_path)
  shapes = {}
  for path, leaf in flat.items():
    shape = leaf.shape[stacked.get(path, 0):]
    shapes.update({key: tuple(shape[a] for a in _torch_axes(path[-1], len(shape))) for key in keys_by_path[path]})
  return shapes


def torch_to_flax(state: Mapping[str, np.ndarray], abstract: Mapping, naming: Naming | frozenset[str] = frozenset(),
                  dtype=jnp.float32, name: str = "checkpoint",
                  stacked: Mapping[tuple[str, ...], int] = NOT_STACKED) -> dict:
  """Fills the Flax tree `abstract` (shapes) from a PyTorch state dict; every Flax leaf must be found.

  `stacked` gives the scanned-stack leaves (`stacked_paths` of the boxed tree): their rows are stacked.
  """
  naming = Naming.of(naming)
  flat = traverse_util.flatten_dict(abstract)
  keys_by_path = {path: _torch_keys(path, naming, shape.shape[:stacked.get(path, 0)])
                  for path, shape in flat.items()}
  _check_one_to_one(keys_by_path)
  out, missing, used = {}, [], set()
  for path, shape in flat.items():
    keys, depth = keys_by_path[path], stacked.get(path, 0)
    if not all(k in state for k in keys):
      missing.extend(k for k in keys if k not in state)
      continue
    tensors = [_to_flax_layout(path[-1], np.asarray(state[k])) for k in keys]
    expected = tuple(shape.shape[depth:])
    for key, tensor in zip(keys, tensors):
      if tensor.shape != expected:
        raise UserError(f"{name}: {key} has shape {tensor.shape}, the model expects {expected}; does config.json "
                        "match the weights?")
    value = np.stack(tensors).reshape(shape.shape) if depth else tensors[0]
    out[path] = value.astype(dtype if jnp.issubdtype(shape.dtype, jnp.floating) else shape.dtype)
    used.update(keys)
  if missing:
    raise UserError(f"{name} lacks {len(missing)} weights the model needs, e.g. {', '.join(missing[:5])}")
  unused = sorted(set(state) - used)
  if unused:
    warnings.warn(f"{name}: {len(unused)} weights not used by the model, e.g. {', '.join(unused[:5])}")
  return traverse_util.unflatten_dict(out)


def _contiguous(w: np.ndarray) -> np.ndarray:
  # Not `np.ascontiguousarray`, which turns a scalar (CLIP's `logit_scale`) into shape [1].
  return np.require(w, requirements="C")


def flax_to_torch(params: Mapping, naming: Naming | frozenset[str] = frozenset(),
                  stacked: Mapping[tuple[str, ...], int] = NOT_STACKED) -> dict[str, np.ndarray]:
  """The PyTorch state dict of a Flax tree (inverse of `torch_to_flax`)."""
  naming = Naming.of(naming)
  flat = {path: np.asarray(value, dtype=np.float32) if value.dtype == jnp.bfloat16 else np.asarray(value)
          for path, value in traverse_util.flatten_dict(jax.device_get(params)).items()}
  keys_by_path = {path: _torch_keys(path, naming, value.shape[:stacked.get(path, 0)]) for path, value in flat.items()}
  _check_one_to_one(keys_by_path)
  state = {}
  for path, value in flat.items():
    depth = stacked.get(path, 0)
    rows = value.reshape((-1,) + value.shape[depth:]) if depth else [value]
    for key, row in zip(keys_by_path[path], rows):
      state[key] = _contiguous(_to_torch_layout(path[-1], row))
  return state


# ---------------------------------------------------------------------------------------------- folders

def read_config(path: Path) -> dict:
  path = Path(path)
  if not path.is_dir():
    raise UserError(f"{path} is not a folder; pass a model folder with config.json and *.safetensors")
  config_file = path / "config.json"
  if not config_file.is_file():
    raise UserError(f"{path} has no config.json; is it a transformers/diffusers model folder?")
  config = read_json(config_file, "a model's config")
  if not isinstance(config, dict):
    raise UserError(f"{config_file} should hold a JSON object of the model's settings")
  return config


def class_name(config: Mapping) -> str:
  if config.get("_class_name"):
    return config["_class_name"]
  if config.get("architectures"):
    return config["architectures"][0]
  raise UserError("config.json names no class (`architectures` or `_class_name`)")


def _refuse_pickles(where: Path, names=None) -> None:
  """A folder of pickle checkpoints (`names`), or one pickle file (`names` None): refused, with how to convert."""
  if names is None:
    raise UserError(f"{where} is a pickle checkpoint; jaxlab reads safetensors and never unpickles. Convert it once "
                    "where you trust the file: `python -c \"import torch, safetensors.torch as s; "
                    f"s.save_file(torch.load('{where}'), '{where.with_suffix('.safetensors')}')\"`")
  raise UserError(
      f"{where} holds only pickle checkpoints ({', '.join(names)}); jaxlab reads safetensors and never "
      "unpickles. Convert once where you trust the file: "
      "`python -c \"from transformers import AutoModel as M; "
      f"M.from_pretrained('{where}').save_pretrained('{where}', safe_serialization=True)\"` "
      "(diffusers: the model class's from_pretrained/save_pretrained).")


def read_safetensors_file(path) -> dict[str, np.ndarray]:
  """The tensors of one safetensors file; a pickle, a missing or a damaged file is a `UserError`."""
  path = Path(path)
  if path.suffix in PICKLE_SUFFIXES:
    _refuse_pickles(path)
  if not path.is_file():
    raise UserError(f"{path} not found; pass a .safetensors file")
  try:
    return load_file(str(path))
  except SafetensorError as e:
    raise UserError(f"{path} is not a readable safetensors file ({e}); it may be truncated: download or export "
                    "it again") from None


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
  """All tensors of a folder's safetensors files (sharded or not). Pickle checkpoints are refused."""
  path = Path(path)
  files = sorted(path.glob("*.safetensors"))
  if not files:
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
      _refuse_pickles(path, pickles)
    raise UserError(f"{path} has no *.safetensors weights")
  state = {}
  for f in files:
    state.update(read_safetensors_file(f))
  return state


def load_pretrained(path, dtype=jnp.float32, param_dtype=jnp.float32, expect: tuple[str, ...] = (),
                    **module_fields) -> tuple[nn.Module, dict]:
  """`(module, params)` from a transformers/diffusers folder (`config.json` + `*.safetensors`).

  The class is read from the config (one of `expect`, the reference class names, when given; a folder of
  another family is refused before its weights are read); `dtype` is the compute dtype, `param_dtype` that of the params;
  `module_fields` set our module's own options (`scan_layers=False`, `remat_policy=...`). A module with more
  than the `params` collection (batch norm statistics) comes back with a dict of collections.
  """
  path = Path(path)
  config = read_config(path)
  if expect and class_name(config) not in expect:
    raise UserError(f"{path} holds a model of class {class_name(config)}; {' or '.join(expect)} is needed here")
  family = family_for(class_name(config))
  module = family.from_config(config, dtype=dtype, param_dtype=param_dtype)
  if module_fields:
    module = module.clone(**module_fields)
  state = read_safetensors(path)
  if family.rename_in is not None:
    state = {new: v for k, v in state.items() if (new := family.rename_in(k)) is not None}
  boxed = family.boxed_variables(module)
  # One state dict fills every collection (`params`, `batch_stats`): their leaf names differ.
  variables = {col: torch_to_flax(state, nn.meta.unbox(tree), family.naming, param_dtype, name=str(path),
                                  stacked=stacked_paths(tree))
               for col, tree in boxed.items()}
  if len(variables) == 1:
    return module, variables["params"]
  return module, variables


def save_pretrained(path, module: nn.Module, params) -> Path:
  """Writes `config.json` + safetensors in the reference layout, loadable by its `from_pretrained`.

  `params` is the params tree, or a dict of collections (`{'params': ..., 'batch_stats': ...}`).
  """
  family = family_of(module)
  path = Path(path)
  path.mkdir(parents=True, exist_ok=True)
  variables = params if "params" in params else {"params": params}
  boxed = family.boxed_variables(module)
  state = {}
  for col, tree in variables.items():
    state.update(flax_to_torch(tree, family.naming, stacked_paths(boxed[col])))
  tmp = path / f"{family.weights_name}.{jax.process_index()}.{os.getpid()}.tmp"  # unique to this writer
  save_file(state, str(tmp), metadata={"format": "pt"})
  tmp.replace(path / family.weights_name)
  config = family.to_config(module)
  (path / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
  return path
