"""Natural images, word lists and the typographic-attack set for the CLIP spelling method.

An image source is a sized, indexable collection: `source[i] -> (key, image, class_id)`, with a stable `key`
(a relative path or a dataset index) so that stored features name the image they came from, and `classes`
(the readable class names, for the "an image of a ..." prompts). Three kinds:
  - `ShapesSource`: generated photos of coloured shapes on textured backgrounds (tests and the tiny config);
  - `ImageFolderSource`: ImageNet in torchvision's folder layout, `<root>/<split>/<wnid>/*.JPEG`;
  - `TfdsSource`: a prepared TFDS dataset (e.g. `imagenet2012`), read through `tfds.data_source`.
"""

import itertools
import json
from pathlib import Path
import zlib

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from jaxlab.data import word_images
from jaxlab.errors import UserError

# Common concrete English words for the "real word" half of the strings. The paper's list was not released
# (its script imports WordNet); this one is ours. Replace it with `data.real_words_file`.
REAL_WORDS = tuple("""
apple arm baby back bag ball bank bath bed bell bird boat body bone book boot bottle bowl box boy bread
brick bridge brush bucket cake camera candle car card cart cat chain chair cheese chest child church clock
cloud coat coin cow cup curtain dog door dress drum duck eagle ear egg engine eye face farm feather finger
fire fish flag floor flower fly foot fork fox frog garden girl glass glove goat gold grass guitar gun hair
hammer hand hat head heart hill horse house ice island jacket jam jewel key king kite knife ladder lamp leaf
leg lemon letter lion lock map market milk mirror money monkey moon mountain mouse mouth nail neck needle
nest net nose nut ocean orange oven owl paint paper park pen pencil piano picture pig pillow pin pipe plane
plate pocket pot potato prison pump queen rabbit rail rain ring river road robot rock roof room rope rose
salt school scissors sea seed sheep shelf ship shirt shoe shop skirt sky snake snow sock soup spoon square
star station stem stick stone store street sun table tail teeth thread throat thumb ticket tiger toe tongue
tooth towel tower town toy train tree truck umbrella van violin wall watch water whale wheel whip whistle
window wing wire wolf worm yacht zebra
""".split())

_COLORS = {"red": (200, 30, 30), "green": (30, 160, 50), "blue": (30, 60, 200), "yellow": (230, 210, 30),
           "purple": (130, 40, 160), "orange": (240, 130, 20), "white": (245, 245, 245), "black": (15, 15, 15)}
_SHAPES = ("circle", "square", "triangle", "cross", "ring")


def article(name: str) -> str:
  return "an" if name[:1].lower() in "aeiou" else "a"


def class_prompt(name: str) -> str:
  """The paper's class text: "an image of a/an {class}" (underscores as spaces)."""
  name = name.replace("_", " ")
  return f"an image of {article(name)} {name}"


def read_words(path) -> list[str]:
  path = Path(path)
  if not path.is_file():
    raise UserError(f"word list {path} not found; pass a text file with one word per line")
  words = [w.strip() for w in path.read_text(encoding="utf-8").splitlines() if w.strip()]
  if len(words) < 2:
    raise UserError(f"word list {path} holds {len(words)} words; it needs at least 2")
  return words


def split_words(words, split: str, val_fraction: float = 0.5) -> list[str]:
  """Disjoint train/val halves of a word list, by a stable hash of each word (so val words are unseen)."""
  def in_val(w):
    return (zlib.crc32(w.encode()) % 1000) < val_fraction * 1000
  chosen = [w for w in words if in_val(w) == (split != "train")]
  if not chosen:
    raise UserError(f"the word list leaves no {split} words; use a longer list")
  return chosen


class ShapesSource:
  """`size` generated photos: a coloured shape on a smooth random texture; class = (colour, shape)."""

  def __init__(self, num_classes: int, size: int, seed: int, image_size: int = 224):
    pairs = list(itertools.product(_SHAPES, _COLORS))
    if not 2 <= num_classes <= len(pairs):
      raise UserError(f"the generated shapes come in 2 to {len(pairs)} classes, not {num_classes}")
    self.classes = [f"{color} {shape}" for shape, color in pairs[:num_classes]]
    self.size, self.seed, self.image_size = size, seed, image_size

  def __len__(self):
    return self.size

  def __getitem__(self, index: int):
    rng = np.random.default_rng([self.seed, index])
    class_id = int(rng.integers(len(self.classes)))
    return f"shapes/{index}", self.draw(class_id, rng), class_id

  def draw(self, class_id: int, rng: np.random.Generator) -> Image.Image:
    color_name, shape = self.classes[class_id].split(" ")
    n = self.image_size
    texture = rng.uniform(60, 200, size=(8, 8, 3)).astype(np.uint8)
    image = Image.fromarray(texture).resize((n, n), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    radius = int(rng.uniform(0.22, 0.4) * n)
    cx, cy = (int(rng.uniform(radius, n - radius)) for _ in range(2))
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    fill = tuple(int(np.clip(c + rng.normal(0, 12), 0, 255)) for c in _COLORS[color_name])
    if shape == "circle":
      draw.ellipse(box, fill=fill)
    elif shape == "square":
      draw.rectangle(box, fill=fill)
    elif shape == "triangle":
      draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=fill)
    elif shape == "cross":
      bar = radius // 3
      draw.rectangle((cx - radius, cy - bar, cx + radius, cy + bar), fill=fill)
      draw.rectangle((cx - bar, cy - radius, cx + bar, cy + radius), fill=fill)
    else:
      draw.ellipse(box, outline=fill, width=max(radius // 3, 1))
    return image.filter(ImageFilter.GaussianBlur(1))


def _imagenet_names(path: Path, wnids: list[str]) -> list[str]:
  """Readable names from `imagenet_class_index.json` ({"0": ["n01440764", "tench"], ...}) when present."""
  if not path.is_file():
    return wnids
  index = {wnid: name for wnid, name in json.loads(path.read_text()).values()}
  return [index.get(w, w) for w in wnids]


class ImageFolderSource:
  """`<root>/<split>/<class folder>/<image>`, classes and images in sorted order (keys: relative paths)."""

  SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".webp"}

  def __init__(self, root, split: str):
    root = Path(root)
    folder = root / split
    if not folder.is_dir():
      raise UserError(f"{folder} not found; data.path must hold {split}/<class>/<images> (ImageNet's layout)")
    wnids = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not wnids:
      raise UserError(f"{folder} has no class folders")
    self.classes = _imagenet_names(root / "imagenet_class_index.json", wnids)
    self.files = [(p, c) for c, w in enumerate(wnids) for p in sorted((folder / w).iterdir())
                  if p.suffix.lower() in self.SUFFIXES]
    self.root = root

  def __len__(self):
    return len(self.files)

  def __getitem__(self, index: int):
    path, class_id = self.files[index]
    with Image.open(path) as image:
      return str(path.relative_to(self.root)), image.convert("RGB"), class_id


class TfdsSource:
  """A prepared TFDS dataset with `image` and `label` features (no download: `data_dir` must hold it)."""

  def __init__(self, name: str, split: str, data_dir: str | None, class_names_file: str = ""):
    import tensorflow_datasets as tfds
    try:
      builder = tfds.builder(name, data_dir=data_dir or None)
      self._source = builder.as_data_source(split=split)
    except Exception as e:  # TFDS raises several types for a dataset that is not prepared
      raise UserError(f"TFDS dataset {name} ({split}) is not prepared in {data_dir or 'the default data dir'}: "
                      f"{e}; build it first with `tfds build {name} --manual_dir ...`") from None
    names = list(builder.info.features["label"].names)
    self.classes = _imagenet_names(Path(class_names_file), names) if class_names_file else names
    self.name, self.split = name, split

  def __len__(self):
    return len(self._source)

  def __getitem__(self, index: int):
    record = self._source[index]
    return f"{self.name}/{self.split}/{index}", Image.fromarray(np.asarray(record["image"])), int(record["label"])


def make_source(data, split: str, seed: int):
  """The image source a config's `data` block names, for `split` ('train' or 'val')."""
  if data.source == "generated":
    size = data.train_size if split == "train" else data.val_size
    return ShapesSource(data.num_classes, size, seed=seed * 2 + (split != "train"))
  if data.source == "folder":
    return ImageFolderSource(data.path, split)
  if data.source == "tfds":
    tfds_split = {"train": "train", "val": "validation"}[split]
    return TfdsSource(data.tfds_name, tfds_split, data.path, data.get("class_names_file", ""))
  raise UserError(f"data.source {data.source!r} is not one of generated, folder, tfds")


# ----------------------------------------------------------------------------------- typographic attacks

def load_typographic(folder) -> tuple[list[Path], list[str], list[str]]:
  """(image files, true objects, attack labels) of the paper's typographic-attack set.

  The folder holds `annotations.json` ({"IMG_2934.JPG": {"true object": "cup", "typographic attack label":
  "good"}}; the README's `annotation.json` also works) and the photos in `images/` or beside it.
  """
  folder = Path(folder)
  annotation_file = next((folder / n for n in ("annotations.json", "annotation.json") if (folder / n).is_file()),
                         None)
  if annotation_file is None:
    raise UserError(f"{folder} has no annotations.json; point typographic_dir at the typographic attack set")
  annotations = json.loads(annotation_file.read_text())
  image_dir = folder / "images" if (folder / "images").is_dir() else folder
  files, true, attack, missing = [], [], [], []
  for name in sorted(annotations):
    row = annotations[name]
    if not (image_dir / name).is_file():
      missing.append(name)
      continue
    try:
      true.append(row["true object"])
      attack.append(row["typographic attack label"])
    except (KeyError, TypeError):
      raise UserError(f"{annotation_file}: entry {name!r} lacks 'true object' / 'typographic attack label'") from None
    files.append(image_dir / name)
  if missing:
    raise UserError(f"{annotation_file} names {len(missing)} images missing from {image_dir}, e.g. "
                    f"{', '.join(missing[:5])}")
  return files, true, attack


def write_typographic_set(folder, count: int, seed: int = 0, num_classes: int = 6) -> Path:
  """A small set in the real layout: generated objects with another class's name written on them."""
  folder = Path(folder)
  (folder / "images").mkdir(parents=True, exist_ok=True)
  shapes = ShapesSource(num_classes, count, seed=seed + 1000)
  rng = np.random.default_rng(seed)
  options = word_images.RenderOptions(font_size=28, random_position=True, color=(255, 255, 255))
  annotations = {}
  for i in range(count):
    _, photo, class_id = shapes[i]
    label = shapes.classes[(class_id + 1 + int(rng.integers(len(shapes.classes) - 1))) % len(shapes.classes)]
    attack_word = label.split(" ")[0]
    _, _, attacked, _ = word_images.render(attack_word, photo, options, rng)
    name = f"IMG_{i:04d}.JPG"
    attacked.save(folder / "images" / name, quality=90)
    annotations[name] = {"true object": shapes.classes[class_id], "typographic attack label": attack_word}
  (folder / "annotations.json").write_text(json.dumps(annotations, indent=1))
  return folder
