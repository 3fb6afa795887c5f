"""Motion customisation of a text-to-video model (Materzynska et al., arXiv 2312.04966).

A few clips of one motion, captioned with a rare word (`sks`: "A person doing the sks sign."), fine-tune part of a
ModelScope / ZeroScope 3D UNet with the plain diffusion loss: the temporal attention and temporal convolutions
and the key / value projections of the spatial cross-attention (`trainable_modules`, rules on diffusers names).
The rest of the UNet, the VAE and the text encoder stay frozen, and the frozen UNet is one tree that is never
copied. Regularisation clips of related motions keep the model's prior (video prior preservation): a batch holds
[instance, regularisation] clips, each with its own noise and timestep, and

  loss = mse(eps_theta(x_t, c, t), eps) + lambda * mse(eps_theta(x'_t', c', t'), eps')          (lambda = 0.5)

with timesteps drawn from p(t) ~ 1 - 0.5 cos(pi t / T) (`high-level`: the noisy steps, where motion and coarse
structure are decided), or `low-level` (+cos), or `uniform`.

Both frozen encoders run once: the VAE's mean and standard deviation of every frame (at the target fps) are
cached in WORKDIR/cache, the captions' text embeddings kept on device; each step takes a random window of
`num_frames` latents of each clip, draws z from the VAE's Gaussian and scales it by the VAE's scaling factor.
The optional ablation `learned_token_init` trains the token's input embedding too, initialised from a word's.

`jaxlab eval motion` generates videos for prompts in the original's `seed,prompt` format from the tuned and the
base model with the same initial noise, and reports CLIP text alignment (the mean over frames of the cosine
between each frame and its prompt) and motion accuracy: the share of clips that a video classifier (an
airletters-style workdir) labels as the taught motion.
"""

import dataclasses
import functools
import hashlib
import json
import shutil
from pathlib import Path

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax import traverse_util
from jax.sharding import PartitionSpec
from safetensors.numpy import save_file

from jaxlab import parallel, training
from jaxlab.data import captioned_clips
from jaxlab.data import video as video_lib
from jaxlab.diffusion import adapters, finetune, generate, schedules, scoring, tuning
from jaxlab.diffusion.pipeline import StableDiffusion, place
from jaxlab.errors import UserError
from jaxlab.methods import DemoSection
from jaxlab.models import save_pretrained, weights

# Trained parameters by diffusers names, as the original's `trainable_modules`. `temporal` is every temporal
# transformer (`transformer_in` and the blocks' `temp_attentions`), `temp_convs` every temporal convolution, and
# `cross` the key and value projections of the spatial transformers' cross-attention.
TRAINABLE_MODULES = {
    "temporal": lambda n: ".temp_attentions." in n or n.startswith("transformer_in."),
    "temp_convs": lambda n: ".temp_convs." in n,
    "cross": lambda n: ".attentions." in n and (".attn2.to_k." in n or ".attn2.to_v." in n),
    "all": lambda n: True,
}
TIMESTEP_SAMPLING = ("high-level", "low-level", "uniform")
TINY = "tiny-synthetic"
SYNTHETIC = "synthetic"


def trainable_rule(modules) -> callable:
  unknown = [m for m in modules if m not in TRAINABLE_MODULES]
  if unknown or not modules:
    raise UserError(f"trainable_modules {list(modules)}: use some of {', '.join(TRAINABLE_MODULES)}")
  return lambda name: any(TRAINABLE_MODULES[m](name) for m in modules)


def timestep_probabilities(sampling: str, num_train_timesteps: int, a: float = 0.5) -> np.ndarray:
  """p(t) over t = 0 .. T-1: `high-level` ~ 1 - a cos(pi t / T) (3:1 from t = T to t = 0), `low-level` ~
  1 + a cos(pi t / T), `uniform`."""
  t = np.arange(num_train_timesteps) / num_train_timesteps
  weights_by_sampling = {"high-level": 1 - a * np.cos(np.pi * t), "low-level": 1 + a * np.cos(np.pi * t),
                         "uniform": np.ones_like(t)}
  if sampling not in weights_by_sampling:
    raise UserError(f"timestep_sampling {sampling!r}: use one of {', '.join(TIMESTEP_SAMPLING)}")
  w = weights_by_sampling[sampling]
  return (w / w.sum()).astype(np.float32)


def prior_preservation_loss(prediction, target, num_instance: int, prior_lambda: float):
  """(mse over the first `num_instance` examples + prior_lambda * mse over the rest, the two mses), each mean-
  reduced over all its elements in float32."""
  error = (prediction.astype(jnp.float32) - target.astype(jnp.float32)) ** 2
  instance = jnp.mean(error[:num_instance])
  if num_instance == error.shape[0]:
    return instance, {"instance_mse": instance}
  prior = jnp.mean(error[num_instance:])
  return instance + prior_lambda * prior, {"instance_mse": instance, "prior_mse": prior}


# ------------------------------------------------------------------------------------------------ data

@dataclasses.dataclass
class ClipLatents:
  """One clip folder after the frozen VAE: per clip, the VAE's mean and std of every frame (at the target fps,
  `[T, h, w, 2C]`) and the ids of its captions in the setup's caption table."""
  names: list[str]
  moments: list[np.ndarray]
  captions: list[np.ndarray]

  def window(self, index: int, num_frames: int, scaling_factor: float, rng: np.random.Generator) -> np.ndarray:
    """Scaled latents `[num_frames, h, w, C]` of clip `index`: a random window, z drawn from the Gaussian."""
    moments = self.moments[index][captioned_clips.window(len(self.moments[index]), num_frames, rng)]
    mean, std = np.split(moments, 2, axis=-1)
    return ((mean + std * rng.standard_normal(mean.shape, np.float32)) * scaling_factor).astype(np.float32)


def _fingerprint(config, folder: captioned_clips.ClipFolder, vae_folder: Path) -> str:
  """What the cached latents depend on: the clip files, the frame sampling and the VAE's weights."""
  files = [(c.path.name, c.path.stat().st_size, c.path.stat().st_mtime_ns) for c in folder.clips]
  vae = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(vae_folder.glob("*.safetensors"))]
  key = json.dumps([str(folder.folder.resolve()), files, vae, config.fps, config.resolution])
  return hashlib.sha256(key.encode()).hexdigest()[:16]


def vae_moments(pipe: StableDiffusion, frames: np.ndarray, batch: int) -> np.ndarray:
  """`[T, h, w, 2C]` float32: the VAE's mean and std of each uint8 frame, `batch` frames per call."""
  pad = -len(frames) % batch
  padded = np.concatenate([frames, np.zeros((pad,) + frames.shape[1:], frames.dtype)])
  out = [np.asarray(_moments(pipe, pipe.params["vae"], jnp.asarray(padded[i:i + batch])))
         for i in range(0, len(padded), batch)]
  return np.concatenate(out)[:len(frames)]


@functools.partial(jax.jit, static_argnums=0)
def _moments(pipe: StableDiffusion, vae_params, frames):
  mean, logvar = pipe.vae.apply({"params": vae_params}, frames.astype(jnp.float32) / 127.5 - 1.0, method="encode")
  return jnp.concatenate([mean, jnp.exp(0.5 * logvar)], axis=-1)


def encode_folder(config, pipe: StableDiffusion, folder: captioned_clips.ClipFolder, vae_folder: Path,
                  caption_ids: dict[str, int], cache_dir: Path) -> ClipLatents:
  """The folder's clips through the VAE (cached in `cache_dir`); undecodable clips join the folder's problems,
  which are then reported (or raised, with `on_bad_clip='fail'`)."""
  cache = cache_dir / f"{folder.folder.name}-{_fingerprint(config, folder, vae_folder)}.npz"
  if cache.is_file():
    with np.load(cache) as stored:
      names = [str(n) for n in stored["names"]]
      moments = [stored[f"moments_{i}"] for i in range(len(names))]
      folder.problems.update(json.loads(str(stored["problems"])))
  else:
    names, moments, decode_problems = [], [], {}
    for clip in folder.clips:
      try:
        frames = captioned_clips.load_frames(clip.path, config.fps, config.resolution)
      except video_lib.VideoDecodeError as e:
        decode_problems[clip.path.name] = f"does not decode ({e})"
        continue
      names.append(clip.path.name)
      moments.append(vae_moments(pipe, frames, config.vae_batch))
    folder.problems.update(decode_problems)

    def write():
      cache_dir.mkdir(parents=True, exist_ok=True)
      tmp = cache.with_suffix(".tmp.npz")
      np.savez(tmp, names=np.array(names), problems=np.array(json.dumps(decode_problems)),
               **{f"moments_{i}": m for i, m in enumerate(moments)})
      tmp.replace(cache)

    parallel.write_once(f"latent cache {cache.name}", write)
  folder.report(config.on_bad_clip)
  if not names:
    raise UserError(f"{folder.folder}: no usable clips (see the list above)")
  by_name = {c.path.name: c for c in folder.clips}
  captions = [np.array([caption_ids[c] for c in by_name[n].captions], np.int32) for n in names]
  return ClipLatents(names, moments, captions)


def with_token(text_params, token_id: int, embedding):
  """The text encoder's params with row `token_id` of its token embedding table replaced (traceable)."""
  flat = traverse_util.flatten_dict(text_params)
  path = next(p for p in flat if p[-2:] == ("token_embedding", "embedding"))
  flat[path] = flat[path].at[token_id].set(embedding.astype(flat[path].dtype))
  return traverse_util.unflatten_dict(flat)


# ------------------------------------------------------------------------------------------------ setup

@dataclasses.dataclass(eq=False)
class Setup:
  """The pipeline, the parameter split, the caption table and (for training) the clips' latents."""
  pipe: StableDiffusion
  naming: weights.Naming
  selected: frozenset
  captions: list[str]
  ids: np.ndarray                   # [K, L] token ids of the captions
  text: jax.Array                   # [K, L, D] the frozen text encoder's states of the captions
  instance: ClipLatents | None = None
  reg: ClipLatents | None = None
  token_id: int | None = None       # the learned token's id (`learned_token_init`), else None

  @property
  def unet(self):
    return self.pipe.unet

  @property
  def original(self):
    return self.pipe.params["unet"]

  @functools.cached_property
  def boxed(self) -> dict:
    """The UNet's abstract params with logical names."""
    return adapters.abstract_params(self.unet, *weights.family_of(self.unet).dummy_inputs(self.unet))

  @functools.cached_property
  def adapter(self) -> "Tuned":
    return Tuned(finetune.Subset(self.selected.__contains__, self.boxed), self.token_id, self.text.shape[-1])


@dataclasses.dataclass(frozen=True, eq=False)
class Tuned:
  """What a run trains, as an adapter over the pipeline's params (`{'unet', 'text_encoder', ...}`): the UNet
  subset (`params['unet']`) and, for the learned-token ablation, the token's input embedding (`params['token']`,
  row `token_id` of the text encoder's table)."""
  unet: finetune.Subset
  token_id: int | None
  width: int

  def init(self, rng=None) -> dict:
    """Zeros in the trained shapes (logical names on the UNet's); `initial_params` puts the start values in."""
    params = {"unet": self.unet.init(rng)}
    if self.token_id is not None:
      params["token"] = jnp.zeros((self.width,), jnp.float32)
    return params

  @property
  def specs(self) -> dict:
    return {"unet": self.unet.specs, **({"token": PartitionSpec()} if self.token_id is not None else {})}

  def apply(self, params, base, scale=1.0, fold: bool = True) -> dict:
    """The pipeline's params with the trained ones in place."""
    applied = {**base, "unet": self.unet.apply(params["unet"], base["unet"], scale)}
    if self.token_id is not None:
      applied["text_encoder"] = with_token(base["text_encoder"], self.token_id, jnp.asarray(params["token"]))
    return applied


def clip_folders(config, workdir) -> tuple[Path, Path | None]:
  """(instance folder, regularisation folder or None); `synthetic` writes the tiny config's clips under the
  workdir: blobs tracing circles ("... {token} ...") and, for regularisation, moving up and down."""
  from jaxlab.data import motion_synth
  if config.videos == SYNTHETIC:
    root = Path(workdir) / SYNTHETIC
    if not (root / "done").is_file():
      s = config.synthetic
      motion_synth.write_clip_folder(root / "instance", "circle", s.num_clips, s.caption.format(token=config.token),
                                     seed=1, size=config.resolution, num_frames=s.num_frames, fps=config.fps)
      motion_synth.write_clip_folder(root / "reg", "line", s.num_clips, s.reg_caption, seed=2,
                                     size=config.resolution, num_frames=s.num_frames, fps=config.fps)
      (root / "done").touch()
    return root / "instance", (root / "reg" if config.prior_lambda > 0 else None)
  if not config.videos:
    raise UserError("set --config.videos to a folder of clips of the motion (captions in clip.txt beside each)")
  reg = Path(config.reg_videos) if config.reg_videos and config.prior_lambda > 0 else None
  return Path(config.videos), reg


def pipeline_folder(config, workdir) -> Path:
  """`config.pretrained`; for `tiny-synthetic` a small pipeline made once under the workdir
  (`write_tiny_pipeline`, single-host: it trains), for `tiny-random` a random one (`tuning.pipeline_folder`)."""
  if config.pretrained == TINY:
    folder = Path(workdir) / TINY
    if not (folder / "model_index.json").is_file():
      write_tiny_pipeline(config, workdir, folder)
    return folder
  if not config.pretrained:
    raise UserError("set --config.pretrained to a local text-to-video diffusers folder (e.g. zeroscope_v2_576w), "
                    f"or {TINY} / {tuning.TINY_RANDOM}")
  return tuning.pipeline_folder(config.pretrained, workdir, sample_size=config.resolution // 2, video=True)


def write_tiny_pipeline(config, workdir, folder: Path) -> Path:
  """The tiny config's base model, a stand-in for ZeroScope that knows the regularisation clips' motion but not
  the taught one: `tiny_video`'s pipeline with its VAE trained on the frames of all clips, then its whole UNet
  trained (this method with `trainable_modules=('all',)`, no prior) on the regularisation clips for
  `tiny_pipeline.unet_steps` steps, in `<folder>-base`. Zero steps leave that part random (quick checks)."""
  from jaxlab.diffusion import tiny_video
  options = dict(config.tiny_pipeline)
  unet_steps, caption_dropout = options.pop("unet_steps"), options.pop("caption_dropout")
  options["unet_config"] = {**tiny_video.TINY_UNET3D, "block_out_channels": list(options.pop("unet_widths"))}
  videos, reg = clip_folders(config, workdir)
  paths = sorted(videos.glob("*.mp4")) + (sorted(reg.glob("*.mp4")) if reg else [])
  frames = np.concatenate([captioned_clips.load_frames(p, config.fps, config.resolution) for p in paths]
                          ) if options["vae_steps"] else None
  staging = folder.with_name(f"{folder.name}-staging")
  tiny_video.write(staging, config.resolution, frames, **options)
  if reg is not None and unet_steps:
    base = config.copy_and_resolve_references()
    base.update(pretrained=str(staging), videos=str(reg), reg_videos="", prior_lambda=0.0, token="",
                trainable_modules=("all",), learned_token_init="", total_steps=unet_steps, checkpoint_every=unet_steps,
                eval_every=0, caption_dropout=caption_dropout)
    run = folder.with_name(f"{folder.name}-base")
    print(f"pretraining the tiny base UNet on {reg} for {unet_steps} steps ({run}) ...", flush=True)
    training.train(make_task(base, run), base, run)
    for path in export(base, run)[:1]:
      shutil.rmtree(staging / "unet")
      shutil.copytree(path, staging / "unet")
  staging.rename(folder)
  return folder


def _caption(text: str, token: str) -> str:
  return text.replace("{token}", token)


def make_setup(config, workdir, with_data: bool = True) -> Setup:
  """The pipeline and parameter split of a config; `with_data` also reads and encodes the clips."""
  if config.timestep_sampling not in TIMESTEP_SAMPLING:
    raise UserError(f"timestep_sampling {config.timestep_sampling!r}: use one of {', '.join(TIMESTEP_SAMPLING)}")
  if config.on_bad_clip not in captioned_clips.ON_BAD:
    raise UserError(f"on_bad_clip {config.on_bad_clip!r}: use one of {', '.join(captioned_clips.ON_BAD)}")
  if not 0 <= config.caption_dropout < 1:
    raise UserError(f"caption_dropout {config.caption_dropout}: use a share in [0, 1)")
  folder = pipeline_folder(config, workdir)
  pipe = StableDiffusion.load(folder, dtype=jnp.dtype(config.dtype))
  if not pipe.is_video:
    raise UserError(f"{folder}/unet is a {type(pipe.unet).__name__}; motion customisation needs a text-to-video "
                    "pipeline (UNet3DConditionModel)")
  if config.remat_policy:
    pipe = dataclasses.replace(pipe, unet=pipe.unet.clone(remat_policy=config.remat_policy))
  naming = weights.family_of(pipe.unet).naming
  selected = finetune.select(pipe.params["unet"], trainable_rule(config.trainable_modules), naming)
  token_id = learned_token_id(config, pipe) if config.learned_token_init else None
  instance = reg = None
  captions = []
  if with_data:
    videos, reg_videos = clip_folders(config, workdir)
    folders = [captioned_clips.read_folder(videos, _caption(config.fallback_prompt, config.token))]
    if reg_videos is not None:
      folders.append(captioned_clips.read_folder(reg_videos, captions_from_names=True))
    for clip in folders[0].clips if config.token else ():
      if config.token not in clip.captions[0].split():
        folders[0].problems[clip.path.name] = f"caption {clip.captions[0]!r} lacks the motion token {config.token!r}"
    folders[0].clips = [c for c in folders[0].clips if c.path.name not in folders[0].problems]
    captions = sorted({c for f in folders for clip in f.clips for c in clip.captions} |
                      ({""} if config.caption_dropout else set()))
    ids = {c: i for i, c in enumerate(captions)}
    cache = Path(workdir) / "cache"
    encoded = [encode_folder(config, pipe, f, folder / "vae", ids, cache) for f in folders]
    instance, reg = encoded[0], (encoded[1] if len(encoded) > 1 else None)
  token_ids = pipe.tokenizer(captions or [""])["input_ids"]
  text = pipe.encode_text(captions or [""])
  return Setup(pipe, naming, selected, captions, np.asarray(token_ids), text, instance, reg, token_id)


def learned_token_id(config, pipe: StableDiffusion) -> int:
  ids = pipe.tokenizer.encode(config.token)
  if len(ids) != 1:
    raise UserError(f"the learned-token ablation needs a token that is one id in the tokenizer; {config.token!r} "
                    f"is {len(ids)}; choose another --config.token")
  return ids[0]


def initial_token_embedding(config, setup: Setup) -> np.ndarray:
  """The mean input embedding of `learned_token_init`'s tokens."""
  ids = setup.pipe.tokenizer.encode(config.learned_token_init)
  flat = traverse_util.flatten_dict(setup.pipe.params["text_encoder"])
  table = next(v for p, v in flat.items() if p[-2:] == ("token_embedding", "embedding"))
  return np.asarray(table)[ids].mean(0)


# ------------------------------------------------------------------------------------------- the step

def optimizer(config):
  return optax.chain(optax.clip_by_global_norm(config.grad_clip) if config.grad_clip else optax.identity(),
                     optax.adamw(config.lr, b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps,
                                 weight_decay=config.weight_decay))


def text_states(setup: Setup, params, frozen, caption_ids):
  """The text encoder's states of the captions `caption_ids`: the stored ones, or with the learned token put
  into the embedding table, recomputed."""
  if setup.token_id is None:
    return frozen["text"][caption_ids]
  text_params = with_token(frozen["text_encoder"], setup.token_id, params["token"])
  return setup.pipe.text_encoder.apply({"params": text_params}, frozen["ids"][caption_ids]).last_hidden_state


def diffusion_loss(config, setup: Setup, params, frozen, latents, caption_ids, num_instance: int, rng):
  """The prior-preservation loss on `latents` `[N, F, h, w, C]` (instance clips first), with noise and
  timesteps drawn per clip from `rng`."""
  schedule = setup.pipe.schedule
  noise_rng, t_rng = jax.random.split(rng)
  noise = jax.random.normal(noise_rng, latents.shape, jnp.float32)
  p = timestep_probabilities(config.timestep_sampling, schedule.num_train_timesteps)
  t = jax.random.choice(t_rng, schedule.num_train_timesteps, (latents.shape[0],), p=jnp.asarray(p))
  target = schedule.velocity(latents, noise, t) if schedule.prediction_type == "v_prediction" else noise
  unet_params = setup.adapter.unet.apply(params["unet"], frozen["unet"])
  context = text_states(setup, params, frozen, caption_ids)
  prediction = setup.unet.apply({"params": unet_params}, schedule.add_noise(latents, noise, t), t, context)
  return prior_preservation_loss(prediction, target, num_instance, config.prior_lambda)


def frozen_tree(setup: Setup):
  """(the frozen inputs of every step, their logical specs)."""
  frozen, frozen_specs = {"unet": setup.original}, {"unet": nn.get_partition_spec(setup.boxed)}
  if setup.token_id is None:
    frozen["text"] = setup.text
  else:
    frozen["text_encoder"], frozen["ids"] = setup.pipe.params["text_encoder"], jnp.asarray(setup.ids)
  for key in frozen.keys() - {"unet"}:
    frozen_specs[key] = jax.tree.map(lambda _: PartitionSpec(), frozen[key])
  return frozen, frozen_specs


def initial_params(config, setup: Setup) -> dict:
  params = {"unet": setup.adapter.unet.initial(setup.original)}
  if setup.token_id is not None:
    params["token"] = initial_token_embedding(config, setup)
  return params


def draw_example(config, setup: Setup, index: int, rng: np.random.Generator) -> dict:
  """Instance clip `index % N` and regularisation clip `index` (the original pairs them so): a latent window
  and one of its captions each (the empty caption with probability `caption_dropout`)."""
  scale = setup.pipe.vae.config.scaling_factor
  caption = lambda ids: setup.captions.index("") if rng.random() < config.caption_dropout else rng.choice(ids)
  i = index % len(setup.instance.names)
  example = {"instance": setup.instance.window(i, config.num_frames, scale, rng),
             "instance_caption": caption(setup.instance.captions[i])}
  if setup.reg is not None:
    example["reg"] = setup.reg.window(index, config.num_frames, scale, rng)
    example["reg_caption"] = caption(setup.reg.captions[index])
  return example


def make_task(config, workdir, setup: Setup | None = None) -> training.Task:
  setup = setup or make_setup(config, workdir)
  frozen, frozen_specs = frozen_tree(setup)

  def loss_fn(params, model_state, frozen, batch, rng):
    parts = ["instance", "reg"] if "reg" in batch else ["instance"]
    latents = jnp.concatenate([batch[k] for k in parts])
    captions = jnp.concatenate([batch[f"{k}_caption"] for k in parts])
    loss, metrics = diffusion_loss(config, setup, params, frozen, latents, captions, batch["instance"].shape[0],
                                   rng)
    return loss, (metrics, model_state)

  num_pairs = len(setup.reg.names) if setup.reg is not None else len(setup.instance.names)
  per_process = config.batch_size // jax.process_count()
  epochs = config.total_steps * config.batch_size // num_pairs + 2

  def train_data():
    ds = grain.MapDataset.range(num_pairs).repeat(epochs).shuffle(seed=config.seed)
    ds = ds[jax.process_index()::jax.process_count()]
    ds = ds.random_map(lambda i, rng: draw_example(config, setup, int(i), rng), seed=config.seed)
    return ds.batch(per_process, drop_remainder=True).to_iter_dataset()

  video_axes = ("activation_batch", None, None, None, None)
  metrics = denoising_metrics_fn(config, setup)
  return training.Task(
      init_variables=lambda rng: {"params": setup.adapter.init(rng)}, loss_fn=loss_fn, optimizer=optimizer(config), train_data=train_data,
      batch_axes={"instance": video_axes, "reg": video_axes}, frozen=frozen, frozen_specs=frozen_specs,
      pretrained=lambda: initial_params(config, setup), learning_rate=lambda step: config.lr,
      evaluate=lambda params, model_state, step: metrics(params))


# ---------------------------------------------------------------------------------------- evaluation

def denoising_metrics_fn(config, setup: Setup, size: int = 8):
  """`params -> metrics` on fixed noisy windows of the clips at timesteps spread over the noise range:
  `instance_mse` and `prior_mse` (the denoising errors on the instance and regularisation clips), each also
  over the base model's (`*_ratio`: below 1 when tuning lowered it)."""
  rng = np.random.default_rng(1234)
  scale = setup.pipe.vae.config.scaling_factor
  sets = [s for s in (setup.instance, setup.reg) if s is not None]
  latents = np.stack([s.window(k % len(s.names), config.num_frames, scale, rng) for s in sets for k in range(size)])
  captions = jnp.asarray([rng.choice(s.captions[k % len(s.names)]) for s in sets for k in range(size)])
  t = np.tile(np.linspace(50, setup.pipe.schedule.num_train_timesteps - 50, size).astype(np.int32), len(sets))
  noise = rng.standard_normal(latents.shape).astype(np.float32)
  x_t = setup.pipe.schedule.add_noise(latents, noise, t)
  frozen, _ = frozen_tree(setup)

  @jax.jit
  def errors(params, frozen):
    unet_params = setup.adapter.unet.apply(params["unet"], frozen["unet"])
    out = setup.unet.apply({"params": unet_params}, x_t, t, text_states(setup, params, frozen, captions))
    target = setup.pipe.schedule.velocity(latents, noise, t) if setup.pipe.schedule.prediction_type == \
        "v_prediction" else noise
    return jnp.mean((out.reshape(len(sets), -1) - target.reshape(len(sets), -1)) ** 2, axis=1)

  base = np.asarray(errors(initial_params(config, setup), frozen))
  names = ["instance_mse", "prior_mse"][:len(sets)]

  def metrics(params):
    now = np.asarray(errors(params, frozen))
    return {**{n: float(v) for n, v in zip(names, now)},
            **{f"{n}_ratio": float(v / b) for n, v, b in zip(names, now, base)}}

  return metrics


def tuned_pipeline(setup: Setup, params) -> StableDiffusion:
  """The pipeline with the tuned UNet tensors (and the learned token) in place."""
  return dataclasses.replace(setup.pipe, params=setup.adapter.apply(params, setup.pipe.params))


def clip_alignment(scorer: scoring.CLIPScorer, videos: list[np.ndarray], prompts: list[str]) -> np.ndarray:
  """Per video: the mean over its frames of cos(frame, prompt) under CLIP."""
  texts = scorer.text_embeds(prompts)
  return np.array([np.mean(scorer.image_embeds(list(v)) @ t) for v, t in zip(videos, texts)])


def generate_videos(config, pipe: StableDiffusion, rows, folder: Path, scheduler, unet_params=None
                    ) -> list[np.ndarray]:
  paths = generate.generate_rows(
      pipe, rows, folder, num_steps=config.eval_steps, guidance_scale=config.eval_guidance,
      noise_source=config.eval_noise, batch_size=config.eval_batch_size, height=config.resolution,
      width=config.resolution, unet_params=unet_params, scheduler=scheduler, num_frames=config.num_frames,
      fps=config.eval_fps)
  return [video_lib.read_video(p)[0] for p in paths]


def generation_eval(config, setup: Setup, params, workdir, step) -> dict:
  """Videos for `eval_prompts` from the base and the tuned model (same seeds and noise), CLIP text alignment
  and motion accuracy for both."""
  rows = [dataclasses.replace(r, prompt=_caption(r.prompt, config.token))
          for r in generate.read_prompts(config.eval_prompts)]
  scheduler = schedules.scheduler_from_folder(pipeline_folder(config, workdir) / "scheduler", config.eval_scheduler)
  eval_dir = Path(workdir) / "eval"
  # The tuned UNet goes in as `unet_params` of the same pipeline: one compiled sampler serves both models
  # (a new pipeline, needed for a learned token, compiles its own).
  tuned = setup.pipe if setup.token_id is None else tuned_pipeline(setup, params)
  unet_params = place(setup.adapter.unet.apply(params["unet"], setup.original))
  videos = {"base": generate_videos(config, setup.pipe, rows, eval_dir / "base", scheduler),
            "tuned": generate_videos(config, tuned, rows, eval_dir / f"step_{step}", scheduler, unet_params)}
  results = {"num_videos": len(rows)}
  if config.eval_clip:
    scorer = scoring.CLIPScorer(config.eval_clip)
    for name, vids in videos.items():
      results[f"clip_text/{name}"] = float(np.mean(clip_alignment(scorer, vids, [r.prompt for r in rows])))
  if config.eval_classifier:
    classifier = scoring.VideoClassifier(config.eval_classifier)
    target = classifier.label_index(config.eval_motion_label)
    for name, vids in videos.items():
      results[f"motion_accuracy/{name}"] = float(np.mean(classifier.predict(vids) == target))
  return results


def evaluate(config, workdir, step=None) -> dict:
  """The denoising metrics of a checkpoint and, with `eval_prompts`, the generation metrics; also written to
  `WORKDIR/eval/step_<N>.json`."""
  setup = make_setup(config, workdir)
  generation = (lambda params, step: generation_eval(config, setup, params, workdir, step)
                ) if config.eval_prompts else None
  return tuning.evaluate(workdir, setup.adapter, step, denoising_metrics_fn(config, setup), generation)


def export(config, workdir) -> list[Path]:
  """`WORKDIR/export/unet/` (the tuned UNet, a diffusers folder), `WORKDIR/export/motion.safetensors` (the
  trained tensors alone, keyed by diffusers names) and, with the learned token, `learned_token.safetensors`
  (`{token: [1, D]}`, as diffusers' `load_textual_inversion` reads)."""
  setup = make_setup(config, workdir, with_data=False)
  params, _ = adapters.restore(workdir, setup.adapter)
  out = Path(workdir) / "export"

  def write():
    unet = save_pretrained(out / "unet", setup.unet.clone(remat_policy=None),
                           setup.adapter.unet.apply(params["unet"], setup.original))
    files = [unet, finetune.save_subset(out / "motion.safetensors", params["unet"], setup.naming)]
    if setup.token_id is not None:
      save_file({config.token: np.asarray(params["token"])[None]}, str(out / "learned_token.safetensors"))
      files.append(out / "learned_token.safetensors")
    return files

  return parallel.write_once("export", write) or []


# ----------------------------------------------------------------------------------------------- demo

def train_classifier(workdir: Path, steps: int = 150, clips_per_class: dict | None = None) -> tuple[Path, float]:
  """(the workdir, validation top-1) of a video classifier of the synthetic motions, trained as a user would:
  an AirLetters-layout release of the motions ('O' = circle, 'I' = line; `clips_per_class` per split),
  `jaxlab data build airletters` and `jaxlab train airletters` (its own process: a method does not run another
  method inside itself)."""
  import subprocess
  import sys
  from jaxlab.data import cli as data_cli
  from jaxlab.data import motion_synth
  run = workdir / "classifier"
  if not (run / "metrics.jsonl").is_file():
    clips = clips_per_class or {"train": 48, "validation": 8, "test": 8}
    motion_synth.write_classifier_release(workdir / "classifier_release", clips)
    data_cli.build("airletters", workdir / "classifier_release", workdir / "classifier_data", "fps15_short48")
    command = [sys.executable, "-m", "jaxlab.cli", "train", "airletters", "--config", "airletters:tiny",
               "--workdir", str(run), f"--config.data_dir={workdir / 'classifier_data'}",
               f"--config.total_steps={steps}", f"--config.checkpoint_every={steps}",
               f"--config.warmup_steps={min(20, steps)}"]
    subprocess.run(command, check=True)
  return run, training.metrics.history(run, "eval/top1")[-1][1]


def side_by_side(base: list[np.ndarray], tuned: list[np.ndarray], scale: int = 3) -> np.ndarray:
  """Frames `[F, H', W', 3]`: each base video above its tuned one, the pairs side by side, enlarged."""
  column = lambda b, t: np.concatenate([b, np.full_like(b[:, :2], 255), t], axis=1)
  frames = np.concatenate([np.pad(column(b, t), ((0, 0), (0, 0), (0, 2), (0, 0)), constant_values=255)
                           for b, t in zip(base, tuned)], axis=2)
  return frames.repeat(scale, 1).repeat(scale, 2)


def base_vs_tuned(workdir, step: int, out_dir, num: int = 4, fps: float = 4.0) -> tuple[Path, Path]:
  """(a GIF, a PNG of its frames top to bottom) of the first `num` eval videos of `jaxlab eval motion` at `step`:
  the base model's above the tuned one's, from the same noise."""
  from PIL import Image
  from jaxlab import notebook
  eval_dir, out_dir = Path(workdir) / "eval", Path(out_dir)
  videos = [[video_lib.read_video(p)[0] for p in sorted((eval_dir / folder).glob("*.mp4"))[:num]]
            for folder in ("base", f"step_{step}")]
  frames = side_by_side(*videos)
  grid = out_dir / "base_vs_tuned.png"
  Image.fromarray(np.concatenate(list(frames), axis=0)).save(grid)
  return notebook.write_gif(frames, out_dir / "base_vs_tuned.gif", fps), grid


def demo(workdir, num_videos: int = 16) -> DemoSection:
  """The tiny config end to end: synthetic clips, the tiny base model, motion tuning with prior preservation,
  export, a classifier of the two motions, and base vs tuned videos from the same noise, classified."""
  from jaxlab.data import motion_synth
  workdir = Path(workdir)
  run = workdir / "run"
  config = training.load_config("motion:tiny")
  training.save_config(config, run)
  setup = make_setup(config, run)
  result = training.train(make_task(config, run, setup), config, run)
  exported = export(config, run)
  classifier, classifier_top1 = train_classifier(workdir)
  prompt = config.synthetic.caption
  (workdir / "prompts.txt").write_text("".join(f"{seed},{prompt}\n" for seed in range(num_videos)))
  config.eval_prompts, config.eval_classifier = str(workdir / "prompts.txt"), str(classifier)
  config.eval_motion_label = motion_synth.LABELS["circle"]
  figures = evaluate(config, run)
  step = int(result["step"])
  gif, grid = base_vs_tuned(run, step, workdir)
  base_steps = config.tiny_pipeline.unet_steps
  headline = {"motion_accuracy_base": figures["motion_accuracy/base"],
              "motion_accuracy_tuned": figures["motion_accuracy/tuned"], "classifier_top1": classifier_top1,
              "instance_mse_ratio": figures["instance_mse_ratio"], "prior_mse_ratio": figures["prior_mse_ratio"]}
  markdown = f"""Synthetic clips: a blob tracing a circle, captioned "{prompt.format(token=config.token)}" \
({config.synthetic.num_clips} clips), and regularisation clips of a blob moving up and down ("\
{config.synthetic.reg_caption}"). The base model is a tiny text-to-video pipeline made here: a VAE trained on \
the clips' frames and a 2-level UNet3D pretrained for {base_steps} steps on the up-and-down clips only \
({100 * config.tiny_pipeline.caption_dropout:.0f}% of them with the empty caption, so that classifier-free \
guidance has an unconditional model to steer from), so it knows that motion and not the circle. Motion tuning: \
{step} AdamW steps at lr {config.lr} of \
{', '.join(config.trainable_modules)} with prior preservation (lambda {config.prior_lambda}, \
{config.timestep_sampling} timesteps), {config.num_frames} frames of {config.resolution} px.

A video classifier of the two motions (`jaxlab train airletters` on an AirLetters-layout release of them, \
'O' = circle, 'I' = line; validation top-1 {100 * classifier_top1:.0f}%) labels {num_videos} videos per model \
for "{prompt.format(token=config.token)}", from the same seeds and noise ({config.eval_steps}-step \
{config.eval_scheduler}, guidance {config.eval_guidance}):

| model | videos labelled as the taught motion (circle) |
|---|---|
| base | {100 * figures['motion_accuracy/base']:.0f}% |
| tuned | {100 * figures['motion_accuracy/tuned']:.0f}% |

On fixed noisy windows the tuned model's denoising error is {figures['instance_mse_ratio']:.2f}x the base's on \
the circle clips and {figures['prior_mse_ratio']:.2f}x on the up-and-down clips. `base_vs_tuned.gif` / \
`base_vs_tuned.png`: four seeds, the base model's video above the tuned one's. Exported: \
`{exported[0].relative_to(workdir)}` (a diffusers UNet3DConditionModel folder) and \
`{exported[1].relative_to(workdir)}` (the {len(setup.selected)} changed tensors)."""
  return DemoSection(title="Motion customisation (text-to-video)", markdown=markdown, figures=headline,
                     files=[gif, grid, *exported])
