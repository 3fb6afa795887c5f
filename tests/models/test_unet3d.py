"""Parity of our text-to-video UNet with diffusers' `UNet3DConditionModel` (outputs and gradients), the way
back into diffusers, and the full ms-1.7b / ZeroScope structure on abstract shapes."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import traverse_util  # noqa: E402

from jaxlab.models import load_pretrained, save_pretrained, unet3d, weights  # noqa: E402
from jaxlab.models.diffusers_blocks import TemporalConvLayer  # noqa: E402

# Two small random configs (compiling the backward pass is most of the cost): two levels of all four block kinds
# with head size 8, one ResNet per block, 3 frames and a 5x6 latent that the down path does not halve evenly; one
# cross-attention level with head size 4, two ResNets per block (scanned), one frame, and remat.
CONFIGS = {
    "head8_frames3": (dict(block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=4, attention_head_dim=8,
                           cross_attention_dim=12, down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                           up_block_types=("UpBlock3D", "CrossAttnUpBlock3D")), 3, (5, 6), {}),
    "head4_layers2_frame1": (dict(block_out_channels=(8,), layers_per_block=2, norm_num_groups=4,
                                  attention_head_dim=4, cross_attention_dim=6,
                                  down_block_types=("CrossAttnDownBlock3D",), up_block_types=("CrossAttnUpBlock3D",)),
                             1, (4, 4), {"remat_policy": "nothing_saveable", "scan_layers": True}),
}
# HF ali-vilab/text-to-video-ms-1.7b unet/config.json (ZeroScope v2 has the same architecture).
MS_1_7B = dict(sample_size=32, in_channels=4, out_channels=4, block_out_channels=[320, 640, 1280, 1280],
               layers_per_block=2, down_block_types=["CrossAttnDownBlock3D"] * 3 + ["DownBlock3D"],
               up_block_types=["UpBlock3D"] + ["CrossAttnUpBlock3D"] * 3, cross_attention_dim=1024,
               attention_head_dim=64, norm_num_groups=32, norm_eps=1e-5, act_fn="silu", downsample_padding=1,
               mid_block_scale_factor=1, num_attention_heads=None)


def random_reference(config, seed=0):
  torch.manual_seed(seed)
  model = diffusers.UNet3DConditionModel(**config).eval()
  with torch.no_grad():  # diffusers zero-initialises the last temporal convs; perturb so every weight matters
    for p in model.parameters():
      p.add_(torch.randn_like(p) * 0.05)
  return model


def channels_last(x):
  return jnp.asarray(x.numpy().transpose(0, 2, 3, 4, 1))


def close(got, expected, rel=1e-4):
  return np.abs(got - expected).max() <= rel * np.abs(expected).max()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_outputs_and_gradients_match_diffusers_and_round_trip(name, tmp_path):
  config, frames, (h, w), module_fields = CONFIGS[name]
  reference = random_reference(config)
  reference.save_pretrained(tmp_path / "torch")
  gen = torch.Generator().manual_seed(1)
  x, t = torch.randn(2, 4, frames, h, w, generator=gen), torch.tensor([10, 700])
  ctx, cotangent = torch.randn(2, 5, config["cross_attention_dim"], generator=gen), torch.randn(2, 4, frames, h, w)
  out = reference(x, t, ctx).sample
  (out * cotangent).sum().backward()
  expected = out.detach().numpy()

  module, params = load_pretrained(tmp_path / "torch", **module_fields)
  stacked = weights.stacked_paths(unet3d.FAMILY.boxed_variables(module)["params"])
  assert bool(stacked) == module.scan_layers

  def loss(p):
    y = module.apply({"params": p}, channels_last(x), jnp.asarray(t.numpy()), jnp.asarray(ctx.numpy()))
    return jnp.sum(y * channels_last(cotangent)), y

  (_, got), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  assert close(np.asarray(got).transpose(0, 4, 1, 2, 3), expected)
  reference_grads = {k: p.grad.numpy() for k, p in reference.named_parameters()}
  ours = weights.flax_to_torch(grads, unet3d.NAMING, stacked)
  assert ours.keys() == reference_grads.keys()
  # With one frame, temporal attention has one key: its q/k weights get no gradient (a floor for those).
  worst = max(np.abs(ours[k] - g).max() / max(np.abs(g).max(), 1e-6) for k, g in reference_grads.items())
  assert worst <= 1e-4, worst

  save_pretrained(tmp_path / "ours", module, params)
  back = diffusers.UNet3DConditionModel.from_pretrained(tmp_path / "ours").eval()
  with torch.no_grad():
    np.testing.assert_array_equal(back(x, t, ctx).sample.numpy(), expected)


def test_ms_1_7b_structure_on_abstract_shapes():
  module = unet3d.FAMILY.from_config(MS_1_7B)
  abstract = unet3d.FAMILY.abstract_variables(module)["params"]
  assert sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(abstract)) == 1_411_233_860
  with torch.device("meta"):
    reference = diffusers.UNet3DConditionModel(**MS_1_7B)
  expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
  assert len(expected) == 1480
  assert weights.torch_shapes(abstract, unet3d.NAMING) == expected


def test_bf16_compute_with_f32_params():
  config, frames, (h, w), _ = CONFIGS["head4_layers2_frame1"]
  config, frames = dict(config, layers_per_block=1), 2
  module = unet3d.FAMILY.from_config(config)
  rng = np.random.default_rng(0)
  shapes = unet3d.FAMILY.abstract_variables(module)["params"]
  params = jax.tree.map(lambda s: jnp.asarray(0.2 * rng.normal(size=s.shape), jnp.float32), shapes)
  x, t = rng.normal(size=(1, frames, h, w, 4)), np.array([500])
  ctx = rng.normal(size=(1, 5, config["cross_attention_dim"]))
  out32 = jax.jit(module.apply)({"params": params}, x, t, ctx)
  out16 = jax.jit(module.clone(dtype=jnp.bfloat16).apply)({"params": params}, x, t, ctx)
  assert out16.dtype == jnp.float32 and out16.shape == (1, frames, h, w, 4)
  assert 0 < np.abs(out16 - out32).max() < 0.05 * np.abs(out32).max()
  # Logical axis names on every parameter, as the sharding rules need.
  boxed = unet3d.FAMILY.boxed_variables(module)["params"]
  unnamed = [p for p, leaf in traverse_util.flatten_dict(boxed).items() if not hasattr(leaf, "names")]
  assert not unnamed


def test_temporal_conv_starts_as_identity_and_drops_out_in_training():
  layer = TemporalConvLayer(groups=2, num_frames=3)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(6, 2, 2, 4)), jnp.float32)
  variables = layer.init(jax.random.key(0), x)
  np.testing.assert_array_equal(layer.apply(variables, x), x)  # conv4 is zero-initialised, as diffusers
  params = jax.tree.map(lambda a: a + 0.1, variables["params"])
  same = layer.apply({"params": params}, x)
  dropped = layer.clone(deterministic=False).apply({"params": params}, x, rngs={"dropout": jax.random.key(1)})
  assert not np.allclose(same, x) and not np.allclose(dropped, same)


@pytest.mark.parametrize("change, message", [
    (dict(num_attention_heads=8), "num_attention_heads"),
    (dict(down_block_types=["DownBlockSpatioTemporal"] * 4), "not supported"),
    (dict(attention_head_dim=[64] * 4), "single numbers"),
])
def test_unsupported_configs_are_one_clear_error(change, message):
  from jaxlab.errors import UserError
  with pytest.raises(UserError, match=message):
    unet3d.FAMILY.from_config(dict(MS_1_7B, **change))
