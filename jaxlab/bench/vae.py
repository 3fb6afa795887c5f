"""`jaxlab bench vae`: our SD VAE beside diffusers' `AutoencoderKL` on the same config and batch.

Both sides run a reconstruction step: encode, decode the posterior mean, MSE to the input, backward and Adam
(the encoder and decoder that latent caching and generation run, with their gradients).
"""

import functools

import jax.numpy as jnp
import numpy as np
import optax

from jaxlab import training
from jaxlab.bench import common
from jaxlab.models import vae

SIZES = {
    "tiny": dict(config=vae.VAEConfig(block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                                      up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1,
                                      norm_num_groups=8), size=32, batch_size=1),
    "small": dict(config=vae.VAEConfig(block_out_channels=(32, 64, 128, 128)), size=64, batch_size=2),
    "paper": dict(config=vae.VAEConfig(), size=512, batch_size=2),  # SD 1.x/2.x's VAE at 512 px
}


def _task(module: vae.AutoencoderKL, size: int) -> training.Task:
  def init_variables(rng):
    return module.init(rng, jnp.zeros((1, size, size, 3)))

  def loss_fn(params, model_state, frozen, batch, rng):
    return jnp.mean((module.apply({"params": params}, batch["image"]) - batch["image"]) ** 2), ({}, model_state)

  return training.Task(init_variables=init_variables, loss_fn=loss_fn, optimizer=optax.adam(1e-5),
                       train_data=lambda: None)


def _reference_step(module: vae.AutoencoderKL, images: np.ndarray, dtype: str):
  """diffusers' AutoencoderKL with the same config: encode, decode the mean, MSE, backward and Adam."""
  import torch
  from diffusers import AutoencoderKL

  device = common.torch_device()
  model = AutoencoderKL.from_config(vae.FAMILY.to_config(module)).to(device).train()
  opt = torch.optim.Adam(model.parameters(), lr=1e-5)
  x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)
  loss = lambda: torch.nn.functional.mse_loss(model.decode(model.encode(x).latent_dist.mean).sample.float(), x)
  one, memory = common.torch_train_step(loss, model, opt, device, dtype)
  return one, memory, device


def run(batch_size=None, steps=10, dtype="float32", reference=True, config="small",
        out_dir=common.OUT_DIR) -> dict:
  size = common.size(SIZES, config, "vae")
  batch_size = batch_size or size["batch_size"]
  module = vae.AutoencoderKL(size["config"], dtype=jnp.dtype(dtype))
  pixels = size["size"]
  images = np.random.default_rng(0).uniform(-1, 1, (batch_size, pixels, pixels, 3)).astype(np.float32)
  setup = {"model": f"SD VAE {config}: channels {size['config'].block_out_channels}, {pixels}x{pixels} images",
           "step": "encode + decode the mean + MSE + backward + Adam"}
  return common.side_by_side(
      f"vae train step ({config})", setup, steps=steps, batch_size=batch_size, dtype=dtype,
      ours=("jaxlab AutoencoderKL (jit)", _task(module, pixels), {"image": images}),
      reference=("diffusers AutoencoderKL", "same FLOPs assumed as ours (same model and batch)",
                 functools.partial(_reference_step, module, images, dtype)) if reference else None,
      out_dir=out_dir)
