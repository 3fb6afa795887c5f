"""The DDPM noise schedule (forward process) and the samplers' steps, as diffusers' `DDPMScheduler`,
`DDIMScheduler` and `DPMSolverMultistepScheduler` (DPM-Solver++, orders 1 and 2).

`NoiseSchedule.from_config` reads any diffusers `scheduler_config.json` (SD ships a PNDM one) the way
`DDIMScheduler.from_config` does: the beta schedule, `prediction_type`, `steps_offset`, `timestep_spacing`, and
DDIM's defaults for what the file does not set; `DPMSolver.from_config` reads it as
`DPMSolverMultistepScheduler.from_config` does, with that class's defaults. Everything is float32, like
diffusers, so timesteps and trajectories agree with it.

A sampler's whole run is a `Chain`: per step, the timestep the model is queried at and the coefficients of

  x <- c_x x + c_x0 x0 + c_eps eps + c_d1 (x0 - x0 of the step before)

where (x0, eps) are the model's predictions of the clean sample and the noise. DDIM is (0, sqrt(abar_prev),
sqrt(1 - abar_prev), 0); DPM-Solver++ puts its exponential-integrator weights in c_x and c_x0 and its
second-order correction in c_d1. `sampler.sample` runs any chain in one `lax.scan`.
"""

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxlab.errors import UserError, read_json

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
SPACINGS = ("leading", "trailing", "linspace")
SCHEDULERS = ("ddim", "dpmsolver++")


def _torch_linspace(start: float, end: float, n: int) -> np.ndarray:
  """`torch.linspace(..., dtype=float32)` to the bit: float32 ends and step, filled from both ends."""
  start, end = np.float32(start), np.float32(end)
  step = np.float32((end - start) / np.float32(n - 1))
  i = np.arange(n)
  return np.where(i < n // 2, start + step * i, end - step * (n - 1 - i)).astype(np.float32)


def betas(schedule: str, num_train_timesteps: int, beta_start: float, beta_end: float) -> np.ndarray:
  if schedule == "linear":
    return _torch_linspace(beta_start, beta_end, num_train_timesteps)
  if schedule == "scaled_linear":
    return _torch_linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps) ** 2
  if schedule == "squaredcos_cap_v2":
    alpha_bar = lambda t: np.cos((t + 0.008) / 1.008 * np.pi / 2) ** 2
    t = np.arange(num_train_timesteps, dtype=np.float64) / num_train_timesteps
    values = np.minimum(1 - alpha_bar(t + 1 / num_train_timesteps) / alpha_bar(t), 0.999)
    return values.astype(np.float32)
  raise UserError(f"beta_schedule {schedule!r} is not supported; use linear, scaled_linear or squaredcos_cap_v2")


@dataclasses.dataclass(frozen=True, eq=False)
class NoiseSchedule:
  """q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), and the DDIM update between two of its timesteps."""
  alphas_cumprod: np.ndarray  # float32 [num_train_timesteps]
  prediction_type: str = "epsilon"
  timestep_spacing: str = "leading"
  steps_offset: int = 0
  clip_sample: bool = True
  clip_sample_range: float = 1.0
  set_alpha_to_one: bool = True

  @classmethod
  def from_config(cls, config: dict) -> "NoiseSchedule":
    """From a diffusers scheduler config dict, with `DDIMScheduler`'s defaults for missing keys."""
    if config.get("trained_betas") is not None:
      beta = np.asarray(config["trained_betas"], np.float32)
    else:
      beta = betas(config.get("beta_schedule", "linear"), config.get("num_train_timesteps", 1000),
                   config.get("beta_start", 0.0001), config.get("beta_end", 0.02))
    if config.get("rescale_betas_zero_snr"):
      raise UserError("rescale_betas_zero_snr schedules are not supported")
    prediction_type = config.get("prediction_type", "epsilon")
    spacing = config.get("timestep_spacing", "leading")
    if prediction_type not in PREDICTION_TYPES or spacing not in SPACINGS:
      raise UserError(f"scheduler prediction_type {prediction_type!r} / timestep_spacing {spacing!r} not supported; "
                      f"use one of {PREDICTION_TYPES} / {SPACINGS}")
    # torch accumulates a float32 cumprod in float64.
    alphas_cumprod = np.cumprod((1.0 - beta).astype(np.float64)).astype(np.float32)
    return cls(alphas_cumprod, prediction_type, spacing,
               int(config.get("steps_offset", 0)), bool(config.get("clip_sample", True)),
               float(config.get("clip_sample_range", 1.0)), bool(config.get("set_alpha_to_one", True)))

  @classmethod
  def from_folder(cls, folder) -> "NoiseSchedule":
    path = Path(folder) / "scheduler_config.json"
    if not path.is_file():
      raise UserError(f"{folder} has no scheduler_config.json; is it the scheduler/ folder of a diffusers pipeline?")
    return cls.from_config(read_json(path, "a diffusers scheduler config"))

  @property
  def num_train_timesteps(self) -> int:
    return len(self.alphas_cumprod)

  def timesteps(self, num_steps: int) -> np.ndarray:
    """The sampling timesteps, from noisiest to cleanest (diffusers' `set_timesteps`)."""
    n = self.num_train_timesteps
    if not 0 < num_steps <= n:
      raise UserError(f"number of sampling steps must be in 1..{n}, got {num_steps}")
    if self.timestep_spacing == "linspace":
      return np.linspace(0, n - 1, num_steps).round()[::-1].astype(np.int64)
    if self.timestep_spacing == "leading":
      return (np.arange(num_steps) * (n // num_steps))[::-1].astype(np.int64) + self.steps_offset
    return np.round(np.arange(n, 0, -n / num_steps)).astype(np.int64) - 1

  def previous_timesteps(self, timesteps: np.ndarray) -> np.ndarray:
    """The timestep each DDIM step lands on: t - n_train // n_steps (negative: the final, clean step)."""
    return np.asarray(timesteps) - self.num_train_timesteps // len(timesteps)

  def _alpha(self, t):
    return jnp.asarray(self.alphas_cumprod)[t]

  def add_noise(self, x0, noise, t):
    """x_t for per-example timesteps `t` (`[B]`) or one scalar timestep."""
    a = _per_example(self._alpha(t), x0)
    return jnp.sqrt(a) * x0 + jnp.sqrt(1 - a) * noise

  def velocity(self, x0, noise, t):
    """The v-prediction target sqrt(abar) noise - sqrt(1 - abar) x_0."""
    a = _per_example(self._alpha(t), x0)
    return jnp.sqrt(a) * noise - jnp.sqrt(1 - a) * x0

  def to_x0_and_eps(self, model_output, x_t, t):
    """(predicted x_0, predicted noise) from the model's output, whatever it predicts."""
    a = _per_example(self._alpha(t), x_t)
    if self.prediction_type == "epsilon":
      return (x_t - jnp.sqrt(1 - a) * model_output) / jnp.sqrt(a), model_output
    if self.prediction_type == "v_prediction":
      return jnp.sqrt(a) * x_t - jnp.sqrt(1 - a) * model_output, jnp.sqrt(a) * model_output + jnp.sqrt(1 - a) * x_t
    return model_output, (x_t - jnp.sqrt(a) * model_output) / jnp.sqrt(1 - a)

  def denoised(self, model_output, x_t, t):
    """(x0, eps) as a sampler step uses them: x0 clipped when the config asks (eps is not recomputed)."""
    x0, eps = self.to_x0_and_eps(model_output, x_t, t)
    if self.clip_sample:
      x0 = jnp.clip(x0, -self.clip_sample_range, self.clip_sample_range)
    return x0, eps

  def _alpha_prev(self, prev_t, xp=jnp):
    """abar at the timestep a DDIM step lands on; below 0, the final value (1 with `set_alpha_to_one`)."""
    final = 1.0 if self.set_alpha_to_one else self.alphas_cumprod[0]
    return xp.where(prev_t >= 0, xp.asarray(self.alphas_cumprod)[xp.maximum(prev_t, 0)], final)

  def ddim_step(self, model_output, t, prev_t, x_t):
    """Deterministic DDIM (eta = 0) from timestep `t` to `prev_t` (diffusers' `DDIMScheduler.step`)."""
    x0, eps = self.denoised(model_output, x_t, t)
    a_prev = _per_example(self._alpha_prev(prev_t), x_t)
    return jnp.sqrt(a_prev) * x0 + jnp.sqrt(1 - a_prev) * eps

  def ddim_chain(self, timesteps) -> "Chain":
    """The DDIM chain over `timesteps` (noisiest first): host arrays for host timesteps (a sampler places them
    once, explicitly), else traced."""
    xp = np if isinstance(timesteps, np.ndarray) else jnp
    timesteps = xp.asarray(timesteps, np.int32)
    a_prev = self._alpha_prev(timesteps - self.num_train_timesteps // timesteps.shape[0], xp).astype(np.float32)
    zeros = xp.zeros_like(a_prev)
    return Chain(timesteps, zeros, xp.sqrt(a_prev), xp.sqrt(1 - a_prev), zeros, self)

  def chain(self, num_steps: int) -> "Chain":
    return self.ddim_chain(self.timesteps(num_steps))


@struct.dataclass
class Chain:
  """A whole sampling run as per-step arrays (leading axis = step, noisiest first); see the module docstring."""
  timesteps: jax.Array
  c_x: jax.Array
  c_x0: jax.Array
  c_eps: jax.Array
  c_d1: jax.Array
  schedule: NoiseSchedule = struct.field(pytree_node=False)  # predictions -> (x0, eps)

  def __len__(self) -> int:
    return self.timesteps.shape[0]

  def update(self, x, model_output, x0_before):
    """One step (on a chain sliced to one step): (the next x, this step's x0)."""
    x0, eps = self.schedule.denoised(model_output, x, self.timesteps)
    return self.c_x * x + self.c_x0 * x0 + self.c_eps * eps + self.c_d1 * (x0 - x0_before), x0


@dataclasses.dataclass(frozen=True, eq=False)
class DPMSolver:
  """DPM-Solver++ multistep (Lu et al. 2022), as diffusers' `DPMSolverMultistepScheduler` with
  `algorithm_type='dpmsolver++'`: order 1 or 2 (`midpoint` or `heun`), `lower_order_final`, `euler_at_final`,
  `final_sigmas_type`, `lambda_min_clipped`, and the schedule's betas, prediction type and timestep spacing."""
  schedule: NoiseSchedule
  solver_order: int = 2
  solver_type: str = "midpoint"
  lower_order_final: bool = True
  euler_at_final: bool = False
  final_sigmas_type: str = "zero"
  lambda_min_clipped: float = -float("inf")

  @classmethod
  def from_config(cls, config: dict) -> "DPMSolver":
    """From a diffusers scheduler config dict (any class's), with `DPMSolverMultistepScheduler`'s defaults."""
    _check_dpm_config(config)
    # DPM-Solver's own defaults where DDIM's differ; it never clips x0.
    schedule = NoiseSchedule.from_config({"timestep_spacing": "linspace", **config, "clip_sample": False})
    return cls(schedule, int(config.get("solver_order", 2)), config.get("solver_type", "midpoint"),
               bool(config.get("lower_order_final", True)), bool(config.get("euler_at_final", False)),
               config.get("final_sigmas_type", "zero"), float(config.get("lambda_min_clipped", -float("inf"))))

  def timesteps(self, num_steps: int) -> np.ndarray:
    """The sampling timesteps, noisiest first (`DPMSolverMultistepScheduler.set_timesteps`)."""
    s = self.schedule
    n = s.num_train_timesteps
    if not 0 < num_steps <= n:
      raise UserError(f"number of sampling steps must be in 1..{n}, got {num_steps}")
    abar = s.alphas_cumprod
    lambdas = np.log(np.sqrt(abar)) - np.log(np.sqrt(1 - abar))
    last = n - int(np.searchsorted(lambdas[::-1], np.float32(self.lambda_min_clipped)))
    if s.timestep_spacing == "linspace":
      return np.linspace(0, last - 1, num_steps + 1).round()[::-1][:-1].astype(np.int64)
    if s.timestep_spacing == "leading":
      ratio = last // (num_steps + 1)
      return (np.arange(num_steps + 1) * ratio).round()[::-1][:-1].astype(np.int64) + s.steps_offset
    return np.arange(last, 0, -n / num_steps).round().astype(np.int64) - 1

  def sigmas(self, timesteps: np.ndarray) -> np.ndarray:
    """sqrt((1 - abar) / abar) at each timestep and after the last step (float32, as diffusers)."""
    abar = self.schedule.alphas_cumprod
    sigmas = ((1 - abar) / abar) ** np.float32(0.5)
    last = sigmas[0] if self.final_sigmas_type == "sigma_min" else 0.0
    return np.concatenate([sigmas[timesteps], [last]]).astype(np.float32)

  def chain(self, num_steps: int) -> Chain:
    timesteps = self.timesteps(num_steps)
    sigma = self.sigmas(timesteps).astype(np.float64)
    alpha = 1 / np.sqrt(sigma**2 + 1)
    sigma = sigma * alpha
    i = np.arange(num_steps)
    # sigma = 0 after the last step: lambda = inf there, exp(-h) = 0, and the unused second-order terms inf.
    with np.errstate(divide="ignore", invalid="ignore"):
      lam = np.log(alpha) - np.log(sigma)
      h = lam[i + 1] - lam[i]
      c_x = sigma[i + 1] / sigma[i]
      c_x0 = -alpha[i + 1] * np.expm1(-h)
      r0 = np.concatenate([[np.inf], (lam[1:-1] - lam[:-2]) / h[1:]])  # h_0 / h; none before the first step
      if self.solver_type == "midpoint":
        c_d1 = 0.5 * c_x0 / r0
      else:
        c_d1 = alpha[i + 1] * (np.expm1(-h) / h + 1) / r0
    final = (i == num_steps - 1) & (self.euler_at_final or (self.lower_order_final and num_steps < 15)
                                    or self.final_sigmas_type == "zero")
    first_order = (self.solver_order == 1) | (i == 0) | final
    c_d1 = np.where(first_order, 0.0, c_d1)
    f32 = lambda a: np.asarray(a, np.float32)  # host arrays, as `NoiseSchedule.chain`'s
    return Chain(np.asarray(timesteps, np.int32), f32(c_x), f32(c_x0), f32(np.zeros(num_steps)), f32(c_d1),
                 self.schedule)


def _check_dpm_config(config: dict) -> None:
  problems = {
      "algorithm_type": (config.get("algorithm_type", "dpmsolver++"), ("dpmsolver++",)),
      "solver_order": (config.get("solver_order", 2), (1, 2)),
      "solver_type": (config.get("solver_type", "midpoint"), ("midpoint", "heun")),
      "final_sigmas_type": (config.get("final_sigmas_type", "zero"), ("zero", "sigma_min")),
      "variance_type": (config.get("variance_type"), (None,)),
  }
  for key in ("thresholding", "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas",
              "use_flow_sigmas", "use_dynamic_shifting"):
    problems[key] = (bool(config.get(key, False)), (False,))
  for key, (value, allowed) in problems.items():
    if value not in allowed:
      raise UserError(f"DPM-Solver {key}={value!r} is not supported; use {' or '.join(map(repr, allowed))}")


def scheduler_from_folder(folder, kind: str = "auto") -> NoiseSchedule | DPMSolver:
  """The sampler a pipeline's `scheduler/` folder asks for: `kind` 'ddim', 'dpmsolver++', or 'auto' (DPM-Solver++
  when the folder's class is `DPMSolverMultistepScheduler`, else DDIM)."""
  path = Path(folder) / "scheduler_config.json"
  if not path.is_file():
    raise UserError(f"{folder} has no scheduler_config.json; is it the scheduler/ folder of a diffusers pipeline?")
  config = read_json(path, "a diffusers scheduler config")
  if kind == "auto":
    kind = "dpmsolver++" if config.get("_class_name") == "DPMSolverMultistepScheduler" else "ddim"
  if kind not in SCHEDULERS:
    raise UserError(f"scheduler {kind!r}: use auto, {' or '.join(SCHEDULERS)}")
  return DPMSolver.from_config(config) if kind == "dpmsolver++" else NoiseSchedule.from_config(config)


def _per_example(values, like):
  values = jnp.asarray(values, jnp.float32)
  return values.reshape(values.shape + (1,) * (like.ndim - values.ndim))
