"""ESD: Erasing Concepts from Diffusion Models (Gandikota et al., ICCV 2023).

A name-selected subset of the SD UNet is fine-tuned so that its prediction for the concept c regresses onto
the frozen model's prediction guided *away* from c:

  eps_theta(x_t, c, t)  ->  eps*(x_t, t) - eta * (eps*(x_t, c, t) - eps*(x_t, t))           (paper, Eq. 4-6)

With `erase_from` c' ("erase c from c'"), the trained model is queried with c' and the base term is
eps*(x_t, c', t), as in the newer diffusers scripts; without it the base is the unconditional prediction, as in
the paper (`esd_sd.py` would use eps*(x_t, c, t) there).

x_t is made as in the original CompVis code (`xt_mode='original'`): DDIM (eta 0) with CFG `start_guidance` from
pure noise, run by the model being trained, over the 50-step chain without its top step, stopped after index
t_enc - 1; the UNets are then queried at t_ddpm ~ U[20 t_enc, 20 t_enc + 20), a few tens of steps noisier than
the latent. `xt_mode='diffusers'` follows `esd_sd.py`: the frozen model samples `run_till` steps and everything
is queried at exactly `timesteps[run_till]` (DDIM on the pipeline's schedule; `esd_sd.py` uses the pipeline's
own scheduler, PNDM for SD 1.4, and 1024 px).

Which parameters train is a rule on diffusers names (`TRAIN_METHODS`): `xattn` is ESD-x, `noxattn` ESD-u. They
are a full-weight adapter (`finetune.Subset`, `jaxlab.diffusion.adapters`) over the frozen UNet, which is one
tree that is never copied; the step applies the subset over it. Text embeddings are computed once. After
training, `export` writes the UNet as a diffusers folder and the changed tensors alone as `esd.safetensors`.
"""

import dataclasses
import functools
from pathlib import Path

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from jax.sharding import PartitionSpec
from PIL import Image

from jaxlab import parallel, training
from jaxlab.data import pipeline
from jaxlab.diffusion import adapters, finetune, generate, scoring, tuning
from jaxlab.diffusion.pipeline import StableDiffusion, latent_noise
from jaxlab.diffusion.schedules import NoiseSchedule
from jaxlab.diffusion.tuning import TINY_RANDOM
from jaxlab.errors import UserError
from jaxlab.methods import DemoSection
from jaxlab.models import save_pretrained, unet2d

# Prompt shortcuts of the original `train-esd.py`; with a separator they erase each listed concept.
SHORTCUTS = {
    "i2p": "hate, harassment, violence, suffering, humiliation, harm, suicide, sexual, nudity, bodily fluids, blood",
    "allartist": "Kelly Mckernan, Thomas Kinkade, Ajin Demi Human, Alena Aenami, Tyler Edlin, Kilian Eng",
    "artifact": "ugly, tiling, poorly drawn hands, poorly drawn feet, poorly drawn face, out of frame, mutation, "
                "mutated, extra limbs, extra legs, extra arms, disfigured, deformed, cross-eye, body out of frame, "
                "blurry, bad art, bad anatomy, blurred, text, watermark, grainy",
}

_OUT = ("conv_norm_out.", "conv_out.")  # CompVis `out.*`
# Rules of the original code on CompVis names, written on diffusers names (CompVis `time_embed` is diffusers'
# `time_embedding`; resnet `emb_layers` are `time_emb_proj` and do train under `noxattn`). `xlayer` and
# `selflayer` name SD 1.x blocks (CompVis output_blocks.6/.8 and input_blocks.4/.7).
TRAIN_METHODS = {
    "xattn": lambda n: "attn2" in n,
    "noxattn": lambda n: not (n.startswith(_OUT) or "attn2" in n or "time_embedding" in n),
    "selfattn": lambda n: "attn1" in n,
    "full": lambda n: True,
    "notime": lambda n: not (n.startswith(_OUT) or "time_embedding" in n),
    "xattn-strict": lambda n: ".attn2.to_k." in n or ".attn2.to_v." in n,
    "xlayer": lambda n: "attn2" in n and n.startswith(("up_blocks.2.attentions.0.", "up_blocks.2.attentions.2.")),
    "selflayer": lambda n: "attn1" in n and n.startswith(("down_blocks.1.attentions.0.",
                                                          "down_blocks.2.attentions.0.")),
}
XT_MODES = ("original", "diffusers")


def concept_list(text: str, separator: str) -> list[str]:
  text = SHORTCUTS.get(text, text)
  words = [w.strip() for w in text.split(separator)] if separator else [text]
  if not all(words):
    raise UserError(f"concept {text!r} split by {separator!r} gives an empty concept")
  return words


def select(params, train_method: str) -> frozenset:
  if train_method not in TRAIN_METHODS:
    raise UserError(f"train_method {train_method!r}: use one of {', '.join(TRAIN_METHODS)}")
  selected = finetune.select(params, TRAIN_METHODS[train_method], unet2d.LAYER_LISTS)
  if not selected:
    raise UserError(f"train_method {train_method!r} selects no UNet parameter")
  return selected


def esd_target(e_base, e_concept, e_uncond, negative_guidance):
  """The frozen prediction guided away from the concept: e_base - eta * (e_concept - e_uncond)."""
  return e_base - negative_guidance * (e_concept - e_uncond)


# ------------------------------------------------------------------------------------------------ setup

@dataclasses.dataclass(eq=False)
class Setup:
  """The pipeline, the concepts' text embeddings, the parameter split and the x_t chain of one config."""
  pipe: StableDiffusion
  concepts: list[str]
  erase_from: list[str] | None
  text: dict  # uncond [1, L, D], erase / source [K, L, D], preserve [1, L, D]
  selected: frozenset
  chain: tuple[np.ndarray, np.ndarray]  # timesteps and the timesteps they step to, in sampling order
  schedule: NoiseSchedule

  @property
  def unet(self):
    return self.pipe.unet

  @property
  def original(self):
    return self.pipe.params["unet"]

  @functools.cached_property
  def boxed(self) -> dict:
    """The UNet's abstract params with logical names."""
    return adapters.abstract_params(self.unet, *unet2d.FAMILY.dummy_inputs(self.unet))

  @functools.cached_property
  def adapter(self) -> finetune.Subset:
    """The trained subset as an adapter over the frozen UNet."""
    return finetune.Subset(self.selected.__contains__, self.boxed)


def x_t_chain(config, schedule):
  """(timesteps, previous timesteps) of the sampling chain, noisiest first, for `config.xt_mode`."""
  n, steps = schedule.num_train_timesteps, config.ddim_steps
  if config.xt_mode == "original":
    # CompVis DDIM: timesteps range(0, 1000, 1000 // S) + 1, alpha_prev of index i is that of index i - 1
    # (alphas_cumprod[0] for i = 0); `t_start=-1` drops the top timestep.
    ts = np.arange(0, n, n // steps) + 1
    prev = np.concatenate([[0], ts[:-1]])
    return ts[:-1][::-1].copy(), prev[:-1][::-1].copy()
  return tuning.ddim_chain(schedule, steps)


def make_setup(config, workdir) -> Setup:
  if config.xt_mode not in XT_MODES:
    raise UserError(f"xt_mode {config.xt_mode!r}: use one of {', '.join(XT_MODES)}")
  folder = tuning.pipeline_folder(config.pretrained, workdir, sample_size=config.image_size // 2)
  pipe = StableDiffusion.load(folder, dtype=jnp.dtype(config.dtype))
  if config.remat_policy:
    pipe = dataclasses.replace(pipe, unet=pipe.unet.clone(remat_policy=config.remat_policy))
  concepts = concept_list(config.concept, config.separator)
  erase_from = concept_list(config.erase_from, config.separator) if config.erase_from else None
  if erase_from is not None and len(erase_from) not in (1, len(concepts)):
    raise UserError(f"erase_from names {len(erase_from)} concepts for {len(concepts)} erased ones; give one or "
                    "the same number")
  sources = erase_from * (len(concepts) // len(erase_from)) if erase_from else concepts
  text = {"uncond": pipe.encode_text([""]), "erase": pipe.encode_text(concepts),
          "source": pipe.encode_text(sources), "preserve": pipe.encode_text([config.preserve_prompt])}
  schedule = pipe.schedule
  if config.xt_mode == "original":
    schedule = dataclasses.replace(schedule, clip_sample=False)  # CompVis' DDIM does not clip
  return Setup(pipe, concepts, erase_from, text, select(pipe.params["unet"], config.train_method),
               x_t_chain(config, schedule), schedule)


# ----------------------------------------------------------------------------------------- the step

def draw_example(config, setup: Setup, rng: np.random.Generator) -> dict:
  """One training example: which concept, how many chain steps make x_t, and the query timestep."""
  steps, n = config.ddim_steps, setup.schedule.num_train_timesteps
  timesteps, _ = setup.chain
  if config.xt_mode == "original":
    t_enc = int(rng.integers(steps))
    t_query = rng.integers(round(t_enc / steps * n), round((t_enc + 1) / steps * n))
    chain_steps = len(timesteps) - max(t_enc - 1, 0)  # the loop stops after DDIM index t_enc - 1
  else:
    chain_steps = int(rng.integers(steps))
    t_query = timesteps[chain_steps]
  return {"concept": np.int32(rng.integers(len(setup.concepts))), "chain_steps": np.int32(chain_steps),
          "t_query": np.int32(t_query)}


def make_x_t(config, setup: Setup, sampler_params, text, batch, rng):
  """x_t by partial DDIM with guidance `start_guidance` from pure noise, per example."""
  prompts = text["source"][batch["concept"]]
  uncond = jnp.broadcast_to(text["uncond"], prompts.shape)
  shape = setup.pipe.latent_shape(prompts.shape[0], config.image_size, config.image_size)
  return tuning.partial_sample(setup.unet, sampler_params, prompts, uncond, config.start_guidance, setup.schedule,
                               setup.chain, batch["chain_steps"], shape, rng)


def erase_loss(config, setup: Setup, trained, original, text, x_t, t, concept):
  """The ESD regression of the trained model's conditional prediction onto the guided-away target."""
  c_erase, c_source = text["erase"][concept], text["source"][concept]
  uncond = jnp.broadcast_to(text["uncond"], c_erase.shape)
  contexts = [uncond, c_erase] + ([c_source] if setup.erase_from else [])
  n = len(contexts)
  frozen_out = setup.unet.apply({"params": original}, jnp.concatenate([x_t] * n), jnp.concatenate([t] * n),
                                jnp.concatenate(contexts))
  e_uncond, e_concept, *rest = jnp.split(frozen_out, n)
  target = jax.lax.stop_gradient(esd_target(rest[0] if rest else e_uncond, e_concept, e_uncond,
                                            config.negative_guidance))
  prediction = setup.unet.apply({"params": trained}, x_t, t, c_source)
  return jnp.mean((prediction - target) ** 2)


def make_task(config, workdir, setup: Setup | None = None) -> training.Task:
  setup = setup or make_setup(config, workdir)
  adapter = setup.adapter
  frozen = {"unet": setup.original, "text": setup.text}
  frozen_specs = {"unet": nn.get_partition_spec(setup.boxed),
                  "text": jax.tree.map(lambda _: PartitionSpec(), setup.text)}

  def loss_fn(params, model_state, frozen, batch, rng):
    base = frozen["unet"]
    trained = adapter.apply(params, base)
    sampler_params = jax.lax.stop_gradient(trained) if config.xt_mode == "original" else base
    x_t = jax.lax.stop_gradient(make_x_t(config, setup, sampler_params, frozen["text"], batch, rng))
    loss = erase_loss(config, setup, trained, base, frozen["text"], x_t, batch["t_query"], batch["concept"])
    return loss, ({}, model_state)

  def train_data():
    ds = grain.MapDataset.range(2**40).random_map(lambda _, rng: draw_example(config, setup, rng), seed=config.seed)
    return pipeline.process_batches(ds, config.batch_size).to_iter_dataset()

  metrics = erase_metrics_fn(config, setup)
  return training.Task(
      init_variables=lambda rng: {"params": adapter.init(rng)}, loss_fn=loss_fn, optimizer=optax.adam(config.lr),
      train_data=train_data, frozen=frozen, frozen_specs=frozen_specs,
      pretrained=lambda: adapter.initial(setup.original),
      learning_rate=lambda step: config.lr, evaluate=lambda params, model_state, step: metrics(params))


# ---------------------------------------------------------------------------------------- evaluation

def erase_metrics_fn(config, setup: Setup, size: int = 8):
  """`trainable -> metrics` on fixed noisy latents spread over the noise range, each concept in turn:

    erase_mse       the ESD loss there;
    erase_gap       that over its value for the original model: 1 at the start, 0 when the erased concept's
                    prediction sits on the target;
    concept_shift   how far the prediction for the erased concept moved (mean squared change);
    preserve_shift  the same for `preserve_prompt`, which should move less.
  """
  rng = np.random.default_rng(1234)
  shape = setup.pipe.latent_shape(size, config.image_size, config.image_size)
  t = np.linspace(50, setup.schedule.num_train_timesteps - 50, size).astype(np.int32)
  x_t = setup.schedule.add_noise(rng.normal(size=shape).astype(np.float32),
                                 rng.normal(size=shape).astype(np.float32), t)
  concept = jnp.arange(size) % len(setup.concepts)
  preserve = jnp.broadcast_to(setup.text["preserve"], (size,) + setup.text["preserve"].shape[1:])

  @jax.jit
  def metrics(trainable, original, text):
    trained = setup.adapter.apply(trainable, original)
    loss = erase_loss(config, setup, trained, original, text, x_t, t, concept)
    start = erase_loss(config, setup, original, original, text, x_t, t, concept)
    contexts = jnp.concatenate([text["source"][concept], preserve])
    shift = lambda p: setup.unet.apply({"params": p}, jnp.concatenate([x_t, x_t]), jnp.concatenate([t, t]), contexts)
    concept_shift, preserve_shift = jnp.split((shift(trained) - shift(original)) ** 2, 2)
    return {"erase_mse": loss, "erase_gap": loss / start, "concept_shift": jnp.mean(concept_shift),
            "preserve_shift": jnp.mean(preserve_shift)}

  return lambda trainable: {k: float(v) for k, v in metrics(trainable, setup.original, setup.text).items()}


def generation_eval(config, setup: Setup, trainable, workdir, step) -> dict:
  """Images from `eval_prompts` before and after erasure; CLIP scores against each image's prompt and the
  erased concepts (the highest over concepts), and the external classifier's figures, for both sets."""
  rows = generate.read_prompt_csv(config.eval_prompts)
  sets = {"original": (Path(workdir) / "eval" / "original", None),
          "erased": (Path(workdir) / "eval" / f"step_{step}", setup.adapter.apply(trainable, setup.original))}
  paths = {}
  for name, (folder, unet_params) in sets.items():
    paths[name] = generate.generate_rows(
        setup.pipe, rows, folder, num_images=config.eval_num_images, num_steps=config.eval_steps,
        guidance_scale=config.eval_guidance, noise_source=config.eval_noise, batch_size=config.eval_batch_size,
        height=config.image_size, width=config.image_size, unet_params=unet_params)
  rows_per_image = [row for row in rows for _ in range(config.eval_num_images)]
  results = {}
  if config.eval_clip:
    scorer = scoring.CLIPScorer(config.eval_clip)
    concepts = scorer.text_embeds(setup.concepts)
    prompts = scorer.text_embeds([row.prompt for row in rows_per_image])
    for name, files in paths.items():
      images = scorer.image_embeds([np.asarray(Image.open(f).convert("RGB")) for f in files])
      results[f"clip_prompt/{name}"] = float(np.mean(np.sum(images * prompts, axis=-1)))
      results[f"clip_concept/{name}"] = float(np.mean(np.max(images @ concepts.T, axis=-1)))
  if config.eval_classifier:
    loaded = scoring.load_classifier(config.eval_classifier)
    if loaded is not None:
      classifier_name, classify = loaded
      for name, files in paths.items():
        for key, value in classify(files, rows_per_image).items():
          if np.isscalar(value):
            results[f"{classifier_name}_{key}/{name}"] = float(value)
  return results


def evaluate(config, workdir, step=None) -> dict:
  """The erasure metrics of a checkpoint and, with `eval_prompts`, the generation harness; also written to
  `WORKDIR/eval/step_<N>.json`."""
  setup = make_setup(config, workdir)
  generation = (lambda trainable, step: generation_eval(config, setup, trainable, workdir, step)
                ) if config.eval_prompts else None
  return tuning.evaluate(workdir, setup.adapter, step, erase_metrics_fn(config, setup), generation)


def export(config, workdir) -> list[Path]:
  """`WORKDIR/export/unet/` (the trained UNet, a diffusers folder) and `WORKDIR/export/esd.safetensors` (the
  trained tensors alone, keyed by diffusers names, for `unet.load_state_dict(..., strict=False)`)."""
  setup = make_setup(config, workdir)
  trainable, _ = adapters.restore(workdir, setup.adapter)
  out = Path(workdir) / "export"

  def write():
    unet = save_pretrained(out / "unet", setup.unet.clone(remat_policy=None),
                           setup.adapter.apply(trainable, setup.original))
    return [unet, finetune.save_subset(out / "esd.safetensors", trainable, unet2d.LAYER_LISTS)]

  return parallel.write_once("export", write) or []


# ----------------------------------------------------------------------------------------------- demo

def before_after(config, setup: Setup, trainable, path: Path) -> tuple[Path, list[str]]:
  """A PNG of images for the concept and for `preserve_prompt` (two seeds each): the original UNet's on top,
  the erased one's below; and the prompts, left to right."""
  prompts = [p for p in (setup.concepts[0], config.preserve_prompt) for _ in range(2)]
  shape = setup.pipe.latent_shape(1, config.image_size, config.image_size)
  noise = np.concatenate([latent_noise(seed, shape) for seed in range(len(prompts))])
  before = setup.pipe.generate(prompts, noise, config.eval_steps)
  after = setup.pipe.generate(prompts, noise, config.eval_steps,
                              unet_params=setup.adapter.apply(trainable, setup.original))
  tuning.image_grid([before, after], scale=4).save(path)
  return Path(path), prompts


def demo(workdir) -> DemoSection:
  """The tiny config end to end: train ESD-x on a random SD pipeline, export, and images before / after."""
  workdir = Path(workdir)
  config = training.load_config("esd:tiny")
  training.save_config(config, workdir)
  setup = make_setup(config, workdir)
  result = training.train(make_task(config, workdir, setup), config, workdir)
  exported = export(config, workdir)
  trainable, step = adapters.restore(workdir, setup.adapter)
  losses = training.metrics.history(workdir, "train/loss")

  grid, prompts = before_after(config, setup, trainable, workdir / "before_after.png")
  curve = tuning.loss_curve(losses, workdir / "loss.png", "ESD-x, tiny random SD", "ESD loss")

  figures = {"loss_first": losses[0][1], "loss_last": losses[-1][1],
             **{k: result[f"eval/{k}"] for k in ("erase_gap", "concept_shift", "preserve_shift")}}
  table = "\n".join(f"| {s} | {loss:.4f} |" for s, loss in losses)
  markdown = f"""ESD-x (`train_method=xattn`, eta {config.negative_guidance}) erases "{setup.concepts[0]}" from a \
small random SD pipeline ({config.image_size} px images, x_t from {config.ddim_steps}-step DDIM with guidance \
{config.start_guidance}, as the original code), {step} Adam steps at lr {config.lr}, batch {config.batch_size}.

| step | loss |
|---|---|
{table}

On fixed noisy latents, the erased concept's prediction moved onto the target: `erase_gap` (the ESD loss over \
its value for the original model) is {figures['erase_gap']:.3f} (1 at the start); the prediction for the concept \
moved by {figures['concept_shift']:.4f} (mean squared change), the one for "{config.preserve_prompt}" by \
{figures['preserve_shift']:.4f}. A random text encoder barely tells prompts apart, so the second is not small \
here; with SD v1.4 use `jaxlab eval esd` with a prompt CSV and a CLIP folder.

Exported: `{exported[0].relative_to(workdir)}` (diffusers UNet folder) and \
`{exported[1].relative_to(workdir)}` (the changed tensors). `loss.png`: the loss curve; `before_after.png`: top row \
the original model, bottom row the erased one, for "{prompts[0]}" (left two) and "{prompts[-1]}" (right two)."""
  return DemoSection(title="ESD: erasing a concept", markdown=markdown, figures=figures,
                     files=[curve, grid, *exported])
