"""`jaxlab bench unet3d`: the motion-customisation train step of our 3D UNet beside diffusers' on the same config.

Both sides run the method's step on [instance, regularisation] clips: the UNet forward on noisy video latents
with text embeddings, MSE to the noise, backward into the trained subset only (temporal attention, temporal
convolutions, cross-attention K/V; the rest frozen), gradient clipping and an AdamW update.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab import training
from jaxlab.bench import common
from jaxlab.diffusion import finetune
from jaxlab.diffusion.pipeline import random_params
from jaxlab.methods import motion
from jaxlab.models import unet3d

MODULES = ("cross", "temporal", "temp_convs")
SIZES = {
    # One level and the mid block: every kind of trained layer, the smallest compile (`bench all --dry-run`).
    "tiny": dict(config=unet3d.UNet3DConfig(block_out_channels=(16,), down_block_types=("CrossAttnDownBlock3D",),
                                            up_block_types=("CrossAttnUpBlock3D",), layers_per_block=1,
                                            attention_head_dim=8, cross_attention_dim=16, norm_num_groups=8,
                                            sample_size=8),
                 frames=2, batch_size=2, text_dim=16),
    # ModelScope's structure (4 levels, 2 layers each, cross-attention on 3) made narrow, 8 frames of 16x16 latents.
    "small": dict(config=unet3d.UNet3DConfig(block_out_channels=(32, 64, 128, 128), attention_head_dim=8,
                                             cross_attention_dim=64, norm_num_groups=8, sample_size=16),
                  frames=8, batch_size=2, text_dim=64),
    # text-to-video-ms-1.7b / ZeroScope v2: 16 frames at 384 px (48x48 latents), 1 instance + 1 regularisation clip.
    "paper": dict(config=unet3d.UNet3DConfig(sample_size=48), frames=16, batch_size=2, text_dim=1024),
}
TEXT_LENGTH = 77


def _task(module, base: dict, selected: frozenset, lr: float = 5e-6):
  adapter = finetune.Subset(selected.__contains__)
  trainable = adapter.initial(base)

  def loss_fn(params, model_state, frozen, batch, rng):
    prediction = module.apply({"params": adapter.apply(params, frozen)}, batch["x_t"], batch["t"], batch["text"])
    return jnp.mean((prediction.astype(jnp.float32) - batch["noise"]) ** 2), ({}, model_state)

  optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(lr, weight_decay=0.01))
  return training.Task(init_variables=lambda rng: {"params": jax.tree.map(jnp.zeros_like, trainable)},
                       loss_fn=loss_fn, optimizer=optimizer, train_data=lambda: None, frozen=base)


def _reference_config(c: unet3d.UNet3DConfig) -> dict:
  return dict(sample_size=c.sample_size, block_out_channels=c.block_out_channels, layers_per_block=c.layers_per_block,
              attention_head_dim=c.attention_head_dim, cross_attention_dim=c.cross_attention_dim,
              down_block_types=c.down_block_types, up_block_types=c.up_block_types, norm_num_groups=c.norm_num_groups)


def _reference_step(c: unet3d.UNet3DConfig, batch: dict, dtype: str):
  """diffusers' UNet3DConditionModel with the same config and trained subset, as one blocking call."""
  import torch
  from diffusers import UNet3DConditionModel

  device = common.torch_device()
  model = UNet3DConditionModel(**_reference_config(c)).to(device).train()
  rule = motion.trainable_rule(MODULES)
  for name, p in model.named_parameters():
    p.requires_grad_(rule(name))
  opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-6, weight_decay=0.01)
  ncfhw = lambda a: torch.from_numpy(a).permute(0, 4, 1, 2, 3).contiguous().to(device)
  x_t, noise = ncfhw(batch["x_t"]), ncfhw(batch["noise"])
  t, text = torch.from_numpy(batch["t"]).long().to(device), torch.from_numpy(batch["text"]).to(device)
  loss = lambda: torch.nn.functional.mse_loss(model(x_t, t, text).sample.float(), noise)
  params = [p for p in model.parameters() if p.requires_grad]
  one, memory = common.torch_train_step(loss, model, opt, device, dtype, clip_norm=1.0)
  return one, memory, device, sum(p.numel() for p in params)


def _reference(c: unet3d.UNet3DConfig, batch: dict, dtype: str):
  """The reference step as `common.side_by_side` runs it, in the reference process (hence module-level)."""
  return _reference_step(c, batch, dtype)[:3]


def random_batch(size: dict, batch_size: int) -> dict:
  c, rng = size["config"], np.random.default_rng(0)
  latents = (batch_size, size["frames"], c.sample_size, c.sample_size, c.in_channels)
  return {"x_t": rng.normal(size=latents).astype(np.float32), "noise": rng.normal(size=latents).astype(np.float32),
          "t": rng.integers(0, 1000, size=batch_size).astype(np.int32),
          "text": rng.normal(size=(batch_size, TEXT_LENGTH, size["text_dim"])).astype(np.float32)}


def run(batch_size=None, steps=10, dtype="float32", reference=True, config="small", remat_policy=None,
        out_dir=common.OUT_DIR) -> dict:
  size = common.size(SIZES, config, "unet3d")
  c = size["config"]
  batch_size = batch_size or size["batch_size"]
  module = unet3d.UNet3DConditionModel(c, dtype=jnp.dtype(dtype), remat_policy=remat_policy)
  base = random_params(module, *unet3d.FAMILY.dummy_inputs(module))
  selected = finetune.select(base, motion.trainable_rule(MODULES), unet3d.NAMING)
  trained = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(finetune.Subset(selected.__contains__).initial(base)))
  total = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(base))
  batch = random_batch(size, batch_size)
  setup = {"model": f"UNet3D {config}: channels {c.block_out_channels}, {total / 1e6:.1f}M params "
                    f"({trained / 1e6:.1f}M trained), {size['frames']} frames of {c.sample_size}x{c.sample_size} "
                    f"latents, {TEXT_LENGTH} text tokens",
           "step": "forward + MSE to noise + backward into temporal / temp_convs / cross K/V + clip + AdamW"}
  return common.side_by_side(
      "unet3d train step", setup, steps=steps, batch_size=batch_size, dtype=dtype,
      ours=("jaxlab UNet3DConditionModel (jit)", _task(module, base, selected), batch),
      reference=("diffusers UNet3DConditionModel", "same FLOPs assumed as ours (same model, subset and batch)",
                 functools.partial(_reference, c, batch, dtype)) if reference else None, out_dir=out_dir)
