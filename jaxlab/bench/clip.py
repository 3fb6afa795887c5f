"""`jaxlab bench clip`: one contrastive train step (image + text forward, backward, AdamW) of our CLIP beside
transformers' `CLIPModel` on the same config and batch.

Our side is the train loop's own compiled step (`jaxlab.training.make_train_step` with the mesh, logical
shardings and state donation of `jaxlab.training.train`); the reference is eager PyTorch with `return_loss=True`
(the same symmetric cross-entropy on `logits_per_text`) and `torch.optim.AdamW`. In bfloat16 our side computes
in bf16 with f32 parameters and the reference runs under `torch.autocast`. The FLOPs (jaxlab's count of our step)
are used for both rows' MFU.
"""

import functools

import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.bench import common
from jaxlab.models import clip
from jaxlab.training import Task

# "small": a CLIP that a laptop CPU steps through in about a second; "paper": ViT-B/32 (spec §3.1).
SIZES = {
    "tiny": dict(
        text=clip.CLIPTextConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=2, max_position_embeddings=8, eos_token_id=127),
        vision=clip.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                     image_size=16, patch_size=8),
        projection_dim=16, batch_size=4),
    "small": dict(
        text=clip.CLIPTextConfig(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4),
        vision=clip.CLIPVisionConfig(hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                                     num_attention_heads=4),
        projection_dim=256, batch_size=32),
    "paper": dict(text=clip.CLIPTextConfig(), vision=clip.CLIPVisionConfig(), projection_dim=512, batch_size=128),
}
LEARNING_RATE = 1e-5


def make_task(module: clip.CLIPModel) -> Task:
  t, v = module.text_config, module.vision_config

  def init_variables(rng):
    return module.init(rng, jnp.zeros((1, t.max_position_embeddings), jnp.int32),
                       jnp.zeros((1, v.image_size, v.image_size, v.num_channels)))

  def loss_fn(params, model_state, frozen, batch, rng):
    out = module.apply({"params": params}, batch["input_ids"], batch["pixel_values"], batch["attention_mask"])
    return clip.contrastive_loss(out.logits_per_text), ({}, model_state)

  return Task(init_variables=init_variables, loss_fn=loss_fn,
              optimizer=optax.adamw(LEARNING_RATE, weight_decay=0.01), train_data=lambda: None)


def random_batch(module: clip.CLIPModel, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
  t, v = module.text_config, module.vision_config
  rng = np.random.default_rng(seed)
  length = t.max_position_embeddings
  lengths = rng.integers(4, length + 1, batch_size)
  ids = rng.integers(0, t.eos_token_id, (batch_size, length)).astype(np.int32)
  ids[np.arange(batch_size), lengths - 1] = t.eos_token_id
  mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int32)
  ids = np.where(mask == 1, ids, t.eos_token_id)
  pixels = rng.normal(size=(batch_size, v.image_size, v.image_size, v.num_channels)).astype(np.float32)
  return {"input_ids": ids, "attention_mask": mask, "pixel_values": pixels}


def _reference_step(module, batch, dtype):
  """transformers' CLIPModel with the same config: forward with the loss, backward, AdamW, as one call."""
  import torch
  import transformers
  device = common.torch_device()
  config = transformers.CLIPConfig(**clip.CLIP_FAMILY.to_config(module))
  model = transformers.CLIPModel(config).to(device).train()
  optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.01)
  ids = torch.tensor(batch["input_ids"], dtype=torch.long, device=device)
  mask = torch.tensor(batch["attention_mask"], dtype=torch.long, device=device)
  pixels = torch.tensor(batch["pixel_values"].transpose(0, 3, 1, 2), device=device)
  loss = lambda: model(input_ids=ids, pixel_values=pixels, attention_mask=mask, return_loss=True).loss
  one, memory = common.torch_train_step(loss, model, optimizer, device, dtype)
  return one, memory, device


def run(batch_size: int | None = None, steps: int = 10, dtype: str = "float32", reference: bool = True,
        config: str = "small", out_dir=common.OUT_DIR) -> dict:
  size = common.size(SIZES, config, "clip")
  batch_size = batch_size or size["batch_size"]
  module = clip.CLIPModel(size["text"], size["vision"], projection_dim=size["projection_dim"],
                          dtype=jnp.bfloat16 if dtype == "bfloat16" else jnp.float32)
  batch = random_batch(module, batch_size)
  setup = {"model": f"CLIP {config}: text {size['text'].num_hidden_layers}x{size['text'].hidden_size}, "
                    f"vision {size['vision'].num_hidden_layers}x{size['vision'].hidden_size} "
                    f"patch {size['vision'].patch_size} at {size['vision'].image_size}px",
           "step": "forward + contrastive loss + backward + AdamW"}
  return common.side_by_side(
      f"CLIP train step ({config}, {dtype})", setup, steps=steps, batch_size=batch_size, dtype=dtype,
      ours=("jaxlab CLIP (Flax, jit)", make_task(module), batch),
      reference=("transformers CLIPModel", "eager; MFU from our step's FLOP count",
                 functools.partial(_reference_step, module, batch, dtype)) if reference else None,
      out_dir=out_dir)
