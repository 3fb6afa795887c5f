"""Concept Sliders (Gandikota et al., ECCV 2024): a LoRA whose scale moves one attribute of the images.

Text sliders. Each entry of the prompts YAML (the original's format, `read_prompts`) names a `target`, a `positive`
and an `unconditional` (the slider's negative end) prompt and a `neutral` one. The LoRA model at scale +1, prompted
with `target`, is regressed onto the frozen model's

  eps*(x_t, neutral, t) + eta * (eps*(x_t, positive, t) - eps*(x_t, unconditional, t))

(eta = `guidance_scale`, negated for `action: erase`), MSE over all latent elements. x_t comes from the first k
steps (k ~ U{1..S-1}) of an S-step DDIM chain from pure noise, run *with the LoRA active* and guidance 3 between
`unconditional` and `target`. The original then queries every model at the 1000-step schedule's
`timesteps[int(k * 1000 / S)]` = 999 - 20 k while the latent sits at 980 - 20 k (`timestep_mode='original'`, its
19-step offset); `timestep_mode='exact'` queries at 980 - 20 k. `--config.attributes='male, female'` prefixes every
prompt with each attribute (the paper's preservation set); one prompt pair is drawn per iteration.

Image sliders. Folders of images that share file names, one per integer scale (`verylow, low, high, veryhigh` at
-2, -1, 1, 2 by default). Per iteration a magnitude s is drawn, and one file from the -s folder (A) and the +s
folder (B); both latents get the same noise at the 50-step chain's k-th timestep, and

  MSE(eps_{LoRA x +s}(x_B, positive), noise) + MSE(eps_{LoRA x -s}(x_A, neutral), noise)

trains the slider (images at 256 px for SD 1.x, 512 for SDXL; the prompts are empty unless a YAML says otherwise).

SDXL works the same way with both text encoders, the pooled embedding and the size conditioning `time_ids`.
The LoRA (`jaxlab.diffusion.lora`: rank 4, alpha 1, `c3lier` / `noxattn` by default) is the only trained tree;
the UNet is a frozen input that is never copied. Text embeddings and image latents are computed once. `export`
writes `WORKDIR/export/lora.safetensors` (diffusers/PEFT, for `load_lora_weights`) and `lora_kohya.safetensors`
(ComfyUI, A1111); `jaxlab generate --lora FILE:SCALE --start-noise T` samples with it.
"""

import dataclasses
import functools
import math
from pathlib import Path
import sys

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import yaml
from flax import linen as nn
from jax.sharding import PartitionSpec
from PIL import Image

from jaxlab import parallel, training
from jaxlab.data import pipeline as data_pipeline
from jaxlab.diffusion import adapters, generate, lora, pipeline, scoring, tuning
from jaxlab.diffusion.schedules import NoiseSchedule
from jaxlab.errors import UserError
from jaxlab.methods import DemoSection
from jaxlab.models import unet2d, weights
from jaxlab.training.metrics import notice

# ------------------------------------------------------------------------------------------- prompts YAML

ROLES = ("target", "positive", "unconditional", "neutral")
ACTIONS = ("erase", "enhance")
# Keys that the original's PromptSettings drops without a word (its GPT notebook writes them), and what was meant.
IGNORED_KEYS = {"guidance": "`guidance_scale:`", "rank": "--config.rank"}


@dataclasses.dataclass(frozen=True)
class PromptSettings:
  """One entry of the prompts YAML, with the original's defaults (`prompt_util.PromptSettings`)."""
  target: str
  positive: str
  unconditional: str
  neutral: str
  action: str = "erase"
  guidance_scale: float = 1.0
  resolution: int = 512
  dynamic_resolution: bool = False
  batch_size: int = 1
  dynamic_crops: bool = False  # SDXL only: random original size and crop in the size conditioning

  @property
  def eta(self) -> float:
    """The guidance of the target, signed: + for enhance, - for erase."""
    return self.guidance_scale if self.action == "enhance" else -self.guidance_scale

  def prefixed(self, attribute: str) -> "PromptSettings":
    """The entry with `attribute + ' '` before each of its four prompts (the original's `--attributes`)."""
    return dataclasses.replace(self, **{role: f"{attribute} {getattr(self, role)}" for role in ROLES})


_FIELDS = {f.name: f for f in dataclasses.fields(PromptSettings)}
_TYPES = {"guidance_scale": (int, float), "resolution": int, "batch_size": int, "dynamic_resolution": bool,
          "dynamic_crops": bool}


def _entry(where: str, raw) -> PromptSettings:
  if not isinstance(raw, dict):
    raise UserError(f"{where} is {type(raw).__name__}, not a mapping of keys (target: ..., positive: ...)")
  if "target" not in raw:
    raise UserError(f"{where} has no `target`; every entry needs one (the other prompts default from it)")
  for key in raw:
    if key in IGNORED_KEYS:
      notice(f"{where}: `{key}:` is not a key of the prompts format and is ignored, as the original ignores it; "
             f"use {IGNORED_KEYS[key]}")
    elif key not in _FIELDS:
      notice(f"{where}: unknown key `{key}:` ignored (keys: {', '.join(_FIELDS)})")
  values = {key: raw[key] for key in _FIELDS if key in raw}
  values.setdefault("positive", values["target"])
  values.setdefault("unconditional", "")
  values.setdefault("neutral", values["unconditional"])
  for role in ROLES:
    if isinstance(values[role], (int, float)) and not isinstance(values[role], bool):
      values[role] = str(values[role])  # pydantic's coercion in the original: `target: 1980` is "1980"
    if not isinstance(values[role], str):
      raise UserError(f"{where}: `{role}` is {values[role]!r}; give a prompt (\"\" for none)")
  for key, kind in _TYPES.items():
    if key in values and (not isinstance(values[key], kind) or (kind is not bool and isinstance(values[key], bool))):
      raise UserError(f"{where}: `{key}: {values[key]!r}` should be {'a number' if kind != bool else 'true/false'}")
  if values.get("action", "erase") not in ACTIONS:
    raise UserError(f"{where}: `action: {values['action']!r}`; use erase or enhance")
  if values.get("resolution", 512) <= 0 or values.get("batch_size", 1) <= 0:
    raise UserError(f"{where}: resolution and batch_size must be positive")
  return PromptSettings(**values)


def read_prompts(path) -> list[PromptSettings]:
  """The entries of a prompts YAML (the original's `load_prompts_from_yaml`, its defaults filled in)."""
  path = Path(path)
  if not path.is_file():
    raise UserError(f"prompts file {path} not found; pass --config.prompts=FILE.yaml (the original's format)")
  try:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
  except (yaml.YAMLError, UnicodeDecodeError) as e:
    mark = getattr(e, "problem_mark", None)
    where = f" at line {mark.line + 1}" if mark is not None else ""
    problem = getattr(e, "problem", None) or type(e).__name__
    raise UserError(f"{path} is not valid YAML{where} ({problem}); fix the file (a list of `- target: ...` "
                    "entries)") from None
  if not raw:
    raise UserError(f"{path} holds no prompt entries; add `- target: ...` entries")
  if not isinstance(raw, list):
    raise UserError(f"{path} should be a list of entries (`- target: ...`), not a {type(raw).__name__}")
  return [_entry(f"{path}: entry {i + 1}", item) for i, item in enumerate(raw)]


def with_attributes(entries: list[PromptSettings], attributes: list[str]) -> list[PromptSettings]:
  """Each entry once per attribute, prefixed with it, in the original's order; the entries without attributes."""
  return [e.prefixed(a) for e in entries for a in attributes] if attributes else list(entries)


def split_list(text: str) -> list[str]:
  """'a, b, c' -> ['a', 'b', 'c'] (empty items dropped)."""
  return [item.strip() for item in str(text).split(",") if item.strip()]


def number_list(text: str, key: str, integers: bool = False) -> list[float]:
  try:
    return [(int if integers else float)(v) for v in split_list(text)]
  except ValueError:
    kind = "integers" if integers else "numbers"
    raise UserError(f"--config.{key}={text!r}: give {kind} separated by commas, e.g. '-2, -1, 1, 2'") from None


# ------------------------------------------------------------------------------------------- image pairs

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclasses.dataclass(frozen=True)
class ImagePairs:
  """The image sliders' data: one folder per integer scale under `root`, holding images of the same names."""
  root: Path
  folders: tuple[str, ...]
  scales: tuple[int, ...]
  names: tuple[str, ...]

  def folder_at(self, scale: int) -> int:
    return self.scales.index(scale)


def read_image_pairs(root, folders: str, scales: str) -> ImagePairs:
  """The folders and scales of `--config.images/folders/scales`, checked: two folders or more, one integer scale
  each with its negative among them, and the same image names in every folder."""
  root, folders, scales = Path(root), split_list(folders), number_list(scales, "scales", integers=True)
  if len(folders) < 2:
    raise UserError(f"image sliders need two folders or more (one per scale), got --config.folders={folders}")
  if len(scales) != len(folders):
    raise UserError(f"{len(folders)} folders but {len(scales)} scales; give one integer scale per folder")
  if len(set(scales)) != len(scales) or 0 in scales:
    raise UserError(f"--config.scales {scales}: each scale once, none 0 (the slider learns +s against -s)")
  for folder, scale in zip(folders, scales):
    if -scale not in scales:
      raise UserError(f"scale {scale} (folder {folder}) has no folder at scale {-scale}; the slider trains each "
                      "scale against its negative")
  if not root.is_dir():
    raise UserError(f"--config.images={root} is not a folder; it should hold the folders {', '.join(folders)}")
  names = {}
  for folder in folders:
    if not (root / folder).is_dir():
      raise UserError(f"{root / folder} not found; --config.folders names the sub-folders of {root}")
    names[folder] = sorted(p.name for p in (root / folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not names[folder]:
      raise UserError(f"{root / folder} holds no image ({', '.join(IMAGE_SUFFIXES)})")
  every = sorted(set().union(*names.values()))
  for folder in folders:
    missing = sorted(set(every) - set(names[folder]))
    if missing:
      other = next(f for f in folders if missing[0] in names[f])
      raise UserError(f"{root / folder / missing[0]} is missing ({root / other / missing[0]} exists): image sliders "
                      "pair the images of the folders by file name")
  return ImagePairs(root, tuple(folders), tuple(scales), tuple(every))


def load_pixels(pairs: ImagePairs, size: int) -> np.ndarray:
  """Every image resized to `size`² (bicubic, as the original's PIL resize) in [-1, 1]: `[folders, files, size,
  size, 3]`."""
  out = np.zeros((len(pairs.folders), len(pairs.names), size, size, 3), np.float32)
  for i, folder in enumerate(pairs.folders):
    for j, name in enumerate(pairs.names):
      path = pairs.root / folder / name
      try:
        with Image.open(path) as image:
          pixels = np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC), np.float32)
      except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"{path} cannot be read as an image ({type(e).__name__}: {e}); replace it or remove it "
                        "from every folder") from None
      out[i, j] = pixels / 127.5 - 1.0
  return out


def encode_images(pipe: pipeline.StableDiffusion, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The VAE posterior of each image, (mean, std) times the latent scaling factor: `[folders, files, h, w, C]`."""
  encode = jax.jit(lambda params, x: pipe.vae.apply({"params": params}, x, method="encode"))
  moments = [jax.device_get(encode(pipe.params["vae"], folder)) for folder in pixels]
  f = pipe.vae.config.scaling_factor
  return (np.stack([m for m, _ in moments]) * f).astype(np.float32), \
      (np.stack([np.exp(0.5 * v) for _, v in moments]) * f).astype(np.float32)


# ------------------------------------------------------------------------------------------------ timesteps

TIMESTEP_MODES = ("original", "exact")


def ddim_schedule(schedule: NoiseSchedule) -> NoiseSchedule:
  """The original's `DDIMScheduler`: the pipeline's betas and prediction type, `leading` spacing without offset,
  no clipping."""
  return dataclasses.replace(schedule, timestep_spacing="leading", steps_offset=0, clip_sample=False,
                             set_alpha_to_one=True)


def query_timesteps(schedule: NoiseSchedule, steps: int, mode: str) -> np.ndarray:
  """For each k (chain steps taken), the timestep the models are queried at. After k steps of the `steps`-step
  chain the latent is at `timesteps(steps)[k]` (`exact`); the original resets the scheduler to every timestep and
  takes `timesteps[int(k * n / steps)]` (`original`: 999 - 20 k for n = 1000, 50 steps)."""
  if mode == "exact":
    return schedule.timesteps(steps)
  n = schedule.num_train_timesteps
  return schedule.timesteps(n)[np.arange(steps) * n // steps]


def size_ids(settings: PromptSettings, resolution: int, rng: np.random.Generator) -> np.ndarray:
  """SDXL's `time_ids` (original size, crop top-left, target size); with `dynamic_crops` the original size is the
  resolution times U[1, 3) and the crop offset random, as the original's `get_add_time_ids`."""
  if not settings.dynamic_crops:
    return np.asarray([resolution, resolution, 0, 0, resolution, resolution], np.float32)
  original = int(resolution * (rng.random() * 2 + 1))
  crop = rng.integers(0, max(original - resolution, 1), size=2)
  return np.asarray([original, original, *crop, resolution, resolution], np.float32)


# -------------------------------------------------------------------------------------------------- setup

@dataclasses.dataclass(eq=False)
class Setup:
  """The pipeline, prompts, LoRA, chain and (image sliders) latents of one config."""
  pipe: pipeline.StableDiffusion
  entries: list[PromptSettings]  # as in the YAML
  prompts: list[PromptSettings]  # with the attributes
  text: dict  # role -> embeddings of every prompt pair `[P, L, D]` (SDXL: (them, pooled `[P, D2]`))
  etas: np.ndarray  # [P], signed
  resolution: int
  schedule: NoiseSchedule
  chain: tuple[np.ndarray, np.ndarray]
  query: np.ndarray  # [S]: query timestep after k chain steps
  boxed: dict
  adapter: lora.LoRA
  images: ImagePairs | None = None
  latents: tuple[np.ndarray, np.ndarray] | None = None

  @property
  def unet(self):
    return self.pipe.unet

  @property
  def base(self):
    return self.pipe.params["unet"]

  @property
  def xl(self) -> bool:
    return isinstance(self.pipe, pipeline.StableDiffusionXL)

  @property
  def max_chain_steps(self) -> int:
    """k is drawn from 1 up to this, exclusive: 1..S-1; 1..S-2 for SD image sliders, as the originals."""
    steps = len(self.chain[0])
    return steps - 1 if self.images is not None and not self.xl else steps


OPTIMIZERS = ("adamw", "adam")
LR_SCHEDULERS = ("constant", "cosine")


def check_choices(config) -> None:
  for key, allowed in (("timestep_mode", TIMESTEP_MODES), ("optimizer", OPTIMIZERS),
                       ("lr_scheduler", LR_SCHEDULERS)):
    if config[key] not in allowed:
      raise UserError(f"--config.{key}={config[key]!r}: use one of {', '.join(allowed)}")
  if not isinstance(config.rank, int) or config.rank < 1 or config.max_denoising_steps < 3:
    raise UserError("--config.rank must be an integer >= 1 and --config.max_denoising_steps >= 3")


def lora_for(config, unet, image_slider: bool) -> tuple[dict, lora.LoRA]:
  """(the UNet's abstract params, the config's LoRA over them)."""
  boxed = adapters.abstract_params(unet, *unet2d.FAMILY.dummy_inputs(unet))
  adapter = lora.LoRA.create(boxed, lora.targets(config.network, config.train_method), rank=config.rank,
                             alpha=config.alpha, layer_lists=unet2d.LAYER_LISTS,
                             kaiming_a=math.sqrt(5) if image_slider else 1.0)
  return boxed, adapter


def read_entries(config) -> list[PromptSettings]:
  if config.prompts:
    return read_prompts(config.prompts)
  if config.images:
    return [PromptSettings("", "", "", "")]  # the original's image-slider prompts: all empty
  raise UserError("set --config.prompts=FILE.yaml (a text slider) or --config.images=DIR (an image slider)")


def run_resolution(config, prompts: list[PromptSettings], image_slider: bool, xl: bool) -> int:
  """The one training resolution: `--config.resolution`, else the prompts' (text) or 256 / 512 (SD / SDXL images)."""
  if config.resolution:
    return int(config.resolution)
  if image_slider:
    return 512 if xl else 256
  resolutions = sorted({p.resolution for p in prompts})
  if len(resolutions) > 1:
    raise UserError(f"the prompts' entries ask for resolutions {resolutions}; a run trains at one: set "
                    "--config.resolution")
  return resolutions[0]


def note_unsupported(config, prompts: list[PromptSettings], resolution: int) -> None:
  """Notices for what a run cannot do per entry: the compiled step has one shape."""
  if any(p.dynamic_resolution for p in prompts):
    notice(f"dynamic_resolution is not supported (one compiled shape per run); training at {resolution} px")
  sizes = sorted({p.batch_size for p in prompts} - {config.batch_size})
  if sizes:
    notice(f"the prompts' batch_size {', '.join(map(str, sizes))} is not used: every step takes "
           f"--config.batch_size={config.batch_size} examples")


def note_no_direction(prompts: list[PromptSettings], text: dict) -> None:
  """A notice for each pair whose positive and unconditional prompts encode alike (a prompt cut at the text
  encoder's context, or the same text): such a pair gives the slider no direction."""
  same = lambda a, b: all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  for i, p in enumerate(prompts):
    if same(jax.tree.map(lambda a: a[i], text["positive"]), jax.tree.map(lambda a: a[i], text["unconditional"])):
      notice(f"prompt pair {i + 1} ({p.positive!r} / {p.unconditional!r}): positive and unconditional encode to "
             "the same text embeddings (the same prompt, or both cut at the text encoder's context), so it gives "
             "the slider no direction")


def make_setup(config, workdir) -> Setup:
  check_choices(config)
  images = read_image_pairs(config.images, config.folders, config.scales) if config.images else None
  entries = read_entries(config)
  prompts = with_attributes(entries, split_list(config.attributes))
  folder = tuning.pipeline_folder(config.pretrained, workdir, sample_size=max(config.resolution // 2, 8))
  pipe = pipeline.load_pipeline(folder, dtype=jnp.dtype(config.dtype))
  if config.remat_policy:
    pipe = dataclasses.replace(pipe, unet=pipe.unet.clone(remat_policy=config.remat_policy))
  xl = isinstance(pipe, pipeline.StableDiffusionXL)
  resolution = run_resolution(config, prompts, images is not None, xl)
  pipe.latent_shape(1, resolution, resolution)  # refuses a size the VAE cannot take
  note_unsupported(config, prompts, resolution)
  schedule = ddim_schedule(pipe.schedule)
  boxed, adapter = lora_for(config, pipe.unet, images is not None)
  text = {role: pipe.encode_text([getattr(p, role) for p in prompts]) for role in ROLES}
  note_no_direction(prompts, text)
  latents = encode_images(pipe, load_pixels(images, resolution)) if images else None
  return Setup(pipe, entries, prompts, text, np.asarray([p.eta for p in prompts], np.float32), resolution,
               schedule, tuning.ddim_chain(schedule, config.max_denoising_steps),
               query_timesteps(schedule, config.max_denoising_steps, config.timestep_mode), boxed, adapter, images,
               latents)


# ------------------------------------------------------------------------------------------------ the step

def draw_iteration(setup: Setup, rng: np.random.Generator, global_batch: int) -> dict:
  """This process' rows of one step's global batch. As in the original, the prompt pair, the chain length k
  (and for image sliders the scale) are drawn once per step; image sliders draw each example's file. Every
  process draws the whole batch from the same seed, so a batch is the same on any number of processes."""
  pair, k = int(rng.integers(len(setup.prompts))), int(rng.integers(1, setup.max_chain_steps))
  draw = {"pair": np.int32(pair), "chain_steps": np.int32(k), "t_query": np.int32(setup.query[k])}
  if setup.xl:
    draw["time_ids"] = size_ids(setup.prompts[pair], setup.resolution, rng)
  if setup.images is not None:
    scale = abs(int(rng.choice(setup.images.scales)))
    draw.update(scale=np.float32(scale), low=np.int32(setup.images.folder_at(-scale)),
                high=np.int32(setup.images.folder_at(scale)), t_noise=np.int32(setup.chain[0][k]))
  batch = {key: np.repeat(np.asarray(v)[None], global_batch, axis=0) for key, v in draw.items()}
  if setup.images is not None:
    batch["file"] = rng.integers(len(setup.images.names), size=global_batch).astype(np.int32)
  local = data_pipeline.per_process_batch(global_batch)
  return {key: v[jax.process_index() * local:(jax.process_index() + 1) * local] for key, v in batch.items()}


def conditioning(setup: Setup, text, role: str, batch) -> tuple:
  """The UNet's inputs after (x, t) for `role`'s prompt of each example's pair; SDXL adds the pooled embedding
  and the size ids."""
  embeds = jax.tree.map(lambda a: a[batch["pair"]], text[role])
  if not setup.xl:
    return (embeds,)
  context, pooled = embeds
  return context, {"text_embeds": pooled, "time_ids": batch["time_ids"]}


def predict(setup: Setup, params, x, t, conditions):
  return setup.unet.apply({"params": params}, x, t, *conditions)


def slider_target(neutral, positive, unconditional, eta):
  """The text sliders' target: neutral + eta * (positive - unconditional), eta signed by the action."""
  return neutral + eta * (positive - unconditional)


def per_example(values, like):
  return values.reshape(values.shape + (1,) * (like.ndim - values.ndim))


def make_x_t(config, setup: Setup, sampler_params, text, batch, rng):
  """x_t: the first k steps (per example) of the DDIM chain from pure noise, with guidance `start_guidance`
  between each pair's `unconditional` and `target` prompts."""
  shape = setup.pipe.latent_shape(batch["pair"].shape[0], setup.resolution, setup.resolution)
  return tuning.partial_sample(
      setup.unet, sampler_params, conditioning(setup, text, "target", batch),
      conditioning(setup, text, "unconditional", batch), config.start_guidance, setup.schedule, setup.chain,
      batch["chain_steps"], shape, rng)


def text_target(setup: Setup, base, text, etas, x_t, t, batch):
  """The frozen model's target for the LoRA model's prediction (no gradient), from one UNet call on the
  positive, neutral and unconditional prompts."""
  conditions = [conditioning(setup, text, role, batch) for role in ("positive", "neutral", "unconditional")]
  stacked = jax.tree.map(lambda *a: jnp.concatenate(a), *conditions)
  positive, neutral, unconditional = jnp.split(predict(setup, base, jnp.concatenate([x_t] * 3),
                                                       jnp.concatenate([t] * 3), stacked), 3)
  eta = per_example(etas[batch["pair"]], x_t)
  return jax.lax.stop_gradient(slider_target(neutral, positive, unconditional, eta))


def text_loss(setup: Setup, trained, target, text, x_t, t, batch):
  """MSE of the LoRA model's prediction for `target` (at the params `trained`) onto the target."""
  prediction = predict(setup, trained, x_t, t, conditioning(setup, text, "target", batch))
  return jnp.mean((prediction - target) ** 2)


def image_loss(setup: Setup, params, base, text, x_low, x_high, noise, batch):
  """The image sliders' two terms: the LoRA at +s on the +s image with `positive`, at -s on the -s image with
  `neutral`, each regressed onto the noise both images got. `s` is the step's (one per step)."""
  scale = batch["scale"][0]
  noisy = lambda x: setup.schedule.add_noise(x, noise, batch["t_noise"])
  high = predict(setup, setup.adapter.apply(params, base, scale), noisy(x_high), batch["t_query"],
                 conditioning(setup, text, "positive", batch))
  low = predict(setup, setup.adapter.apply(params, base, -scale), noisy(x_low), batch["t_query"],
                conditioning(setup, text, "neutral", batch))
  return jnp.mean((high - noise) ** 2) + jnp.mean((low - noise) ** 2)


def sample_latents(latents, folder, file, rng):
  """Each example's image latent drawn from its VAE posterior (the original's `latent_dist.sample()`)."""
  mean, std = latents
  return mean[folder, file] + std[folder, file] * jax.random.normal(rng, mean.shape[2:], mean.dtype)


def learning_rate(config):
  if config.lr_scheduler == "cosine":  # torch's CosineAnnealingLR to lr / 100, as the original
    return optax.cosine_decay_schedule(config.lr, config.total_steps, alpha=0.01)
  return optax.constant_schedule(config.lr)


def optimizer(config) -> optax.GradientTransformation:
  """torch's AdamW / Adam with their defaults (betas 0.9 / 0.999, eps 1e-8)."""
  if config.optimizer == "adam":
    return optax.adam(learning_rate(config))
  return optax.adamw(learning_rate(config), weight_decay=config.weight_decay)


def make_task(config, workdir, setup: Setup | None = None) -> training.Task:
  setup = setup or make_setup(config, workdir)
  adapter = setup.adapter
  frozen = {"unet": setup.base, "text": setup.text, "etas": setup.etas}
  if setup.latents is not None:
    frozen["latents"] = setup.latents
  replicate = lambda tree: jax.tree.map(lambda _: PartitionSpec(), tree)
  frozen_specs = {**replicate({k: v for k, v in frozen.items() if k != "unet"}),
                  "unet": nn.get_partition_spec(setup.boxed)}

  def loss_fn(params, model_state, frozen, batch, rng):
    base, text = frozen["unet"], frozen["text"]
    if setup.images is None:
      sampler_params = adapter.apply(jax.lax.stop_gradient(params), base, 1.0, fold=True)  # the LoRA active
      x_t = jax.lax.stop_gradient(make_x_t(config, setup, sampler_params, text, batch, rng))
      target = text_target(setup, base, text, frozen["etas"], x_t, batch["t_query"], batch)
      loss = text_loss(setup, adapter.apply(params, base), target, text, x_t, batch["t_query"], batch)
    else:
      rng_low, rng_high, rng_noise = jax.random.split(rng, 3)
      x_low = jax.vmap(sample_latents, (None, 0, 0, 0))(frozen["latents"], batch["low"], batch["file"],
                                                          jax.random.split(rng_low, batch["file"].shape[0]))
      x_high = jax.vmap(sample_latents, (None, 0, 0, 0))(frozen["latents"], batch["high"], batch["file"],
                                                           jax.random.split(rng_high, batch["file"].shape[0]))
      loss = image_loss(setup, params, base, text, x_low, x_high, jax.random.normal(rng_noise, x_low.shape), batch)
    return loss, ({}, model_state)

  def train_data():
    ds = grain.MapDataset.range(2**40).random_map(lambda _, rng: draw_iteration(setup, rng, config.batch_size),
                                                  seed=config.seed)
    return ds.to_iter_dataset()

  metrics = metrics_fn(config, setup)
  return training.Task(
      init_variables=lambda rng: {"params": adapter.init(rng)}, loss_fn=loss_fn, optimizer=optimizer(config),
      train_data=train_data, frozen=frozen, frozen_specs=frozen_specs, learning_rate=learning_rate(config),
      evaluate=lambda params, model_state, step: metrics(params))


# ------------------------------------------------------------------------------------------------ evaluation

def scale_name(scale: float) -> str:
  return f"{scale:g}"


def fixed_batch(config, setup: Setup, size: int) -> tuple[np.ndarray, np.ndarray, dict]:
  """(x_t, t, batch) of fixed noisy latents over the noise range, the prompt pairs (and image files) in turn."""
  rng = np.random.default_rng(1234)
  shape = setup.pipe.latent_shape(size, setup.resolution, setup.resolution)
  t = np.linspace(50, setup.schedule.num_train_timesteps - 50, size).astype(np.int32)
  x_t = np.asarray(setup.schedule.add_noise(rng.normal(size=shape).astype(np.float32),
                                            rng.normal(size=shape).astype(np.float32), t))
  batch = {"pair": np.arange(size, dtype=np.int32) % len(setup.prompts),
           "time_ids": np.tile([setup.resolution, setup.resolution, 0, 0, setup.resolution, setup.resolution],
                               (size, 1)).astype(np.float32)}
  return x_t, t, batch


def metrics_fn(config, setup: Setup, size: int = 8):
  """`lora params -> metrics` on fixed examples (`text_metrics_fn` or `image_metrics_fn`)."""
  return (text_metrics_fn if setup.images is None else image_metrics_fn)(config, setup, size)


def text_metrics_fn(config, setup: Setup, size: int):
  """On fixed noisy latents spread over the noise range, each prompt pair in turn:

    slider_mse    the text-slider loss there;
    slider_gap    that over its value for the untrained LoRA (1 at the start, 0 on the target);
    effect/{s}    how far the LoRA at scale s moves the prediction for `target` along the shift D that training
                  asks of scale 1 (D = the target minus the frozen prediction): <eps_s - eps_0, D> / <D, D>.
                  0 at scale 0, 1 at scale 1 for a slider that has learnt its target exactly.
  """
  x_t, t, batch = fixed_batch(config, setup, size)
  scales = number_list(config.eval_scales, "eval_scales")
  swept = jnp.asarray(sorted(set(scales) | {0.0, 1.0}), jnp.float32)  # one compiled UNet for every scale

  @jax.jit
  def metrics(params, base, text, etas):
    target = text_target(setup, base, text, etas, x_t, t, batch)
    at = lambda s: predict(setup, setup.adapter.apply(params, base, s, fold=True), x_t, t,
                           conditioning(setup, text, "target", batch))
    predictions = dict(zip(swept.tolist(), jax.lax.map(at, swept)))
    original = predictions[0.0]  # scale 0 folds to the base model exactly
    shift = target - original
    loss = jnp.mean((predictions[1.0] - target) ** 2)
    effects = {f"effect/{scale_name(s)}": jnp.sum((predictions[float(s)] - original) * shift) / jnp.sum(shift**2)
               for s in scales}
    return {"slider_mse": loss, "slider_gap": loss / jnp.mean(shift**2), **effects}

  return lambda params: {k: float(v) for k, v in metrics(params, setup.base, setup.text, setup.etas).items()}


def image_examples(config, setup: Setup, size: int) -> tuple:
  """Fixed image-slider examples: (the scale magnitudes `[M]`, the -s and +s images' posterior means
  `[M, size, h, w, C]`, the noise both get, the batch: pairs, size ids, noise and query timesteps spread over k)."""
  _, _, batch = fixed_batch(config, setup, size)
  mean, _ = setup.latents
  k = np.linspace(1, setup.max_chain_steps - 1, size).round().astype(np.int32)
  files = np.arange(size) % len(setup.images.names)
  magnitudes = sorted({abs(s) for s in setup.images.scales})
  low, high = (np.stack([mean[setup.images.folder_at(sign * s), files] for s in magnitudes]) for sign in (-1, 1))
  noise = np.random.default_rng(4321).normal(size=(size,) + mean.shape[2:]).astype(np.float32)
  batch.update(t_noise=setup.chain[0][k].astype(np.int32), t_query=setup.query[k].astype(np.int32))
  return np.asarray(magnitudes, np.float32), low, high, noise, batch


def image_metrics_fn(config, setup: Setup, size: int):
  """On fixed examples (`image_examples`): `image_mse`, the two-term loss averaged over the scale magnitudes, and
  `image_gap`, that over its value for the untrained LoRA."""
  magnitudes, low, high, noise, batch = image_examples(config, setup, size)

  @jax.jit
  def mse(params, base, text):
    def one(example):
      s, x_low, x_high = example
      return image_loss(setup, params, base, text, x_low, x_high, noise, dict(batch, scale=jnp.full(size, s)))
    return jnp.mean(jax.lax.map(one, (magnitudes, low, high)))

  zero = jax.tree.map(jnp.zeros_like, nn.meta.unbox(jax.eval_shape(setup.adapter.init, jax.random.key(0))))

  def metrics(params):
    loss, start = (float(mse(p, setup.base, setup.text)) for p in (params, zero))
    return {"image_mse": loss, "image_gap": loss / start}

  return metrics


def clip_figures(scorer: scoring.CLIPScorer, paths: dict, concept: str, attributes: list[str]) -> dict:
  """Per scale, from CLIP's `logits_per_image` (100 x cosine for OpenAI's CLIP) of every image:

    clip/{s}             the mean score against `concept` (the attribute text, as the original's clip_score.py);
    delta_clip/{s}       that minus scale 0's;
    interference/{s}     the fraction of images whose closest preserved attribute (e.g. 'male' / 'female') is not
                         that of the same seed's scale-0 image (the paper counts changed race / gender);
    attribute_shift/{s}  the mean absolute change of the scores against the preserved attributes from scale 0.
  """
  texts = [concept] + list(attributes)
  logits = {s: scorer.logits_per_image([np.asarray(Image.open(p).convert("RGB")) for p in files], texts)
            for s, files in paths.items()}
  base = logits[0.0]
  results = {}
  for s, value in logits.items():
    results[f"clip/{scale_name(s)}"] = float(np.mean(value[:, 0]))
    results[f"delta_clip/{scale_name(s)}"] = float(np.mean(value[:, 0]) - np.mean(base[:, 0]))
    if attributes:
      changed = np.argmax(value[:, 1:], axis=-1) != np.argmax(base[:, 1:], axis=-1)
      results[f"interference/{scale_name(s)}"] = float(np.mean(changed))
      results[f"attribute_shift/{scale_name(s)}"] = float(np.mean(np.abs(value[:, 1:] - base[:, 1:])))
  return results


LPIPS_MESSAGE = ("LPIPS is not computed: jaxlab has no LPIPS port (its reference, the `lpips` package, is not a "
                 "dependency). The images are in the original's layout: its eval-scripts/lpip_score.py --im_path "
                 "{out} --true 0 --prompts_path {prompts} scores them against scale 0.")


def generation_eval(config, setup: Setup, params, out: Path) -> dict:
  """Images of `eval_prompts` at every `eval_scales` as `out/{scale}/{case}_{k}.png` (the LoRA off above
  `eval_start_noise`), and with `eval_clip` their CLIP figures (`clip_figures`)."""
  scales = number_list(config.eval_scales, "eval_scales")
  if 0 not in scales:
    raise UserError(f"--config.eval_scales={config.eval_scales!r} must include 0: the figures compare with it")
  rows = generate.read_prompt_csv(config.eval_prompts)
  placed = pipeline.place(params)
  paths = {}
  for scale in scales:
    def progress(done, total, scale=scale):
      print(f"\rscale {scale_name(scale)}: {done}/{total} prompts", end="", file=sys.stderr, flush=True)

    paths[float(scale)] = generate.generate_rows(
        setup.pipe, rows, out / scale_name(scale), num_images=config.eval_num_images, num_steps=config.eval_steps,
        guidance_scale=config.eval_guidance, noise_source=config.eval_noise, batch_size=config.eval_batch_size,
        height=config.eval_size, width=config.eval_size, negative_prompt=None,
        loras=[(setup.adapter, placed, float(scale))], start_noise=config.eval_start_noise, progress=progress)
  print(file=sys.stderr)
  notice(LPIPS_MESSAGE.format(out=out, prompts=config.eval_prompts))
  if not config.eval_clip:
    notice("no --config.eval_clip (a local CLIPModel folder): images only, no CLIP figures")
    return {}
  concept = config.eval_clip_prompt or setup.entries[0].positive
  attributes = split_list(config.eval_attributes or config.attributes)
  return clip_figures(scoring.CLIPScorer(config.eval_clip), paths, concept, attributes)


def results_table(results: dict, scales) -> str:
  """The per-scale figures as a markdown table, scales as rows."""
  columns = [c for c in ("effect", "clip", "delta_clip", "interference", "attribute_shift")
             if any(k.startswith(f"{c}/") for k in results)]
  lines = ["| scale | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
  for s in scales:
    cells = [f"{results[f'{c}/{scale_name(s)}']:.4f}" if f"{c}/{scale_name(s)}" in results else "" for c in columns]
    lines.append(f"| {scale_name(s)} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def evaluate(config, workdir, step=None) -> dict:
  """The fixed-latent figures of a checkpoint and, with `eval_prompts`, the generation figures; written to
  `WORKDIR/eval/step_<N>.json` and `.md`."""
  setup = make_setup(config, workdir)
  generation = (lambda params, step: generation_eval(config, setup, params, Path(workdir) / "eval" / f"step_{step}")
                ) if config.eval_prompts else None

  def report(results, step):
    overall = "\n".join(f"- {k}: {v:.4f}" for k, v in results.items() if "/" not in k)
    table = results_table(results, number_list(config.eval_scales, "eval_scales"))
    return f"# Slider evaluation, step {step}\n\n{overall}\n\n{table}\n"

  return tuning.evaluate(workdir, setup.adapter, step, metrics_fn(config, setup), generation, report)


def export(config, workdir) -> list[Path]:
  """`WORKDIR/export/lora.safetensors` (diffusers/PEFT: `pipe.load_lora_weights`) and
  `WORKDIR/export/lora_kohya.safetensors` (`lora_unet_*`: ComfyUI, A1111), from the latest checkpoint."""
  folder = tuning.pipeline_folder(config.pretrained, workdir, sample_size=max(config.resolution // 2, 8))
  unet_config = weights.read_config(Path(folder) / "unet")
  unet = weights.family_for(weights.class_name(unet_config)).from_config(unet_config)
  _, adapter = lora_for(config, unet, bool(config.images))
  params, _ = adapters.restore(workdir, adapter)
  out = Path(workdir) / "export"
  return parallel.write_once("export", lambda: [adapter.save_peft(out / "lora.safetensors", params),
                                               adapter.save_kohya(out / "lora_kohya.safetensors", params)]) or []


# ---------------------------------------------------------------------------------------------------- demo

def demo(workdir) -> DemoSection:
  """The tiny config end to end: an age slider on a random SD pipeline, exported, its effect and a scale strip."""
  workdir = Path(workdir)
  config = training.load_config("sliders:tiny")
  training.save_config(config, workdir)
  setup = make_setup(config, workdir)
  result = training.train(make_task(config, workdir, setup), config, workdir)
  exported = export(config, workdir)
  params, step = adapters.restore(workdir, setup.adapter)
  losses = training.metrics.history(workdir, "train/loss")
  scales = number_list(config.eval_scales, "eval_scales")
  effects = [result[f"eval/effect/{scale_name(s)}"] for s in scales]
  monotonic = all(a < b for a, b in zip(effects, effects[1:]))

  prompts = [e.target for e in setup.entries]
  shape = setup.pipe.latent_shape(1, config.eval_size, config.eval_size)
  noise = np.concatenate([pipeline.latent_noise(seed, shape) for seed in range(len(prompts))])
  placed = pipeline.place(params)
  strips = [setup.pipe.generate(prompts, noise, config.eval_steps, config.eval_guidance,
                                loras=[(setup.adapter, placed, s)], start_noise=config.eval_start_noise)
            for s in scales]
  grid = workdir / "scale_strip.png"
  tuning.image_grid([[strip[i] for strip in strips] for i in range(len(prompts))], scale=4).save(grid)
  curve = tuning.loss_curve(losses, workdir / "loss.png", "age slider, tiny random SD", "slider loss")

  figures = {"loss_first": losses[0][1], "loss_last": losses[-1][1], "slider_gap": result["eval/slider_gap"],
             **{f"effect_at_{scale_name(s)}": e for s, e in zip(scales, effects)}}
  table = "\n".join(f"| {scale_name(s)} | {e:.4f} |" for s, e in zip(scales, effects))
  entry = setup.entries[0]
  markdown = f"""A text slider (LoRA rank {config.rank}, alpha {config.alpha}, `{config.network}` / \
`{config.train_method}`) trained on a small random SD pipeline with the age slider of \
`{Path(config.prompts).name}` ("{entry.target}": "{entry.unconditional}" -> "{entry.positive}", eta \
{entry.guidance_scale:g}, both genders): {step} AdamW steps at lr {config.lr}, batch {config.batch_size}, \
{setup.resolution} px, x_t from \
{config.max_denoising_steps}-step DDIM chains with the LoRA active and guidance {config.start_guidance:g}. The loss \
went from {losses[0][1]:.4f} to {losses[-1][1]:.4f}; on fixed noisy latents it is {figures['slider_gap']:.3f} of \
its untrained value (`slider_gap`).

The effect: how far the LoRA at scale s moves the UNet's noise prediction for the target prompt along the shift \
that training asks of scale 1 (the frozen model's neutral + eta x (positive - unconditional) prediction minus its \
target prediction), as a fraction of that shift: <eps_s - eps_0, D> / <D, D> on fixed latents. It rises \
{'monotonically' if monotonic else 'NOT monotonically'} with the scale:

| scale | effect |
|---|---|
{table}

A random text encoder and UNet make no recognisable images, so the strip shows the mechanism, not an age \
change: `scale_strip.png`, one row per prompt ({', '.join(prompts)}), scales {', '.join(map(scale_name, scales))} \
left to right, one compiled sampler for every scale. Exported: `{exported[0].relative_to(workdir)}` \
(diffusers/PEFT) and `{exported[1].relative_to(workdir)}` (kohya / ComfyUI); `loss.png`: the loss curve."""
  return DemoSection(title="Concept Sliders: a text slider", markdown=markdown, figures=figures,
                     files=[curve, grid, *exported])
