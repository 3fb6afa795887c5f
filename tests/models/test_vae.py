"""Parity of our VAE with diffusers' `AutoencoderKL`, legacy attention names, and the way back."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import jax.numpy as jnp  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from jaxlab.models import load_pretrained, save_pretrained  # noqa: E402

CONFIG = dict(block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8, latent_channels=4, sample_size=16,
              down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
LEGACY = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def nhwc(t):
  return jnp.asarray(t.numpy().transpose(0, 2, 3, 1))


def nchw(a):
  return np.asarray(a).transpose(0, 3, 1, 2)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  torch.manual_seed(0)
  model = diffusers.AutoencoderKL(**CONFIG).eval()
  with torch.no_grad():
    for p in model.parameters():
      p.add_(torch.randn_like(p) * 0.05)
  folder = tmp_path_factory.mktemp("vae")
  model.save_pretrained(folder)
  x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
  with torch.no_grad():
    posterior = model.encode(x).latent_dist
    image = model.decode(posterior.mean).sample
  return folder, x, posterior, image


def close(got, expected):
  return np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


@pytest.mark.parametrize("scan_layers", [False, True])  # True: the first decoder block's ResNets are one scan
def test_encode_decode_parity(reference, scan_layers):
  folder, x, posterior, image = reference
  module, params = load_pretrained(folder, scan_layers=scan_layers)
  mean, logvar = module.apply({"params": params}, nhwc(x), method="encode")
  assert close(nchw(mean), posterior.mean.numpy()) and close(nchw(logvar), posterior.logvar.numpy())
  decoded = module.apply({"params": params}, nhwc(posterior.mean), method="decode")
  assert close(nchw(decoded), image.numpy())


def test_legacy_attention_names(reference, tmp_path):
  folder, *_ = reference
  state = load_file(folder / "diffusion_pytorch_model.safetensors")
  renamed = {}
  for key, value in state.items():
    for new, old in LEGACY.items():
      key = key.replace(f"attentions.0.{new}.", f"attentions.0.{old}.")
    renamed[key] = value
  assert any(".proj_attn." in k for k in renamed)
  save_file(renamed, tmp_path / "diffusion_pytorch_model.safetensors")
  (tmp_path / "config.json").write_text((folder / "config.json").read_text())
  _, params = load_pretrained(folder)
  _, legacy_params = load_pretrained(tmp_path)
  assert all(np.array_equal(legacy_params["decoder"]["mid_block"]["attentions_0"][name]["kernel"],
                            params["decoder"]["mid_block"]["attentions_0"][name]["kernel"])
             for name in ("to_q", "to_k", "to_v", "to_out_0"))


def test_round_trip(reference, tmp_path):
  folder, x, _, _ = reference
  module, params = load_pretrained(folder, scan_layers=True)
  assert "run_0" in params["decoder"]["up_blocks_0"]
  save_pretrained(tmp_path, module, params)
  back = diffusers.AutoencoderKL.from_pretrained(tmp_path).eval()
  original = diffusers.AutoencoderKL.from_pretrained(folder).eval()
  with torch.no_grad():
    np.testing.assert_array_equal(back(x).sample.numpy(), original(x).sample.numpy())
