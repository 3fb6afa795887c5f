"""Parity of our SD UNet with diffusers' `UNet2DConditionModel` on small random configs, and the way back."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import linen as nn  # noqa: E402

from jaxlab.models import load_pretrained, save_pretrained  # noqa: E402

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
