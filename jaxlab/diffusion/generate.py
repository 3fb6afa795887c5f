"""Generating image and video sets from prompts, as the papers' eval scripts do.

A prompt CSV has the columns `prompt`, `evaluation_seed` and `case_number` (other columns are kept, e.g.
`label_idx`); a prompt list (`.txt`, the motion paper's format) has one `seed,prompt` per line, its cases
numbered by line. Each row gives `num_images` samples from one seed, written as `<case_number>_<k>.png`, or for a
video pipeline `<case_number>_<k>.mp4` beside a `.gif` and a frame grid `_grid.png`. With LoRAs and a list of
scales, each of those files is a strip of the samples at every scale, left to right.
"""

import csv
import dataclasses
import math
from pathlib import Path

import numpy as np
from PIL import Image

from jaxlab.data import video as video_lib
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


def read_prompt_lines(path) -> list[PromptRow]:
  """`seed,prompt` per line (blank lines skipped); the case is the line's number among the prompts."""
  path = Path(path)
  if not path.is_file():
    raise UserError(f"prompt file {path} not found")
  rows = []
  for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
    if not text.strip():
      continue
    seed, comma, prompt = text.partition(",")
    try:
      rows.append(PromptRow(prompt.strip(), int(seed), f"{len(rows):04d}"))
    except ValueError:
      raise UserError(f"{path}:{line}: expected 'seed,prompt' (e.g. '0,A clown doing the sks sign.'), "
                      f"got {text!r}") from None
    if not comma or not rows[-1].prompt:
      raise UserError(f"{path}:{line}: expected 'seed,prompt', got {text!r}")
  return rows


def read_prompts(path) -> list[PromptRow]:
  """A prompt CSV (`.csv`) or a `seed,prompt` list (any other suffix)."""
  return read_prompt_csv(path) if Path(path).suffix.lower() == ".csv" else read_prompt_lines(path)


def sample_paths(out_dir, row: PromptRow, num_images: int, video: bool = False) -> list[Path]:
  suffix = ".mp4" if video else ".png"
  return [Path(out_dir) / f"{row.case}_{k}{suffix}" for k in range(num_images)]


def frame_grid(frames: np.ndarray, columns: int | None = None) -> np.ndarray:
  """uint8 frames `[F, H, W, 3]` tiled row by row (`columns` default: ceil(sqrt(F))); blanks fill the end."""
  f, h, w, c = frames.shape
  columns = columns or math.ceil(math.sqrt(f))
  rows = math.ceil(f / columns)
  tiles = np.concatenate([frames, np.zeros((rows * columns - f, h, w, c), frames.dtype)])
  return tiles.reshape(rows, columns, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, columns * w, c)


def write_video_files(path, frames: np.ndarray, fps: float = 8.0) -> list[Path]:
  """`path` (.mp4, H.264), the same stem as .gif and a `_grid.png` frame grid, from uint8 `[F, H, W, 3]`."""
  path = Path(path)
  even = frames[:, :frames.shape[1] // 2 * 2, :frames.shape[2] // 2 * 2]  # yuv420p needs even sides
  video_lib.write_video(path, even, fps)
  gif, grid = path.with_suffix(".gif"), path.with_name(f"{path.stem}_grid.png")
  images = [Image.fromarray(f) for f in frames]
  images[0].save(gif, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
  Image.fromarray(frame_grid(frames)).save(grid)
  return [path, gif, grid]


def generate_rows(pipe: StableDiffusion, rows: list[PromptRow], out_dir, num_images: int = 1, num_steps: int = 50,
                  guidance_scale: float = 7.5, noise_source: str = "jax", batch_size: int = 4,
                  height: int | None = None, width: int | None = None, negative_prompt: str | None = "",
                  unet_params=None, loras=(), start_noise: int | None = None, scales=None, overwrite: bool = False,
                  progress=None, scheduler=None, num_frames: int = 16, fps: float = 8.0) -> list[Path]:
  """Writes `<case>_<k>.png` (videos: `.mp4`, `.gif`, `_grid.png`) for each row; rows whose samples all exist
  are skipped unless `overwrite`.

  Rows are generated `batch_size` at a time; the last batch is padded so that one compiled shape serves all.
  `loras` are `(LoRA, params, scale)`, on after `start_noise`; a scale of None is swept over `scales` (one
  strip per sample, scales left to right), or 1 without them. `scheduler` (a `NoiseSchedule` for DDIM or a
  `DPMSolver`) defaults to DDIM on the pipeline's schedule. Returns every row's sample paths (the `.png` or
  `.mp4`), in order.
  """
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  paths = lambda row: sample_paths(out_dir, row, num_images, pipe.is_video)
  todo = [row for row in rows if overwrite or not all(p.is_file() for p in paths(row))]
  shape = pipe.latent_shape(num_images, height, width, num_frames)
  for start in range(0, len(todo), batch_size):
    batch = todo[start:start + batch_size]
    padded = batch + [batch[-1]] * (batch_size - len(batch))
    noise = np.concatenate([latent_noise(row.seed, shape, noise_source) for row in padded])
    prompts = [row.prompt for row in padded for _ in range(num_images)]
    strip = []
    for sweep in (1.0,) if scales is None else scales:
      adapted = [(lora, params, sweep if scale is None else scale) for lora, params, scale in loras]
      strip.append(pipe.generate(prompts, noise, num_steps, guidance_scale, negative_prompt, unet_params=unet_params,
                                 loras=adapted, start_noise=start_noise, scheduler=scheduler))
    samples = np.concatenate(strip, axis=-2)  # side by side: the width axis of images and of video frames
    for i, row in enumerate(batch):
      for k, path in enumerate(paths(row)):
        sample = samples[i * num_images + k]
        if pipe.is_video:
          write_video_files(path, sample, fps)
        else:
          Image.fromarray(sample).save(path)
    if progress is not None:
      progress(min(start + batch_size, len(todo)), len(todo))
  return [p for row in rows for p in paths(row)]
