"""Text-to-image and text-to-video with a local diffusers Stable Diffusion folder, in Flax.

The folder is what `StableDiffusionPipeline.save_pretrained` (or `TextToVideoSDPipeline`'s) writes:
`model_index.json`, `unet/`, `vae/`, `text_encoder/` (transformers `CLIPTextModel`), `tokenizer/` (`vocab.json` +
`merges.txt`) and `scheduler/`. The UNet's class comes from its config: a `UNet3DConditionModel` makes videos
(`[N, F, H, W, 3]`; the VAE decodes them frame by frame, a few frames per call). Sampling is DDIM or DPM-Solver++
with classifier-free guidance: text encoding, the whole denoising chain and the VAE decode run as compiled JAX
functions. The params are placed on the device once, when the pipeline loads; a `generate()` call sends only its
latents and token ids. `write_tiny_random` makes a small random pipeline in the same layout for tests and demos.

`StableDiffusionXL` reads a `StableDiffusionXLPipeline` folder (also `text_encoder_2/`, a
`CLIPTextModelWithProjection`, and `tokenizer_2/`) the same way; `load_pipeline` picks the class from
`model_index.json`, and `write_tiny_random_xl` writes a small random one.
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
from jaxlab.diffusion.schedules import DPMSolver, NoiseSchedule
from jaxlab.errors import UserError
from jaxlab.models import load_pretrained, save_pretrained, unet2d, weights
from jaxlab.models.clip import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
from jaxlab.models.unet2d import UNet2DConditionModel, UNet2DConfig
from jaxlab.models.vae import AutoencoderKL, VAEConfig

COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
XL_COMPONENTS = COMPONENTS + ("text_encoder_2", "tokenizer_2")


def check_pipeline_folder(folder, components=COMPONENTS) -> Path:
  folder = Path(folder)
  if not (folder / "model_index.json").is_file():
    raise UserError(f"{folder} has no model_index.json; pass a local diffusers Stable Diffusion folder "
                    "(StableDiffusionPipeline.save_pretrained writes one)")
  missing = [name for name in components if not (folder / name).is_dir()]
  if missing:
    raise UserError(f"{folder} lacks the pipeline parts {', '.join(missing)}/")
  return folder


def latent_noise(seed: int, shape: tuple[int, ...], source: str = "jax") -> np.ndarray:
  """Initial latents `[N, h, w, C]` (or `[N, F, h, w, C]`) for one seed. `source='torch'` draws them as the
  papers' scripts and diffusers' pipelines do (`torch.randn((N, C, h, w)` or `(N, C, F, h, w),
  generator=torch.manual_seed(seed))`), so images and videos can be compared one to one."""
  if source == "jax":
    return np.asarray(jax.random.normal(jax.random.key(seed), shape, jnp.float32))
  if source == "torch":
    try:
      import torch
    except ImportError:
      raise UserError("--noise torch needs PyTorch (pip install -e '.[test]')") from None
    channels_first = (shape[0], shape[-1], *shape[1:-1])
    return np.moveaxis(torch.randn(channels_first, generator=torch.Generator().manual_seed(seed)).numpy(), 1, -1)
  raise UserError(f"noise source {source!r}: use jax or torch")


def place(params):
  """`params` as device arrays, sent once; on the default device but not committed to it, so that a computation
  with sharded arrays (a training run's) may move them where it needs them."""
  return jax.device_put(params)


@dataclasses.dataclass(eq=False)  # hashed by identity: the compiled functions take it as a static argument
class StableDiffusion:
  """The modules and params of an SD (or text-to-video SD) pipeline; `params` is `{'unet', 'vae', 'text_encoder'}`,
  on the device. `decode_chunk` bounds how many frames (or images) the VAE decodes at once."""
  unet: UNet2DConditionModel
  vae: AutoencoderKL
  text_encoder: CLIPTextModel
  tokenizer: CLIPTokenizer
  schedule: NoiseSchedule
  params: dict[str, Any]
  decode_chunk: int = 8

  @classmethod
  def load(cls, folder, dtype=jnp.float32) -> "StableDiffusion":
    """A local diffusers pipeline folder; `dtype` is the compute dtype (params stay float32). The VAE runs in
    float32 when its config asks for it (`force_upcast`), as diffusers does."""
    folder = check_pipeline_folder(folder)
    unet, unet_params = load_pretrained(folder / "unet", dtype=dtype,
                                         expect=("UNet2DConditionModel", "UNet3DConditionModel"))
    vae, vae_params = load_pretrained(folder / "vae", expect=("AutoencoderKL",))
    if not vae.config.force_upcast:
      vae = vae.clone(dtype=dtype)
    text_encoder, text_params = load_pretrained(folder / "text_encoder", dtype=dtype, expect=("CLIPTextModel",))
    return cls(unet, vae, text_encoder, CLIPTokenizer.from_folder(folder / "tokenizer"),
               NoiseSchedule.from_folder(folder / "scheduler"),
               place({"unet": unet_params, "vae": vae_params, "text_encoder": text_params}))

  @property
  def vae_scale_factor(self) -> int:
    return 2 ** (len(self.vae.config.block_out_channels) - 1)

  @property
  def default_size(self) -> int:
    return self.unet.config.sample_size * self.vae_scale_factor

  @property
  def is_video(self) -> bool:
    """Whether the UNet denoises videos (`[B, F, h, w, C]` latents)."""
    return weights.family_of(self.unet).dummy_inputs(self.unet)[0].ndim == 5

  def latent_shape(self, n: int, height: int | None = None, width: int | None = None,
                   num_frames: int = 16) -> tuple[int, ...]:
    """`[n, h, w, C]`, or `[n, num_frames, h, w, C]` for a video UNet."""
    height, width = height or self.default_size, width or self.default_size
    f = self.vae_scale_factor
    if height % f or width % f:
      raise UserError(f"height and width must be multiples of {f}, got {height}x{width}")
    frames = (num_frames,) if self.is_video else ()
    return (n, *frames, height // f, width // f, self.unet.config.in_channels)

  def encode_text(self, prompts: list[str]) -> jax.Array:
    """The text encoder's last hidden states `[N, 77, D]` for the prompts (padded to the full context)."""
    ids = self.tokenizer(list(prompts))["input_ids"]
    return _encode(self, self.params["text_encoder"], place(ids))

  def generate(self, prompts: list[str], noise: np.ndarray, num_steps: int = 50, guidance_scale: float = 7.5,
               negative_prompt: str | None = "", unet_params=None, loras=(), start_noise: int | None = None,
               scheduler: NoiseSchedule | DPMSolver | None = None, **conditioning) -> np.ndarray:
    """uint8 images `[N, H, W, 3]` (videos `[N, F, H, W, 3]`): sampling with CFG from the initial latents `noise`
    (`latent_shape`, one row per prompt), by DDIM on the pipeline's schedule unless `scheduler` says otherwise.
    `unet_params` replaces the pipeline's UNet weights (e.g. an erased model). `loras` are `(LoRA, its params,
    scale)` triples applied over them, each at scale 0 while the timestep is above `start_noise`; one compiled
    sampler serves every scale and start_noise."""
    return self.decode(self.sample(prompts, noise, num_steps, guidance_scale, negative_prompt, unet_params, loras,
                                   start_noise, scheduler, **conditioning))

  def sample(self, prompts: list[str], noise: np.ndarray, num_steps: int = 50, guidance_scale: float = 7.5,
             negative_prompt: str | None = "", unet_params=None, loras=(), start_noise: int | None = None,
             scheduler: NoiseSchedule | DPMSolver | None = None, **conditioning) -> jax.Array:
    """The denoised latents of `generate`."""
    if len(prompts) != noise.shape[0]:
      raise ValueError(f"{len(prompts)} prompts for {noise.shape[0]} initial latents")
    cond, uncond = self.conditions(prompts, negative_prompt, noise, **conditioning)
    chain = (scheduler or self.schedule).chain(num_steps)
    unet_params = self.params["unet"] if unet_params is None else unet_params
    kinds, lora_params, scales = zip(*loras) if loras else ((), (), ())
    # Without a start_noise every step is at or below num_train_timesteps, so every LoRA is on throughout.
    start = self.schedule.num_train_timesteps if start_noise is None else start_noise
    return _sample(self, tuple(kinds), unet_params, tuple(lora_params), place(np.asarray(scales, np.float32)),
                   place(np.int32(start)), cond, uncond, place(noise), place(chain), float(guidance_scale))

  def conditions(self, prompts: list[str], negative_prompt: str | None, noise) -> tuple:
    """(conditional, unconditional) UNet inputs after `(x, t)` for the prompts."""
    cond = self.encode_text(prompts)
    return cond, jnp.broadcast_to(self.encode_text([negative_prompt or ""]), cond.shape)

  def decode(self, latents) -> np.ndarray:
    """uint8 images `[N, H, W, 3]` (videos `[N, F, H, W, 3]`) of latents."""
    return np.asarray(_decode(self, self.params["vae"], latents))


@functools.partial(jax.jit, static_argnums=0)
def _encode(pipe: StableDiffusion, text_params, ids):
  return pipe.text_encoder.apply({"params": text_params}, ids).last_hidden_state


@functools.partial(jax.jit, static_argnums=(0, 1, 10))
def _sample(pipe: StableDiffusion, loras: tuple, unet_params, lora_params: tuple, scales, start_noise, cond, uncond,
            x_T, chain, guidance_scale):
  params_at = adapters.at_timestep(unet_params, list(zip(loras, lora_params, scales)), start_noise)

  def denoise(x, t):
    return sampler.guided(pipe.unet, params_at(t), cond, uncond, guidance_scale)(x, t)

  return sampler.sample(denoise, chain, x_T)


@functools.partial(jax.jit, static_argnums=0)
def _decode(pipe: StableDiffusion, vae_params, latents):
  """uint8 pixels of latents `[..., h, w, C]`, `decode_chunk` frames per VAE call (bounded memory)."""
  *lead, h, w, c = latents.shape
  frames = latents.reshape(-1, h, w, c) / pipe.vae.config.scaling_factor
  chunk = min(pipe.decode_chunk, frames.shape[0])
  pad = -frames.shape[0] % chunk
  frames = jnp.concatenate([frames, jnp.zeros((pad, h, w, c), frames.dtype)]).reshape(-1, chunk, h, w, c)
  images = jax.lax.map(lambda z: pipe.vae.apply({"params": vae_params}, z, method="decode"), frames)
  images = images.reshape(-1, *images.shape[2:])[:images.shape[0] * chunk - pad]
  images = images.reshape(*lead, *images.shape[1:])
  return jnp.round(jnp.clip(images / 2 + 0.5, 0.0, 1.0) * 255).astype(jnp.uint8)


@dataclasses.dataclass(eq=False)
class StableDiffusionXL(StableDiffusion):
  """An SDXL pipeline: `params` also has `'text_encoder_2'`.

  The UNet reads both encoders' penultimate hidden states side by side, and adds the second encoder's projected
  pooled embedding and the size conditioning `time_ids` (original size, crop top-left, target size) to its time
  embedding, as diffusers' `StableDiffusionXLPipeline` does.
  """
  text_encoder_2: CLIPTextModelWithProjection | None = None
  tokenizer_2: CLIPTokenizer | None = None
  force_zeros_for_empty_prompt: bool = True  # no negative prompt: zero conditioning, not the empty prompt's

  @classmethod
  def load(cls, folder, dtype=jnp.float32) -> "StableDiffusionXL":
    folder = check_pipeline_folder(folder, XL_COMPONENTS)
    base = StableDiffusion.load(folder, dtype)
    text_encoder_2, text_params_2 = load_pretrained(folder / "text_encoder_2", dtype=dtype,
                                                    expect=("CLIPTextModelWithProjection",))
    index = json.loads((folder / "model_index.json").read_text())
    shared = {f.name: getattr(base, f.name) for f in dataclasses.fields(StableDiffusion) if f.name != "params"}
    return cls(**shared, params={**base.params, "text_encoder_2": place(text_params_2)},
               text_encoder_2=text_encoder_2,
               tokenizer_2=CLIPTokenizer.from_folder(folder / "tokenizer_2"),
               force_zeros_for_empty_prompt=index.get("force_zeros_for_empty_prompt", True))

  def encode_text(self, prompts: list[str]) -> tuple[jax.Array, jax.Array]:
    """(both encoders' penultimate hidden states concatenated `[N, 77, D1 + D2]`, pooled embeddings `[N, P]`)."""
    ids = place(self.tokenizer(list(prompts))["input_ids"])
    ids_2 = place(self.tokenizer_2(list(prompts))["input_ids"])
    return _encode_xl(self, self.params["text_encoder"], self.params["text_encoder_2"], ids, ids_2)

  def generate(self, prompts: list[str], noise: np.ndarray, num_steps: int = 50, guidance_scale: float = 5.0,
               negative_prompt: str | None = None, unet_params=None, loras=(), start_noise: int | None = None,
               **sizes) -> np.ndarray:
    """uint8 images `[N, H, W, 3]` as `StableDiffusion.generate`, with SDXL's defaults; `sizes` are those of
    `conditions`."""
    return super().generate(prompts, noise, num_steps, guidance_scale, negative_prompt, unet_params, loras,
                            start_noise, **sizes)

  def conditions(self, prompts: list[str], negative_prompt: str | None, noise,
                 original_size: tuple[int, int] | None = None, crops_coords_top_left: tuple[int, int] = (0, 0),
                 target_size: tuple[int, int] | None = None) -> tuple:
    """(text embeddings, added conditions) for both guidance branches; sizes default to the image size."""
    size = (noise.shape[1] * self.vae_scale_factor, noise.shape[2] * self.vae_scale_factor)
    time_ids = place(np.asarray([(*(original_size or size), *crops_coords_top_left, *(target_size or size))] *
                                len(prompts), np.float32))
    embeds, pooled = self.encode_text(prompts)
    if negative_prompt is None and self.force_zeros_for_empty_prompt:
      neg_embeds, neg_pooled = jnp.zeros_like(embeds), jnp.zeros_like(pooled)
    else:
      neg_embeds, neg_pooled = (jnp.broadcast_to(a, b.shape) for a, b in
                                zip(self.encode_text([negative_prompt or ""]), (embeds, pooled)))
    return ((embeds, {"text_embeds": pooled, "time_ids": time_ids}),
            (neg_embeds, {"text_embeds": neg_pooled, "time_ids": time_ids}))


@functools.partial(jax.jit, static_argnums=0)
def _encode_xl(pipe: StableDiffusionXL, text_params, text_params_2, ids, ids_2):
  first = pipe.text_encoder.apply({"params": text_params}, ids, output_hidden_states=True)
  second = pipe.text_encoder_2.apply({"params": text_params_2}, ids_2, output_hidden_states=True)
  return jnp.concatenate([first.hidden_states[-2], second.hidden_states[-2]], axis=-1), second.text_embeds


def load_pipeline(folder, dtype=jnp.float32) -> StableDiffusion:
  """The pipeline class that the folder's `model_index.json` names (SD or SDXL)."""
  folder = check_pipeline_folder(folder)
  index = json.loads((folder / "model_index.json").read_text())
  xl = index.get("_class_name") == "StableDiffusionXLPipeline"
  return (StableDiffusionXL if xl else StableDiffusion).load(folder, dtype)


# --------------------------------------------------------------------------------------------- writing

SD_SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
    "clip_sample": False, "trained_betas": None,
}


def write_pipeline(folder, unet, unet_params, vae, vae_params, text_encoder, text_params, tokenizer: CLIPTokenizer,
                   scheduler_config: dict = SD_SCHEDULER_CONFIG, pipeline_class: str = "StableDiffusionPipeline",
                   text_encoder_2=None, text_params_2=None, tokenizer_2: CLIPTokenizer | None = None) -> Path:
  """A diffusers `StableDiffusionPipeline` folder (no safety checker), or another class's with the same parts
  (`TextToVideoSDPipeline`), from our modules and params; with the second text encoder (a
  `CLIPTextModelWithProjection`) and tokenizer, a `StableDiffusionXLPipeline` folder."""
  folder = Path(folder)
  save_pretrained(folder / "unet", unet, unet_params)
  save_pretrained(folder / "vae", vae, vae_params)
  save_pretrained(folder / "text_encoder", text_encoder, text_params)
  _write_tokenizer(folder / "tokenizer", tokenizer)
  (folder / "scheduler").mkdir(parents=True, exist_ok=True)
  (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler_config, indent=2))
  index = {
      "_class_name": pipeline_class, "_diffusers_version": "0.42.1",
      "unet": ["diffusers", weights.family_of(unet).class_names[0]], "vae": ["diffusers", "AutoencoderKL"],
      "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
      "scheduler": ["diffusers", scheduler_config["_class_name"]]}
  if text_encoder_2 is not None:
    save_pretrained(folder / "text_encoder_2", text_encoder_2, text_params_2)
    _write_tokenizer(folder / "tokenizer_2", tokenizer_2)
    index.update(_class_name="StableDiffusionXLPipeline", feature_extractor=[None, None], image_encoder=[None, None],
                 text_encoder_2=["transformers", "CLIPTextModelWithProjection"],
                 tokenizer_2=["transformers", "CLIPTokenizer"], force_zeros_for_empty_prompt=True)
  elif pipeline_class == "StableDiffusionPipeline":
    index.update(feature_extractor=[None, None], safety_checker=[None, None], requires_safety_checker=False)
  (folder / "model_index.json").write_text(json.dumps(index, indent=2))
  return folder


def _write_tokenizer(path: Path, tokenizer: CLIPTokenizer) -> None:
  tokenizer.save_folder(path)
  pad = next(token for token, i in tokenizer.vocab.items() if i == tokenizer.pad_id)
  (path / "tokenizer_config.json").write_text(json.dumps(
      {"tokenizer_class": "CLIPTokenizer", "model_max_length": tokenizer.context_length, "pad_token": pad,
       "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}, indent=2))


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


def tiny_tokenizer(pad_token: str = "<|endoftext|>") -> CLIPTokenizer:
  """A near character-level tokenizer: CLIP's byte symbols and four merges, 16 tokens of context."""
  merges = [("t", "h"), ("th", "e</w>"), ("a", "n</w>"), ("o", "f</w>")]  # a few, so merges.txt is valid BPE
  return CLIPTokenizer(vocab_from_merges(merges), merges, context_length=16, pad_token=pad_token)


def tiny_text_encoder(tokenizer: CLIPTokenizer, module_type=CLIPTextModel, seed: int = 0):
  """(a random 2-layer CLIP text model of width 32 for `tokenizer`, its params)."""
  module = module_type(CLIPTextConfig(
      vocab_size=len(tokenizer.vocab), hidden_size=32, intermediate_size=64, projection_dim=32, num_hidden_layers=2,
      num_attention_heads=4, max_position_embeddings=tokenizer.context_length, hidden_act="quick_gelu",
      bos_token_id=tokenizer.start_id, eos_token_id=tokenizer.end_id, pad_token_id=tokenizer.pad_id))
  return module, random_params(module, jnp.zeros((1, tokenizer.context_length), jnp.int32), seed=seed)


def tiny_vae(image_size: int, widths: tuple[int, ...] = (32, 64), scaling_factor: float = 0.18215) -> AutoencoderKL:
  """A small VAE, one level per width (latents 2^(levels - 1) times smaller than the images)."""
  n = len(widths)
  return AutoencoderKL(VAEConfig(block_out_channels=tuple(widths), down_block_types=("DownEncoderBlock2D",) * n,
                                 up_block_types=("UpDecoderBlock2D",) * n, layers_per_block=1, norm_num_groups=8,
                                 sample_size=image_size, scaling_factor=scaling_factor))


def write_tiny_random(folder, seed: int = 0, sample_size: int = 16) -> Path:
  """A small random SD pipeline in the diffusers layout: 2-level UNet and VAE, `tiny_text_encoder` and
  `tiny_tokenizer`. `sample_size` is the latent size; images are twice that."""
  tokenizer = tiny_tokenizer()
  unet = UNet2DConditionModel(UNet2DConfig(
      sample_size=sample_size, block_out_channels=(32, 64), layers_per_block=(1, 1), norm_num_groups=8,
      down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
      cross_attention_dim=(32, 32), attention_head_dim=(4, 4), transformer_layers_per_block=(1, 1),
      only_cross_attention=(False, False)))
  vae = tiny_vae(2 * sample_size)
  return write_pipeline(folder, unet, random_params(unet, *unet2d.FAMILY.dummy_inputs(unet), seed=seed),
                        vae, random_params(vae, jnp.zeros((1, 4, 4, 3)), seed=seed + 1),
                        *tiny_text_encoder(tokenizer, seed=seed + 2), tokenizer)


def write_tiny_random_xl(folder, seed: int = 0, sample_size: int = 8) -> Path:
  """A small random SDXL pipeline in the diffusers layout: the UNet's SDXL structure (no attention on the first
  level, deeper transformers below, linear projections, `text_time` conditioning on 6 size ids), two 2-layer text
  encoders of width 32 (the second with a projection, and `!` padding as SDXL's), the tiny VAE."""
  unet = UNet2DConditionModel(UNet2DConfig(
      sample_size=sample_size, block_out_channels=(32, 64), layers_per_block=(1, 1), norm_num_groups=8,
      down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
      cross_attention_dim=(64, 64), attention_head_dim=(2, 4), transformer_layers_per_block=(1, 2),
      only_cross_attention=(False, False), use_linear_projection=True, addition_embed_type="text_time",
      addition_time_embed_dim=8, projection_class_embeddings_input_dim=32 + 6 * 8))
  tokenizer, tokenizer_2 = tiny_tokenizer(), tiny_tokenizer(pad_token="!")
  text_encoder_2, text_params_2 = tiny_text_encoder(tokenizer_2, CLIPTextModelWithProjection, seed=seed + 3)
  vae = tiny_vae(2 * sample_size, scaling_factor=0.13025)
  return write_pipeline(folder, unet, random_params(unet, *unet2d.FAMILY.dummy_inputs(unet), seed=seed),
                        vae, random_params(vae, jnp.zeros((1, 4, 4, 3)), seed=seed + 1),
                        *tiny_text_encoder(tokenizer, seed=seed + 2), tokenizer, text_encoder_2=text_encoder_2,
                        text_params_2=text_params_2, tokenizer_2=tokenizer_2)
