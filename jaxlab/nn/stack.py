"""Repeated layers: one `nn.scan` over stacked parameters (fast to compile), or an unrolled loop."""

import jax
import jax.numpy as jnp
from flax import linen as nn

LAYERS_AXIS = "layers"  # the logical axis of a scanned stack's parameters: row i is layer i


def repeat_layers(layer: type[nn.Module], count: int, x, *args, name: str, scan: bool = True,
                  remat_policy: str | None = None, stack_outputs: bool = False, rows=None, **layer_fields):
  """Runs `count` layers `layer(**layer_fields)` over `x`, inside the calling module's compact method.

  `layer` maps `(x, *args) -> (x, y)`; `args` (a mask, say) reach every layer unchanged. Returns the last `x`,
  or with `stack_outputs` `(x, ys)`, each layer's `y` stacked on a leading axis. With `scan`, the
  parameters are stacked on a leading axis named 'layers' under `name`; otherwise the layers are
  `name_0, name_1, ...`, as PyTorch's ModuleList keys them. `remat_policy` names a
  `jax.checkpoint_policies` entry to recompute activations in the backward pass. `rows`, when given, has a
  leading axis of `count`: row i reaches layer i as its last argument (an up block's skip connections).
  """
  if remat_policy is not None:
    layer = nn.remat(layer, policy=getattr(jax.checkpoint_policies, remat_policy), prevent_cse=not scan)
  rows = () if rows is None else (rows,)
  if scan:
    stack = nn.scan(layer, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
                    in_axes=(nn.broadcast,) * len(args) + (0,) * len(rows), length=count,
                    metadata_params={nn.PARTITION_NAME: LAYERS_AXIS})
    x, ys = stack(**layer_fields, name=name)(x, *args, *rows)
    return (x, ys) if stack_outputs else x
  ys = []
  for i in range(count):
    x, y = layer(**layer_fields, name=f"{name}_{i}")(x, *args, *jax.tree.map(lambda r: r[i], rows))
    ys.append(y)
  return (x, jax.tree.map(lambda *y: jnp.stack(y), *ys)) if stack_outputs else x
