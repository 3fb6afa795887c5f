"""Word images for the CLIP spelling method: a string drawn alone on a blank canvas and on a photo, at one place.

Following the paper's data script (Materzynska et al. 2022): a natural image is resized (short side, bicubic)
and centre-cropped to the canvas size; the word is drawn in bold sans at size 40, black, centred, with no box;
the same word at the same place, size and colour on a white canvas gives the "word image". Options draw a
random size in [20, 40) and a uniform random position, as the script's (unused) flags did.

Two deliberate differences: the font is DejaVu Sans Bold (shipped with matplotlib) where the paper used
Microsoft's Verdana Bold, and text is centred by its own measured box (`textbbox`), where the script measured
every size with the size-40 font.
"""

import dataclasses
import functools
from pathlib import Path
import string

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jaxlab.data import clip_images

LETTERS = string.ascii_lowercase


@dataclasses.dataclass(frozen=True)
class RenderOptions:
  size: int = 224                        # canvas side, pixels
  font_size: int = 40
  random_font_size: bool = False         # uniform in [min_font_size, font_size)
  min_font_size: int = 20
  random_position: bool = False          # uniform over the places where the word fits; else centred
  color: tuple[int, int, int] | None = (0, 0, 0)  # None: a random colour per word
  background: tuple[int, int, int] = (255, 255, 255)


@dataclasses.dataclass(frozen=True)
class Placement:
  """Where and how one word was drawn (kept with the features, so a rendering can be reproduced)."""
  x: int
  y: int
  font_size: int
  color: tuple[int, int, int]


def font_file() -> Path:
  import matplotlib
  return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"


@functools.lru_cache(maxsize=64)
def font(size: int) -> ImageFont.FreeTypeFont:
  return ImageFont.truetype(str(font_file()), size)


def nonsense_word(rng: np.random.Generator, min_length: int = 3, max_length: int = 5) -> str:
  """A string of `min_length`..`max_length` letters drawn uniformly from a-z."""
  length = int(rng.integers(min_length, max_length + 1))
  return "".join(rng.choice(list(LETTERS), size=length))


def place(word: str, options: RenderOptions, rng: np.random.Generator) -> Placement:
  size = int(rng.integers(options.min_font_size, options.font_size)) if options.random_font_size \
      else options.font_size
  color = options.color if options.color is not None else tuple(int(c) for c in rng.integers(0, 256, 3))
  left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), word, font=font(size))
  width, height = right - left, bottom - top
  if options.random_position:
    x = int(rng.integers(0, max(options.size - width, 0) + 1)) - left
    y = int(rng.integers(0, max(options.size - height, 0) + 1)) - top
  else:
    x, y = (options.size - width) // 2 - left, (options.size - height) // 2 - top
  return Placement(x, y, size, color)


def draw(image: Image.Image, word: str, placement: Placement) -> Image.Image:
  image = image.convert("RGB").copy()
  ImageDraw.Draw(image).text((placement.x, placement.y), word, fill=placement.color,
                             font=font(placement.font_size))
  return image


def render(word: str, photo, options: RenderOptions, rng: np.random.Generator):
  """(photo cropped to the canvas, the word on a blank canvas, the word on the photo, placement)."""
  photo = clip_images.resize_and_crop(photo, options.size)
  placement = place(word, options, rng)
  blank = Image.new("RGB", (options.size, options.size), options.background)
  return photo, draw(blank, word, placement), draw(photo, word, placement), placement
