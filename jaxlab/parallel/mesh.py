"""The device mesh and the one table that maps logical axis names to mesh axes.

Models name their parameter and activation axes logically (`('embed', 'mlp')`); only this table decides how
those names land on the mesh. Data parallelism shards the batch over `data` and `fsdp`; FSDP also shards
parameters over `fsdp`; tensor parallelism splits heads, MLP hidden units and conv output channels over
`tensor`. A run's config may change entries (`--config.sharding_rules.NAME=AXES`, see `rule_settings`).
"""

from collections.abc import Mapping, Sequence
import math
import sys

import jax
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec
import numpy as np
from flax import linen as nn

from jaxlab.errors import UserError

MESH_AXES = ("data", "fsdp", "tensor")

LOGICAL_AXIS_RULES = (
    # Activations.
    ("activation_batch", ("data", "fsdp")),
    ("activation_heads", "tensor"),
    ("activation_mlp", "tensor"),
    ("activation_length", None),
    ("activation_embed", None),
    ("activation_frames", None),
    ("activation_height", None),
    ("activation_width", None),
    ("activation_channels", None),
    # Parameters.
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("vocab", "tensor"),
    ("conv_out", ("fsdp", "tensor")),  # output channels: FSDP, and tensor parallelism (Megatron's columns)
    ("conv_group_out", None),  # grouped convs (see nn.conv)
    ("conv_in", None),
    ("norm", None),
    ("classes", None),
    ("layers", None),
)


def make_mesh(shape: Mapping[str, int] | Sequence[int] | None = None, devices=None) -> Mesh:
  """A mesh over `devices` (default: all) with Auto axes `('data', 'fsdp', 'tensor')`.

  `shape` gives each axis' size; one size may be -1 to take the remaining devices. The default is pure data
  parallelism. Auto axes matter: `jax.make_mesh` defaults to Explicit axes, under which Linen's logical
  constraints turn into assertions.
  """
  devices = list(jax.devices() if devices is None else devices)
  if shape is None:
    shape = {"data": -1}
  if isinstance(shape, Mapping):
    unknown = set(shape) - set(MESH_AXES)
    if unknown:
      raise UserError(f"unknown mesh axes {sorted(unknown)}; the mesh axes are {MESH_AXES}")
    sizes = [int(shape.get(name, 1)) for name in MESH_AXES]
  else:
    sizes = [int(s) for s in shape]
    if len(sizes) != len(MESH_AXES):
      raise UserError(f"mesh shape {sizes} must give one size for each of {MESH_AXES}")
  if sizes.count(-1) > 1:
    raise UserError(f"mesh shape {sizes}: at most one axis may be -1")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if len(devices) % known:
      raise UserError(f"mesh shape {sizes} does not divide the {len(devices)} available devices")
    sizes[sizes.index(-1)] = len(devices) // known
  if math.prod(sizes) != len(devices):
    raise UserError(
        f"mesh shape {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices but {len(devices)} are "
        "available; set --config.mesh.data=-1 to use them all")
  try:
    grid = mesh_utils.create_device_mesh(sizes, devices)
  except (AssertionError, ValueError, NotImplementedError):
    grid = np.asarray(devices).reshape(sizes)  # CPU and odd shapes: no physical topology to follow.
  return Mesh(grid, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def rule_settings(rules=LOGICAL_AXIS_RULES) -> dict[str, str]:
  """The rules as config settings (`config.sharding_rules`): logical name -> comma-separated mesh axes, '' for
  not split. `--config.sharding_rules.mlp=` stops splitting MLPs, `--config.sharding_rules.embed=fsdp,tensor`
  splits embeddings over both axes."""
  def text(axes):
    return ",".join(axes) if isinstance(axes, tuple) else axes or ""
  return {name: text(axes) for name, axes in rules}


def axis_rules(settings: Mapping[str, str] | None = None) -> tuple:
  """The rules of `settings` (as `rule_settings` writes them); the table above when there are none."""
  if not settings:
    return LOGICAL_AXIS_RULES
  rules = []
  for name, value in dict(settings).items():
    axes = tuple(a.strip() for a in str(value or "").split(",") if a.strip())
    if set(axes) - set(MESH_AXES):
      raise UserError(f"sharding_rules.{name}={value!r}: the mesh axes are {', '.join(MESH_AXES)} "
                      "(comma-separated, or empty for not split)")
    rules.append((name, axes[0] if len(axes) == 1 else axes or None))
  return tuple(rules)


def logical_sharding(logical_specs, mesh: Mesh, rules=LOGICAL_AXIS_RULES, shapes=None):
  """NamedShardings for a tree of logical PartitionSpecs (as `nn.get_partition_spec` returns).

  With `shapes` (the same tree of arrays or `ShapeDtypeStruct`s), a dimension that its mesh axes do not divide
  (the SD UNet's 4-channel `conv_out` under `fsdp=8`) is not split; the others still are. That is said once.
  """
  shardings = nn.logical_to_mesh_sharding(logical_specs, mesh, rules)
  if shapes is None:
    return shardings
  unsplit = []

  def fit(path, sharding: NamedSharding, x):
    spec = list(sharding.spec)
    for i, axes in enumerate(spec):
      size = math.prod(mesh.shape[a] for a in (axes if isinstance(axes, tuple) else (axes,)) if a)
      if x.shape[i] % size:
        unsplit.append(f"{jax.tree_util.keystr(path, simple=True, separator='/')} {tuple(x.shape)} over {axes}")
        spec[i] = None
    return NamedSharding(mesh, PartitionSpec(*spec))

  fitted = jax.tree_util.tree_map_with_path(fit, shardings, shapes)
  if unsplit:
    _say_once(f"not split, since the mesh axes do not divide them: {len(unsplit)} array dimensions "
              f"({'; '.join(unsplit[:4])}{'; ...' if len(unsplit) > 4 else ''})")
  return fitted


_SAID: set[str] = set()


def _say_once(message: str) -> None:
  if message not in _SAID and jax.process_index() == 0:
    _SAID.add(message)
    print(f"jaxlab: {message}", file=sys.stderr, flush=True)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())
