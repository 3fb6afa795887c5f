"""The DDPM noise schedule (forward process) and DDIM steps, as diffusers' `DDPMScheduler` / `DDIMScheduler`.

`NoiseSchedule.from_config` reads any diffusers `scheduler_config.json` (SD ships a PNDM one) the way
`DDIMScheduler.from_config` does: the beta schedule, `prediction_type`, `steps_offset`, `timestep_spacing`, and
DDIM's defaults for what the file does not set. Everything is float32, like diffusers, so timesteps and
trajectories agree with it.
"""

import dataclasses
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from jaxlab.errors import UserError, read_json

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
SPACINGS = ("leading", "trailing", "linspace")


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

  def ddim_step(self, model_output, t, prev_t, x_t):
    """Deterministic DDIM (eta = 0) from timestep `t` to `prev_t` (diffusers' `DDIMScheduler.step`)."""
    x0, eps = self.to_x0_and_eps(model_output, x_t, t)
    if self.clip_sample:
      x0 = jnp.clip(x0, -self.clip_sample_range, self.clip_sample_range)
    final = 1.0 if self.set_alpha_to_one else self.alphas_cumprod[0]
    a_prev = jnp.where(prev_t >= 0, self._alpha(jnp.maximum(prev_t, 0)), final)
    a_prev = _per_example(a_prev, x_t)
    return jnp.sqrt(a_prev) * x0 + jnp.sqrt(1 - a_prev) * eps


def _per_example(values, like):
  values = jnp.asarray(values, jnp.float32)
  return values.reshape(values.shape + (1,) * (like.ndim - values.ndim))
