"""Repeated layers: one `nn.scan` over stacked parameters (fast to compile), or an unrolled loop."""

import jax
import jax.numpy as jnp
from flax import linen as nn

LAYERS_AXIS = "layers"  # the logical axis of a scanned stack's parameters: row i is layer i


def repeat_layers(layer: type[nn.Module], count: int, x, *args, name: str, scan: bool = True,
                  remat_policy: str | None = None, stack_outputs: bool = False, **layer_fields):
  """Runs `count` layers `layer(**layer_fields)` over `x`, inside the calling module's compact method.

  `layer` maps `(x, *args) -> (x, y)`; `args` (a mask, say) reach every layer unchanged. Returns the last `x`,
  or with `stack_outputs` `(x, ys)`, each layer's `y` stacked on a leading axis. With `scan`, the
  parameters are stacked on a leading axis named 'layers' under `name`; otherwise the layers are
  `name_0, name_1, ...`, as PyTorch's ModuleList keys them. `remat_policy` names a
  `jax.checkpoint_policies` entry to recompute activations in the backward pass.
  """
  if remat_policy is not None:
    layer = nn.remat(layer, policy=getattr(jax.checkpoint_policies, remat_policy), prevent_cse=not scan)
  if scan:
    stack = nn.scan(layer, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
                    in_axes=(nn.broadcast,) * len(args), length=count,
                    metadata_params={nn.PARTITION_NAME: LAYERS_AXIS})
    x, ys = stack(**layer_fields, name=name)(x, *args)
    return (x, ys) if stack_outputs else x
  ys = []
  for i in range(count):
    x, y = layer(**layer_fields, name=f"{name}_{i}")(x, *args)
    ys.append(y)
  return (x, jax.tree.map(lambda *y: jnp.stack(y), *ys)) if stack_outputs else x
