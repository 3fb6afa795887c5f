"""CLIP parity with transformers (both activations, padded batches, legacy checkpoints) and the round trip back."""

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
import jax.numpy as jnp

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from jaxlab.models import clip, load_pretrained, save_pretrained  # noqa: E402

EOS, BOS, PAD = 98, 97, 98  # transformers' CLIP tokenizer pads with the end-of-text token
TEXT = dict(vocab_size=100, hidden_size=32, intermediate_size=36, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=12, projection_dim=16, eos_token_id=EOS, bos_token_id=BOS, pad_token_id=PAD)
VISION = dict(hidden_size=24, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4, image_size=32,
              patch_size=8, projection_dim=16)


def _text_batch():
  """Two right-padded prompts of different lengths, with their attention mask."""
  lengths = [5, 9]
  ids = np.full((2, 10), PAD, np.int64)
  rng = np.random.default_rng(1)
  for row, n in enumerate(lengths):
    ids[row, 0], ids[row, 1:n - 1], ids[row, n - 1] = BOS, rng.integers(0, 90, n - 2), EOS
  mask = (np.arange(10)[None] < np.array(lengths)[:, None]).astype(np.int64)
  return ids, mask


def _pixels(n=3):
  return np.random.default_rng(2).normal(size=(n, 32, 32, 3)).astype(np.float32)


def _close(ours, reference, what):
  ours, reference = np.asarray(ours, np.float32), np.asarray(reference, np.float32)
  assert ours.shape == reference.shape, what
  error = np.abs(ours - reference).max() / max(np.abs(reference).max(), 1e-6)
  assert error <= 1e-4, f"{what}: relative error {error:.2e}"


def _torch_clip(act: str, seed: int = 0):
  torch.manual_seed(seed)
  config = transformers.CLIPConfig(text_config=dict(TEXT, hidden_act=act), vision_config=dict(VISION, hidden_act=act),
                                   projection_dim=16, logit_scale_init_value=3.1)
  return transformers.CLIPModel(config).eval()


@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
def test_clip_model_matches_transformers_and_round_trips(tmp_path, act):
  reference = _torch_clip(act)
  reference.save_pretrained(tmp_path / "torch")
  module, params = load_pretrained(tmp_path / "torch")
  assert isinstance(module, clip.CLIPModel) and module.text_config.hidden_act == act
  ids, mask = _text_batch()
  pixels = _pixels()
  with torch.no_grad():
    expected = reference(input_ids=torch.tensor(ids), pixel_values=torch.tensor(pixels.transpose(0, 3, 1, 2)),
                         attention_mask=torch.tensor(mask))
  out = module.apply({"params": params}, input_ids=jnp.asarray(ids), pixel_values=jnp.asarray(pixels),
                     attention_mask=jnp.asarray(mask))
  assert out.logits_per_image.shape == (3, 2)
  for name in ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds"):
    _close(getattr(out, name), getattr(expected, name).numpy(), name)
  # Every position, padding included: padded queries still see the real tokens before them.
  _close(out.text_model_output.last_hidden_state, expected.text_model_output.last_hidden_state.numpy(), "text states")
  _close(out.vision_model_output.last_hidden_state, expected.vision_model_output.last_hidden_state.numpy(),
         "vision states")
  # The mask changes the states at padded positions, never the pooled ones: causal attention keeps the
  # pads (after the end-of-text token) out of everything before them.
  unmasked = module.apply({"params": params}, jnp.asarray(ids), jnp.asarray(pixels))
  np.testing.assert_array_equal(unmasked.text_embeds, out.text_embeds)
  pads = ~mask.astype(bool)
  assert np.abs(np.asarray(unmasked.text_model_output.last_hidden_state - out.text_model_output.last_hidden_state)
                )[pads].max() > 1e-3
  text = module.apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask), method="get_text_features")
  _close(text.pooler_output, expected.text_model_output.pooler_output.numpy(), "get_text_features")
  image = module.apply({"params": params}, jnp.asarray(pixels), method="get_image_features")
  _close(image.pooler_output, expected.vision_model_output.pooler_output.numpy(), "get_image_features")

  save_pretrained(tmp_path / "ours", module, params)
  back = transformers.CLIPModel.from_pretrained(tmp_path / "ours").eval()
  assert back.config.text_config.hidden_act == act
  with torch.no_grad():
    again = back(input_ids=torch.tensor(ids), pixel_values=torch.tensor(pixels.transpose(0, 3, 1, 2)),
                 attention_mask=torch.tensor(mask))
  np.testing.assert_allclose(again.logits_per_image.numpy(), expected.logits_per_image.numpy(), atol=1e-6)
  assert back.logit_scale.item() == pytest.approx(reference.logit_scale.item())


def _tower_case(name: str, seed: int = 0):
  torch.manual_seed(seed)
  reference_class = getattr(transformers, name)
  if "Text" in name:
    return reference_class(transformers.CLIPTextConfig(**TEXT)).eval()
  return reference_class(transformers.CLIPVisionConfig(**VISION)).eval()


def _run_tower(name, module, params, reference):
  if "Text" in name:
    ids, mask = _text_batch()
    ours = module.apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask))
    with torch.no_grad():
      theirs = reference(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
  else:
    pixels = _pixels(2)
    ours = module.apply({"params": params}, jnp.asarray(pixels))
    with torch.no_grad():
      theirs = reference(pixel_values=torch.tensor(pixels.transpose(0, 3, 1, 2)))
  return ours, theirs


@pytest.mark.parametrize("name", ["CLIPTextModel", "CLIPTextModelWithProjection", "CLIPVisionModel",
                                  "CLIPVisionModelWithProjection"])
def test_towers_match_transformers_and_round_trip(tmp_path, name):
  reference = _tower_case(name)
  reference.save_pretrained(tmp_path / "torch")
  module, params = load_pretrained(tmp_path / "torch", scan_layers=False)
  assert type(module).__name__ == name
  ours, theirs = _run_tower(name, module, params, reference)
  _close(ours.last_hidden_state, theirs.last_hidden_state.numpy(), "last_hidden_state")
  embeds = {"CLIPTextModelWithProjection": "text_embeds", "CLIPVisionModelWithProjection": "image_embeds"}.get(
      name, "pooler_output")
  _close(getattr(ours, embeds), getattr(theirs, embeds).numpy(), embeds)

  save_pretrained(tmp_path / "ours", module, params)
  back = getattr(transformers, name).from_pretrained(tmp_path / "ours").eval()
  _, again = _run_tower(name, module, params, back)
  np.testing.assert_allclose(getattr(again, embeds).numpy(), getattr(theirs, embeds).numpy(), atol=1e-6)


def test_legacy_text_encoder_folder(tmp_path):
  """An old `text_encoder/` (Stable Diffusion): `text_model.` prefix, stale position_ids, eos_token_id 2."""
  torch.manual_seed(0)
  reference = transformers.CLIPTextModel(transformers.CLIPTextConfig(**dict(TEXT, eos_token_id=2))).eval()
  reference.save_pretrained(tmp_path)
  state = load_file(str(tmp_path / "model.safetensors"))
  state = {f"text_model.{k}": v for k, v in state.items()}
  state["text_model.embeddings.position_ids"] = np.arange(12, dtype=np.int64)[None]
  save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
  module, params = load_pretrained(tmp_path)
  assert module.config.eos_token_id == 2
  # OpenAI's layout: zero padding after the end-of-text token, which has the largest id (argmax pooling).
  ids = np.array([[BOS, 5, 6, EOS, 0, 0], [BOS, 7, 8, 9, 10, EOS]])
  with torch.no_grad():
    theirs = reference(input_ids=torch.tensor(ids))
  ours = module.apply({"params": params}, jnp.asarray(ids))
  _close(ours.pooler_output, theirs.pooler_output.numpy(), "argmax-pooled output")
  assert np.abs(np.asarray(ours.pooler_output[0] - ours.last_hidden_state[0, 3])).max() == 0


def test_scanned_and_looped_layers_agree_and_bf16_runs(tmp_path):
  _torch_clip("quick_gelu").save_pretrained(tmp_path)
  ids, mask = _text_batch()
  pixels = _pixels()
  outputs = {}
  for scan in (True, False):
    module, params = load_pretrained(tmp_path, scan_layers=scan)
    outputs[scan] = module.apply({"params": params}, jnp.asarray(ids), jnp.asarray(pixels), jnp.asarray(mask))
  np.testing.assert_allclose(outputs[True].logits_per_image, outputs[False].logits_per_image, atol=1e-5)
  module, params = load_pretrained(tmp_path, dtype=jnp.bfloat16, remat_policy="nothing_saveable")
  assert params["text_model"]["encoder"]["layers"]["mlp"]["fc1"]["kernel"].dtype == jnp.float32
  low = module.apply({"params": params}, jnp.asarray(ids), jnp.asarray(pixels), jnp.asarray(mask))
  assert low.text_model_output.last_hidden_state.dtype == jnp.bfloat16
  np.testing.assert_allclose(low.logits_per_image, outputs[True].logits_per_image, atol=0.1)


def test_sharded_over_data_fsdp_and_tensor(tmp_path):
  """The logical axes resolve on a 2x2x2 mesh (odd position-table lengths included) and change nothing."""
  import chex
  import jax
  from flax import linen as nn
  from jaxlab import parallel
  _torch_clip("quick_gelu").save_pretrained(tmp_path)
  module, params = load_pretrained(tmp_path)
  ids, mask = _text_batch()
  pixels = _pixels(2)
  expected = module.apply({"params": params}, jnp.asarray(ids), jnp.asarray(pixels), jnp.asarray(mask))
  mesh = parallel.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  boxed = jax.eval_shape(module.init, jax.random.key(0), jnp.asarray(ids), jnp.asarray(pixels))
  shardings = parallel.logical_sharding(nn.get_partition_spec(boxed), mesh)["params"]
  assert shardings["text_model"]["encoder"]["layers"]["mlp"]["fc1"]["kernel"].spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor")
  with parallel.mesh_context(mesh):
    sharded = jax.device_put(params, shardings)
    out = jax.jit(module.apply)({"params": sharded}, jnp.asarray(ids), jnp.asarray(pixels), jnp.asarray(mask))
  chex.assert_trees_all_close((out.logits_per_image, out.text_embeds, out.image_embeds),
                              (expected.logits_per_image, expected.text_embeds, expected.image_embeds), atol=1e-5)


def test_contrastive_loss_matches_transformers():
  from transformers.models.clip.modeling_clip import image_text_contrastive_loss
  logits = np.random.default_rng(3).normal(size=(5, 5)).astype(np.float32) * 4
  expected = image_text_contrastive_loss(torch.tensor(logits)).item()
  np.testing.assert_allclose(clip.contrastive_loss(jnp.asarray(logits)), expected, rtol=1e-5)
  np.testing.assert_allclose(clip.contrastive_loss(jnp.zeros((4, 4))), np.log(4), rtol=1e-6)
