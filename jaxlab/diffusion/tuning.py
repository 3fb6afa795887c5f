"""Pieces every method that tunes a diffusion model shares (ESD, sliders, motion): the pipeline folder (or a
tiny random one, image or video), a run's eval, training-time x_t by partial guided DDIM, image grids and loss
curves.

Latents may be images `[B, H, W, C]` or videos `[B, F, H, W, C]`: nothing here assumes which.
"""

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from jaxlab import parallel
from jaxlab.diffusion import adapters, sampler, tiny_video
from jaxlab.diffusion.pipeline import write_tiny_random, write_tiny_random_xl
from jaxlab.diffusion.schedules import NoiseSchedule
from jaxlab.errors import UserError

TINY_RANDOM = "tiny-random"
TINY_RANDOM_XL = "tiny-random-xl"
_TINY_WRITERS = {TINY_RANDOM: write_tiny_random, TINY_RANDOM_XL: write_tiny_random_xl}


def pipeline_folder(pretrained: str, workdir, sample_size: int, video: bool = False) -> Path:
  """`pretrained`, or for `tiny-random` (`tiny-random-xl`) a small random SD (SDXL) pipeline (latents
  `sample_size`²) written once under the workdir; with `video`, `tiny-random` is `tiny_video`'s random
  text-to-video one (its VAE untrained)."""
  writers = {TINY_RANDOM: _write_tiny_video} if video else _TINY_WRITERS
  if pretrained in writers:
    folder = Path(workdir) / pretrained
    parallel.write_once(f"{pretrained} pipeline", lambda: (folder / "model_index.json").is_file() or
                        writers[pretrained](folder, seed=0, sample_size=sample_size))
    return folder
  if not pretrained:
    raise UserError("set --config.pretrained to a local diffusers pipeline folder (e.g. SD v1.4), or "
                    f"{' / '.join(writers)}")
  return Path(pretrained)


def _write_tiny_video(folder: Path, seed: int, sample_size: int) -> Path:
  return tiny_video.write(folder, 2 * sample_size, seed=seed)


def evaluate(workdir, adapter: adapters.Adapter, step: int | None, metrics: Callable[[dict], dict],
             generation: Callable[[dict, int], dict] | None = None,
             report: Callable[[dict, int], str] | None = None) -> dict:
  """A tuning run's eval: the adapter's params restored from `workdir` (the latest checkpoint, or `step`'s),
  `metrics(params)` and, with `generation(params, step)`, its figures (samples made and scored on process 0, on
  its own devices); also written to `WORKDIR/eval/step_<N>.json`, and `report(results, step)`'s markdown to
  `step_<N>.md`."""
  params, step = adapters.restore(workdir, adapter, step)
  results = metrics(params)
  if generation is not None:
    results.update(parallel.write_once("generated samples", lambda: generation(params, step)) or {})
  out = Path(workdir) / "eval" / f"step_{step}.json"

  def write():
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"step": step, **results}, indent=2) + "\n")
    if report is not None:
      out.with_suffix(".md").write_text(report(results, step))

  parallel.write_once(out.name, write)
  return results


def ddim_chain(schedule: NoiseSchedule, steps: int) -> tuple[np.ndarray, np.ndarray]:
  """(timesteps, the timesteps they step to) of the `steps`-step DDIM chain on the pipeline's spacing, noisiest
  first, as diffusers' `DDIMScheduler.set_timesteps(steps)`."""
  timesteps = schedule.timesteps(steps)
  return timesteps, schedule.previous_timesteps(timesteps)


def partial_sample(unet, params, cond, uncond, guidance_scale, schedule: NoiseSchedule, chain, num_steps,
                   latent_shape: Sequence[int], rng) -> jax.Array:
  """x_t for training: pure noise of `latent_shape` after the first `num_steps` steps (traced, one per example)
  of the DDIM `chain` with classifier-free guidance between `cond` and `uncond`."""
  x_T = jax.random.normal(rng, tuple(latent_shape), jnp.float32)
  denoise = sampler.guided(unet, params, cond, uncond, guidance_scale)
  timesteps, previous = chain
  return sampler.ddim_partial(denoise, schedule, x_T, timesteps, previous, num_steps)


def image_grid(rows: Sequence[Sequence[np.ndarray]], scale: int = 1) -> Image.Image:
  """Rows of uint8 images `[H, W, 3]` side by side, enlarged `scale` times (nearest) so tiny images stay
  visible."""
  grid = np.concatenate([np.concatenate(list(row), axis=1) for row in rows], axis=0)
  image = Image.fromarray(grid)
  return image if scale == 1 else image.resize((grid.shape[1] * scale, grid.shape[0] * scale),
                                               Image.Resampling.NEAREST)


def loss_curve(losses: Sequence[tuple[int, float]], path, title: str, ylabel: str = "loss") -> Path:
  """A PNG of (step, loss) pairs."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5, 3))
  ax.plot(*zip(*losses), marker="o")
  ax.set(xlabel="step", ylabel=ylabel, title=title)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
  return Path(path)
