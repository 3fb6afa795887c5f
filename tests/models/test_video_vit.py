"""The video ViT against transformers' VideoMAEForVideoClassification, and the round trip back."""

import numpy as np
import pytest
import jax
import jax.numpy as jnp
from safetensors.numpy import load_file, save_file

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from jaxlab.models import load_pretrained, save_pretrained, video_vit  # noqa: E402

CONFIG = dict(image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=48, num_hidden_layers=3,
              num_attention_heads=4, intermediate_size=96, num_labels=7)


def _reference(tmp_path, **overrides):
  torch.manual_seed(0)
  model = transformers.VideoMAEForVideoClassification(transformers.VideoMAEConfig(**{**CONFIG, **overrides})).eval()
  with torch.no_grad():  # HF initialises biases and LayerNorms to 0/1; perturb them so every weight matters
    for p in model.parameters():
      p.add_(0.05 * torch.randn_like(p))
  model.save_pretrained(tmp_path / "torch")
  return model


def _videos(n=2):
  return np.random.default_rng(0).normal(size=(n, 4, 32, 32, 3)).astype(np.float32)


def _torch_logits(model, videos):
  with torch.no_grad():
    return model(pixel_values=torch.from_numpy(videos).permute(0, 1, 4, 2, 3)).logits.numpy()


def _assert_close(ours, reference):
  error = np.abs(np.asarray(ours) - reference).max() / np.abs(reference).max()
  assert error <= 1e-4, f"relative error {error:.2e}"


@pytest.mark.parametrize("use_mean_pooling", [True, False])
def test_matches_transformers_and_round_trips(tmp_path, use_mean_pooling):
  reference = _reference(tmp_path, use_mean_pooling=use_mean_pooling)
  module, params = load_pretrained(tmp_path / "torch")
  assert isinstance(module, video_vit.VideoViTClassifier) and module.config.num_labels == 7
  videos = _videos()
  expected = _torch_logits(reference, videos)
  _assert_close(module.apply({"params": params}, videos), expected)

  save_pretrained(tmp_path / "ours", module, params)
  back = transformers.VideoMAEForVideoClassification.from_pretrained(tmp_path / "ours").eval()
  np.testing.assert_allclose(_torch_logits(back, videos), expected, rtol=0, atol=1e-6)


def test_scanned_and_unrolled_layers_agree_and_load_alike(tmp_path):
  _reference(tmp_path)
  scanned, p_scan = load_pretrained(tmp_path / "torch")
  unrolled, p_loop = load_pretrained(tmp_path / "torch", scan_layers=False)
  assert p_scan["videomae"]["encoder"]["layer"]["attention"]["attention"]["query"]["kernel"].shape == (3, 48, 48)
  assert "layer_2" in p_loop["videomae"]["encoder"]
  videos = _videos()
  np.testing.assert_allclose(scanned.apply({"params": p_scan}, videos), unrolled.apply({"params": p_loop}, videos),
                             atol=1e-5)
  remat = scanned.clone(remat_policy="nothing_saveable")
  grad = jax.grad(lambda p: remat.apply({"params": p}, videos).sum())(p_scan)
  assert np.isfinite(jax.tree.leaves(grad)[0]).all()


def test_original_release_q_bias_names_load(tmp_path):
  reference = _reference(tmp_path)
  path = tmp_path / "torch" / "model.safetensors"
  state = load_file(path)
  renamed = {k.replace("attention.attention.query.bias", "attention.attention.q_bias")
              .replace("attention.attention.value.bias", "attention.attention.v_bias"): v for k, v in state.items()}
  assert any(k.endswith("q_bias") for k in renamed)
  save_file(renamed, path)
  module, params = load_pretrained(tmp_path / "torch")
  _assert_close(module.apply({"params": params}, _videos()), _torch_logits(reference, _videos()))


def test_bfloat16_compute_with_float32_params(tmp_path):
  reference = _reference(tmp_path)
  module, params = load_pretrained(tmp_path / "torch", dtype=jnp.bfloat16)
  assert jax.tree.leaves(params)[0].dtype == jnp.float32
  out = module.apply({"params": params}, _videos())
  expected = _torch_logits(reference, _videos())
  assert np.abs(np.asarray(out) - expected).max() / np.abs(expected).max() < 0.05


def test_pickle_checkpoints_are_refused(tmp_path):
  from jaxlab.errors import UserError
  _reference(tmp_path)
  (tmp_path / "torch" / "model.safetensors").rename(tmp_path / "torch" / "pytorch_model.bin")
  with pytest.raises(UserError, match="never unpickles"):
    load_pretrained(tmp_path / "torch")
