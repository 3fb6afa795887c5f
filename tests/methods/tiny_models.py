"""Small model folders in the published layouts, shared by the method tests."""

from pathlib import Path

import jax.numpy as jnp


def tiny_clip(folder: Path, tokenizer) -> Path:
  """A 1-layer random CLIPModel folder (transformers layout) with `tokenizer` saved beside it."""
  from jaxlab.diffusion.pipeline import random_params
  from jaxlab.models import save_pretrained
  from jaxlab.models.clip import CLIPModel, CLIPTextConfig, CLIPVisionConfig
  module = CLIPModel(CLIPTextConfig(vocab_size=len(tokenizer.vocab), hidden_size=32, intermediate_size=64,
                                    num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=16,
                                    eos_token_id=tokenizer.end_id, bos_token_id=tokenizer.start_id),
                     CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                      image_size=32, patch_size=8), projection_dim=16)
  params = random_params(module, jnp.zeros((1, 16), jnp.int32), jnp.zeros((1, 32, 32, 3)))
  save_pretrained(folder, module, params)
  tokenizer.save_folder(folder)
  return folder
