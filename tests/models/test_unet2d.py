"""Parity of our SD UNet with diffusers' `UNet2DConditionModel` on small random configs, and the way back."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import linen as nn  # noqa: E402

from jaxlab.models import load_pretrained, save_pretrained, unet2d, weights  # noqa: E402

# SD 1.x style: conv projections, one head count, 768-wide text. SD 2.x style: linear projections, per-block
# head counts, 1024-wide text, upcast attention, and a size (10) that the down path does not halve evenly.
SD1_LIKE = dict(sample_size=16, block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=768, attention_head_dim=4)
SD2_LIKE = dict(sample_size=10, block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=8,
                down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=1024,
                attention_head_dim=[2, 4, 4], use_linear_projection=True, upcast_attention=True)


def random_torch_unet(config, seed=0):
  torch.manual_seed(seed)
  model = diffusers.UNet2DConditionModel(**config).eval()
  with torch.no_grad():  # diffusers zero-initialises some outputs; perturb so every weight matters
    for p in model.parameters():
      p.add_(torch.randn_like(p) * 0.05)
  return model


def inputs(config, batch=2):
  gen = torch.Generator().manual_seed(1)
  s = config["sample_size"]
  return (torch.randn(2, 4, s, s, generator=gen), torch.tensor([10, 700]),
          torch.randn(batch, 7, config["cross_attention_dim"], generator=gen))


def ours(module, params, x, t, ctx):
  out = jax.jit(module.apply)({"params": params}, jnp.asarray(x.numpy().transpose(0, 2, 3, 1)),
                              jnp.asarray(t.numpy()), jnp.asarray(ctx.numpy()))
  return np.asarray(out).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("config", [SD1_LIKE, SD2_LIKE], ids=["sd1", "sd2"])
def test_parity_and_round_trip(config, tmp_path):
  reference = random_torch_unet(config)
  reference.save_pretrained(tmp_path / "torch")
  x, t, ctx = inputs(config)
  with torch.no_grad():
    expected = reference(x, t, ctx).sample.numpy()

  module, params = load_pretrained(tmp_path / "torch")
  got = ours(module, params, x, t, ctx)
  assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()

  save_pretrained(tmp_path / "ours", module, params)
  back = diffusers.UNet2DConditionModel.from_pretrained(tmp_path / "ours").eval()
  with torch.no_grad():
    np.testing.assert_array_equal(back(x, t, ctx).sample.numpy(), expected)


def test_bf16_compute_and_remat():
  from jaxlab.models.unet2d import UNet2DConditionModel, UNet2DConfig
  module = UNet2DConditionModel(UNet2DConfig(
      block_out_channels=(16,), layers_per_block=(1,), norm_num_groups=4, down_block_types=("CrossAttnDownBlock2D",),
      up_block_types=("CrossAttnUpBlock2D",), cross_attention_dim=(8,), attention_head_dim=(2,),
      transformer_layers_per_block=(1,), only_cross_attention=(False,)))
  rng = np.random.default_rng(0)
  x, t, ctx = rng.normal(size=(2, 8, 8, 4)), np.array([3, 900]), rng.normal(size=(2, 5, 8))
  # Random values for the abstract shapes: compiling `init` would cost more than the test itself on CPU.
  shapes = jax.eval_shape(module.init, jax.random.key(0), x, t, ctx)["params"]
  params = jax.tree.map(lambda s: jnp.asarray(0.2 * rng.normal(size=s.shape), jnp.float32), nn.meta.unbox(shapes))

  def loss(module, params):
    return jnp.mean(module.apply({"params": params}, x, t, ctx) ** 2)

  value, grads = jax.jit(jax.value_and_grad(lambda p: loss(module, p)))(params)
  remat = module.clone(remat_policy="nothing_saveable")
  value_r, grads_r = jax.jit(jax.value_and_grad(lambda p: loss(remat, p)))(params)
  np.testing.assert_allclose(value_r, value, rtol=1e-6)
  for g, g_r in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_r)):
    np.testing.assert_allclose(g_r, g, rtol=1e-4, atol=1e-7)

  out32 = jax.jit(module.apply)({"params": params}, x, t, ctx)
  out16 = jax.jit(module.clone(dtype=jnp.bfloat16).apply)({"params": params}, x, t, ctx)
  assert out16.dtype == jnp.float32 and jax.tree.leaves(params)[0].dtype == jnp.float32
  assert 0 < np.abs(out16 - out32).max() < 0.05 * np.abs(out32).max()


# SDXL's structure made tiny: no attention on the first level, per-block transformer depths (the mid block takes
# the last), per-block head counts, linear projections, and the text_time added embedding (6 time ids).
SDXL_LIKE = dict(sample_size=8, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), transformer_layers_per_block=[1, 2],
                 attention_head_dim=[2, 4], use_linear_projection=True, cross_attention_dim=24,
                 addition_embed_type="text_time", addition_time_embed_dim=4,
                 projection_class_embeddings_input_dim=8 + 6 * 4)
# HF stabilityai/stable-diffusion-xl-base-1.0 unet/config.json (the keys that differ from diffusers' defaults).
SDXL_BASE = dict(sample_size=128, block_out_channels=[320, 640, 1280], layers_per_block=2,
                 down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                 up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                 transformer_layers_per_block=[1, 2, 10], attention_head_dim=[5, 10, 20], use_linear_projection=True,
                 cross_attention_dim=2048, addition_embed_type="text_time", addition_embed_type_num_heads=64,
                 addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)


def test_sdxl_outputs_and_gradients_match_diffusers_and_round_trip(tmp_path):
  # Scanned, and one width on both levels: both up blocks are runs of alike layers (`run_0`), the first with a
  # scanned stack of two transformer blocks in each layer.
  reference = random_torch_unet(dict(SDXL_LIKE, block_out_channels=(16, 16)))
  reference.save_pretrained(tmp_path / "torch")
  gen = torch.Generator().manual_seed(1)
  x, t, ctx = torch.randn(2, 4, 8, 8, generator=gen), torch.tensor([10, 700]), torch.randn(2, 5, 24, generator=gen)
  added = {"text_embeds": torch.randn(2, 8, generator=gen),
           "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64], [96, 80, 3, 5, 64, 64]])}
  cotangent = torch.randn(2, 4, 8, 8, generator=gen)
  out = reference(x, t, ctx, added_cond_kwargs=added).sample
  (out * cotangent).sum().backward()
  expected = out.detach().numpy()

  module, params = load_pretrained(tmp_path / "torch", scan_layers=True)
  stacked = weights.stacked_paths(unet2d.FAMILY.boxed_variables(module)["params"])
  assert {path[:2] for path in stacked} >= {("up_blocks_0", "run_0"), ("up_blocks_1", "run_0")}
  assert 2 in stacked.values()  # a stack in a stack
  nhwc = lambda a: jnp.asarray(a.numpy().transpose(0, 2, 3, 1))
  ours_added = {k: jnp.asarray(v.numpy()) for k, v in added.items()}

  def loss(p):
    y = module.apply({"params": p}, nhwc(x), jnp.asarray(t.numpy()), jnp.asarray(ctx.numpy()), ours_added)
    return jnp.sum(y * nhwc(cotangent)), y

  (_, got), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  got = np.asarray(got).transpose(0, 3, 1, 2)
  assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
  reference_grads = {k: p.grad.numpy() for k, p in reference.named_parameters()}
  ours = weights.flax_to_torch(grads, unet2d.NAMING, stacked)
  assert ours.keys() == reference_grads.keys()
  assert max(np.abs(ours[k] - g).max() / np.abs(g).max() for k, g in reference_grads.items()) <= 1e-4

  save_pretrained(tmp_path / "ours", module, params)
  back = diffusers.UNet2DConditionModel.from_pretrained(tmp_path / "ours").eval()
  with torch.no_grad():
    np.testing.assert_array_equal(back(x, t, ctx, added_cond_kwargs=added).sample.numpy(), expected)


def reference_shapes(config):
  with torch.device("meta"):
    reference = diffusers.UNet2DConditionModel(**config)
  return {k: tuple(v.shape) for k, v in reference.state_dict().items()}


def scanned_torch_shapes(module):
  boxed = unet2d.FAMILY.boxed_variables(module.clone(scan_layers=True))["params"]
  return weights.torch_shapes(nn.meta.unbox(boxed), unet2d.NAMING, weights.stacked_paths(boxed))


def test_sdxl_base_structure_on_abstract_shapes():
  module = unet2d.FAMILY.from_config(SDXL_BASE)
  abstract = unet2d.FAMILY.abstract_variables(module)["params"]
  assert sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(abstract)) == 2_567_463_684
  assert weights.torch_shapes(abstract, unet2d.NAMING) == reference_shapes(SDXL_BASE) == scanned_torch_shapes(module)


def test_per_layer_transformer_depths_and_config_round_trip():
  # An asymmetric UNet: a depth per layer, and the up blocks' depths given separately, as diffusers requires.
  config = dict(SDXL_LIKE, layers_per_block=2, transformer_layers_per_block=[[1, 1], [2, 3]],
                reverse_transformer_layers_per_block=[[3, 1, 2], [1, 1, 1]])
  module = unet2d.FAMILY.from_config(config)
  assert module.config.transformer_layers_per_block == ((1, 1), (2, 3))
  abstract = unet2d.FAMILY.abstract_variables(module)["params"]
  assert weights.torch_shapes(abstract, unet2d.NAMING) == reference_shapes(config) == scanned_torch_shapes(module)
  written = unet2d.FAMILY.to_config(module)
  init = diffusers.UNet2DConditionModel.extract_init_dict(written)[0]
  assert init["transformer_layers_per_block"] == [[1, 1], [2, 3]]
  assert unet2d.FAMILY.from_config(written) == module


def test_sdxl_needs_its_added_conditions():
  module = unet2d.FAMILY.from_config(SDXL_LIKE)
  x, t, ctx = jnp.zeros((1, 8, 8, 4)), jnp.zeros((1,)), jnp.zeros((1, 5, 24))
  with pytest.raises(ValueError, match="added_cond_kwargs"):
    jax.eval_shape(module.init, jax.random.key(0), x, t, ctx)
