"""The MLP-approximated numeric functions: a 1-64-1 ReLU MLP fitted to f, on the original's recipe.

Recipe (FIND `train_functions.py`): 10,000 evenly spaced points of the function's domain, full-batch MSE,
Adam with learning rate 0.01, 10,000 epochs, PyTorch's default `nn.Linear` initialisation. The inputs are
not normalised, as in the original. Many small MLPs train at once under `jax.vmap`, in one compiled
`lax.scan` over the epochs; this is a data-generation step, not a method, so it does not use the train loop.
Non-finite targets (a rational function's pole on the grid) are left out of the loss.
"""

from collections.abc import Sequence
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from jaxlab import nn as jnn

HIDDEN = 64
POINTS = 10_000
EPOCHS = 10_000
LEARNING_RATE = 0.01


def torch_linear_init(fan_in: int):
  """PyTorch's default for nn.Linear weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / np.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class MLP(nn.Module):
  """x [N, 1] -> Linear(1, 64) -> ReLU -> Linear(64, 1)."""
  hidden: int = HIDDEN

  @nn.compact
  def __call__(self, x):
    h = jnn.dense(self.hidden, ("embed", "mlp"), kernel_init=torch_linear_init(1), bias_init=torch_linear_init(1),
                  name="fc1")(x)
    return jnn.dense(1, ("mlp", "embed"), kernel_init=torch_linear_init(self.hidden),
                     bias_init=torch_linear_init(self.hidden), name="fc2")(nn.relu(h))


def _train(keys, x, y, mask, epochs: int, learning_rate: float):
  """Trains one MLP per row of `y` ([F, N]); returns the params and each MLP's final test MSE."""
  model = MLP()
  optimizer = optax.adam(learning_rate)

  def one(key, target, weight):
    params = nn.meta.unbox(model.init(key, x[:, None]))["params"]

    def loss_fn(p):
      error = (model.apply({"params": p}, x[:, None])[:, 0] - target) ** 2
      return jnp.sum(jnp.where(weight, error, 0.0)) / jnp.maximum(jnp.sum(weight), 1)

    def step(carry, _):
      p, state = carry
      grads = jax.grad(loss_fn)(p)
      updates, state = optimizer.update(grads, state, p)
      return (optax.apply_updates(p, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), None, length=epochs)
    return params, loss_fn(params)

  return jax.vmap(one)(keys, y, mask)


_train_jit = jax.jit(_train, static_argnames=("epochs", "learning_rate"))


def fit(functions: Sequence, *, seed: int = 0, epochs: int = EPOCHS, points: int = POINTS,
        learning_rate: float = LEARNING_RATE, chunk: int = 50, log=None) -> list[tuple[dict, float]]:
  """Trains an MLP on each function's intended f over its domain; returns (weights, test MSE) each.

  Functions sharing a domain train together, `chunk` at a time (the test MSE is on the training grid, as
  the original evaluates on the same 10,000 points).
  """
  results = [None] * len(functions)
  by_domain = {}
  for i, function in enumerate(functions):
    by_domain.setdefault(tuple(function.domain), []).append(i)
  key = jax.random.key(seed)
  for domain, indices in sorted(by_domain.items()):
    x = np.linspace(domain[0], domain[1], points)
    for start in range(0, len(indices), chunk):
      batch = indices[start:start + chunk]
      targets = np.stack([functions[i].intended(x) for i in batch])
      finite = np.isfinite(targets)
      key, *keys = jax.random.split(key, len(batch) + 1)
      params, losses = _train_jit(jnp.stack(keys), jnp.asarray(x, jnp.float32),
                                  jnp.asarray(np.where(finite, targets, 0.0), jnp.float32), jnp.asarray(finite),
                                  epochs=epochs, learning_rate=learning_rate)
      params, losses = jax.device_get((params, losses))
      for j, i in enumerate(batch):
        weights = {"w1": params["fc1"]["kernel"][j, 0], "b1": params["fc1"]["bias"][j],
                   "w2": params["fc2"]["kernel"][j, :, 0], "b2": params["fc2"]["bias"][j]}
        results[i] = ({k: np.asarray(v, np.float32).tolist() for k, v in weights.items()}, float(losses[j]))
      if log:
        log(f"trained {sum(r is not None for r in results)}/{len(functions)} MLPs")
  return results


def fit_functions(functions: Sequence, **kwargs) -> list:
  """`functions` with weights for every `mlp`-variant function that has none yet (others unchanged)."""
  todo = [i for i, f in enumerate(functions) if f.variant == "mlp" and f.mlp is None]
  if not todo:
    return list(functions)
  fitted = fit([functions[i] for i in todo], **kwargs)
  out = list(functions)
  for i, (weights, loss) in zip(todo, fitted):
    out[i] = dataclasses.replace(functions[i], mlp=weights, approx_mse_error=loss)
  return out
