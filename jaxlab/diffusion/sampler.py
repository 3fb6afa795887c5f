"""Sampling with classifier-free guidance: one `lax.scan` over the steps, no Python loop per step.

A *denoiser* is `(x_t, t) -> model output`. `guided` builds one from a UNet, its params and the conditional
and unconditional text embeddings (one batch-2B UNet call per step); `sample` runs a whole chain (DDIM or
DPM-Solver++, `schedules.Chain`) on latents of any shape (`[B,H,W,C]` images, `[B,F,H,W,C]` videos);
`ddim_partial` runs the first steps of a DDIM chain, a traced number per example (training-time partial
sampling, as ESD and sliders do).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxlab.diffusion.schedules import Chain, NoiseSchedule

Denoiser = Callable[[jax.Array, jax.Array], jax.Array]


def guided(unet, params, cond, uncond, guidance_scale) -> Denoiser:
  """uncond + s * (cond - uncond), from one UNet call on the stacked [uncond, cond] batch.

  `cond` / `uncond` are the UNet's conditioning inputs after `(x, t)`: the text embeddings, or a tuple of them
  and SDXL's `added_cond_kwargs`.
  """
  both = jax.tree.map(lambda u, c: jnp.concatenate([u, c]), uncond, cond)
  conditions = both if isinstance(both, tuple) else (both,)

  def denoise(x, t):
    out = unet.apply({"params": params}, jnp.concatenate([x, x]), t, *conditions)
    out_uncond, out_cond = jnp.split(out, 2)
    return out_uncond + guidance_scale * (out_cond - out_uncond)

  return denoise


def sample(denoise: Denoiser, chain: Chain, x_T, return_trajectory: bool = False):
  """The chain from pure noise `x_T`. Returns x_0, or (x_0, [x after each step])."""

  def step(carry, one):
    x, x0_before = carry
    x, x0 = one.update(x, denoise(x, one.timesteps), x0_before)
    return (x, x0), x if return_trajectory else None

  (x, _), trajectory = jax.lax.scan(step, (x_T, jnp.zeros_like(x_T)), chain)
  return (x, trajectory) if return_trajectory else x


def ddim_sample(denoise: Denoiser, schedule: NoiseSchedule, x_T, timesteps, return_trajectory: bool = False):
  """DDIM from pure noise `x_T` over `timesteps` (noisiest first)."""
  return sample(denoise, schedule.ddim_chain(timesteps), x_T, return_trajectory)


def ddim_partial(denoise: Denoiser, schedule: NoiseSchedule, x, timesteps, prev_timesteps, num_steps):
  """The first `num_steps` steps of a DDIM chain (step i goes from timesteps[i] to prev_timesteps[i]).

  `num_steps` may be traced, and per example (`[B]`): the loop runs to the largest and holds each example
  still once its own steps are done, so one compiled loop serves every length.
  """
  timesteps, prev_timesteps = jnp.asarray(timesteps), jnp.asarray(prev_timesteps)
  num_steps = jnp.broadcast_to(jnp.asarray(num_steps), x.shape[:1])

  def step(i, x):
    moved = schedule.ddim_step(denoise(x, timesteps[i]), timesteps[i], prev_timesteps[i], x)
    return jnp.where((i < num_steps).reshape((-1,) + (1,) * (x.ndim - 1)), moved, x)

  return jax.lax.fori_loop(0, jnp.max(num_steps), step, x)
