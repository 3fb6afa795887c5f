"""Generating image sets from prompts, as the papers' eval scripts do.

A prompt CSV has the columns `prompt`, `evaluation_seed` and `case_number` (other columns are kept, e.g.
`label_idx`); each row gives `num_images` images from one seed, written as `<case_number>_<k>.png`. With LoRAs
and a list of scales, each of those files is a strip of the images at every scale, left to right.
"""

import csv
import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image

from jaxlab.diffusion.pipeline import StableDiffusion, latent_noise
from jaxlab.errors import UserError

REQUIRED_COLUMNS = ("prompt", "evaluation_seed", "case_number")


@dataclasses.dataclass(frozen=True)
class PromptRow:
  prompt: str
  seed: int
  case: str
  columns: dict = dataclasses.field(default_factory=dict)  # the whole CSV row


def read_prompt_csv(path) -> list[PromptRow]:
  path = Path(path)
  if not path.is_file():
    raise UserError(f"prompt file {path} not found")
  with path.open(newline="", encoding="utf-8") as f:
    reader = csv.DictReader(f)
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
      raise UserError(f"{path} lacks the columns {', '.join(missing)}; a prompt CSV needs "
                      f"{', '.join(REQUIRED_COLUMNS)}")
    rows, lines = [], {}
    for line, row in enumerate(reader, start=2):
      if None in row.values() or None in row:
        raise UserError(f"{path}:{line}: the row does not have the header's {len(reader.fieldnames)} fields; quote "
                        "fields that hold commas")
      try:
        seed = int(float(row["evaluation_seed"]))
      except ValueError:
        raise UserError(f"{path}:{line}: evaluation_seed {row['evaluation_seed']!r} is not a number") from None
      case = str(row["case_number"]).strip()
      if case in lines:  # images are named by case: a second row would overwrite the first one's
        raise UserError(f"{path}:{line}: case_number {case} is also on line {lines[case]}; give every row its own "
                        "case_number (images are written as <case_number>_<k>.png)")
      lines[case] = line
      rows.append(PromptRow(row["prompt"], seed, case, dict(row)))
  return rows


def image_paths(out_dir, row: PromptRow, num_images: int) -> list[Path]:
  return [Path(out_dir) / f"{row.case}_{k}.png" for k in range(num_images)]


def generate_rows(pipe: StableDiffusion, rows: list[PromptRow], out_dir, num_images: int = 1, num_steps: int = 50,
                  guidance_scale: float = 7.5, noise_source: str = "jax", batch_size: int = 4,
                  height: int | None = None, width: int | None = None, negative_prompt: str | None = "",
                  unet_params=None, loras=(), start_noise: int | None = None, scales=None, overwrite: bool = False,
                  progress=None) -> list[Path]:
  """Writes `<case>_<k>.png` for each row (rows whose images all exist are skipped unless `overwrite`).

  Rows are generated `batch_size` at a time; the last batch is padded so that one compiled shape serves all.
  `loras` are `(LoRA, params, scale)`, on after `start_noise`; a scale of None is swept over `scales` (one
  strip per image, scales left to right), or 1 without them. Returns every row's image paths, in order.
  """
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  todo = [row for row in rows if overwrite or not all(p.is_file() for p in image_paths(out_dir, row, num_images))]
  shape = pipe.latent_shape(num_images, height, width)
  for start in range(0, len(todo), batch_size):
    batch = todo[start:start + batch_size]
    padded = batch + [batch[-1]] * (batch_size - len(batch))
    noise = np.concatenate([latent_noise(row.seed, shape, noise_source) for row in padded])
    prompts = [row.prompt for row in padded for _ in range(num_images)]
    strip = []
    for sweep in (1.0,) if scales is None else scales:
      adapted = [(lora, params, sweep if scale is None else scale) for lora, params, scale in loras]
      strip.append(pipe.generate(prompts, noise, num_steps, guidance_scale, negative_prompt, unet_params=unet_params,
                                 loras=adapted, start_noise=start_noise))
    images = np.concatenate(strip, axis=2)
    for i, row in enumerate(batch):
      for k, path in enumerate(image_paths(out_dir, row, num_images)):
        Image.fromarray(images[i * num_images + k]).save(path)
    if progress is not None:
      progress(min(start + batch_size, len(todo)), len(todo))
  return [p for row in rows for p in image_paths(out_dir, row, num_images)]
