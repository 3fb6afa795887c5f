"""bf16 against float32, per model family: the check `jaxlab bench all` runs on the device, and the tests on CPU.

The error is `max |y16 - y32| / max |y32|` of a small model's forward on random weights, with float32 params on
both sides. bf16 keeps 8 significant bits, so each rounding of an activation or weight moves it by up to 2^-9
relative, and through these models' 10-85 matmuls and convolutions the roundings add up to 0.2-3% (largest of four
weight seeds, measured on CPU: CLIP 2.1e-2, video ViT 5.5e-3, ResNeXt 8.4e-3, I3D 1.0e-2, STIN 2.2e-2, UNet
1.7e-2, VAE 3.0e-2). Each bound is about three times that, rounded up to a power of two, so that another
backend's summation order passes; what would be a bug (a layer left in float32, parameters rounded to bf16) is
caught by the dtype check and the parameter check.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxlab.models import clip, cnn3d, stin, unet2d, vae, video_vit


def _clip():
  rng = np.random.default_rng(0)
  text = clip.CLIPTextConfig(vocab_size=99, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, max_position_embeddings=16, eos_token_id=98)
  vision = clip.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                 image_size=32, patch_size=8)
  module = clip.CLIPModel(text, vision, projection_dim=16)
  ids = rng.integers(0, 98, (2, 16)).astype(np.int32)
  mask = (np.arange(16)[None] < np.array([[16], [9]])).astype(np.int32)
  args = (ids, rng.normal(size=(2, 32, 32, 3)).astype(np.float32), mask)
  return module, args, lambda out: out.logits_per_image


def _video_vit():
  rng = np.random.default_rng(0)
  c = video_vit.VideoViTConfig(image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32,
                               num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, num_labels=5)
  return video_vit.VideoViTClassifier(c), (rng.normal(size=(2, 4, 32, 32, 3)).astype(np.float32),), None


def _cnn3d(block):
  rng = np.random.default_rng(0)
  if block == "resnext":
    c = cnn3d.ResNeXt3DConfig(layers=(1, 1, 1, 1), widths=(32, 32, 64, 64), cardinality=8, stem_width=16,
                              num_labels=5)
  else:  # the I3D ResNet of Something-Else, narrowed
    c = dataclasses.replace(cnn3d.I3D_RESNET50, layers=(1, 1, 1, 1), widths=(8, 8, 16, 16), stem_width=8,
                            temporal_kernels=((3,), (1,), (3,), (1,)), num_labels=5)
  return cnn3d.ResNeXt3D(c), (rng.normal(size=(2, 8, 32, 32, 3)).astype(np.float32),), None


def _stin():
  rng = np.random.default_rng(0)
  c = stin.variant_config("stin_oie_nl", num_classes=5, coord_feature_dim=32)
  boxes = rng.random((4, c.num_frames, c.num_boxes, 4)).astype(np.float32)
  categories = rng.integers(0, 3, (4, c.num_frames, c.num_boxes)).astype(np.int32)
  return stin.STIN(c), (boxes, categories), None


def _unet2d():
  """One level of SD's UNet (ResNets, self- and cross-attention, GEGLU) and its middle block."""
  rng = np.random.default_rng(0)
  c = unet2d.UNet2DConfig(sample_size=8, block_out_channels=(32,), layers_per_block=(1,), norm_num_groups=8,
                          down_block_types=("CrossAttnDownBlock2D",), up_block_types=("CrossAttnUpBlock2D",),
                          only_cross_attention=(False,), cross_attention_dim=(16,), attention_head_dim=(2,),
                          transformer_layers_per_block=(1,))
  args = (rng.normal(size=(2, 8, 8, 4)).astype(np.float32), np.array([3, 900]),
          rng.normal(size=(2, 7, 16)).astype(np.float32))
  return unet2d.UNet2DConditionModel(c), args, None


def _vae():
  rng = np.random.default_rng(0)
  c = vae.VAEConfig(block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                    up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, norm_num_groups=8)
  return vae.AutoencoderKL(c), (rng.uniform(-1, 1, size=(2, 32, 32, 3)).astype(np.float32),), None


# family: (model and inputs, bound on the relative error, matmuls/convolutions allowed in float32)
FAMILIES = {
    # The one float32 matmul: CLIP's cosine similarities of its float32 embeddings.
    "clip": (_clip, 2**-4, 1),
    "video_vit": (_video_vit, 2**-5, 0),
    "cnn3d": (functools.partial(_cnn3d, "resnext"), 2**-5, 0),
    "i3d": (functools.partial(_cnn3d, "inflated"), 2**-5, 0),
    "stin": (_stin, 2**-3, 0),
    "unet2d": (_unet2d, 2**-4, 0),
    "vae": (_vae, 2**-3, 0),
}


def _matmul_input_dtypes(jaxpr) -> list[tuple[str, tuple]]:
  """(dtype, shape) of the first input of every matmul and convolution in `jaxpr`, sub-jaxprs included."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name in ("dot_general", "conv_general_dilated"):
      found.append((str(eqn.invars[0].aval.dtype), eqn.invars[0].aval.shape))
    for value in eqn.params.values():
      for inner in value if isinstance(value, (tuple, list)) else (value,):
        inner = getattr(inner, "jaxpr", inner)
        if hasattr(inner, "eqns"):
          found += _matmul_input_dtypes(inner)
  return found


def _random_variables(module, args, seed: int) -> dict:
  """Variables for `module` drawn from its abstract shapes (compiling `init` costs more than the whole test):
  kernels scaled by their fan-in, norm scales and variances near 1, biases and means near 0."""
  shapes = nn.meta.unbox(jax.eval_shape(module.init, jax.random.key(0), *args))
  rng = np.random.default_rng(seed)

  def draw(path, s):
    leaf = path[-1].key
    noise = rng.normal(size=s.shape)
    if leaf == "kernel":
      value = noise / np.sqrt(np.prod(s.shape[:-1]))
    elif leaf in ("scale", "var"):
      value = 1 + 0.1 * np.abs(noise)
    else:
      value = 0.1 * noise
    return jnp.asarray(value, s.dtype)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def bf16_error(family: str, seed: int = 1) -> tuple[float, list]:
  """(relative error of the bf16 forward against float32, dtypes of the bf16 forward's matmul inputs).

  The float32 side runs at full precision (not TF32 or one bf16 pass), so that on a GPU or TPU the error is
  bf16's alone."""
  make, _, _ = FAMILIES[family]
  module, args, select = make()
  select = select or (lambda out: out)
  low = module.clone(dtype=jnp.bfloat16)
  variables = _random_variables(low, args, seed)
  if not all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables)):
    raise AssertionError(f"{family}: bf16 compute must keep float32 params")
  traced = jax.jit(low.apply).trace(variables, *args)
  y16 = np.asarray(select(traced.lower().compile()(variables, *args)), np.float32)
  with jax.default_matmul_precision("highest"):
    y32 = np.asarray(select(jax.jit(module.apply)(variables, *args)), np.float32)
  return float(np.abs(y16 - y32).max() / np.abs(y32).max()), _matmul_input_dtypes(traced.jaxpr.jaxpr)


def check(family: str) -> dict:
  """One row of the parity table: the error, its bound, and whether every matmul the family should run in bf16
  did."""
  _, bound, float32_allowed = FAMILIES[family]
  error, dtypes = bf16_error(family)
  in_float32 = sum(dtype != "bfloat16" for dtype, _ in dtypes)
  return {"family": family, "error": error, "bound": bound, "matmuls": len(dtypes), "in_float32": in_float32,
          "ok": 0 < error <= bound and in_float32 == float32_allowed}
