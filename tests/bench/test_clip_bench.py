"""`jaxlab bench clip` on a toy CLIP: both steps run and are timed in turns."""

import jax
import numpy as np
import pytest

from jaxlab.bench import clip as clip_bench
from jaxlab.bench import common
from jaxlab.models import clip

pytest.importorskip("transformers")


def test_both_steps_run_interleaved():
  module = clip.CLIPModel(
      clip.CLIPTextConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                          num_attention_heads=2, max_position_embeddings=8, eos_token_id=127),
      clip.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                            image_size=16, patch_size=8), projection_dim=16)
  batch = clip_bench.random_batch(module, 8)
  assert (batch["input_ids"][batch["attention_mask"] == 0] == 127).all()
  ours, flops, _ = common.jax_train_step(clip_bench.make_task(module), batch, devices=jax.devices())
  theirs, _, device = clip_bench._reference_step(module, batch, "float32")
  times = common.time_in_turns(2, ours, theirs)
  assert [len(t) for t in times] == [2, 2] and flops > 0 and device in ("cpu", "cuda")
  assert np.all(np.array(times) > 0)


def test_torch_train_step_updates_the_reference_model():
  import torch
  model = torch.nn.Linear(4, 1)
  before = model.weight.detach().clone()
  x = torch.ones(3, 4)
  one, memory = common.torch_train_step(lambda: model(x).square().mean(), model,
                                        torch.optim.SGD(model.parameters(), lr=0.1), "cpu", "float32",
                                        clip_norm=1e-3)
  one()
  step = (model.weight.detach() - before).norm().item()
  assert 0 < step <= 0.1 * 1e-3 + 1e-9  # the gradient was clipped to norm 1e-3 before the SGD step
  assert memory() is None
