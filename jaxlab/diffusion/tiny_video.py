"""A small text-to-video pipeline (motion customisation's tiny config, tests and demo), in the diffusers layout.

`write(folder, size, frames)` writes a `TextToVideoSDPipeline` folder for videos of `size` px: a random 2-level
`UNet3DConditionModel`, the tiny random text encoder and tokenizer of `pipeline`, ModelScope's
DDIM scheduler config, and a small VAE. Given `frames`, the VAE is trained briefly (the one train loop, a few
hundred steps) to reconstruct them: a random VAE's decoder does not invert its encoder, so the decoded samples
of a random pipeline would show nothing. Its scaling factor is then set from its latents' standard deviation on
`frames`, as SD's 0.18215 was. Without `frames` (tests) the VAE stays random.
"""

import dataclasses
import shutil
from pathlib import Path

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from jaxlab import training
from jaxlab.diffusion import pipeline
from jaxlab.models import weights

TINY_UNET3D = {
    "_class_name": "UNet3DConditionModel", "in_channels": 4, "out_channels": 4, "block_out_channels": [32, 64],
    "layers_per_block": 1, "down_block_types": ["CrossAttnDownBlock3D", "DownBlock3D"],
    "up_block_types": ["UpBlock3D", "CrossAttnUpBlock3D"], "cross_attention_dim": 32, "attention_head_dim": 8,
    "norm_num_groups": 8,
}
# text-to-video-ms-1.7b's scheduler/scheduler_config.json.
MS_SCHEDULER_CONFIG = {
    "_class_name": "DDIMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000, "set_alpha_to_one": False, "steps_offset": 1, "clip_sample": False,
    "prediction_type": "epsilon", "trained_betas": None,
}
KL_WEIGHT = 1e-6  # SD's autoencoder: reconstruction first, the KL term only keeps the latents bounded


def _vae_task(vae, frames: np.ndarray, lr: float, batch_size: int, seed: int) -> training.Task:
  def init_variables(rng):
    return vae.init(rng, jnp.zeros((1,) + frames.shape[1:], jnp.float32))

  def loss_fn(params, model_state, frozen, batch, rng):
    x = batch.astype(jnp.float32) / 127.5 - 1.0
    mean, logvar = vae.apply({"params": params}, x, method="encode")
    z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mean.shape)
    reconstruction = jnp.mean((vae.apply({"params": params}, z, method="decode") - x) ** 2)
    kl = 0.5 * jnp.mean(mean**2 + jnp.exp(logvar) - 1.0 - logvar)
    return reconstruction + KL_WEIGHT * kl, ({"reconstruction_mse": reconstruction}, model_state)

  def train_data():
    ds = grain.MapDataset.source(frames)[jax.process_index()::jax.process_count()]
    ds = ds.shuffle(seed=seed).repeat()
    return ds.batch(batch_size // jax.process_count(), drop_remainder=True).to_iter_dataset()

  return training.Task(init_variables=init_variables, loss_fn=loss_fn, optimizer=optax.adam(lr),
                       train_data=train_data)


def train_vae(vae, frames: np.ndarray, workdir, steps: int, batch_size: int, lr: float, seed: int = 0):
  """(params, the last reconstruction MSE in [-1, 1] pixels) of `vae` trained to reconstruct uint8 `frames`."""
  config = training.base_config()
  config.update(dict(seed=seed, total_steps=steps, batch_size=batch_size, log_every=max(1, steps // 4),
                     checkpoint_every=steps, keep_checkpoints=1, async_checkpointing=False))
  task = _vae_task(vae, frames, lr, batch_size, seed)
  result = training.train(task, config, workdir)
  abstract = nn.meta.unbox(jax.eval_shape(task.init_variables, jax.random.key(0)))["params"]
  state, _ = training.restore_for_eval(workdir, {"params": abstract})
  return jax.device_get(state["params"]), result["reconstruction_mse"]


def latent_std(vae, params, frames: np.ndarray, batch: int = 64) -> float:
  encode = jax.jit(lambda x: vae.apply({"params": params}, x.astype(jnp.float32) / 127.5 - 1.0, method="encode")[0])
  return float(np.std(np.concatenate([np.asarray(encode(frames[i:i + batch])) for i in range(0, len(frames), batch)])))


def write(folder, size: int, frames: np.ndarray | None = None, unet_config: dict = TINY_UNET3D,
          vae_widths=(32, 64), vae_steps: int = 300, vae_batch_size: int = 32, vae_lr: float = 2e-3,
          seed: int = 0) -> Path:
  """The pipeline folder for `size`-px videos, its VAE trained on uint8 `frames` `[N, size, size, 3]` if given."""
  folder = Path(folder)
  vae = pipeline.tiny_vae(size, vae_widths)
  if frames is None:
    vae_params = pipeline.random_params(vae, jnp.zeros((1, size, size, 3)), seed=seed + 1)
  else:
    print(f"writing a tiny text-to-video pipeline to {folder}: training its VAE on {len(frames)} frames ...",
          flush=True)
    run = folder.parent / f"{folder.name}-vae-training"
    vae_params, mse = train_vae(vae, frames, run, vae_steps, vae_batch_size, vae_lr, seed)
    vae = vae.clone(config=dataclasses.replace(vae.config, scaling_factor=1 / latent_std(vae, vae_params, frames)))
    print(f"  VAE reconstruction MSE {mse:.4f} (pixels in [-1, 1]), scaling factor {vae.config.scaling_factor:.4f}",
          flush=True)
    shutil.rmtree(run)
  family = weights.family_for(unet_config["_class_name"])
  latent = size // 2 ** (len(vae_widths) - 1)
  unet = family.from_config({**unet_config, "sample_size": latent}, dtype=jnp.float32, param_dtype=jnp.float32)
  tokenizer = pipeline.tiny_tokenizer()
  text_encoder, text_params = pipeline.tiny_text_encoder(tokenizer, seed=seed + 2)
  unet_params = pipeline.random_params(unet, *family.dummy_inputs(unet), seed=seed)
  pipeline.write_pipeline(folder, unet, unet_params, vae, vae_params, text_encoder, text_params, tokenizer,
                          MS_SCHEDULER_CONFIG, pipeline_class="TextToVideoSDPipeline")
  return folder
