"""LoRA: the original's target rules on SD 1.4, the overlay's arithmetic and memory, traced scales in the
sampler, and the files exchanged with diffusers / PEFT / ComfyUI."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import traverse_util

from jaxlab.diffusion import adapters, lora, pipeline, sampler
from jaxlab.errors import UserError
from jaxlab.models import unet2d
from jaxlab.nn.layers import LORA_DOWN, LORA_UP


@functools.cache
def sd14_boxed():
  module = unet2d.UNet2DConditionModel(unet2d.UNet2DConfig())  # SD v1.4's architecture, shapes only
  return adapters.abstract_params(module, *unet2d.FAMILY.dummy_inputs(module))


def wrapped(boxed, network, train_method, rank=4):
  return lora.LoRA.create(boxed, lora.targets(network, train_method), rank=rank, layer_lists=unet2d.LAYER_LISTS)


def test_wrapped_layers_on_sd14():
  boxed = sd14_boxed()
  # From the original's rules on SD 1.4's modules: 16 transformers x (attn1, attn2) x (to_q, to_k, to_v,
  # to_out.0); 22 ResnetBlock2D x (conv1, conv2, time_emb_proj) plus conv_shortcut where the width changes
  # (down_blocks.1/2 resnets.0 and all 12 up resnets, whose input is concatenated); 3 down- and 3 upsamplers.
  # noxattn/c3lier: 64 self-attention + 66 + 14 + 6 = 150; xattn/lierla: the 64 cross-attention layers.
  counts = {(n, m): len(wrapped(boxed, n, m).layers)
            for n, m in [("c3lier", "noxattn"), ("lierla", "xattn"), ("c3lier", "xattn"), ("c3lier", "full"),
                         ("c3lier", "xattn-strict"), ("c3lier", "noxattn-hspace"), ("c3lier", "noxattn-hspace-last")]}
  assert counts == {("c3lier", "noxattn"): 150, ("lierla", "xattn"): 64, ("c3lier", "xattn"): 64,
                    ("c3lier", "full"): 214, ("c3lier", "xattn-strict"): 48, ("c3lier", "noxattn-hspace"): 10,
                    ("c3lier", "noxattn-hspace-last"): 1}
  names = {layer.name for layer in wrapped(boxed, "c3lier", "noxattn").layers.values()}
  assert not any("attn2" in n or n.endswith(("proj_in", "proj_out")) or ".ff." in n for n in names)
  assert {"down_blocks.1.resnets.0.conv_shortcut", "mid_block.resnets.1.time_emb_proj",
          "up_blocks.0.upsamplers.0.conv", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0"} <= names
  with pytest.raises(UserError, match="train_method"):
    lora.targets("c3lier", "esd-x")


def original_rule(train_method: str, parent: str, child: str) -> bool:
  """The original's filters (textsliders/lora.py), restated: on the parent module's name, then the child's."""
  if train_method.startswith("noxattn") and ("attn2" in parent or "time_embed" in parent):
    return False
  if (train_method == "innoxattn" and "attn2" in parent) or (train_method == "selfattn" and "attn1" not in parent):
    return False
  if train_method.startswith("xattn") and "attn2" not in parent:
    return False
  if train_method == "xattn-strict" and "out" in child:
    return False
  if train_method.startswith("noxattn-hspace") and "mid_block" not in parent:
    return False
  return train_method != "noxattn-hspace-last" or (".1" in parent and "conv2" in child)


def test_same_layers_as_the_original_on_diffusers_modules():
  torch = pytest.importorskip("torch")
  diffusers = pytest.importorskip("diffusers")
  with torch.device("meta"):
    reference = diffusers.UNet2DConditionModel(cross_attention_dim=768)
  boxed = sd14_boxed()
  # Every (parent kind, parent name, child name) of a Linear / Conv2d under the kinds the original lists.
  candidates = [(type(module).__name__, name, child) for name, module in reference.named_modules()
                if type(module).__name__ in ("Attention", "ResnetBlock2D", "Downsample2D", "Upsample2D",
                                             "DownBlock2D", "UpBlock2D")
                for child, layer in module.named_modules() if isinstance(layer, (torch.nn.Linear, torch.nn.Conv2d))]
  for network, parents in (("c3lier", ("Attention", "ResnetBlock2D", "Downsample2D", "Upsample2D", "DownBlock2D",
                                       "UpBlock2D")), ("lierla", ("Attention",))):
    for train_method in lora.TRAIN_METHODS:
      expected = {f"{name}.{child}" for kind, name, child in candidates
                  if kind in parents and original_rule(train_method, name, child)}
      if not expected:
        with pytest.raises(UserError, match="no layer"):
          wrapped(boxed, network, train_method)
        continue
      ours = {layer.name for layer in wrapped(boxed, network, train_method).layers.values()}
      assert ours == expected, (network, train_method)


def test_init_shapes_and_conv_rank_cap():
  boxed = sd14_boxed()
  adapter = wrapped(boxed, "c3lier", "noxattn", rank=640)
  layers = {layer.name: layer for layer in adapter.layers.values()}
  assert layers["down_blocks.0.resnets.0.conv1"].rank == 320   # conv: min(640, 320, 320)
  assert layers["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"].rank == 640  # Linear: not capped
  small = wrapped(boxed, "lierla", "selfattn", rank=4)
  params = nn.meta.unbox(small.init(jax.random.key(0)))
  flat = traverse_util.flatten_dict(params)
  path = ("mid_block", "attentions_0", "transformer_blocks_0", "attn1", "to_k")
  down, up = flat[path + (LORA_DOWN,)], flat[path + (LORA_UP,)]
  assert down.shape == (1280, 4) and up.shape == (4, 1280) and not np.any(up)
  # kaiming_uniform_(a=1) over fan_in 1280: U(-sqrt(3/1280), sqrt(3/1280)), std sqrt(1/1280).
  assert np.abs(down).max() <= np.sqrt(3 / 1280) and abs(np.std(down) * np.sqrt(1280) - 1) < 0.05
  specs = traverse_util.flatten_dict(wrapped(boxed, "c3lier", "noxattn").specs)
  conv1 = ("down_blocks_0", "resnets_0", "conv1")
  assert tuple(specs[conv1 + (LORA_DOWN,)]) == (None, None, "conv_in", None)
  assert tuple(specs[conv1 + (LORA_UP,)]) == (None, None, None, "conv_out")


# ------------------------------------------------------------------------------------- on a tiny pipeline

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  folder = pipeline.write_tiny_random(tmp_path_factory.mktemp("lora") / "pipe", sample_size=8)
  pipe = pipeline.StableDiffusion.load(folder)
  boxed = adapters.abstract_params(pipe.unet, *unet2d.FAMILY.dummy_inputs(pipe.unet))
  adapter = wrapped(boxed, "c3lier", "noxattn")
  rng = np.random.default_rng(0)
  # A trained-looking LoRA: the fresh `up` is zero.
  params = jax.tree_util.tree_map_with_path(
      lambda p, v: v if p[-1].key == LORA_DOWN else (0.2 * rng.normal(size=v.shape)).astype(np.float32),
      nn.meta.unbox(adapter.init(jax.random.key(0))))
  inputs = (rng.normal(size=(2, 8, 8, 4)).astype(np.float32), np.array([500, 20]),
            rng.normal(size=(2, 16, 32)).astype(np.float32))
  return folder, pipe, boxed, adapter, params, inputs


@pytest.fixture(scope="module")
def run_unet(tiny):
  """The UNet on the fixed inputs, compiled once per params structure."""
  _, pipe, _, _, _, inputs = tiny
  return jax.jit(lambda params: pipe.unet.apply({"params": params}, *inputs))


def unet_fn(pipe, adapter, fold=False):
  return jax.jit(lambda base, params, scale, x, t, c: pipe.unet.apply(
      {"params": adapter.apply(params, base, scale, fold=fold)}, x, t, c))


def test_scale_is_traced_and_zero_is_the_base_bit_for_bit(tiny, run_unet):
  _, pipe, _, adapter, params, inputs = tiny
  base = pipe.params["unet"]
  plain = run_unet(base)
  for fold in (True, False):
    f = unet_fn(pipe, adapter, fold)
    outputs = {s: f(base, params, jnp.float32(s), *inputs) for s in (0.0, 1.0, -2.0)}
    assert f._cache_size() == 1  # one compile for every scale
    assert np.abs(outputs[1.0] - plain).max() > 1e-3
    assert np.abs(outputs[-2.0] - plain).max() > np.abs(outputs[1.0] - plain).max()
    if fold:  # the sampler's way: the model's graph unchanged, so scale 0 is the base model exactly
      np.testing.assert_array_equal(outputs[0.0], plain)
    else:  # the training hook adds an exact 0, but XLA fuses the graph around it differently
      assert np.abs(outputs[0.0] - plain).max() <= 1e-5 * np.abs(plain).max()


def merged_kernels(base, adapted):
  """`base` with each LoRA merged into its kernels: W + scale * alpha / r * down @ up."""
  flat = dict(traverse_util.flatten_dict(base))
  for adapter, params, scale in adapted:
    factors = traverse_util.flatten_dict(params)
    for path, layer in adapter.layers.items():
      down, up = factors[path + (LORA_DOWN,)], factors[path + (LORA_UP,)]
      delta = np.einsum("...ir,ro->...io", down, up.reshape(up.shape[-2:]))
      flat[path + ("kernel",)] = flat[path + ("kernel",)] + scale * layer.alpha / layer.rank * delta
  return traverse_util.unflatten_dict(flat)


def test_layers_add_what_the_merged_kernel_adds(tiny, run_unet):
  # y = x W + scale * alpha / r * (x down) up is the layer with kernel W + scale * alpha / r * down @ up, also
  # for two LoRAs on the same layers (self-attention), whose factors are concatenated.
  _, pipe, boxed, adapter, params, inputs = tiny
  base = pipe.params["unet"]
  other = wrapped(boxed, "lierla", "selfattn")
  other_params = jax.tree.map(lambda v: np.full_like(v, 0.05), nn.meta.unbox(other.init(jax.random.key(1))))
  adapted = [(adapter, params, 0.5), (other, other_params, -1.0)]
  expected = run_unet(merged_kernels(base, adapted))
  for fold in (False, True):
    got = run_unet(adapters.apply_all(base, adapted, fold))
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()
  assert np.abs(expected - run_unet(base)).max() > 1e-3


def test_lora_step_holds_no_gradient_or_optimizer_state_for_the_frozen_weights(tiny):
  from jaxlab import parallel, training
  from jaxlab.bench import lora as lora_bench
  _, pipe, _, adapter, _, inputs = tiny
  base = pipe.params["unet"]
  task = lora_bench.lora_task(pipe.unet, base, adapter)
  _, _, abstract, _ = training.state_layout(task, parallel.make_mesh(), seed=0)
  nbytes = lambda tree: sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))
  lora_bytes, base_bytes = nbytes(abstract["params"]), nbytes(base)
  # The state is the factors and AdamW's two moments of them; the UNet is a frozen input, never state.
  assert nbytes(abstract["opt_state"]) <= 2 * lora_bytes + 64 and lora_bytes < 0.2 * base_bytes
  batch = {"x_t": inputs[0], "t": inputs[1], "text": inputs[2], "noise": inputs[0]}
  grads = jax.eval_shape(jax.grad(lambda p: task.loss_fn(p, {}, base, batch, None)[0]), abstract["params"])
  assert jax.tree.structure(grads) == jax.tree.structure(abstract["params"]) and nbytes(grads) == lora_bytes


def test_start_noise_and_one_compile_for_every_scale(tiny):
  _, pipe, boxed, adapter, params, _ = tiny
  other = wrapped(boxed, "lierla", "xattn")
  other_params = jax.tree.map(lambda v: np.full_like(v, 0.05), nn.meta.unbox(other.init(jax.random.key(1))))
  noise = pipeline.latent_noise(3, pipe.latent_shape(2))
  prompts, steps, start_noise = ["a dog", "van gogh"], 4, 600
  loras = [(adapter, params, 1.5), (other, other_params, -1.0)]
  before = pipeline._sample._cache_size()
  got = pipe.sample(prompts, noise, steps, 7.5, loras=loras, start_noise=start_noise)
  for scale, start in ((0.5, 600), (-2.0, 300), (1.0, None)):
    pipe.sample(prompts, noise, steps, 7.5, loras=[(adapter, params, scale), (other, other_params, 1.0)],
                start_noise=start)
  assert pipeline._sample._cache_size() == before + 1

  # By hand, one DDIM step at a time: the base model while t > start_noise, then both LoRAs at their scales.
  timesteps = pipe.schedule.timesteps(steps)
  prev = timesteps - pipe.schedule.num_train_timesteps // steps
  assert 0 < np.sum(timesteps > start_noise) < steps
  cond, uncond = pipe.encode_text(prompts), jnp.broadcast_to(pipe.encode_text([""]), (2, 16, 32))
  ddim_step = jax.jit(lambda params, x, t, p: pipe.schedule.ddim_step(
      sampler.guided(pipe.unet, params, cond, uncond, 7.5)(x, t), t, p, x))
  x, on = jnp.asarray(noise), adapters.apply_all(pipe.params["unet"], loras, fold=True)
  for t, p in zip(timesteps, prev):
    x = ddim_step(pipe.params["unet"] if t > start_noise else on, x, t, p)
  assert np.abs(got - x).max() <= 1e-5 * np.abs(x).max()
  always_on = pipe.sample(prompts, noise, steps, 7.5, loras=loras)
  assert np.abs(always_on - got).max() > 1e-3
  # All LoRAs at scale 0: the base model's sampler, bit for bit.
  off = pipe.sample(prompts, noise, steps, 7.5, loras=[(adapter, params, 0.0), (other, other_params, 0.0)])
  np.testing.assert_array_equal(off, pipe.sample(prompts, noise, steps, 7.5))


# -------------------------------------------------------------------------------------------- exchange

def diffusers_unet_output(reference_pipe, inputs, scale):
  torch = pytest.importorskip("torch")
  x, t, c = inputs
  with torch.no_grad():
    out = reference_pipe.unet(torch.from_numpy(x.transpose(0, 3, 1, 2)), torch.from_numpy(t),
                              torch.from_numpy(c), cross_attention_kwargs={"scale": scale}).sample
  return out.numpy().transpose(0, 2, 3, 1)


@pytest.fixture(scope="module")
def reference_pipe(tiny):
  pytest.importorskip("peft")
  diffusers = pytest.importorskip("diffusers")
  reference = diffusers.StableDiffusionPipeline.from_pretrained(tiny[0], safety_checker=None)
  reference.unet.eval()
  return reference


def close(a, b):
  return np.abs(np.asarray(a) - b).max() <= 1e-4 * np.abs(b).max()


def test_exports_load_in_diffusers_and_back(tiny, reference_pipe, tmp_path):
  _, pipe, boxed, adapter, params, inputs = tiny
  peft_file = adapter.save_peft(tmp_path / "lora.safetensors", params)
  kohya_file = adapter.save_kohya(tmp_path / "lora_kohya.safetensors", params)
  ours = unet_fn(pipe, adapter)
  for name, path in (("peft", peft_file), ("kohya", kohya_file)):
    reference_pipe.load_lora_weights(str(tmp_path), weight_name=path.name, adapter_name=name)
    for scale in (1.0, 0.5):
      expected = diffusers_unet_output(reference_pipe, inputs, scale)
      assert close(ours(pipe.params["unet"], params, jnp.float32(scale), *inputs), expected), (name, scale)
    reference_pipe.delete_adapters(name)
    # Read back here: the same layers, ranks, alphas and factors.
    loaded, loaded_params = lora.LoRA.load(path, boxed, unet2d.LAYER_LISTS)
    assert loaded.layers == adapter.layers
    jax.tree.map(np.testing.assert_array_equal, loaded_params, params)
  from safetensors import safe_open
  with safe_open(str(peft_file), "np") as f:
    assert json.loads(f.metadata()["lora_adapter_metadata"])["unet.lora_alpha"] == 1.0
    assert "unet.down_blocks.0.resnets.0.conv1.lora_A.weight" in f.keys()
  with safe_open(str(kohya_file), "np") as f:
    assert f.get_tensor("lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight").shape == (32, 4, 1, 1)
    assert float(f.get_tensor("lora_unet_down_blocks_0_resnets_0_conv1.alpha")) == 1.0


def test_a_peft_lora_made_in_diffusers_loads_here(tiny, reference_pipe, tmp_path):
  torch = pytest.importorskip("torch")
  from diffusers import StableDiffusionPipeline
  from peft import LoraConfig
  from peft.utils import get_peft_model_state_dict
  _, pipe, boxed, _, _, inputs = tiny
  unet = reference_pipe.unet
  torch.manual_seed(0)
  unet.add_adapter(LoraConfig(r=3, lora_alpha=6, init_lora_weights=False,
                              target_modules=["to_q", "to_v", "to_out.0", "conv1", "conv_shortcut", "proj_in"]),
                   adapter_name="made_there")
  StableDiffusionPipeline.save_lora_weights(
      tmp_path, unet_lora_layers=get_peft_model_state_dict(unet, adapter_name="made_there"),
      unet_lora_adapter_metadata=unet.peft_config["made_there"].to_dict())
  expected = diffusers_unet_output(reference_pipe, inputs, 0.5)
  unet.delete_adapters("made_there")
  loaded, params = lora.LoRA.load(tmp_path / "pytorch_lora_weights.safetensors", boxed, unet2d.LAYER_LISTS)
  assert {layer.rank for layer in loaded.layers.values()} == {3} and {l.alpha for l in loaded.layers.values()} == {6}
  assert close(unet_fn(pipe, loaded)(pipe.params["unet"], params, jnp.float32(0.5), *inputs), expected)


def test_bad_files(tiny, tmp_path):
  _, _, boxed, adapter, params, _ = tiny
  (tmp_path / "slider.pt").write_bytes(b"\x80\x04not really a pickle")
  with pytest.raises(UserError, match=r"never unpickles.*torch\.load.*slider\.safetensors"):
    lora.LoRA.load(tmp_path / "slider.pt", boxed, unet2d.LAYER_LISTS)
  sd14 = adapter.save_kohya(tmp_path / "other.safetensors", params)
  small = unet2d.UNet2DConditionModel(unet2d.UNet2DConfig(
      sample_size=8, block_out_channels=(32,), layers_per_block=(1,), norm_num_groups=8, down_block_types=(
          "DownBlock2D",), up_block_types=("UpBlock2D",), cross_attention_dim=(32,), attention_head_dim=(4,),
      transformer_layers_per_block=(1,), only_cross_attention=(False,), mid_block_type=None))
  with pytest.raises(UserError, match="not in this model"):
    lora.LoRA.load(sd14, adapters.abstract_params(small, *unet2d.FAMILY.dummy_inputs(small)), unet2d.LAYER_LISTS)
  (tmp_path / "junk.safetensors").write_bytes(b"junk")
  with pytest.raises(UserError, match="not a safetensors file"):
    lora.LoRA.load(tmp_path / "junk.safetensors", boxed, unet2d.LAYER_LISTS)


def test_generate_cli_with_loras_and_a_scale_strip(tiny, tmp_path, capsys):
  from PIL import Image
  from jaxlab import cli
  folder, _, _, adapter, params, _ = tiny
  peft_file = adapter.save_peft(tmp_path / "a.safetensors", params)
  kohya_file = adapter.save_kohya(tmp_path / "b.safetensors", params)
  out = tmp_path / "images"
  args = ["generate", "--pipeline", str(folder), "--prompt", "a dog", "--seed", "4", "--steps", "2", "--out", str(out)]
  assert cli.main(args + ["--lora", f"{peft_file}:0.5", "--lora", str(kohya_file), "--start-noise", "600",
                          "--scales=-1,0,1"]) == 0
  strip = np.asarray(Image.open(out / "4_0.png"))
  assert strip.shape == (16, 48, 3)  # three 16 px images, scales -1, 0, 1 left to right
  left, middle, right = np.split(strip, 3, axis=1)
  assert not np.array_equal(left, middle) and not np.array_equal(middle, right)
  (tmp_path / "slider.pt").write_bytes(b"x")
  assert cli.main(args + ["--overwrite", "--lora", str(tmp_path / "slider.pt")]) == 2
  assert "never unpickles" in capsys.readouterr().err
  assert cli.main(args + ["--overwrite", "--scales=1,2"]) == 2
