"""LoRA over a frozen model: low-rank factors for chosen Dense and Conv layers, and the files users exchange.

A layer with kernel W gains `y = x W + b + multiplier * alpha / r * up(down(x))`, as in the Concept Sliders code
(`textsliders/lora.py`, from LECO): `down` maps into r channels (a conv keeps the layer's kernel, strides and
padding), `up` maps back (a 1x1 conv), `up` starts at zero so a new LoRA changes nothing. The factors are a tree of
their own; `LoRA.apply` puts them beside the kernels of the base params (`lora_down`, `lora_up`, the scale folded
into `lora_up`), where `jaxlab.nn`'s Dense and Conv add the update. Training uses that per-layer hook rather than
a merge of `W + scale * up @ down` into the kernel: the merge would hold a kernel-sized copy and a kernel-sized
gradient for every wrapped layer, which is most of the UNet under `c3lier`; the hook's extra work is a rank-r
path. Samplers merge (`apply(..., fold=True)`): no gradient there, a few percent of a step's FLOPs, and the
model's graph unchanged. The multiplier is an ordinary (traceable) argument, so one compiled step or sampler
serves every scale, a scale that changes per step, and several LoRAs at once.

Which layers (`targets`): the original wraps every Linear / Conv2d child of the diffusers modules of the kinds
its `network` names, filtered by `train_method` on the module's name. Those kinds are recognised by their names
in the diffusers layout (`...attn1`, `...resnets.N`, `...downsamplers.N`, `...upsamplers.N`), which SD 1.x,
SD 2.x and SDXL share.

Files: `save_peft` writes the diffusers/PEFT layout (`unet.<module>.lora_A.weight` / `lora_B.weight`, rank and
alpha in the `lora_adapter_metadata` header) that `StableDiffusionPipeline.load_lora_weights` and the SDXL
pipeline read; `save_kohya` writes `lora_unet_<module with _>.lora_down.weight` / `lora_up.weight` / `alpha`,
which ComfyUI, A1111 and diffusers read. `load` reads both; pickles (the original's `.pt`) are refused.
"""

from collections.abc import Callable, Mapping
import dataclasses
import json
import math
from pathlib import Path
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import traverse_util
from safetensors.numpy import save_file

from jaxlab.errors import UserError
from jaxlab.models import weights
from jaxlab.nn.layers import LORA_DOWN, LORA_UP

ModulePath = tuple[str, ...]

# ------------------------------------------------------------------------------------------------- targets

# The diffusers module kinds whose Linear / Conv children the original wraps, by name: (parent, child).
_KINDS = {
    "Attention": re.compile(r"(.*\.attn[12])\.(.+)"),
    "ResnetBlock2D": re.compile(r"(.*\.resnets\.\d+)\.(.+)"),
    "Downsample2D": re.compile(r"(.*\.downsamplers\.\d+)\.(.+)"),
    "Upsample2D": re.compile(r"(.*\.upsamplers\.\d+)\.(.+)"),
}
# `c3lier` adds the conv modules to attention (the original also lists DownBlock2D / UpBlock2D, whose layers
# are those of their resnets and samplers, so they add no layer).
NETWORKS = {"c3lier": ("Attention", "ResnetBlock2D", "Downsample2D", "Upsample2D"), "lierla": ("Attention",)}


def _no_xattn(parent: str) -> bool:
  return "attn2" not in parent and "time_embed" not in parent


# The original's `train_method` rules, on the parent module's name and the layer's name inside it.
TRAIN_METHODS: dict[str, Callable[[str, str], bool]] = {
    "noxattn": lambda parent, child: _no_xattn(parent),
    "innoxattn": lambda parent, child: "attn2" not in parent,
    "selfattn": lambda parent, child: "attn1" in parent,
    "xattn": lambda parent, child: "attn2" in parent,
    "xattn-strict": lambda parent, child: "attn2" in parent and "out" not in child,
    "full": lambda parent, child: True,
    "noxattn-hspace": lambda parent, child: _no_xattn(parent) and "mid_block" in parent,
    "noxattn-hspace-last": lambda parent, child: (_no_xattn(parent) and "mid_block" in parent and ".1" in parent
                                                  and "conv2" in child),
}


def targets(network: str = "c3lier", train_method: str = "noxattn") -> Callable[[str], bool]:
  """`module name -> wrapped?` for the original's `network.type` and `train_method`."""
  if network not in NETWORKS:
    raise UserError(f"LoRA network {network!r}: use one of {', '.join(NETWORKS)}")
  if train_method not in TRAIN_METHODS:
    raise UserError(f"train_method {train_method!r}: use one of {', '.join(TRAIN_METHODS)}")
  kinds, rule = [_KINDS[k] for k in NETWORKS[network]], TRAIN_METHODS[train_method]

  def wrapped(name: str) -> bool:
    for kind in kinds:
      match = kind.fullmatch(name)
      if match:
        return rule(*match.groups())
    return False

  return wrapped


def linear_layers(boxed: Mapping, layer_lists=frozenset()) -> dict[str, tuple[ModulePath, nn.Partitioned]]:
  """Every Dense / Conv layer of a boxed abstract params tree: diffusers module name -> (path, kernel box)."""
  layers = {}
  for path, box in traverse_util.flatten_dict(boxed).items():
    if path[-1] == "kernel":
      layers[weights.torch_key(path, layer_lists).removesuffix(".weight")] = (path[:-1], box)
  return layers


# ---------------------------------------------------------------------------------------------- the adapter

@dataclasses.dataclass(frozen=True)
class Layer:
  """One wrapped layer: its diffusers name, the base kernel's shape and logical axes, rank and alpha."""
  name: str
  kernel_shape: tuple[int, ...]
  axes: tuple
  rank: int
  alpha: float

  @property
  def down_shape(self) -> tuple[int, ...]:
    return self.kernel_shape[:-1] + (self.rank,)

  @property
  def up_shape(self) -> tuple[int, ...]:
    return (1,) * (len(self.kernel_shape) - 2) + (self.rank, self.kernel_shape[-1])


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: compiled samplers take it as static
class LoRA:
  """Low-rank factors for some Dense / Conv layers of a base params tree.

  Its params are `{module path: {'lora_down': [..., in, r], 'lora_up': [..., r, out]}}` in Flax layouts
  (a conv's down kernel is `[kh, kw, in, r]`, its up kernel `[1, 1, r, out]`), with logical axes taken from the
  base kernel's (`in` and `out` keep theirs, the rank axis is unsharded).

  Attributes:
    layers: module path -> `Layer`.
    kaiming_a: the negative slope of the `down` init, `kaiming_uniform_(a)`: 1 in the text sliders, sqrt(5) (the
      default init of torch's Linear / Conv2d) in the image sliders.
  """
  layers: Mapping[ModulePath, Layer]
  kaiming_a: float = 1.0

  @classmethod
  def create(cls, boxed: Mapping, wrapped: Callable[[str], bool], rank: int = 4, alpha: float = 1.0,
             layer_lists=frozenset(), kaiming_a: float = 1.0) -> "LoRA":
    """Factors for the layers of `boxed` (the base's abstract params with logical names) whose diffusers name
    `wrapped` accepts (e.g. `targets('c3lier', 'noxattn')`). A conv's rank is capped at min(rank, in, out)."""
    layers = {}
    for name, (path, box) in linear_layers(boxed, layer_lists).items():
      if wrapped(name):
        shape = tuple(box.value.shape)
        r = rank if len(shape) == 2 else min(rank, shape[-2], shape[-1])
        layers[path] = Layer(name, shape, tuple(box.names), r, float(alpha))
    if not layers:
      raise UserError("the LoRA targets select no layer of this model")
    return cls(layers, kaiming_a)

  def init(self, rng) -> dict:
    """Fresh factors with logical names: `down` Kaiming-uniform over its torch fan-in, `up` zero."""
    gain = math.sqrt(2.0 / (1.0 + self.kaiming_a**2))
    flat = {}
    for rng_layer, (path, layer) in zip(jax.random.split(rng, len(self.layers)), self.layers.items()):
      bound = gain * math.sqrt(3.0 / math.prod(layer.kernel_shape[:-1]))
      down = jax.random.uniform(rng_layer, layer.down_shape, jnp.float32, -bound, bound)
      flat[path + (LORA_DOWN,)] = nn.LogicallyPartitioned(down, layer.axes[:-1] + (None,))
      up_axes = (None,) * (len(layer.kernel_shape) - 1) + layer.axes[-1:]
      flat[path + (LORA_UP,)] = nn.LogicallyPartitioned(jnp.zeros(layer.up_shape, jnp.float32), up_axes)
    return traverse_util.unflatten_dict(flat)

  @property
  def specs(self) -> dict:
    """The logical PartitionSpecs of the params."""
    return nn.get_partition_spec(jax.eval_shape(self.init, jax.random.key(0)))

  def apply(self, params: Mapping, base: Mapping, scale=1.0, fold: bool = False) -> dict:
    """`base` with the factors beside the wrapped kernels, `up` times `scale * alpha / r`; traceable in `params`,
    `base` and `scale`. Over params that already carry factors (another LoRA) they are concatenated, so the
    layers add both updates.

    `fold=True` merges them into the kernels instead, `W + scale * alpha / r * down @ up`: for sampling, where
    no gradient flows, it keeps the model's graph as it is, so scale 0 gives the base model's outputs bit for
    bit (the hook's extra consumers change XLA's fusions, and with them the last bit of some sums).
    """
    flat, factors = traverse_util.flatten_dict(base), traverse_util.flatten_dict(params)
    for path, layer in self.layers.items():
      down = factors[path + (LORA_DOWN,)]
      up = factors[path + (LORA_UP,)] * (scale * layer.alpha / layer.rank)
      if fold:
        kernel = flat[path + ("kernel",)]
        flat[path + ("kernel",)] = kernel + jnp.einsum("...ir,ro->...io", down, up.reshape(up.shape[-2:]))
        continue
      if path + (LORA_DOWN,) in flat:
        down = jnp.concatenate([flat[path + (LORA_DOWN,)], down], axis=-1)
        up = jnp.concatenate([flat[path + (LORA_UP,)], up], axis=-2)
      flat[path + (LORA_DOWN,)], flat[path + (LORA_UP,)] = down, up
    return traverse_util.unflatten_dict(flat)

  # ----------------------------------------------------------------------------------------------- files

  def _torch_factors(self, params) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """module name -> (down, up) in PyTorch layouts: `[r, in, *k]` and `[out, r, *1]`."""
    factors = traverse_util.flatten_dict(jax.device_get(params))
    return {layer.name: tuple(_torch_layout(factors[path + (leaf,)]) for leaf in (LORA_DOWN, LORA_UP))
            for path, layer in self.layers.items()}

  def save_peft(self, path, params, prefix: str = "unet") -> Path:
    """The diffusers/PEFT layout that `load_lora_weights` reads, with rank and alpha in its metadata."""
    state, ranks, alphas = {}, {}, {}
    for layer in self.layers.values():
      ranks[layer.name], alphas[layer.name] = layer.rank, layer.alpha
    for name, (down, up) in self._torch_factors(params).items():
      state[f"{prefix}.{name}.lora_A.weight"], state[f"{prefix}.{name}.lora_B.weight"] = down, up
    r = max(set(ranks.values()), key=list(ranks.values()).count)
    alpha = max(set(alphas.values()), key=list(alphas.values()).count)
    config = {"r": r, "lora_alpha": alpha, "target_modules": sorted(ranks),
              "rank_pattern": {k: v for k, v in ranks.items() if v != r},
              "alpha_pattern": {k: v for k, v in alphas.items() if v != alpha}}
    metadata = {"format": "pt", "lora_adapter_metadata": json.dumps({f"{prefix}.{k}": v for k, v in config.items()})}
    return _write(path, state, metadata)

  def save_kohya(self, path, params) -> Path:
    """The `lora_unet_*` layout (`lora_down.weight`, `lora_up.weight`, `alpha`) of ComfyUI, A1111 and kohya."""
    state = {}
    for layer, (down, up) in zip(self.layers.values(), self._torch_factors(params).values()):
      key = KOHYA_PREFIX + layer.name.replace(".", "_")
      state[f"{key}.lora_down.weight"], state[f"{key}.lora_up.weight"] = down, up
      state[f"{key}.alpha"] = np.asarray(layer.alpha, np.float32)
    return _write(path, state, {"format": "pt"})

  @classmethod
  def load(cls, path, boxed: Mapping, layer_lists=frozenset()) -> tuple["LoRA", dict]:
    """(the LoRA, its params) from a diffusers/PEFT or kohya safetensors file, for the model of `boxed`."""
    layers = linear_layers(boxed, layer_lists)
    factors = read_factors(path, layers)
    unknown = sorted(set(factors) - set(layers))
    if unknown:
      raise UserError(f"{path}: {len(unknown)} LoRA layers are not in this model, e.g. {', '.join(unknown[:3])}; "
                      "was it made for another base model?")
    lora_layers, flat = {}, {}
    for name, (down, up, alpha) in factors.items():
      module_path, box = layers[name]
      rank = int(down.shape[0])
      layer = Layer(name, tuple(box.value.shape), tuple(box.names), rank, float(rank if alpha is None else alpha))
      lora_layers[module_path] = layer
      flat[module_path + (LORA_DOWN,)] = _flax_layout(down, layer.down_shape, f"{path}: {name} lora_down")
      flat[module_path + (LORA_UP,)] = _flax_layout(up, layer.up_shape, f"{path}: {name} lora_up")
    return cls(lora_layers), traverse_util.unflatten_dict(flat)


def _torch_layout(kernel) -> np.ndarray:
  return weights.flax_to_torch({"k": {"kernel": kernel}})["k.weight"]


def _flax_layout(tensor: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
  """A factor from its PyTorch layout, checked against the model's layer (the converter says what is wrong)."""
  abstract = {"k": {"kernel": jax.ShapeDtypeStruct(shape, jnp.float32)}}
  return weights.torch_to_flax({"k.weight": tensor}, abstract, name=name)["k"]["kernel"]


# ------------------------------------------------------------------------------------------- reading files

KOHYA_PREFIX = "lora_unet_"
PICKLE_MESSAGE = (
    "{path} is a pickle (the original's LoRA files are torch .pt); jaxlab reads safetensors and never unpickles. "
    "Convert it once where you trust the file: `python -c \"import torch, safetensors.torch as st; "
    "st.save_file({{k: v.float().contiguous() for k, v in torch.load('{path}', map_location='cpu', "
    "weights_only=True).items()}}, '{stem}.safetensors')\"`")


def _write(path, state: dict, metadata: dict) -> Path:
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  save_file(state, str(tmp), metadata=metadata)
  tmp.replace(path)
  return path


def _read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict]:
  from safetensors import safe_open
  with safe_open(str(path), framework="flax") as f:  # flax: bf16 / fp16 files read as they are
    return {k: np.asarray(f.get_tensor(k), np.float32) for k in f.keys()}, f.metadata() or {}


def read_factors(path, names) -> dict[str, tuple[np.ndarray, np.ndarray, float | None]]:
  """A LoRA file's UNet layers: diffusers module name -> (down `[r, in, *k]`, up `[out, r, *1]`, alpha or None
  when the file gives none, which means alpha = r), from the PEFT/diffusers or the kohya layout. `names` are the
  model's layer names, which kohya names are matched against."""
  path = Path(path)
  if path.suffix in weights.PICKLE_SUFFIXES:
    raise UserError(PICKLE_MESSAGE.format(path=path, stem=path.with_suffix("")))
  if not path.is_file():
    raise UserError(f"LoRA file {path} not found")
  try:
    state, metadata = _read_safetensors(path)
  except Exception as e:  # safetensors raises several types for a file that is not one
    raise UserError(f"{path} is not a safetensors file ({type(e).__name__}); a LoRA must be .safetensors") from None
  if any(k.startswith(KOHYA_PREFIX) for k in state):
    return _kohya_factors(path, state, names)
  if any(".lora_A." in k for k in state):
    return _peft_factors(path, state, metadata)
  raise UserError(f"{path} holds no LoRA in a layout jaxlab reads (diffusers/PEFT `lora_A`/`lora_B`, or kohya "
                  "`lora_unet_*.lora_down`)")


def _ignore_other_models(path, keys: list[str]) -> None:
  if keys:
    warnings.warn(f"{path}: {len(keys)} tensors for other models than the UNet (e.g. {keys[0]}) are ignored")


def _kohya_factors(path, state, names):
  _ignore_other_models(path, [k for k in state if not k.startswith(KOHYA_PREFIX)])
  # Kohya names are diffusers names with `_` for `.`, which only the model's own names undo.
  by_kohya = {KOHYA_PREFIX + name.replace(".", "_"): name for name in names}
  factors = {}
  for key, down in state.items():
    if key.startswith(KOHYA_PREFIX) and key.endswith(".lora_down.weight"):
      layer = key.removesuffix(".lora_down.weight")
      up = state.get(f"{layer}.lora_up.weight")
      if up is None:
        raise UserError(f"{path}: {layer} has lora_down but no lora_up")
      alpha = float(state[f"{layer}.alpha"]) if f"{layer}.alpha" in state else None
      factors[by_kohya.get(layer, layer)] = (down, up, alpha)
  return factors


def _peft_factors(path, state, metadata):
  raw = metadata.get("lora_adapter_metadata")
  config = json.loads(raw) if raw else {}
  prefix = "unet." if any(k.startswith("unet.") for k in state) else ""
  _ignore_other_models(path, [k for k in state if not k.startswith(prefix)])
  config = {k.removeprefix(prefix): v for k, v in config.items() if k.startswith(prefix)}
  if any(".lora_B." in k and k.endswith(".bias") for k in state) or any("lora_magnitude" in k for k in state):
    raise UserError(f"{path} is a LoRA with biases or DoRA magnitudes, which jaxlab does not apply")
  factors = {}
  for key, down in state.items():
    if key.startswith(prefix) and key.endswith(".lora_A.weight"):
      name = key[len(prefix):].removesuffix(".lora_A.weight")
      up = state.get(f"{prefix}{name}.lora_B.weight")
      if up is None:
        raise UserError(f"{path}: {name} has lora_A but no lora_B")
      factors[name] = (down, up, _peft_alpha(config, name))
  return factors


def _peft_alpha(config: dict, name: str) -> float | None:
  """PEFT's alpha for a module (its `alpha_pattern`, else `lora_alpha`), None without metadata (alpha = r)."""
  if "lora_alpha" not in config:
    return None
  for pattern, value in config.get("alpha_pattern", {}).items():
    if re.match(rf"(.*\.)?({pattern})$", name):
      return float(value)
  return float(config["lora_alpha"])
