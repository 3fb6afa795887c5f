"""Something-Else (Materzynska et al., CVPR 2020): compositional action recognition from object and hand boxes.

Models (`config.model_name`): the box models 'stin', 'stin_oie', 'stin_oie_nl'; the appearance baseline 'i3d'
(I3D ResNet-50); and the joint models 'i3d_stin_oie', 'i3d_stin_oie_nl'. The I3D loads a converted Kinetics
checkpoint when `config.i3d.checkpoint` names one (then its weights and batch norms stay frozen), else it
trains from scratch. Training follows the original: SGD (momentum 0.9, weight decay 1e-4, gradient norm
clipped at 5), the learning rate divided by 10 at given epochs, TSN segment sampling of the box frames (random
within segments; centres for evaluation), multi-scale fixed crops (centre crop for evaluation).

Few-shot: `config.fine_tune_from` names the run directory of a base model; its weights (and batch-norm
statistics) are frozen and only a new last classifier layer (`classifier_4`, `fc` for the I3D) is trained on
the 5- or 10-shot set. Evaluation reports top-1, top-5, per-class accuracy and the confusion matrix, and, with
`config.ensemble_with` (other run directories), the late ensemble that averages the runs' class probabilities.
"""

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import linen as nn
from PIL import Image

from jaxlab import parallel, training
from jaxlab.data import pipeline
from jaxlab.data import something_else as se
from jaxlab.data import video as video_lib
from jaxlab.diffusion import finetune
from jaxlab.errors import UserError
from jaxlab.methods import DemoSection
from jaxlab.models import cnn3d, stin, weights
from jaxlab.training.classification import classification_metrics

BOX_MODELS = tuple(stin.VARIANTS)
MODELS = BOX_MODELS + ("i3d", "i3d_stin_oie", "i3d_stin_oie_nl")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def uses_boxes(config) -> bool:
  return config.model_name != "i3d"


def uses_pixels(config) -> bool:
  return config.model_name not in BOX_MODELS


def normalise(video_uint8):
  """The original's normalisation: ImageNet mean and std (0-1 units) applied to 0-255 pixel values, which
  the Kinetics I3D checkpoint was used with."""
  return (video_uint8.astype(jnp.float32) - IMAGENET_MEAN) / IMAGENET_STD


# ---------------------------------------------------------------------------------------------- data

def load_dataset(config):
  """The TFDS splits (random access) and the class names of each split."""
  from jaxlab.data.builder import open_prepared
  sources, info = open_prepared(config.dataset, config.data_dir)
  for split in (config.train_split, config.eval_split):
    if split not in sources:
      raise UserError(f"{config.dataset} has no split {split!r}; it has {', '.join(sources)}")
  if uses_pixels(config) and "frames" not in info.features:
    raise UserError(f"{config.model_name} needs frames, which {config.dataset} does not store; use the config "
                    f"without `_boxes` (e.g. {config.dataset.removesuffix('_boxes')})")
  return sources, dict(info.metadata["classes"])


def _video_id(example) -> int:
  value = example["id"]
  value = value.decode() if isinstance(value, bytes) else str(value)
  return int(value) if value.isdigit() else -1


def crop_frames(frames: np.ndarray, window, size: int) -> np.ndarray:
  """The canvas crop `window` of each frame, resized to size² (one resampling from the original frame)."""
  h, w = frames.shape[1:3]
  x, y, cw, ch = window
  sx, sy = se.CANVAS[1] / w, se.CANVAS[0] / h
  box = (x / sx, y / sy, (x + cw) / sx, (y + ch) / sy)
  return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BILINEAR, box=box)) for f in frames])


def clip_transform(config, train: bool):
  """TFDS example -> the model's inputs: `boxes` [T/2, N, 4], `categories` [T/2, N] (box models), `video`
  uint8 [T, S, S, 3] (I3D models; every 2nd frame), `label`, and `video_id` (stays on the host)."""
  box_frames = config.num_frames // 2

  def transform(example, rng: np.random.Generator | None = None):
    rng = rng if train else None
    num_frames = int(example["num_frames"])
    window = se.crop_window(rng, config.image_size)
    out = {"label": np.int32(example["label"]), "video_id": np.int32(_video_id(example))}
    if uses_boxes(config):
      index = video_lib.segment_indices(num_frames, box_frames, rng)
      out["boxes"], out["categories"] = se.slot_inputs(example, index, config.num_boxes, window, config.image_size)
    if uses_pixels(config):
      index = se.strided_window(num_frames, config.num_frames, 2, rng)
      frames = np.stack([video_lib.decode_jpeg(example["frames"][i]) for i in index])
      out["video"] = crop_frames(frames, window, config.image_size)
    return out

  return transform


# --------------------------------------------------------------------------------------------- model

def i3d_config(config) -> cnn3d.ResNeXt3DConfig:
  c = config.i3d
  return dataclasses.replace(
      cnn3d.I3D_RESNET50, layers=tuple(c.layers), widths=tuple(c.widths), stem_width=c.stem_width,
      temporal_kernels=tuple(tuple(k) for k in c.temporal_kernels))


def make_model(config, num_classes: int) -> nn.Module:
  if config.model_name not in MODELS:
    raise UserError(f"model_name must be one of {', '.join(MODELS)}, not {config.model_name!r}")
  dtype = jnp.dtype(config.dtype)
  frozen_backbone = bool(config.i3d.checkpoint)
  if config.model_name == "i3d":
    return stin.I3DClassifier(num_classes, i3d_config(config), frozen_backbone=frozen_backbone, dtype=dtype)
  variant = config.model_name.removeprefix("i3d_")
  box_config = stin.variant_config(variant, num_classes=num_classes, num_boxes=config.num_boxes,
                                   num_frames=config.num_frames // 2, coord_feature_dim=config.coord_feature_dim)
  if config.model_name in BOX_MODELS:
    return stin.STIN(box_config, dtype=dtype)
  return stin.AppearanceSTIN(box_config, i3d_config(config), frozen_backbone=frozen_backbone, dtype=dtype)


def model_inputs(config, batch) -> tuple:
  """The positional inputs of `make_model(config)` from a batch."""
  if config.model_name == "i3d":
    return (normalise(batch["video"]),)
  boxes = (batch["boxes"], batch["categories"])
  return boxes if config.model_name in BOX_MODELS else (normalise(batch["video"]),) + boxes


def example_batch(config) -> dict:
  t, n, s = config.num_frames, config.num_boxes, config.image_size
  return {"boxes": np.zeros((1, t // 2, n, 4), np.float32), "categories": np.zeros((1, t // 2, n), np.int32),
          "video": np.zeros((1, t, s, s, 3), np.uint8)}


def head_name(config) -> str:
  return "fc" if config.model_name == "i3d" else "classifier_4"


def is_trainable(config, path: tuple[str, ...]) -> bool:
  """Which parameters train: all but a loaded I3D, and only the new head when fine-tuning."""
  if config.fine_tune_from:
    return head_name(config) in path
  return not (config.i3d.checkpoint and path[0] == "i3D")


def trained_subset(config) -> finetune.Subset:
  """The trained part of the model's variables (`{collection: tree}`) as an adapter over the frozen rest."""
  return finetune.Subset(lambda path: is_trainable(config, path[1:]))


# ------------------------------------------------------------------------------------------ training

def optimizer(config, steps_per_epoch: int):
  """SGD with momentum and weight decay (on every parameter, as PyTorch's SGD does), the gradient norm
  clipped, and the learning rate divided by 10 at each epoch of `lr_steps`."""
  schedule = optax.piecewise_constant_schedule(
      config.lr, {int(epoch * steps_per_epoch): config.lr_decay for epoch in config.lr_steps})
  tx = optax.chain(optax.clip_by_global_norm(config.grad_clip), optax.add_decayed_weights(config.weight_decay),
                   optax.sgd(schedule, momentum=config.momentum))
  return tx, schedule


def _checkpoint_variables(config) -> dict:
  """The frozen starting weights: the base run's (fine-tuning) or the Kinetics I3D's, as {'params', ...}."""
  if config.fine_tune_from:
    base_config = training.load_saved_config(config.fine_tune_from)
    if base_config.model_name != config.model_name:
      raise UserError(f"{config.fine_tune_from} trained {base_config.model_name}, not {config.model_name}")
    base_task = make_task(base_config)
    state = training.load_for_eval(base_task, base_config, config.fine_tune_from)
    if state is None:
      raise UserError(f"{config.fine_tune_from} has no checkpoint to fine-tune from")
    trained = parallel.gather_to_host({"params": state["params"], **state["model_state"]})
    return trained_subset(base_config).apply(trained, base_task.frozen)
  if config.i3d.checkpoint:
    return {k: {"i3D": v} for k, v in load_i3d_checkpoint(config).items()}
  return {}


def load_i3d_checkpoint(config) -> dict:
  """The I3D's variables from a safetensors file of the Kinetics checkpoint's state dict."""
  path = Path(config.i3d.checkpoint)
  if path.suffix in weights.PICKLE_SUFFIXES:
    raise UserError(
        f"{path} is a pickle; jaxlab reads safetensors and never unpickles. Convert it once where you trust "
        "the file: `python -c \"import torch, safetensors.torch as st; s = torch.load('kinetics-res50.pth', "
        "map_location='cpu', weights_only=True); s = s.get('state_dict', s); "
        "st.save_file({k: v.contiguous() for k, v in s.items()}, 'kinetics-res50.safetensors')\"`")
  if not path.is_file():
    raise UserError(f"I3D checkpoint {path} not found")
  from safetensors.numpy import load_file
  return stin.i3d_variables_from_torch(load_file(str(path)), i3d_config(config), config.num_frames,
                                       config.image_size)


def make_task(config, workdir=None) -> training.Task:
  """The loop's task. Sets `config.total_steps` to `epochs` over the training split."""
  sources, classes = load_dataset(config)
  num_classes = len(classes[config.train_split])
  model = make_model(config, num_classes)
  steps_per_epoch = max(1, len(sources[config.train_split]) // config.batch_size)
  config.total_steps = config.epochs * steps_per_epoch
  tx, schedule = optimizer(config, steps_per_epoch)
  fine_tuning = bool(config.fine_tune_from)
  subset = trained_subset(config)
  frozen = {}
  if fine_tuning or config.i3d.checkpoint:
    # When fine-tuning, the base model's head is left out: the new one has the fine-tuning set's classes.
    _, frozen = subset.split(_checkpoint_variables(config))
  mesh = parallel.make_mesh(dict(config.mesh))

  def init_variables(rng):
    trained, _ = subset.split(model.init(rng, *model_inputs(config, example_batch(config))))
    # Fine-tuning freezes every batch norm; a loaded I3D keeps its own statistics.
    stats = {} if fine_tuning else trained.get("batch_stats", {})
    return {"params": trained["params"], **({"batch_stats": stats} if stats else {})}

  def loss_fn(params, model_state, frozen, batch, rng):
    variables = subset.apply({"params": params, **model_state}, frozen)
    inputs = model_inputs(config, batch)
    kwargs = dict(train=not fine_tuning, rngs={"dropout": rng})
    if model_state:
      logits, updates = model.apply(variables, *inputs, mutable=["batch_stats"], **kwargs)
      model_state, _ = subset.split({"batch_stats": updates["batch_stats"]})
    else:
      logits = model.apply(variables, *inputs, **kwargs)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    return loss, ({"accuracy": (logits.argmax(-1) == batch["label"]).mean()}, model_state)

  transform = clip_transform(config, train=True)

  def train_data():
    return pipeline.training_dataset(
        sources[config.train_split], lambda example, rng: _device_inputs(transform(example, rng)),
        batch_size=config.batch_size, seed=config.seed, workers=config.data_workers)

  def evaluate_during_training(params, model_state, step):
    variables = subset.apply({"params": params, **model_state}, frozen)
    result = evaluate_split(config, model, variables, sources[config.eval_split], mesh)
    return {"top1": result["top1"], "top5": result["top5"]}

  return training.Task(
      init_variables=init_variables, loss_fn=loss_fn, optimizer=tx, train_data=train_data,
      batch_axes={"video": ("activation_batch", None, None, None, None)}, frozen=frozen,
      learning_rate=schedule, evaluate=evaluate_during_training)


def _device_inputs(example: dict) -> dict:
  return {k: v for k, v in example.items() if k != "video_id"}


# ---------------------------------------------------------------------------------------- evaluation

def predict_split(config, model, variables, source, mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Logits, labels and video ids of every example of `source`, in order."""
  from jax.experimental import multihost_utils

  @jax.jit
  def predict(variables, batch):
    return model.apply(variables, *model_inputs(config, batch), train=False)

  gather = lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True))
  logits, labels, ids, masks = [], [], [], []
  shardings = None
  with parallel.mesh_context(mesh):
    for batch in pipeline.eval_batches(source, clip_transform(config, train=False),
                                       batch_size=config.eval_batch_size):
      video_ids = batch.pop("video_id")
      if shardings is None:
        shardings = parallel.batch_shardings(batch, mesh)
      placed = parallel.global_batch(batch, shardings)
      logits.append(gather(predict(variables, placed)))
      labels.append(gather(placed["label"]))
      masks.append(gather(placed["mask"]))
      ids.append(np.asarray(multihost_utils.process_allgather(video_ids, tiled=True)))
  mask = np.concatenate(masks)
  return np.concatenate(logits)[mask], np.concatenate(labels)[mask], np.concatenate(ids)[mask]


def evaluate_split(config, model, variables, source, mesh) -> dict:
  logits, labels, _ = predict_split(config, model, variables, source, mesh)
  return classification_metrics(logits, labels, int(logits.shape[1]))


def _restored(config, workdir, step=None):
  """(model, the run's full variables, its classes, mesh) from the checkpoint in `workdir`."""
  task = make_task(config, workdir)
  state = training.load_for_eval(task, config, workdir, step)
  if state is None:
    raise UserError(f"{workdir} has no checkpoint to evaluate; train first")
  _, classes = load_dataset(config)
  model = make_model(config, len(classes[config.train_split]))
  variables = trained_subset(config).apply(
      parallel.gather_to_host({"params": state["params"], **state["model_state"]}), task.frozen)
  return model, variables, classes, int(state["step"])


def ensemble_metrics(runs: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict:
  """Late fusion: the mean of the runs' softmax probabilities on the videos every run predicted.

  Each run is (logits, labels, video ids); videos are matched by id, so runs on different builds of the
  split (boxes only, or with frames) can be combined.
  """
  common = set(runs[0][2].tolist())
  for _, _, ids in runs[1:]:
    common &= set(ids.tolist())
  order = np.array(sorted(common))
  probabilities, labels = [], None
  for logits, run_labels, ids in runs:
    position = {video_id: i for i, video_id in enumerate(ids.tolist())}
    rows = np.array([position[v] for v in order], dtype=int)
    probabilities.append(jax.nn.softmax(logits[rows], axis=-1))
    if labels is not None and not np.array_equal(labels, run_labels[rows]):
      raise UserError("the ensembled runs disagree on the labels of the same videos; were they trained on "
                      "the same split family?")
    labels = run_labels[rows]
  mean = np.mean(probabilities, axis=0)
  return classification_metrics(np.log(mean + 1e-12), labels, mean.shape[1])


def write_metrics(result: dict, names: list[str], path: Path) -> None:
  """The metrics JSON of one evaluation, with per-class accuracy (by class name) and the confusion matrix."""
  record = {k: v for k, v in result.items() if k not in ("per_class", "confusion")}
  record["per_class"] = {name: (None if np.isnan(a) else float(a)) for name, a in zip(names, result["per_class"])}
  record["confusion"] = result["confusion"].tolist()
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(record, indent=2))


def evaluate(config, workdir, step=None) -> dict:
  """Evaluates a checkpoint on `config.eval_split`, alone and ensembled with `config.ensemble_with`; writes
  metrics JSON (with per-class accuracy and the confusion matrix) to `<workdir>/eval/`."""
  mesh = parallel.make_mesh(dict(config.mesh))
  model, variables, classes, step = _restored(config, workdir, step)
  sources, _ = load_dataset(config)
  runs = [predict_split(config, model, variables, sources[config.eval_split], mesh)]
  names = classes[config.eval_split]
  results = {"": classification_metrics(runs[0][0], runs[0][1], len(names))}
  if config.ensemble_with:
    for other in config.ensemble_with:
      other_config = training.load_saved_config(other)
      other_model, other_variables, other_classes, _ = _restored(other_config, other)
      if other_classes[config.eval_split] != names:
        raise UserError(f"{other} was trained on other classes than {workdir}; cannot ensemble them")
      other_sources, _ = load_dataset(other_config)
      runs.append(predict_split(other_config, other_model, other_variables, other_sources[config.eval_split],
                                mesh))
    results["ensemble/"] = ensemble_metrics(runs)
  out_dir = Path(workdir) / "eval"
  summary = {"step": step}
  for prefix, result in results.items():
    path = out_dir / f"metrics_{config.eval_split}{'_ensemble' if prefix else ''}.json"
    parallel.write_once(path.name, lambda: write_metrics(result, names, path))
    summary.update({f"{prefix}{config.eval_split}/top1": result["top1"],
                    f"{prefix}{config.eval_split}/top5": result["top5"],
                    f"{prefix}{config.eval_split}/num_examples": result["num_examples"]})
  return summary


def export(config, workdir) -> list[Path]:
  """The trained model as a PyTorch state dict of the original code's modules, in safetensors."""
  from safetensors.numpy import save_file
  _, variables, _, _ = _restored(config, workdir)
  path = Path(workdir) / "export" / f"{config.model_name}.safetensors"

  def write():
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(stin.variables_to_torch(variables), str(path))
    return [path]

  return parallel.write_once("export", write) or []


# ---------------------------------------------------------------------------------------------- demo

def _train_tiny(variant: str, data_dir: Path, run: Path, **overrides) -> tuple[dict, ml_collections.ConfigDict]:
  config = training.load_config(f"something_else:{variant}")
  config.data_dir = str(data_dir)
  config.update(overrides)
  training.save_config(config, run)
  training.train(make_task(config, run), config, run)
  return evaluate(config, run), config


def demo(workdir) -> DemoSection:
  """The tiny configs end to end on a synthetic release: STIN+OIE+NL on the compositional split, and on the
  few-shot split a base model whose new head is then trained on the 5-shot set."""
  from jaxlab.data import cli as data_cli
  from jaxlab.data import something_else_synth as synth
  workdir = Path(workdir)
  release = synth.write_dataset(workdir / "release", {"train": 48, "validation": 16})
  for name in ("compositional_boxes", "fewshot_boxes"):
    data_cli.build("something_else", release, workdir / "tfds", name)
  compositional, config = _train_tiny("tiny", workdir / "tfds", workdir / "compositional")
  base, _ = _train_tiny("tiny_fewshot_base", workdir / "tfds", workdir / "fewshot_base")
  novel, _ = _train_tiny("tiny_fewshot", workdir / "tfds", workdir / "fewshot_5shot",
                         fine_tune_from=str(workdir / "fewshot_base"))
  rows = [("compositional validation", compositional, "validation", len(synth.CLASSES)),
          ("few-shot base validation", base, "base_validation", len(synth.BASE_CLASSES)),
          ("few-shot novel (5-shot head)", novel, "novel_5shot_validation", len(synth.NOVEL_CLASSES))]
  table = "| split | clips | top-1 | top-5 | chance |\n|---|---|---|---|---|\n" + "\n".join(
      f"| {title} | {r[f'{split}/num_examples']} | {100 * r[f'{split}/top1']:.1f}% | {100 * r[f'{split}/top5']:.1f}% | "
      f"{100 / classes:.1f}% |" for title, r, split, classes in rows)
  markdown = (
      f"STIN+OIE+NL (d={config.coord_feature_dim}, {config.num_boxes} boxes x {config.num_frames // 2} frames) on "
      f"generated box tracks of {len(synth.CLASSES)} SSv2 actions (pushing left/right, putting onto / taking "
      "from, moving closer / apart) that differ only in how the boxes move, written in the release's schemas "
      "and built with the `compositional_boxes` and `fewshot_boxes` configs. Compositional validation clips "
      "carry the other half of the object nouns. Few-shot: a base model on 4 actions, then only a new last "
      "layer trained on 5 clips of each of the 2 novel actions.\n\n" + table)
  return DemoSection(
      title="Something-Else: STIN on box tracks", markdown=markdown,
      figures={"compositional top-1": compositional["validation/top1"],
               "5-shot novel top-1": novel["novel_5shot_validation/top1"]},
      files=[workdir / "compositional" / "eval" / "metrics_validation.json"])
