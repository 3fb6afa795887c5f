"""`jaxlab bench video_vit`: our VideoMAE train step beside transformers' on the same config and batch.

Both sides run a full training step: forward, cross-entropy, backward and an AdamW update.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab import training
from jaxlab.bench import common
from jaxlab.models import video_vit

SIZES = {
    "tiny": dict(config=video_vit.VideoViTConfig(
        image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64, num_labels=5), batch_size=2),
    # Small enough for a CPU; the same structure as VideoMAE-B.
    "small": dict(config=video_vit.VideoViTConfig(
        image_size=112, patch_size=16, num_frames=8, tubelet_size=2, hidden_size=384, num_hidden_layers=4,
        num_attention_heads=6, intermediate_size=1536, num_labels=38), batch_size=4),
    "paper": dict(config=video_vit.VideoViTConfig(num_labels=38), batch_size=8),  # VideoMAE-B, 16x224²
}


def _task(module, batch_size):
  c = module.config

  def init_variables(rng):
    return module.init(rng, jnp.zeros((1, c.num_frames, c.image_size, c.image_size, 3), module.dtype))

  def loss_fn(params, model_state, frozen, batch, rng):
    logits = module.apply({"params": params}, batch["video"], train=True, rngs={"dropout": rng})
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    return loss, ({}, model_state)

  return training.Task(init_variables=init_variables, loss_fn=loss_fn,
                       optimizer=optax.adamw(1e-4, weight_decay=0.05), train_data=lambda: None)


def _torch_step(c: video_vit.VideoViTConfig, video: np.ndarray, labels: np.ndarray, dtype: str):
  """transformers' VideoMAE on the same config and batch: forward, loss, backward and AdamW, as one call."""
  import torch
  from transformers import VideoMAEConfig, VideoMAEForVideoClassification

  device = common.torch_device()
  config = VideoMAEConfig(image_size=c.image_size, patch_size=c.patch_size, num_frames=c.num_frames,
                          tubelet_size=c.tubelet_size, hidden_size=c.hidden_size,
                          num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
                          intermediate_size=c.intermediate_size, num_labels=c.num_labels,
                          attn_implementation="sdpa")
  model = VideoMAEForVideoClassification(config).to(device).train()
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
  x = torch.from_numpy(video).permute(0, 1, 4, 2, 3).contiguous().to(device)  # [B, T, C, H, W]
  y = torch.from_numpy(labels).long().to(device)
  loss = lambda: torch.nn.functional.cross_entropy(model(pixel_values=x).logits.float(), y)
  one, memory = common.torch_train_step(loss, model, opt, device, dtype)
  return one, memory, device


def run(batch_size=None, steps=10, dtype="float32", reference=True, config="small",
        out_dir=common.OUT_DIR) -> dict:
  size = common.size(SIZES, config, "video_vit")
  c = size["config"]
  batch_size = batch_size or size["batch_size"]
  module = video_vit.VideoViTClassifier(c, dtype=jnp.dtype(dtype))
  rng = np.random.default_rng(0)
  video = rng.normal(size=(batch_size, c.num_frames, c.image_size, c.image_size, 3)).astype(np.float32)
  labels = rng.integers(0, c.num_labels, size=batch_size).astype(np.int32)
  setup = {"model": f"VideoMAE {config}: {c.num_hidden_layers} layers, width {c.hidden_size}, "
                    f"{c.num_frames}x{c.image_size}² clips, {c.num_patches} tokens",
           "step": "forward + backward + AdamW"}
  return common.side_by_side(
      "video_vit train step", setup, steps=steps, batch_size=batch_size, dtype=dtype,
      ours=("jaxlab VideoViTClassifier (jit)", _task(module, batch_size), {"video": video, "label": labels}),
      reference=("transformers VideoMAE", "MFU from our step's FLOP count (same model and batch)",
                 functools.partial(_torch_step, c, video, labels, dtype)) if reference else None,
      out_dir=out_dir)
