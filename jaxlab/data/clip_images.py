"""CLIP's image preprocessing, as OpenAI's `clip.load` transform does it (torchvision on PIL images).

Resize the shorter side to `size` with PIL's bicubic filter (the longer side becomes `int(size * long / short)`),
centre-crop `size` x `size` (offsets rounded half to even, as torchvision's `CenterCrop`; transformers'
`CLIPImageProcessor` floors them instead, which moves the crop one pixel for some odd sizes), convert to RGB,
scale to [0, 1], and normalise with CLIP's mean and std. Output is channels-last float32 `[size, size, 3]`.
"""

from collections.abc import Sequence

import numpy as np
from PIL import Image

MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def _as_pil(image) -> Image.Image:
  return image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))


def resize_and_crop(image, size: int = 224) -> Image.Image:
  """The bicubic short-side resize and the centre crop, as an RGB PIL image."""
  image = _as_pil(image)
  width, height = image.size
  short, long = min(width, height), max(width, height)
  new_long = int(size * long / short)
  new_size = (size, new_long) if width <= height else (new_long, size)
  if new_size != image.size:
    image = image.resize(new_size, Image.Resampling.BICUBIC)
  width, height = image.size
  top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
  return image.crop((left, top, left + size, top + size)).convert("RGB")


def normalize(pixels: np.ndarray) -> np.ndarray:
  """uint8 RGB `[..., H, W, 3]` -> CLIP's normalised float32."""
  return ((np.asarray(pixels, np.float32) / 255.0 - MEAN) / STD).astype(np.float32)


def preprocess(image, size: int = 224) -> np.ndarray:
  """A PIL image or uint8 array -> the CLIP vision model's input `[size, size, 3]`."""
  return normalize(np.asarray(resize_and_crop(image, size)))


def preprocess_batch(images: Sequence, size: int = 224) -> np.ndarray:
  return np.stack([preprocess(image, size) for image in images])
