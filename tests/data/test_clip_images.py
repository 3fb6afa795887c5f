"""CLIP image preprocessing against transformers' PIL `CLIPImageProcessor`, and torchvision's crop rounding."""

import numpy as np
import pytest
from PIL import Image

from jaxlab.data import clip_images

transformers = pytest.importorskip("transformers")


def _photo(width, height, seed=0):
  rng = np.random.default_rng(seed)
  smooth = rng.normal(size=(height // 8 + 1, width // 8 + 1, 3)).cumsum(0).cumsum(1)
  pixels = np.kron(smooth, np.ones((8, 8, 1)))[:height, :width]
  pixels = (pixels - pixels.min()) / np.ptp(pixels) * 255
  return Image.fromarray(pixels.astype(np.uint8))


@pytest.mark.parametrize("size", [(320, 240), (240, 500), (224, 224), (1000, 37), (300, 300)])
def test_matches_transformers_image_processor(size):
  image = _photo(*size)
  reference = transformers.CLIPImageProcessorPil()
  expected = reference(images=image, return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)
  got = clip_images.preprocess(image)
  assert got.shape == (224, 224, 3) and got.dtype == np.float32
  np.testing.assert_allclose(got, expected, atol=1e-5)


def test_centre_crop_rounds_like_torchvision():
  """A 299-wide image needs a 37.5-pixel left margin: torchvision (and OpenAI's CLIP) round it to 38."""
  columns = np.tile(np.arange(299) % 256, (224, 1)).astype(np.uint8)
  cropped = np.asarray(clip_images.resize_and_crop(Image.fromarray(columns, "L")))
  assert cropped.shape == (224, 224, 3)
  assert cropped[0, 0, 0] == 38 and cropped[0, -1, 0] == (38 + 223) % 256


def test_normalisation_constants():
  white = clip_images.preprocess(np.full((10, 20, 3), 255, np.uint8), size=8)
  np.testing.assert_allclose(white[0, 0], (1 - clip_images.MEAN) / clip_images.STD, rtol=1e-6)
  assert clip_images.preprocess_batch([Image.new("RGBA", (50, 40))] * 2, size=16).shape == (2, 16, 16, 3)
