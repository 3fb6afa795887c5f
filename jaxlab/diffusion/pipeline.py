"""Text-to-image with a local diffusers Stable Diffusion folder, in Flax.

The folder is what `StableDiffusionPipeline.save_pretrained` writes: `model_index.json`, `unet/`, `vae/`,
`text_encoder/` (transformers `CLIPTextModel`), `tokenizer/` (`vocab.json` + `merges.txt`) and `scheduler/`.
Sampling is DDIM with classifier-free guidance: text encoding, the whole denoising chain and the VAE decode run
as compiled JAX functions. The params are placed on the device once, when the pipeline loads; a `generate()`
call sends only its latents and token ids. `write_tiny_random` makes a small random pipeline in the same layout
for tests and demos.
"""

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxlab.data.clip_tokenizer import CLIPTokenizer, vocab_from_merges
from jaxlab.diffusion import adapters, sampler
from jaxlab.diffusion.schedules import NoiseSchedule
from jaxlab.errors import UserError
from jaxlab.models import load_pretrained, save_pretrained
from jaxlab.models.clip import CLIPTextConfig, CLIPTextModel
from jaxlab.models.unet2d import UNet2DConditionModel, UNet2DConfig
from jaxlab.models.vae import AutoencoderKL, VAEConfig

COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


def check_pipeline_folder(folder) -> Path:
  folder = Path(folder)
  if not (folder / "model_index.json").is_file():
    raise UserError(f"{folder} has no model_index.json; pass a local diffusers Stable Diffusion folder "
                    "(StableDiffusionPipeline.save_pretrained writes one)")
  missing = [name for name in COMPONENTS if not (folder / name).is_dir()]
  if missing:
    raise UserError(f"{folder} lacks the pipeline parts {', '.join(missing)}/")
  return folder


def latent_noise(seed: int, shape: tuple[int, ...], source: str = "jax") -> np.ndarray:
  """Initial latents `[N, h, w, C]` for one seed. `source='torch'` draws them as the papers' eval scripts do
  (`torch.randn((N, C, h, w), generator=torch.manual_seed(seed))`), so images can be compared one to one."""
  if source == "jax":
    return np.asarray(jax.random.normal(jax.random.key(seed), shape, jnp.float32))
  if source == "torch":
    try:
      import torch
    except ImportError:
      raise UserError("--noise torch needs PyTorch (pip install -e '.[test]')") from None
    n, h, w, c = shape
    return torch.randn((n, c, h, w), generator=torch.Generator().manual_seed(seed)).numpy().transpose(0, 2, 3, 1)
  raise UserError(f"noise source {source!r}: use jax or torch")


def place(params):
  """`params` as device arrays, sent once; on the default device but not committed to it, so that a computation
  with sharded arrays (a training run's) may move them where it needs them."""
  return jax.device_put(params)


@dataclasses.dataclass(eq=False)  # hashed by identity: the compiled functions take it as a static argument
class StableDiffusion:
  """The modules and params of an SD pipeline; `params` is `{'unet', 'vae', 'text_encoder'}`, on the device."""
  unet: UNet2DConditionModel
  vae: AutoencoderKL
  text_encoder: CLIPTextModel
  tokenizer: CLIPTokenizer
  schedule: NoiseSchedule
  params: dict[str, Any]

  @classmethod
  def load(cls, folder, dtype=jnp.float32) -> "StableDiffusion":
    """A local diffusers pipeline folder; `dtype` is the compute dtype (params stay float32). The VAE runs in
    float32 when its config asks for it (`force_upcast`), as diffusers does."""
    folder = check_pipeline_folder(folder)
    unet, unet_params = load_pretrained(folder / "unet", dtype=dtype)
    vae, vae_params = load_pretrained(folder / "vae")
    if not vae.config.force_upcast:
      vae = vae.clone(dtype=dtype)
    text_encoder, text_params = load_pretrained(folder / "text_encoder", dtype=dtype)
    return cls(unet, vae, text_encoder, CLIPTokenizer.from_folder(folder / "tokenizer"),
               NoiseSchedule.from_folder(folder / "scheduler"),
               place({"unet": unet_params, "vae": vae_params, "text_encoder": text_params}))

  @property
  def vae_scale_factor(self) -> int:
    return 2 ** (len(self.vae.config.block_out_channels) - 1)

  @property
  def default_size(self) -> int:
    return self.unet.config.sample_size * self.vae_scale_factor

  def latent_shape(self, n: int, height: int | None = None, width: int | None = None) -> tuple[int, ...]:
    height, width = height or self.default_size, width or self.default_size
    f = self.vae_scale_factor
    if height % f or width % f:
      raise UserError(f"height and width must be multiples of {f}, got {height}x{width}")
    return (n, height // f, width // f, self.unet.config.in_channels)

  def encode_text(self, prompts: list[str]) -> jax.Array:
    """The text encoder's last hidden states `[N, 77, D]` for the prompts (padded to the full context)."""
    ids = self.tokenizer(list(prompts))["input_ids"]
    return _encode(self, self.params["text_encoder"], place(ids))

  def generate(self, prompts: list[str], noise: np.ndarray, num_steps: int = 50, guidance_scale: float = 7.5,
               negative_prompt: str = "", unet_params=None, loras=(), start_noise: int | None = None) -> np.ndarray:
    """uint8 images `[N, H, W, 3]`: DDIM with CFG from the initial latents `noise` (`[N, h, w, C]`, one row per
    prompt). `unet_params` replaces the pipeline's UNet weights (e.g. an erased model). `loras` are `(LoRA, its
    params, scale)` triples applied over them, each at scale 0 while the timestep is above `start_noise`; one
    compiled sampler serves every scale and start_noise."""
    return self.decode(self.sample(prompts, noise, num_steps, guidance_scale, negative_prompt, unet_params, loras,
                                   start_noise))

  def sample(self, prompts: list[str], noise: np.ndarray, num_steps: int = 50, guidance_scale: float = 7.5,
             negative_prompt: str = "", unet_params=None, loras=(), start_noise: int | None = None) -> jax.Array:
    """The denoised latents of `generate`."""
    if len(prompts) != noise.shape[0]:
      raise ValueError(f"{len(prompts)} prompts for {noise.shape[0]} initial latents")
    cond = self.encode_text(prompts)
    uncond = jnp.broadcast_to(self.encode_text([negative_prompt]), cond.shape)
    timesteps = self.schedule.timesteps(num_steps)
    unet_params = self.params["unet"] if unet_params is None else unet_params
    kinds, lora_params, scales = zip(*loras) if loras else ((), (), ())
    # Without a start_noise every step is at or below num_train_timesteps, so every LoRA is on throughout.
    start = self.schedule.num_train_timesteps if start_noise is None else start_noise
    return _sample(self, tuple(kinds), unet_params, tuple(lora_params), place(np.asarray(scales, np.float32)),
                   place(np.int32(start)), cond, uncond, place(noise), place(timesteps), float(guidance_scale))

  def decode(self, latents) -> np.ndarray:
    """uint8 images `[N, H, W, 3]` of latents."""
    return np.asarray(_decode(self, self.params["vae"], latents))


@functools.partial(jax.jit, static_argnums=0)
def _encode(pipe: StableDiffusion, text_params, ids):
  return pipe.text_encoder.apply({"params": text_params}, ids).last_hidden_state


@functools.partial(jax.jit, static_argnums=(0, 1, 10))
def _sample(pipe: StableDiffusion, loras: tuple, unet_params, lora_params: tuple, scales, start_noise, cond, uncond,
            x_T, timesteps, guidance_scale):
  params_at = adapters.at_timestep(unet_params, list(zip(loras, lora_params, scales)), start_noise)

  def denoise(x, t):
    return sampler.guided(pipe.unet, params_at(t), cond, uncond, guidance_scale)(x, t)

  return sampler.ddim_sample(denoise, pipe.schedule, x_T, timesteps)


@functools.partial(jax.jit, static_argnums=0)
def _decode(pipe: StableDiffusion, vae_params, latents):
  image = pipe.vae.apply({"params": vae_params}, latents / pipe.vae.config.scaling_factor, method="decode")
  return jnp.round(jnp.clip(image / 2 + 0.5, 0.0, 1.0) * 255).astype(jnp.uint8)


# --------------------------------------------------------------------------------------------- writing

SD_SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
    "clip_sample": False, "trained_betas": None,
}


def write_pipeline(folder, unet, unet_params, vae, vae_params, text_encoder, text_params, tokenizer: CLIPTokenizer,
                   scheduler_config: dict = SD_SCHEDULER_CONFIG) -> Path:
  """A diffusers `StableDiffusionPipeline` folder (no safety checker) from our modules and params."""
  folder = Path(folder)
  save_pretrained(folder / "unet", unet, unet_params)
  save_pretrained(folder / "vae", vae, vae_params)
  save_pretrained(folder / "text_encoder", text_encoder, text_params)
  tokenizer.save_folder(folder / "tokenizer")
  (folder / "tokenizer" / "tokenizer_config.json").write_text(json.dumps(
      {"tokenizer_class": "CLIPTokenizer", "model_max_length": tokenizer.context_length, "pad_token": "<|endoftext|>",
       "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}, indent=2))
  (folder / "scheduler").mkdir(parents=True, exist_ok=True)
  (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler_config, indent=2))
  (folder / "model_index.json").write_text(json.dumps({
      "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
      "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
      "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
      "scheduler": ["diffusers", scheduler_config["_class_name"]], "safety_checker": [None, None],
      "feature_extractor": [None, None], "requires_safety_checker": False}, indent=2))
  return folder


def random_params(module: nn.Module, *inputs, seed: int = 0) -> dict:
  """LeCun-normal kernels, N(0, 0.02) embeddings, unit norm scales, zero biases, drawn with NumPy from the
  abstract shapes (compiling `module.init` for a whole UNet takes longer on a CPU than this)."""
  rng = np.random.default_rng(seed)
  shapes = nn.meta.unbox(jax.eval_shape(module.init, jax.random.key(0), *inputs)["params"])

  def draw(path, s):
    leaf = path[-1].key
    if leaf == "kernel":
      return (rng.normal(size=s.shape) / np.sqrt(np.prod(s.shape[:-1]))).astype(np.float32)
    if leaf == "embedding":
      return (0.02 * rng.normal(size=s.shape)).astype(np.float32)
    return (np.ones if leaf == "scale" else np.zeros)(s.shape, np.float32)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def write_tiny_random(folder, seed: int = 0, sample_size: int = 16) -> Path:
  """A small random SD pipeline in the diffusers layout: 2-level UNet and VAE, a 2-layer CLIP text model, and a
  near character-level tokenizer (CLIP's byte symbols and four merges). `sample_size` is the latent size; images
  are twice that."""
  merges = [("t", "h"), ("th", "e</w>"), ("a", "n</w>"), ("o", "f</w>")]  # a few, so merges.txt is valid BPE
  tokenizer = CLIPTokenizer(vocab_from_merges(merges), merges, context_length=16)
  text_encoder = CLIPTextModel(CLIPTextConfig(
      vocab_size=len(tokenizer.vocab), hidden_size=32, intermediate_size=64, projection_dim=32, num_hidden_layers=2,
      num_attention_heads=4, max_position_embeddings=tokenizer.context_length, hidden_act="quick_gelu",
      bos_token_id=tokenizer.start_id, eos_token_id=tokenizer.end_id, pad_token_id=tokenizer.pad_id))
  unet = UNet2DConditionModel(UNet2DConfig(
      sample_size=sample_size, block_out_channels=(32, 64), layers_per_block=(1, 1), norm_num_groups=8,
      down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
      cross_attention_dim=(32, 32), attention_head_dim=(4, 4), transformer_layers_per_block=(1, 1),
      only_cross_attention=(False, False)))
  vae = AutoencoderKL(VAEConfig(block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
                                up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, norm_num_groups=8,
                                sample_size=2 * sample_size))
  ids = jnp.zeros((1, tokenizer.context_length), jnp.int32)
  return write_pipeline(
      folder, unet,
      random_params(unet, jnp.zeros((1, sample_size, sample_size, 4)), jnp.zeros((1,)), jnp.zeros((1, 1, 32)),
                    seed=seed),
      vae, random_params(vae, jnp.zeros((1, 4, 4, 3)), seed=seed + 1),
      text_encoder, random_params(text_encoder, ids, seed=seed + 2), tokenizer)
