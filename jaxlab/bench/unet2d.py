"""`jaxlab bench unet2d`: our SD UNet train step beside diffusers' on the same config and batch.

Both sides run the SD training step: UNet forward on noisy latents with text embeddings, MSE to the noise,
backward and an Adam update.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab import training
from jaxlab.bench import common
from jaxlab.models import unet2d

SIZES = {
    # One level of SD 1.x's UNet (ResNets, self- and cross-attention) and its middle block.
    "tiny": dict(config=unet2d.UNet2DConfig(
        sample_size=8, block_out_channels=(32,), layers_per_block=(1,), norm_num_groups=8,
        down_block_types=("CrossAttnDownBlock2D",), up_block_types=("CrossAttnUpBlock2D",),
        only_cross_attention=(False,), cross_attention_dim=(16,), attention_head_dim=(2,),
        transformer_layers_per_block=(1,)), batch_size=1),
    # Small enough for a CPU; SD 1.x's structure (4 levels, 2 layers each, cross-attention on 3) made narrow.
    "small": dict(config=unet2d.UNet2DConfig(
        sample_size=32, block_out_channels=(32, 64, 128, 128), attention_head_dim=(4, 4, 4, 4)), batch_size=2),
    "paper": dict(config=unet2d.UNet2DConfig(), batch_size=4),  # SD v1.4's UNet, 64x64 latents (512 px)
}
TEXT_LENGTH = 77


def _task(module):
  def init_variables(rng):
    return module.init(rng, *unet2d.FAMILY.dummy_inputs(module))

  def loss_fn(params, model_state, frozen, batch, rng):
    prediction = module.apply({"params": params}, batch["x_t"], batch["t"], batch["text"])
    return jnp.mean((prediction - batch["noise"]) ** 2), ({}, model_state)

  return training.Task(init_variables=init_variables, loss_fn=loss_fn, optimizer=optax.adam(1e-5),
                       train_data=lambda: None)


def _reference_config(c: unet2d.UNet2DConfig) -> dict:
  return dict(sample_size=c.sample_size, block_out_channels=c.block_out_channels,
              layers_per_block=c.layers_per_block[0], attention_head_dim=list(c.attention_head_dim),
              cross_attention_dim=c.cross_attention_dim[0], down_block_types=c.down_block_types,
              up_block_types=c.up_block_types, norm_num_groups=c.norm_num_groups,
              use_linear_projection=c.use_linear_projection)


def _reference_step(c: unet2d.UNet2DConfig, batch: dict, dtype: str):
  """diffusers' UNet with the same config: forward, MSE, backward and Adam, as one blocking call."""
  import torch
  from diffusers import UNet2DConditionModel

  device = common.torch_device()
  model = UNet2DConditionModel(**_reference_config(c)).to(device).train()
  opt = torch.optim.Adam(model.parameters(), lr=1e-5)
  nchw = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).contiguous().to(device)
  x_t, noise = nchw(batch["x_t"]), nchw(batch["noise"])
  t, text = torch.from_numpy(batch["t"]).long().to(device), torch.from_numpy(batch["text"]).to(device)
  loss = lambda: torch.nn.functional.mse_loss(model(x_t, t, text).sample.float(), noise)
  one, memory = common.torch_train_step(loss, model, opt, device, dtype)
  return one, memory, device


def run(batch_size=None, steps=10, dtype="float32", reference=True, config="small",
        out_dir=common.OUT_DIR) -> dict:
  size = common.size(SIZES, config, "unet2d")
  c = size["config"]
  batch_size = batch_size or size["batch_size"]
  module = unet2d.UNet2DConditionModel(c, dtype=jnp.dtype(dtype))
  rng = np.random.default_rng(0)
  latents = (batch_size, c.sample_size, c.sample_size, c.in_channels)
  batch = {"x_t": rng.normal(size=latents).astype(np.float32), "noise": rng.normal(size=latents).astype(np.float32),
           "t": rng.integers(0, 1000, size=batch_size).astype(np.int32),
           "text": rng.normal(size=(batch_size, TEXT_LENGTH, c.cross_attention_dim[0])).astype(np.float32)}
  params = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(
      unet2d.FAMILY.abstract_variables(module)["params"]))
  setup = {"model": f"SD UNet {config}: channels {c.block_out_channels}, {params / 1e6:.1f}M params, "
                    f"{c.sample_size}x{c.sample_size} latents, {TEXT_LENGTH} text tokens",
           "step": "forward + MSE to noise + backward + Adam"}
  return common.side_by_side(
      "unet2d train step", setup, steps=steps, batch_size=batch_size, dtype=dtype,
      ours=("jaxlab UNet2DConditionModel (jit)", _task(module), batch),
      reference=("diffusers UNet2DConditionModel", "same FLOPs assumed as ours (same model and batch)",
                 functools.partial(_reference_step, c, batch, dtype)) if reference else None,
      out_dir=out_dir)
