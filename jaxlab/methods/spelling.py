"""Learn-to-spell and forget-to-spell subspaces of CLIP (Materzynska, Torralba, Bau, CVPR 2022).

A frozen CLIP encodes 5-tuples once (`jaxlab.data.spelling_features`): a photo x_i, its class prompt y_i, a
string y_t, the string rendered alone x_t, and the photo with the string on it x_it. One linear map W
(out_dim x D, orthogonal init, shared by both modalities) projects every feature, z = normalise(x Wᵀ), and is
trained with six weighted symmetric InfoNCE terms at temperature 1, plus `reg * ||I - W Wᵀ||_F`:

  L1 x_it-x_i   L2 x_i-y_i   L6 x_it-y_i   "forget to spell": the photo with a word must still match the photo
  L3 x_it-x_t   L4 x_t-y_t   L5 x_it-y_t   "learn to spell": it must match the word image and the word

Evaluation (raw CLIP and each projection) reports zero-shot accuracy on clean and text-overlaid photos, top-1
retrieval in both directions for four pairs on real and nonsense words, and the typographic-attack set.
"""

import functools
import json
from pathlib import Path

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import linen as nn

from jaxlab import parallel, training
from jaxlab.data import pipeline, spelling_features, spelling_sources
from jaxlab.errors import UserError
from jaxlab.models import clip

# CLI flag of the reference code -> the pair its symmetric InfoNCE term aligns (the figure's L1..L6).
TERMS = {
    "l_im_ti_im_i": ("x_it", "x_i"),   # L1, visual
    "l_im_i_txt_i": ("x_i", "y_i"),    # L2, visual
    "l_im_ti_im_t": ("x_it", "x_t"),   # L3, written
    "l_im_t_txt_t": ("x_t", "y_t"),    # L4, written
    "l_im_ti_txt_t": ("x_it", "y_t"),  # L5, written
    "l_im_ti_txt_i": ("x_it", "y_i"),  # L6, visual
}
PRESETS = {
    "learn": ("l_im_ti_im_t", "l_im_t_txt_t", "l_im_ti_txt_t"),
    "forget": ("l_im_ti_im_i", "l_im_i_txt_i", "l_im_ti_txt_i"),
}
PRESET_NAMES = {"learn": "learn to spell", "forget": "forget to spell"}
# The retrieval pairs of the reference evaluation: metric name -> (query features, gallery features).
RETRIEVAL = {
    "im_t_txt_t": ("x_t", "y_t"),     # word image <-> word ("spelling")
    "im_it_img_t": ("x_it", "x_t"),   # photo with word <-> word image
    "im_it_img_i": ("x_it", "x_i"),   # photo with word <-> clean photo
    "im_it_txt_t": ("x_it", "y_t"),   # photo with word <-> word
}


def config_schema() -> ml_collections.ConfigDict:
  """Every setting, with the reference code's defaults; `train/configs/spelling.py` makes the variants."""
  c = training.base_config()
  c.batch_size = 128
  c.preset = "learn"           # learn | forget | custom (custom: the `weights` block as given)
  c.weights = ml_collections.ConfigDict({name: 0.0 for name in TERMS})
  c.out_dim = 512              # the released models' dimension is unverified (spec §1.4)
  c.reg = 0.0                  # orthogonality penalty weight
  c.learning_rate = 1e-4
  c.lr_step_size = 4000        # StepLR stepped every batch: the rate halves every 4000 steps
  c.lr_gamma = 0.5
  c.clip = ml_collections.ConfigDict({
      "path": "",              # a transformers CLIPModel folder, or "random": a random CLIP of the `random` size
      "random": {"hidden_size": 64, "layers": 2, "heads": 4, "image_size": 64, "patch_size": 16,
                 "projection_dim": 64, "context_length": 16},
  })
  c.features_dir = ""          # empty: <workdir>/features; share one between runs of different presets
  c.typographic_dir = ""       # the typographic-attack set (annotations.json + images/), optional
  c.data = ml_collections.ConfigDict({
      "source": "folder",      # generated | folder (ImageNet layout) | tfds
      "path": "",              # folder: <path>/{train,val}/<wnid>/*.JPEG; tfds: the data_dir
      "tfds_name": "imagenet2012",
      "class_names_file": "",  # tfds: imagenet_class_index.json for readable names
      "num_classes": 10,       # generated
      "train_size": 512,       # generated
      "val_size": 128,         # generated
      "train_limit": 0,        # encode only the first N tuples of a split (0: all)
      "val_limit": 0,
      "real_fraction": 0.5,    # share of tuples with a real word (the rest: 3-5 letter nonsense)
      "real_words_file": "",   # one word per line; default: the built-in list
      "render": {"font_size": 40, "random_font_size": False, "random_position": False, "color": [0, 0, 0]},
  })
  return c


def term_weights(config) -> dict[str, float]:
  if config.preset == "custom":
    return {name: float(config.weights[name]) for name in TERMS}
  if config.preset not in PRESETS:
    raise UserError(f"preset {config.preset!r} is not one of learn, forget, custom")
  return {name: 1.0 if name in PRESETS[config.preset] else 0.0 for name in TERMS}


# --------------------------------------------------------------------------------------------------- loss

def project(w, x):
  """z = normalise(x Wᵀ); W = None is raw CLIP (features are already normalised)."""
  if w is None:
    return x
  z = x @ w.T
  return z / jnp.linalg.norm(z, axis=-1, keepdims=True)


def symmetric_infonce(a, b):
  """CLIP's symmetric cross-entropy on the cosine logits a·bᵀ at temperature 1 (no logit scale)."""
  return clip.contrastive_loss(a @ b.T)


def orthogonality_penalty(w):
  """||I - W Wᵀ||_F, not squared (with a gradient that stays finite at an orthogonal W)."""
  return optax.safe_norm(jnp.eye(w.shape[0], dtype=w.dtype) - w @ w.T, 0.0)


def spelling_loss(w, features: dict, weights: dict[str, float], reg: float):
  """The weighted terms (zero weights are skipped) plus the penalty; returns (loss, per-term metrics)."""
  z = {name: project(w, x) for name, x in features.items()}
  metrics = {"orthogonality": orthogonality_penalty(w)}
  loss = reg * metrics["orthogonality"]
  for name, (a, b) in TERMS.items():
    if weights[name]:
      metrics[name] = symmetric_infonce(z[a], z[b])
      loss = loss + weights[name] * metrics[name]
  return loss, metrics


# ------------------------------------------------------------------------------------------ features / CLIP

def features_dir(config, workdir) -> Path:
  return Path(config.features_dir) if config.features_dir else Path(workdir) / "features"


def random_clip_folder(config, directory: Path) -> Path:
  """A small randomly initialised CLIPModel (full CLIP vocabulary), saved once in transformers' layout."""
  from jaxlab.models import clip, save_pretrained
  folder = directory / "random_clip"
  if (folder / "config.json").is_file():
    return folder
  r = config.clip.random
  text = clip.CLIPTextConfig(hidden_size=r.hidden_size, intermediate_size=4 * r.hidden_size,
                             num_hidden_layers=r.layers, num_attention_heads=r.heads,
                             max_position_embeddings=r.context_length, projection_dim=r.projection_dim)
  vision = clip.CLIPVisionConfig(hidden_size=r.hidden_size, intermediate_size=4 * r.hidden_size,
                                 num_hidden_layers=r.layers, num_attention_heads=r.heads, image_size=r.image_size,
                                 patch_size=r.patch_size, projection_dim=r.projection_dim)
  module = clip.CLIPModel(text, vision, projection_dim=r.projection_dim)
  ids = jnp.zeros((1, r.context_length), jnp.int32)
  pixels = jnp.zeros((1, r.image_size, r.image_size, 3))
  params = jax.jit(lambda key: nn.meta.unbox(module.init(key, ids, pixels))["params"])(jax.random.key(config.seed))
  return save_pretrained(folder, module, params)


def prepare_features(config, workdir, log=print) -> Path:
  """The feature store of this config, encoding it with the frozen CLIP on first use (on process 0, with its
  own devices, while the others wait)."""
  directory = features_dir(config, workdir)
  parallel.write_once("spelling features", lambda: _encode_features(config, directory, log))
  return directory


def _encode_features(config, directory: Path, log) -> None:
  if config.clip.path == "random":
    directory.mkdir(parents=True, exist_ok=True)
    clip_folder = random_clip_folder(config, directory)
  else:
    clip_folder = Path(config.clip.path)
    if not config.clip.path or not clip_folder.is_dir():
      raise UserError(f"clip.path {config.clip.path!r} is not a folder; pass --config.clip.path=<a transformers "
                      "CLIPModel folder (config.json + model.safetensors), e.g. a local openai/clip-vit-base-patch32>")
  spelling_features.extract(config, directory, clip_folder, log=log)


# --------------------------------------------------------------------------------------------- evaluation

@functools.partial(jax.jit, static_argnames="chunk")
def _best_match(queries, gallery, chunk: int = 2048):
  """argmax over the gallery of each query's cosine similarity, a chunk of queries at a time."""
  n = queries.shape[0]
  padded = jnp.pad(queries, ((0, -n % chunk), (0, 0))).reshape(-1, chunk, queries.shape[1])
  return jax.lax.map(lambda q: jnp.argmax(q @ gallery.T, axis=1), padded).reshape(-1)[:n]


def top1_both_ways(a, b) -> tuple[float, float]:
  """Top-1 retrieval accuracy of matching rows, querying with a (a2b) and with b (b2a)."""
  target = np.arange(len(a))
  a2b = np.asarray(_best_match(jnp.asarray(a), jnp.asarray(b)))
  b2a = np.asarray(_best_match(jnp.asarray(b), jnp.asarray(a)))
  return float((a2b == target).mean()), float((b2a == target).mean())


def _first_of_each(words: list[str], rows: np.ndarray) -> np.ndarray:
  """The rows whose string is the first occurrence of that string: a repeated string would be ambiguous."""
  seen, keep = set(), []
  for row in rows:
    if words[row] not in seen:
      seen.add(words[row])
      keep.append(row)
  return np.array(keep, np.int64)


def evaluate_features(directory, w=None) -> dict[str, float]:
  """Every metric on the stored val split (and typographic set), for raw CLIP (w=None) or a projection.

  Two departures from the reference evaluation: projected class prompts are re-normalised before the
  zero-shot argmax (the reference skips it, so prompt norms bias the classes), and each retrieval subset keeps
  the first tuple of every distinct string (the reference cut the real subset to its first U rows, U = the
  number of distinct real strings), since a repeated string makes the text side of a pair ambiguous.
  """
  w = None if w is None else jnp.asarray(w)
  val = spelling_features.load_split(directory, "val")
  _, class_text = spelling_features.load_classes(directory)
  z = {name: project(w, jnp.asarray(np.asarray(getattr(val, name)))) for name in spelling_features.TUPLE_ARRAYS}
  classes = project(w, jnp.asarray(class_text))
  metrics = {
      "zero_shot/clean": float((np.asarray(_best_match(z["x_i"], classes)) == val.class_id).mean()),
      "zero_shot/with_text": float((np.asarray(_best_match(z["x_it"], classes)) == val.class_id).mean()),
  }
  for subset, rows in (("real", np.flatnonzero(val.real)), ("fake", np.flatnonzero(~np.asarray(val.real)))):
    rows = _first_of_each(val.words, rows)
    if len(rows) < 2:
      continue
    for name, (a, b) in RETRIEVAL.items():
      a2b, b2a = top1_both_ways(z[a][rows], z[b][rows])
      metrics[f"{subset}/{name}/a2b"], metrics[f"{subset}/{name}/b2a"] = a2b, b2a
  typographic = spelling_features.load_typographic(directory)
  if typographic is not None:
    predicted = np.asarray(_best_match(project(w, jnp.asarray(typographic["x"])),
                                       project(w, jnp.asarray(typographic["classes"]))))
    metrics["typographic/accuracy"] = float((predicted == typographic["true_id"]).mean())
    metrics["typographic/attack_rate"] = float((predicted == typographic["attack_id"]).mean())
  return metrics


def results_table(columns: dict[str, dict[str, float]]) -> str:
  """One markdown table: a row per metric (percent), a column per model."""
  names = list(columns)
  rows = list(dict.fromkeys(k for metrics in columns.values() for k in metrics))
  lines = ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
  for row in rows:
    cells = [f"{100 * columns[n][row]:.1f}" if row in columns[n] else "-" for n in names]
    lines.append(f"| {row} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- task

class _TrainTuples:
  """Random access to the stored train tuples, as grain reads them."""

  def __init__(self, split: spelling_features.Split):
    self.split = split

  def __len__(self):
    return len(self.split)

  def __getitem__(self, index):
    s = self.split
    return {"x_i": np.asarray(s.x_i[index]), "x_t": np.asarray(s.x_t[index]), "x_it": np.asarray(s.x_it[index]),
            "y_t": np.asarray(s.y_t[index]), "class_id": np.int32(s.class_id[index])}


def make_task(config, workdir) -> training.Task:
  directory = prepare_features(config, workdir)
  train_split = spelling_features.load_split(directory, "train")
  _, class_text = spelling_features.load_classes(directory)
  dim = class_text.shape[1]
  weights = term_weights(config)
  if not any(weights.values()):
    raise UserError("every loss weight is 0; pick --config.preset=learn|forget or set --config.weights.*")
  if len(train_split) < config.batch_size:
    raise UserError(f"{len(train_split)} train tuples cannot fill a batch of {config.batch_size}")
  schedule = optax.exponential_decay(config.learning_rate, transition_steps=config.lr_step_size,
                                     decay_rate=config.lr_gamma, staircase=True)

  def init_variables(rng):
    init = nn.with_logical_partitioning(jax.nn.initializers.orthogonal(), (None, "embed"))
    return {"params": {"W": init(rng, (config.out_dim, dim), jnp.float32)}}

  def loss_fn(params, model_state, frozen, batch, rng):
    features = {k: batch[k] for k in ("x_i", "x_t", "x_it", "y_t")}
    features["y_i"] = frozen["classes"][batch["class_id"]]
    loss, metrics = spelling_loss(params["W"], features, weights, config.reg)
    return loss, (metrics, model_state)

  def train_data():
    ds = grain.MapDataset.source(_TrainTuples(train_split)).shuffle(seed=config.seed).repeat()
    return pipeline.process_batches(ds, config.batch_size).to_iter_dataset()

  def evaluate_step(params, model_state, step):
    return evaluate_features(directory, parallel.gather_to_host(params["W"]))

  return training.Task(init_variables=init_variables, loss_fn=loss_fn, optimizer=optax.adam(schedule),
                       train_data=train_data, frozen={"classes": jnp.asarray(class_text)}, learning_rate=schedule,
                       evaluate=evaluate_step)


def _trained_projection(config, workdir, step=None) -> np.ndarray:
  task = make_task(config, workdir)
  state = training.load_for_eval(task, config, workdir, step)
  if state is None:
    raise UserError(f"{workdir} has no checkpoint; train first with `jaxlab train spelling --workdir {workdir}`")
  return parallel.gather_to_host(state["params"]["W"])


def evaluate(config, workdir, step=None) -> dict:
  """The projection's metrics, and raw CLIP's under `clip/`."""
  w = _trained_projection(config, workdir, step)
  directory = features_dir(config, workdir)
  raw = evaluate_features(directory)
  return {**evaluate_features(directory, w), **{f"clip/{k}": v for k, v in raw.items()}}


def export(config, workdir) -> list[Path]:
  """`projection.npy` (W, out_dim x D: use `z = x @ W.T`) and the results table beside raw CLIP."""
  workdir = Path(workdir)
  w = _trained_projection(config, workdir)
  directory = features_dir(config, workdir)
  name = PRESET_NAMES.get(config.preset, config.preset)
  columns = {"CLIP": evaluate_features(directory), name: evaluate_features(directory, w)}

  def write():
    np.save(workdir / "projection.npy", w)
    (workdir / "results.json").write_text(json.dumps(columns, indent=2) + "\n")
    (workdir / "results.md").write_text(results_table(columns) + "\n")
    return [workdir / "projection.npy", workdir / "results.md"]

  return parallel.write_once("export", write) or []


# --------------------------------------------------------------------------------------------------- demo

def sample_sheet(directory: Path, path: Path, count: int = 4) -> Path:
  """Rows of (photo, word image, photo with word) re-rendered from the stored ids, as a PNG."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  manifest = json.loads((directory / "manifest.json").read_text())
  data = ml_collections.ConfigDict(manifest["data"])
  source = spelling_sources.make_source(data, "val", manifest["seed"])
  spec = spelling_features.tuple_spec(data, manifest["seed"], "val")
  fig, axes = plt.subplots(count, 3, figsize=(6, 2 * count))
  for row in range(count):
    _, photo, class_id = source[row]
    word, _, photo, word_image, with_word, _ = spelling_features.draw_tuple(row, photo, spec, "val")
    for col, (image, title) in enumerate(((photo, source.classes[class_id]), (word_image, f'"{word}"'),
                                          (with_word, "photo + word"))):
      axes[row, col].imshow(image)
      axes[row, col].set_title(title, fontsize=8)
      axes[row, col].axis("off")
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)
  return path


def demo(workdir):
  """Tiny config end to end: generated photos + words, a random CLIP, both presets, one results table."""
  from jaxlab.methods import DemoSection
  workdir = Path(workdir)
  base = training.load_config("spelling:tiny")
  base.features_dir = str(workdir / "features")
  base.typographic_dir = str(spelling_sources.write_typographic_set(workdir / "typographic", count=24))
  columns = {}
  for preset in PRESETS:
    config = ml_collections.ConfigDict(base.to_dict())
    config.preset = preset
    run = workdir / preset
    training.save_config(config, run)
    training.train(make_task(config, run), config, run)
    columns[PRESET_NAMES[preset]] = evaluate_features(base.features_dir, _trained_projection(config, run))
  columns = {"CLIP": evaluate_features(base.features_dir), **columns}
  table = results_table(columns)
  (workdir / "results.md").write_text(table + "\n")
  sheet = sample_sheet(Path(base.features_dir), workdir / "samples.png")
  learn, forget = columns[PRESET_NAMES["learn"]], columns[PRESET_NAMES["forget"]]
  figures = {
      "learn: photo+word -> word image (fake)": learn["fake/im_it_img_t/a2b"],
      "forget: photo+word -> word image (fake)": forget["fake/im_it_img_t/a2b"],
      "learn: photo+word -> photo (fake)": learn["fake/im_it_img_i/a2b"],
      "forget: photo+word -> photo (fake)": forget["fake/im_it_img_i/a2b"],
  }
  markdown = (
      "A random tiny CLIP encodes generated photos of coloured shapes with real and nonsense words drawn on "
      "them; W is trained with each preset on the same stored features. Top-1 accuracy in percent on the val "
      "tuples (a2b: query with the first of the pair). A random CLIP knows no classes, so its zero-shot accuracy "
      "is at chance; forget-to-spell trains on the class prompts (L2, L6) and so learns these 10 classes. Word "
      "strings of unseen words cannot be matched by a random text tower (`*_txt_t` rows stay at chance); the "
      "point is that the two projections pull the image pairs apart.\n\n"
      f"{table}\n\n![samples]({sheet.name})")
  return DemoSection(title="CLIP spelling subspaces", markdown=markdown, figures=figures,
                     files=[workdir / "results.md", sheet])
