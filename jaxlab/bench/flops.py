"""jaxlab's own FLOP count of a train step: three times the forward pass's matmul and convolution FLOPs.

XLA's cost analysis of the compiled step undercounts what the bench times: it counts the body of a loop once (a
scanned layer stack, 12 layers of VideoMAE-B, counts as one), it does not see into custom calls (cuDNN's and the
Pallas kernels' attention), and on a sharded program it reports one device's share; it also counts the
recomputation of rematerialised layers, which model FLOPs leave out. This count walks the forward pass's jaxpr
instead (scanned bodies times their length, attention traced as XLA's and convolutions as convolutions: the
same arithmetic, elementwise work ignored) and counts the backward pass as twice the forward (one matmul for the input gradient, one for the
weights'), the usual definition of a train step's model FLOPs. It overstates a step whose first layer needs no
input gradient by that layer's share (a few percent for a stem or patch embedding on a small model).
"""

import jax

from jaxlab.nn import attention, convolution

def _dot_flops(eqn) -> float:
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = eqn.params["dimension_numbers"]
  lhs, rhs = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
  rhs_free = [d for i, d in enumerate(rhs) if i not in rhs_contract and i not in rhs_batch]
  return 2.0 * _prod(lhs) * _prod(rhs_free)


def _conv_flops(eqn) -> float:
  # Every output element is one dot product over the kernel window and the kernel's input features.
  out = eqn.outvars[0].aval.shape
  rhs = eqn.invars[1].aval.shape
  out_features = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
  return 2.0 * _prod(out) * _prod(rhs) / out_features


def _prod(shape) -> float:
  total = 1.0
  for d in shape:
    total *= d
  return total


def _sub_jaxprs(eqn):
  for value in eqn.params.values():
    for item in value if isinstance(value, (tuple, list)) else (value,):
      inner = getattr(item, "jaxpr", item)
      if hasattr(inner, "eqns"):
        yield inner


def count(jaxpr) -> float:
  """Matmul and convolution FLOPs of `jaxpr` (a `Jaxpr` or `ClosedJaxpr`)."""
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  total = 0.0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "dot_general":
      total += _dot_flops(eqn)
    elif name == "conv_general_dilated":
      total += _conv_flops(eqn)
    elif name == "scan":
      total += eqn.params["length"] * count(eqn.params["jaxpr"])
    elif name == "cond":
      total += max(count(branch) for branch in eqn.params["branches"])
    else:
      total += sum(count(inner) for inner in _sub_jaxprs(eqn))
  return total


def forward_flops(fn, *args) -> float:
  """Matmul and convolution FLOPs of one call of `fn(*args)` (arrays or `jax.ShapeDtypeStruct`s), attention
  counted as XLA's and convolutions as convolutions (not as their CPU rewrites)."""
  with attention.forced_implementation("xla"), convolution.plain_convolutions():
    return count(jax.jit(fn).trace(*args).jaxpr)


def train_step_flops(loss_fn, *args) -> float:
  """Model FLOPs of one train step whose forward pass is `loss_fn(*args)`: 3 x forward."""
  return 3 * forward_flops(loss_fn, *args)
