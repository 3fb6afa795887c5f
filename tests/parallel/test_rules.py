"""The logical-axis rules on every model family: how much of the weights each mesh splits, and that a sharded
step (init included: the SD UNet and VAE under `fsdp=8`) computes what one device does."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from jaxlab import parallel
from jaxlab.errors import UserError
from jaxlab.models import clip, cnn3d, stin, unet2d, vae, video_vit

BATCH = 8
MESHES = {"fsdp=8": {"data": 1, "fsdp": 8}, "data=4,tensor=2": {"data": 4, "tensor": 2}}
# The least share of parameter bytes each mesh must split: what it splits (printed) less about 5 points.
# Under `tensor` heads, MLPs, vocabularies and conv output channels split; embeddings and norms stay whole.
FLOORS = {
    "clip": {"fsdp=8": 0.92, "data=4,tensor=2": 0.83},
    "video_vit": {"fsdp=8": 0.93, "data=4,tensor=2": 0.92},
    "cnn3d": {"fsdp=8": 0.87, "data=4,tensor=2": 0.85},  # grouped convs stay whole (nn.conv)
    "stin": {"fsdp=8": 0.93, "data=4,tensor=2": 0.9},
    "unet2d": {"fsdp=8": 0.95, "data=4,tensor=2": 0.95},
    "vae": {"fsdp=8": 0.95, "data=4,tensor=2": 0.95},
}


def _family(name: str):
  """(module, inputs of a batch of 8, output -> loss) of a small member of the family."""
  rng = np.random.default_rng(0)
  normal = lambda *shape: jnp.asarray(rng.normal(size=shape).astype(np.float32))
  mean_square = lambda out: jnp.mean(jnp.square(out))
  if name == "clip":
    module = clip.CLIPModel(
        clip.CLIPTextConfig(vocab_size=64, hidden_size=32, intermediate_size=64, projection_dim=32,
                            num_hidden_layers=1, num_attention_heads=4, max_position_embeddings=8, eos_token_id=63),
        clip.CLIPVisionConfig(hidden_size=32, intermediate_size=64, projection_dim=32, num_hidden_layers=1,
                              num_attention_heads=4, image_size=32, patch_size=8), projection_dim=32)
    ids = jnp.asarray(rng.integers(0, 64, size=(BATCH, 8)), jnp.int32)
    return module, (ids, normal(BATCH, 32, 32, 3)), lambda out: mean_square(out.logits_per_image)
  if name == "video_vit":
    module = video_vit.VideoViTClassifier(video_vit.VideoViTConfig(
        image_size=16, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32, num_hidden_layers=1,
        num_attention_heads=4, intermediate_size=64, num_labels=8))
    return module, (normal(BATCH, 4, 16, 16, 3),), mean_square
  if name == "cnn3d":
    module = cnn3d.ResNeXt3D(cnn3d.ResNeXt3DConfig(layers=(1, 1, 1, 1), widths=(16, 32, 64, 128), cardinality=4,
                                                   stem_width=16, num_labels=8))
    return module, (normal(BATCH, 4, 32, 32, 3),), mean_square
  if name == "stin":
    module = stin.STIN(stin.variant_config("stin_oie_nl", num_classes=8, num_frames=4, coord_feature_dim=64))
    boxes = jnp.asarray(rng.uniform(size=(BATCH, 4, 4, 4)).astype(np.float32))
    return module, (boxes, jnp.asarray(rng.integers(0, 3, size=(BATCH, 4, 4)), jnp.int32)), mean_square
  if name == "unet2d":  # one width: each up block's two layers are a scanned run (a stack on the `layers` axis)
    module = unet2d.UNet2DConditionModel(unet2d.UNet2DConfig(
        sample_size=8, block_out_channels=(32, 32), layers_per_block=(1, 1), norm_num_groups=8,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=(32, 32), attention_head_dim=(4, 4), transformer_layers_per_block=(1, 1),
        only_cross_attention=(False, False)), scan_layers=True)
    timesteps = jnp.asarray(rng.integers(0, 1000, size=BATCH), jnp.int32)
    return module, (normal(BATCH, 8, 8, 4), timesteps, normal(BATCH, 4, 32)), mean_square
  module = vae.AutoencoderKL(vae.VAEConfig(
      block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
      up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, norm_num_groups=8, sample_size=16))
  return module, (normal(BATCH, 16, 16, 3),), mean_square


def _step(module, loss_of, variables, inputs):
  """Loss and one SGD step of `mean(output^2)` (the gradients of every parameter)."""
  def loss(params):
    return loss_of(module.apply({**variables, "params": params}, *inputs))
  value, grads = jax.value_and_grad(loss)(variables["params"])
  return value, jax.tree.map(lambda p, g: p - 0.1 * g, variables["params"], grads)


def _init(module, inputs, **jit_kwargs):
  return jax.jit(lambda key: nn.meta.unbox(module.init(key, *inputs)), **jit_kwargs)(jax.random.key(0))


@functools.cache
def _one_device(name: str):
  """The family's initial variables, and its loss and stepped params, on one device."""
  module, inputs, loss_of = _family(name)
  device = jax.devices()[0]
  variables = _init(module, inputs, device=device)
  return jax.device_get(variables), jax.device_get(jax.jit(
      functools.partial(_step, module, loss_of), device=device)(variables, inputs))


def sharded_share(shardings, shapes) -> float:
  """The share of the tree's bytes held in arrays that are split over more than one device."""
  sizes = jax.tree.map(lambda x: x.size * x.dtype.itemsize, shapes)
  split = jax.tree.map(lambda s, n: 0 if s.is_fully_replicated else n, shardings, sizes)
  return sum(jax.tree.leaves(split)) / sum(jax.tree.leaves(sizes))


@pytest.mark.parametrize("mesh_name", MESHES)
@pytest.mark.parametrize("name", FLOORS)
def test_family_is_split_and_steps_as_on_one_device(name, mesh_name):
  module, inputs, loss_of = _family(name)
  mesh = parallel.make_mesh(MESHES[mesh_name])
  boxed = jax.eval_shape(module.init, jax.random.key(0), *inputs)
  shapes = nn.meta.unbox(boxed)
  shardings = parallel.logical_sharding(nn.get_partition_spec(boxed), mesh, shapes=shapes)
  share = sharded_share(shardings["params"], shapes["params"])
  print(f"{name} {mesh_name}: {100 * share:.1f}% of parameter bytes split")
  assert share >= FLOORS[name][mesh_name]
  if name == "unet2d":  # a scanned stack: its `layers` axis whole, its output channels split
    stack = shardings["params"]["up_blocks_1"]["run_0"]["resnets"]["conv1"]["kernel"]
    assert stack.spec[0] is None and not stack.is_fully_replicated

  initial, (reference_loss, reference_params) = _one_device(name)
  with parallel.mesh_context(mesh):
    if name in ("unet2d", "vae") and mesh_name == "fsdp=8":  # initialised sharded, as the train loop does
      variables = _init(module, inputs, out_shardings=shardings)
      chex.assert_trees_all_close(jax.device_get(variables), initial, atol=1e-6)
    else:
      variables = jax.device_put(initial, shardings)
    loss, params = jax.jit(functools.partial(_step, module, loss_of),
                           out_shardings=(parallel.replicated(mesh), shardings["params"]))(variables, inputs)
  np.testing.assert_allclose(loss, reference_loss, rtol=1e-5)
  chex.assert_trees_all_close(jax.device_get(params), reference_params, atol=1e-5, rtol=1e-4)


def test_an_indivisible_dimension_is_not_split_and_said_once(capsys, monkeypatch):
  from jaxlab.parallel import mesh as mesh_module
  monkeypatch.setattr(mesh_module, "_SAID", set())  # forget what earlier tests said
  module, inputs, _ = _family("unet2d")
  boxed = jax.eval_shape(module.init, jax.random.key(0), *inputs)
  mesh = parallel.make_mesh(MESHES["fsdp=8"])
  for _ in range(2):
    shardings = parallel.logical_sharding(nn.get_partition_spec(boxed), mesh, shapes=nn.meta.unbox(boxed))
  conv_out, conv_in = shardings["params"]["conv_out"]["kernel"], shardings["params"]["conv_in"]["kernel"]
  assert tuple(conv_out.spec) == (None, None, None, None)  # 4 output channels over 8 devices
  assert tuple(conv_in.spec) == (None, None, None, ("fsdp", "tensor"))  # 32 output channels
  said = capsys.readouterr().err
  assert said.count("not split") == 1 and "conv_out/kernel (3, 3, 32, 4)" in said


def test_rules_from_the_config():
  assert parallel.axis_rules(parallel.rule_settings()) == parallel.LOGICAL_AXIS_RULES
  assert parallel.axis_rules(None) is parallel.LOGICAL_AXIS_RULES
  settings = dict(parallel.rule_settings(), mlp="", embed="fsdp,tensor")
  rules = dict(parallel.axis_rules(settings))
  assert rules["mlp"] is None and rules["embed"] == ("fsdp", "tensor") and rules["heads"] == "tensor"
  with pytest.raises(UserError, match="the mesh axes are data, fsdp, tensor"):
    parallel.axis_rules({"mlp": "model"})
