"""AirLetters (Dagli et al., 2024): classify which of 38 characters (or contrast classes) is drawn in the air.

Models: the VideoMAE-style video ViT (`video_vit`, optionally initialised from a local VideoMAE folder) or a
3D ResNeXt (`resnext3d`, the paper's strongest family). Training: cross-entropy with label smoothing, AdamW
with linear warm-up and cosine decay, uniform temporal sampling (random within segments) and random resized
crops (scale 0.7-1.0); evaluation: segment centres and a centre crop. Eval reports top-1, top-5, per-class
accuracy and a confusion matrix.
"""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from jaxlab import parallel, training
from jaxlab.data import airletters, pipeline
from jaxlab.data import video as video_lib
from jaxlab.errors import UserError
from jaxlab.methods import DemoSection
from jaxlab.models import video_classifiers, video_vit, weights
from jaxlab.training.classification import classification_metrics


# --------------------------------------------------------------------------------------------- model

def make_model(config) -> nn.Module:
  return video_classifiers.make(config, len(airletters.LABELS))


# ---------------------------------------------------------------------------------------------- data

def load_splits(config) -> dict:
  from jaxlab.data.builder import open_prepared
  return open_prepared(config.dataset, config.data_dir)[0]


def clip_transform(num_frames: int, size: int, train: bool, crop_scale=(0.7, 1.0)):
  """TFDS example -> {'video': uint8 [T, size, size, 3], 'label': int32}; random only when training."""

  def transform(example, rng: np.random.Generator | None = None):
    index = video_lib.segment_indices(int(example["num_frames"]), num_frames, rng if train else None)
    frames = np.stack([video_lib.decode_jpeg(example["frames"][i]) for i in index])
    if train:
      frames = video_lib.random_resized_crop(frames, size, rng, scale=crop_scale)
    else:
      frames = video_lib.center_crop(frames, size)
    return {"video": frames, "label": np.int32(example["label"])}

  return transform


# ------------------------------------------------------------------------------------------ training

def optimizer(config):
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, config.lr, warmup_steps=config.warmup_steps, decay_steps=max(config.total_steps, config.warmup_steps + 1),
      end_value=config.lr * config.final_lr_fraction)
  # No weight decay on biases and norm scales (the usual ViT / ResNet recipe).
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
  tx = optax.chain(optax.clip_by_global_norm(config.grad_clip) if config.grad_clip else optax.identity(),
                   optax.adamw(schedule, b1=0.9, b2=config.adam_b2, weight_decay=config.weight_decay, mask=decay_mask))
  return tx, schedule


def make_task(config, workdir=None) -> training.Task:
  model = make_model(config)
  splits = load_splits(config)
  tx, schedule = optimizer(config)
  has_batch_stats = config.model_name == "resnext3d"
  num_classes = len(airletters.LABELS)
  mesh = parallel.make_mesh(dict(config.mesh))

  def init_variables(rng):
    video = jnp.zeros((1, config.num_frames, config.image_size, config.image_size, 3), jnp.float32)
    return model.init(rng, video)

  def loss_fn(params, model_state, frozen, batch, rng):
    variables = {"params": params, **model_state}
    kwargs = dict(train=True, rngs={"dropout": rng})
    video = video_classifiers.normalise(batch["video"])
    if has_batch_stats:
      logits, new_state = model.apply(variables, video, mutable=["batch_stats"], **kwargs)
    else:
      logits, new_state = model.apply(variables, video, **kwargs), model_state
    targets = optax.smooth_labels(jax.nn.one_hot(batch["label"], num_classes), config.label_smoothing)
    loss = optax.softmax_cross_entropy(logits, targets).mean()
    accuracy = (logits.argmax(-1) == batch["label"]).mean()
    return loss, ({"accuracy": accuracy}, new_state)

  def train_data():
    return pipeline.training_dataset(
        splits[config.train_split],
        clip_transform(config.num_frames, config.image_size, True, tuple(config.crop_scale)),
        batch_size=config.batch_size, seed=config.seed, workers=config.data_workers)

  def pretrained():
    _, params = weights.load_pretrained(config.pretrained, expect=video_classifiers.VIDEOMAE_CLASSES)
    init = nn.meta.unbox(jax.eval_shape(init_variables, jax.random.key(0)))["params"]
    # The classifier is new (38 AirLetters classes): keep its fresh initialisation's shape, zero weights.
    params["classifier"] = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), init["classifier"])
    return params

  def evaluate_during_training(params, model_state, step):
    result = evaluate_split(model, params, model_state, splits[config.eval_split], config, mesh)
    return {"top1": result["top1"], "top5": result["top5"]}

  return training.Task(
      init_variables=init_variables, loss_fn=loss_fn, optimizer=tx, train_data=train_data,
      batch_axes={"video": ("activation_batch", None, None, None, None)},
      pretrained=pretrained if config.pretrained and config.model_name == "video_vit" else None,
      learning_rate=schedule, evaluate=evaluate_during_training)


# ---------------------------------------------------------------------------------------- evaluation

def evaluate_split(model, params, model_state, source, config, mesh) -> dict:
  """Top-1, top-5, per-class accuracy and the confusion matrix on one split (all of it, once)."""
  from jax.experimental import multihost_utils

  @jax.jit
  def predict(params, model_state, video):
    return model.apply({"params": params, **model_state}, video_classifiers.normalise(video), train=False)

  transform = clip_transform(config.num_frames, config.image_size, train=False)
  logits, labels, masks = [], [], []
  batch_shardings = None
  with parallel.mesh_context(mesh):
    for batch in pipeline.eval_batches(source, transform, batch_size=config.eval_batch_size):
      if batch_shardings is None:
        batch_shardings = parallel.batch_shardings(batch, mesh)
      placed = parallel.global_batch(batch, batch_shardings)
      out = predict(params, model_state, placed["video"])
      logits.append(np.asarray(multihost_utils.process_allgather(out, tiled=True)))
      labels.append(np.asarray(multihost_utils.process_allgather(placed["label"], tiled=True)))
      masks.append(np.asarray(multihost_utils.process_allgather(placed["mask"], tiled=True)))
  logits, labels, mask = np.concatenate(logits), np.concatenate(labels), np.concatenate(masks)
  return classification_metrics(logits[mask], labels[mask], len(airletters.LABELS))


def plot_confusion(confusion: np.ndarray, path: Path, title: str) -> Path:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  names = [airletters.short_name(label) for label in airletters.LABELS]
  rates = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
  fig, ax = plt.subplots(figsize=(9, 8))
  im = ax.imshow(rates, cmap="viridis", vmin=0, vmax=1)
  ax.set_xticks(range(len(names)), names, fontsize=6, rotation=90)
  ax.set_yticks(range(len(names)), names, fontsize=6)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  ax.set_title(title)
  fig.colorbar(im, ax=ax, fraction=0.046)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def write_split_metrics(result: dict, split: str, step: int, out_dir: Path) -> None:
  """`metrics_<split>.json` (with per-class accuracy and the confusion matrix) and `confusion_<split>.png`."""
  out_dir.mkdir(parents=True, exist_ok=True)
  plot_confusion(result["confusion"], out_dir / f"confusion_{split}.png",
                 f"AirLetters {split}, step {step}: top-1 {100 * result['top1']:.1f}%")
  record = {"step": step, **{k: v for k, v in result.items() if k not in ("per_class", "confusion")}}
  record["per_class"] = {airletters.short_name(label): (None if np.isnan(a) else float(a))
                         for label, a in zip(airletters.LABELS, result["per_class"])}
  record["confusion"] = result["confusion"].tolist()
  (out_dir / f"metrics_{split}.json").write_text(json.dumps(record, indent=2))


def evaluate(config, workdir, step=None) -> dict:
  """Evaluates a checkpoint on `config.eval_split` and `test`; writes metrics JSON and confusion PNGs."""
  task = make_task(config, workdir)
  state = training.load_for_eval(task, config, workdir, step)
  if state is None:
    raise UserError(f"{workdir} has no checkpoint to evaluate; train first")
  model, splits = make_model(config), load_splits(config)
  mesh = parallel.make_mesh(dict(config.mesh))
  out_dir = Path(workdir) / "eval"
  step = int(state["step"])
  summary = {"step": step}
  for split in dict.fromkeys([config.eval_split, "test"]):
    if split not in splits:
      continue
    result = evaluate_split(model, state["params"], state["model_state"], splits[split], config, mesh)
    parallel.write_once(f"{split} metrics", lambda: write_split_metrics(result, split, step, out_dir))
    summary.update({f"{split}/top1": result["top1"], f"{split}/top5": result["top5"],
                    f"{split}/mean_class_accuracy": result["mean_class_accuracy"]})
  return summary


def export(config, workdir) -> list[Path]:
  """The trained classifier in transformers' VideoMAE layout (video ViT), or as flat safetensors (3D CNN)."""
  task = make_task(config, workdir)
  state = training.load_for_eval(task, config, workdir)
  variables = parallel.gather_to_host({"params": state["params"], **state["model_state"]})
  out = Path(workdir) / "export"
  return parallel.write_once("export", lambda: write_export(make_model(config), variables, out)) or []


def write_export(model, variables: dict, out: Path) -> list[Path]:
  if isinstance(model, video_vit.VideoViTClassifier):
    return [weights.save_pretrained(out / "videomae", model, variables["params"])]
  from flax import traverse_util
  from safetensors.numpy import save_file
  out.mkdir(parents=True, exist_ok=True)
  flat = {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(variables).items()}
  save_file(flat, str(out / "resnext3d.safetensors"))
  return [out / "resnext3d.safetensors"]


# ---------------------------------------------------------------------------------------------- demo

def plot_training_curve(metrics_file: Path, path: Path) -> Path:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  records = training.metrics.read_records(metrics_file.parent)
  train = [(r["step"], r["train/loss"], r["train/accuracy"]) for r in records if "train/loss" in r]
  evals = [(r["step"], r["eval/top1"]) for r in records if "eval/top1" in r]
  fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
  a.plot([t[0] for t in train], [t[1] for t in train])
  a.set_xlabel("step")
  a.set_ylabel("train loss")
  b.plot([t[0] for t in train], [t[2] for t in train], label="train (batch)")
  b.plot([e[0] for e in evals], [e[1] for e in evals], "o-", label="validation top-1")
  b.axhline(1 / len(airletters.LABELS), color="gray", ls="--", label="chance")
  b.set_xlabel("step")
  b.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def demo(workdir, variant: str = "tiny", clips_per_class=None) -> DemoSection:
  """Synthetic release -> TFDS build -> tiny training on 8 CPU devices -> test-set evaluation -> report."""
  from jaxlab.data import airletters_synth
  from jaxlab.data import cli as data_cli
  workdir = Path(workdir)
  manual, data_dir, run = workdir / "manual", workdir / "data", workdir / "run"
  if not (manual / "test.csv").is_file():
    print("writing the synthetic AirLetters release ...", flush=True)
    airletters_synth.write_dataset(manual, clips_per_class or {"train": 100, "validation": 6, "test": 8})
  config = training.load_config(f"airletters:{variant}", [f"data_dir={data_dir}"])
  data_cli.build("airletters", manual, data_dir, config.dataset.split("/")[-1])
  training.save_config(config, run)
  training.train(make_task(config, run), config, run)
  result = evaluate(config, run)
  curve = plot_training_curve(run / "metrics.jsonl", workdir / "training_curve.png")
  confusion = run / "eval" / "confusion_test.png"
  per_class = json.loads((run / "eval" / "metrics_test.json").read_text())["per_class"]
  ranked = sorted((v, k) for k, v in per_class.items() if v is not None)
  chance = 1 / len(airletters.LABELS)
  markdown = "\n".join([
      f"Synthetic AirLetters ({clips_per_class or 'train 100, validation 6, test 8'} clips per class, "
      f"{len(airletters.LABELS)} classes), model `{config.model_name}` ({variant}), {config.total_steps} steps of "
      f"batch {config.batch_size} on a {dict(config.mesh)} mesh.",
      "",
      "| split | top-1 | top-5 | mean class accuracy | chance |",
      "|---|---|---|---|---|",
      *[f"| {split} | {100 * result[f'{split}/top1']:.1f}% | {100 * result[f'{split}/top5']:.1f}% | "
        f"{100 * result[f'{split}/mean_class_accuracy']:.1f}% | {100 * chance:.1f}% |"
        for split in ("validation", "test")],
      "",
      f"Easiest classes (test): {', '.join(f'{k} {100 * v:.0f}%' for v, k in ranked[::-1][:5])}; hardest: "
      f"{', '.join(f'{k} {100 * v:.0f}%' for v, k in ranked[:5])}.",
      "",
      f"![training curve]({curve.relative_to(workdir.parent)})",
      f"![confusion matrix]({confusion.relative_to(workdir.parent)})",
  ])
  return DemoSection(
      title="AirLetters (video classification)", markdown=markdown,
      figures={"test_top1": result["test/top1"], "test_top5": result["test/top5"], "chance": chance},
      files=[curve, confusion])
