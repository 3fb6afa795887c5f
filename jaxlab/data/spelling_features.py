"""Frozen-CLIP features of the spelling 5-tuples, computed once and stored with explicit ids.

For tuple `id` of a split: the natural image x_i (source key stored beside it), a string y_t (a real word or a
3-5 letter nonsense string, drawn by a generator seeded with the id), the string rendered on a blank canvas
x_t and on the photo x_it (same place, size, colour), and the photo's class. x_i and x_it come from one decode
of one image in one pass, so nothing depends on file-listing order. Layout of `features_dir`:

  manifest.json                   what was encoded, with which CLIP; written last (marks the store complete)
  classes.txt, classes.npy        class names and their prompt embeddings y_i ("an image of a/an {class}")
  <split>/id.npy                  int64 tuple ids
  <split>/x_i.npy x_t.npy x_it.npy y_t.npy   float32 [N, D], L2-normalised
  <split>/class_id.npy real.npy placement.npy (x, y, font size, r, g, b)
  <split>/words.txt sources.txt   the strings and the image keys, one per line
  typographic/x.npy classes.txt classes.npy true_id.npy attack_id.npy files.txt   (when a set is given)

Arrays are `.npy` files written through memory maps, so ImageNet-sized splits never sit in host memory.
"""

import dataclasses
import json
from pathlib import Path

import grain
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from jaxlab import parallel
from jaxlab.data import clip_images, spelling_sources, word_images
from jaxlab.data.clip_tokenizer import CLIPTokenizer
from jaxlab.errors import UserError

SPLITS = ("train", "val")
TUPLE_ARRAYS = ("x_i", "x_t", "x_it", "y_t")


class FrozenCLIP:
  """A CLIP folder's model + tokenizer, with jitted encoders returning L2-normalised float32 features.

  Batches are padded to fixed sizes (one compilation each) and split over all devices along the batch.
  """

  def __init__(self, folder, dtype=jnp.float32):
    from jaxlab.models import load_pretrained
    self.folder = Path(folder)
    self.module, params = load_pretrained(self.folder, dtype=dtype, expect=("CLIPModel",))
    tokenizer_dir = next((d for d in (self.folder / "tokenizer", self.folder) if (d / "vocab.json").is_file()), None)
    context = self.module.text_config.max_position_embeddings
    self.tokenizer = CLIPTokenizer.load(tokenizer_dir, context_length=context) if tokenizer_dir else \
        CLIPTokenizer.default(context_length=context)
    self.image_size = self.module.vision_config.image_size
    mesh = parallel.make_mesh({"data": -1}, devices=jax.local_devices())  # this process' devices only
    devices = mesh.devices.size
    self.image_chunk, self.text_chunk = (-(-n // devices) * devices for n in (192, 256))
    self.params = jax.device_put(params, parallel.replicated(mesh))
    batch = self._batch = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))

    def normalised(x):
      return x / jnp.linalg.norm(x, axis=-1, keepdims=True)

    self._images = jax.jit(lambda p, x: normalised(self.module.apply(
        {"params": p}, x, method="get_image_features").pooler_output), in_shardings=(None, batch))
    self._texts = jax.jit(lambda p, ids, mask: normalised(self.module.apply(
        {"params": p}, ids, mask, method="get_text_features").pooler_output), in_shardings=(None, batch, batch))

  @property
  def dim(self) -> int:
    return self.module.projection_dim

  @staticmethod
  def _chunks(arrays, chunk: int):
    """Fixed-size, zero-padded slices of equally long arrays, with the number of real rows in each."""
    n = len(arrays[0])
    for start in range(0, n, chunk):
      rows = min(chunk, n - start)
      yield [np.concatenate([a[start:start + rows], np.zeros((chunk - rows,) + a.shape[1:], a.dtype)])
             for a in arrays], rows

  def images(self, pixels: np.ndarray) -> np.ndarray:
    """Preprocessed `[B, H, W, 3]` -> `[B, D]`."""
    put = lambda x: jax.device_put(x, self._batch)  # numpy may not meet a sharding in a multi-process jit
    out = [np.asarray(self._images(self.params, put(x)))[:rows]
           for (x,), rows in self._chunks([pixels], self.image_chunk)]
    return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

  def texts(self, texts: list[str]) -> np.ndarray:
    if not texts:
      return np.zeros((0, self.dim), np.float32)
    tokens = self.tokenizer(texts)
    put = lambda x: jax.device_put(x, self._batch)
    out = [np.asarray(self._texts(self.params, put(ids), put(mask)))[:rows]
           for (ids, mask), rows in self._chunks([tokens["input_ids"], tokens["attention_mask"]], self.text_chunk)]
    return np.concatenate(out)

  def pil_images(self, images) -> np.ndarray:
    return self.images(clip_images.preprocess_batch(images, self.image_size))


@dataclasses.dataclass(frozen=True)
class TupleSpec:
  """How the strings and renderings of a split are drawn."""
  seed: int
  real_fraction: float
  real_words: tuple[str, ...]
  render: word_images.RenderOptions


def tuple_spec(data, seed: int, split: str) -> TupleSpec:
  """The spec a config's `data` block gives a split: its half of the real words, the render options."""
  words = spelling_sources.read_words(data.real_words_file) if data.real_words_file else \
      list(spelling_sources.REAL_WORDS)
  render = word_images.RenderOptions(
      font_size=data.render.font_size, random_font_size=data.render.random_font_size,
      random_position=data.render.random_position,
      color=None if data.render.color == "random" else tuple(data.render.color))
  return TupleSpec(seed, data.real_fraction, tuple(spelling_sources.split_words(words, split)), render)


def draw_tuple(index: int, photo, spec: TupleSpec, split: str):
  """The word, its renderings and placement for tuple `index`; the same index always gives the same tuple."""
  rng = np.random.default_rng([spec.seed, SPLITS.index(split), index])
  real = bool(rng.random() < spec.real_fraction)
  word = spec.real_words[int(rng.integers(len(spec.real_words)))] if real else word_images.nonsense_word(rng)
  photo, word_image, with_word, placement = word_images.render(word, photo, spec.render, rng)
  return word, real, photo, word_image, with_word, placement


def _open_arrays(directory: Path, count: int, dim: int) -> dict[str, np.ndarray]:
  directory.mkdir(parents=True, exist_ok=True)
  shapes = {name: ((count, dim), np.float32) for name in TUPLE_ARRAYS}
  shapes.update(id=((count,), np.int64), class_id=((count,), np.int32), real=((count,), np.bool_),
                placement=((count, 6), np.int32))
  return {name: np.lib.format.open_memmap(directory / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)
          for name, (shape, dtype) in shapes.items()}


def encode_split(clip: "FrozenCLIP", source, split: str, spec: TupleSpec, directory: Path, limit: int = 0,
                 batch_size: int = 64, threads: int = 8, log=print) -> int:
  """Renders and encodes every tuple of `source` (or its first `limit`) into `directory`; returns the count."""
  count = min(len(source), limit) if limit else len(source)
  arrays = _open_arrays(directory, count, clip.dim)
  size = clip.image_size

  def make(index):
    key, photo, class_id = source[index]
    word, real, photo, word_image, with_word, placement = draw_tuple(index, photo, spec, split)
    pixels = np.stack([clip_images.preprocess(im, size) for im in (photo, word_image, with_word)])
    return {"index": index, "key": key, "word": word, "real": real, "class_id": class_id, "pixels": pixels,
            "placement": np.array([placement.x, placement.y, placement.font_size, *placement.color], np.int32)}

  dataset = grain.MapDataset.range(count).map(make).batch(batch_size, batch_fn=lambda rows: rows)
  words, keys = [None] * count, [None] * count
  done = 0
  for rows in dataset.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 * batch_size)):
    index = np.array([r["index"] for r in rows])
    pixels = np.concatenate([r["pixels"] for r in rows])  # [3B, H, W, 3]: photo, word image, photo + word
    features = clip.images(pixels).reshape(len(rows), 3, -1)
    arrays["x_i"][index], arrays["x_t"][index], arrays["x_it"][index] = (features[:, k] for k in range(3))
    arrays["y_t"][index] = clip.texts([r["word"] for r in rows])
    arrays["id"][index] = index
    arrays["class_id"][index] = [r["class_id"] for r in rows]
    arrays["real"][index] = [r["real"] for r in rows]
    arrays["placement"][index] = np.stack([r["placement"] for r in rows])
    for r in rows:
      words[r["index"]], keys[r["index"]] = r["word"], r["key"]
    done += len(rows)
    if log and (done == count or done % (batch_size * 50) == 0):
      log(f"  {split}: encoded {done}/{count} tuples")
  for array in arrays.values():
    array.flush()
  (directory / "words.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
  (directory / "sources.txt").write_text("\n".join(keys) + "\n", encoding="utf-8")
  return count


def encode_typographic(clip: "FrozenCLIP", folder, directory: Path, prompt: str = "a photo of {}.") -> int:
  """The attack photos, and the zero-shot prompts of every true-object and attack label."""
  files, true, attack = spelling_sources.load_typographic(folder)
  classes = sorted(set(true) | set(attack))
  directory.mkdir(parents=True, exist_ok=True)
  chunk = clip.image_chunk  # photos are decoded a chunk at a time: phone pictures are large
  features = [clip.pil_images([Image.open(f).convert("RGB") for f in files[s:s + chunk]])
              for s in range(0, len(files), chunk)]
  np.save(directory / "x.npy", np.concatenate(features))
  np.save(directory / "classes.npy", clip.texts([prompt.format(c) for c in classes]))
  np.save(directory / "true_id.npy", np.array([classes.index(t) for t in true], np.int32))
  np.save(directory / "attack_id.npy", np.array([classes.index(a) for a in attack], np.int32))
  (directory / "classes.txt").write_text("\n".join(classes) + "\n")
  (directory / "files.txt").write_text("\n".join(str(f) for f in files) + "\n")
  return len(files)


def manifest_for(config, clip_folder) -> dict:
  """What a store's contents depend on; a store is reused only when its manifest matches."""
  data = config.data
  return {"clip": str(Path(clip_folder).absolute()), "clip_config": config.clip.to_dict(), "seed": config.seed,
          "data": data.to_dict(),
          "typographic_dir": str(config.typographic_dir or "")}


def extract(config, features_dir, clip_folder, log=print) -> Path:
  """Encodes both splits (and the typographic set) into `features_dir`, unless a matching store is there.

  Encoding runs in one process, over its own devices (`spelling.prepare_features` runs it on process 0 of a
  multi-host run while the others wait; a large store is better made once beforehand, by a one-host run).
  """
  features_dir = Path(features_dir)
  manifest = manifest_for(config, clip_folder)
  manifest_file = features_dir / "manifest.json"
  if manifest_file.is_file():
    stored = json.loads(manifest_file.read_text())
    if {k: stored.get(k) for k in manifest} == json.loads(json.dumps(manifest)):
      return features_dir
    raise UserError(f"{features_dir} holds features of another configuration (see its manifest.json); "
                    "delete it or set --config.features_dir to a new folder")
  clip = FrozenCLIP(clip_folder)
  data = config.data
  counts = {}
  classes = None
  for split in SPLITS:
    source = spelling_sources.make_source(data, split, config.seed)
    if classes is None:
      classes = source.classes
    elif source.classes != classes:
      raise UserError(f"the train and val splits name different classes ({len(classes)} vs {len(source.classes)})")
    spec = tuple_spec(data, config.seed, split)
    limit = data.train_limit if split == "train" else data.val_limit
    log(f"encoding {split} tuples with the frozen CLIP in {clip_folder}")
    counts[split] = encode_split(clip, source, split, spec, features_dir / split, limit, log=log)
  np.save(features_dir / "classes.npy", clip.texts([spelling_sources.class_prompt(c) for c in classes]))
  (features_dir / "classes.txt").write_text("\n".join(classes) + "\n")
  if config.typographic_dir:
    counts["typographic"] = encode_typographic(clip, config.typographic_dir, features_dir / "typographic")
  manifest_file.write_text(json.dumps(dict(manifest, counts=counts, dim=clip.dim), indent=2) + "\n")
  return features_dir


@dataclasses.dataclass
class Split:
  """One split's stored features (memory-mapped) and its strings."""
  x_i: np.ndarray
  x_t: np.ndarray
  x_it: np.ndarray
  y_t: np.ndarray
  class_id: np.ndarray
  real: np.ndarray
  id: np.ndarray
  words: list[str]

  def __len__(self):
    return len(self.id)


def load_split(features_dir, split: str) -> Split:
  directory = Path(features_dir) / split
  if not (Path(features_dir) / "manifest.json").is_file():
    raise UserError(f"{features_dir} holds no complete feature store; run `jaxlab train spelling` to extract it")
  arrays = {name: np.load(directory / f"{name}.npy", mmap_mode="r")
            for name in (*TUPLE_ARRAYS, "class_id", "real", "id")}
  words = (directory / "words.txt").read_text(encoding="utf-8").splitlines()
  return Split(**arrays, words=words)


def load_classes(features_dir) -> tuple[list[str], np.ndarray]:
  features_dir = Path(features_dir)
  return (features_dir / "classes.txt").read_text().splitlines(), np.load(features_dir / "classes.npy")


def load_typographic(features_dir) -> dict | None:
  directory = Path(features_dir) / "typographic"
  if not directory.is_dir():
    return None
  return {name: np.load(directory / f"{name}.npy") for name in ("x", "classes", "true_id", "attack_id")}
