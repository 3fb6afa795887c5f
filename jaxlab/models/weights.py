"""One weight converter for every family: reference-library folders (transformers / diffusers) <-> Flax params.

A family (`Family`) says how its reference config maps to our module and which of its module names are lists
(`layer.3` in PyTorch is `layer_3` in Flax, or row 3 of a scanned `layer` stack). Everything else follows one
rule set, driven by the Flax parameter tree:

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
from safetensors.numpy import load_file, save_file

from jaxlab.errors import UserError

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


@dataclasses.dataclass(frozen=True)
class Family:
  """How one reference class maps onto one of our modules.

  Attributes:
    class_names: the reference classes (`architectures[0]` / `_class_name`) this family reads and writes.
    module_types: our Flax module classes that this family saves.
    from_config: `(reference config dict, dtype, param_dtype) -> module`.
    to_config: `module -> reference config dict` (what `from_pretrained` reads back).
    dummy_inputs: `module -> args` for `module.init`, to get the parameter shapes.
    layer_lists: PyTorch ModuleList names (`layer`, `down_blocks`, ...).
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
  layer_lists: frozenset[str] = frozenset()
  weights_name: str = "model.safetensors"
  rename_in: Callable[[str], str | None] | None = None
  init_method: str | None = None

  def abstract_variables(self, module: nn.Module) -> dict:
    init = module.init if self.init_method is None else \
        lambda rng, *a: module.init(rng, *a, method=self.init_method)
    shapes = jax.eval_shape(init, jax.random.key(0), *self.dummy_inputs(module))
    return nn.meta.unbox(shapes)


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


# ----------------------------------------------------------------------------------------------- key mapping

_LEAF_TO_TORCH = {"kernel": "weight", "scale": "weight", "embedding": "weight", "mean": "running_mean",
                  "var": "running_var"}


def _torch_name(component: str, layer_lists) -> str:
  match = re.fullmatch(r"(.+)_(\d+)", component)
  if match and match.group(1) in layer_lists:
    return f"{match.group(1)}.{match.group(2)}"
  return component


def torch_key(path: tuple[str, ...], layer_lists=frozenset(), layer: int | None = None) -> str:
  """The PyTorch state-dict key of a Flax leaf path; `layer` fills the row of a scanned stack."""
  *modules, leaf = path
  parts = []
  for component in modules:
    parts.append(_torch_name(component, layer_lists))
    if layer is not None and component in layer_lists:
      parts.append(str(layer))
  return ".".join(parts + [_LEAF_TO_TORCH.get(leaf, leaf)])


def _scanned(path, layer_lists) -> bool:
  return any(component in layer_lists for component in path[:-1])


def _to_flax_layout(leaf: str, w: np.ndarray, flax_ndim: int) -> np.ndarray:
  if leaf == "kernel" and w.ndim == 2:
    return w.T
  if leaf == "kernel" and w.ndim > 2:
    return np.transpose(w, tuple(range(2, w.ndim)) + (1, 0))
  return w


def _to_torch_layout(leaf: str, w: np.ndarray) -> np.ndarray:
  if leaf == "kernel" and w.ndim == 2:
    return w.T
  if leaf == "kernel" and w.ndim > 2:
    n = w.ndim
    return np.transpose(w, (n - 1, n - 2) + tuple(range(n - 2)))
  return w


def torch_to_flax(state: Mapping[str, np.ndarray], abstract: Mapping, layer_lists=frozenset(),
                  dtype=jnp.float32, name: str = "checkpoint") -> dict:
  """Fills the Flax tree `abstract` (shapes) from a PyTorch state dict; every Flax leaf must be found."""
  flat = traverse_util.flatten_dict(abstract)
  out, missing, used = {}, [], set()
  for path, shape in flat.items():
    leaf = path[-1]
    scan_len = shape.shape[0] if _scanned(path, layer_lists) else None
    keys = [torch_key(path, layer_lists, i) for i in range(scan_len)] if scan_len else \
        [torch_key(path, layer_lists)]
    if not all(k in state for k in keys):
      missing.extend(k for k in keys if k not in state)
      continue
    tensors = [_to_flax_layout(leaf, np.asarray(state[k]), len(shape.shape)) for k in keys]
    value = np.stack(tensors) if scan_len else tensors[0]
    if value.shape != tuple(shape.shape):
      raise UserError(f"{name}: {keys[0]} has shape {value.shape[1:] if scan_len else value.shape}, "
                      f"the model expects {shape.shape}; does config.json match the weights?")
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


def flax_to_torch(params: Mapping, layer_lists=frozenset()) -> dict[str, np.ndarray]:
  """The PyTorch state dict of a Flax tree (inverse of `torch_to_flax`)."""
  state = {}
  for path, value in traverse_util.flatten_dict(jax.device_get(params)).items():
    value = np.asarray(value, dtype=np.float32) if value.dtype == jnp.bfloat16 else np.asarray(value)
    if _scanned(path, layer_lists):
      for i, row in enumerate(value):
        state[torch_key(path, layer_lists, i)] = _contiguous(_to_torch_layout(path[-1], row))
    else:
      state[torch_key(path, layer_lists)] = _contiguous(_to_torch_layout(path[-1], value))
  return state


# ---------------------------------------------------------------------------------------------- folders

def read_config(path: Path) -> dict:
  path = Path(path)
  if not path.is_dir():
    raise UserError(f"{path} is not a folder; pass a model folder with config.json and *.safetensors")
  config_file = path / "config.json"
  if not config_file.is_file():
    raise UserError(f"{path} has no config.json; is it a transformers/diffusers model folder?")
  return json.loads(config_file.read_text())


def class_name(config: Mapping) -> str:
  if config.get("_class_name"):
    return config["_class_name"]
  if config.get("architectures"):
    return config["architectures"][0]
  raise UserError("config.json names no class (`architectures` or `_class_name`)")


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
  """All tensors of a folder's safetensors files (sharded or not). Pickle checkpoints are refused."""
  path = Path(path)
  files = sorted(path.glob("*.safetensors"))
  if not files:
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
      raise UserError(
          f"{path} holds only pickle checkpoints ({', '.join(pickles)}); jaxlab reads safetensors and never "
          "unpickles. Convert once where you trust the file: "
          "`python -c \"from transformers import AutoModel as M; "
          f"M.from_pretrained('{path}').save_pretrained('{path}', safe_serialization=True)\"` "
          "(diffusers: the model class's from_pretrained/save_pretrained).")
    raise UserError(f"{path} has no *.safetensors weights")
  state = {}
  for f in files:
    state.update(load_file(str(f)))
  return state


def load_pretrained(path, dtype=jnp.float32, param_dtype=jnp.float32, **module_fields) -> tuple[nn.Module, dict]:
  """`(module, params)` from a transformers/diffusers folder (`config.json` + `*.safetensors`).

  The class is read from the config; `dtype` is the compute dtype, `param_dtype` that of the params;
  `module_fields` set our module's own options (`scan_layers=False`, `remat_policy=...`). A module with more
  than the `params` collection (batch norm statistics) comes back with a dict of collections.
  """
  path = Path(path)
  config = read_config(path)
  family = family_for(class_name(config))
  module = family.from_config(config, dtype=dtype, param_dtype=param_dtype)
  if module_fields:
    module = module.clone(**module_fields)
  state = read_safetensors(path)
  if family.rename_in is not None:
    state = {new: v for k, v in state.items() if (new := family.rename_in(k)) is not None}
  abstract = family.abstract_variables(module)
  # One state dict fills every collection (`params`, `batch_stats`): their leaf names differ.
  variables = {col: torch_to_flax(state, tree, family.layer_lists, param_dtype, name=str(path))
               for col, tree in abstract.items()}
  if len(variables) == 1:
    return module, variables["params"]
  return module, variables


def save_pretrained(path, module: nn.Module, params) -> Path:
  """Writes `config.json` + safetensors in the reference layout, loadable by its `from_pretrained`.

  `params` is the params tree, or a dict of collections (`{'params': ..., 'batch_stats': ...}`).
  """
  family = _BY_MODULE_TYPE.get(type(module))
  if family is None:
    raise UserError(f"{type(module).__name__} has no reference-library layout to save to")
  path = Path(path)
  path.mkdir(parents=True, exist_ok=True)
  variables = params if "params" in params else {"params": params}
  state = {}
  for tree in variables.values():
    state.update(flax_to_torch(tree, family.layer_lists))
  tmp = path / f"{family.weights_name}.{jax.process_index()}.{os.getpid()}.tmp"  # unique to this writer
  save_file(state, str(tmp), metadata={"format": "pt"})
  tmp.replace(path / family.weights_name)
  config = family.to_config(module)
  (path / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
  return path
