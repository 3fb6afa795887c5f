"""Folders of captioned video clips, read as motion customisation reads them (the original's video folders).

A clip's captions: `clip.txt` beside `clip.mp4`; else its entry in the folder's `text.json` (`{"clip.mp4":
caption or [captions]}`, one drawn per use); else the folder's fallback, which is `fallback_prompt` for the
instance clips and the file name with `_` as spaces for the regularisation clips. A clip with no caption, or one
that does not decode, is listed with the reason; `on_bad='fail'` stops at the listing instead.

Frames: every `stride`-th frame, stride = max(1, round(native fps / target fps)); training takes a window of
`num_frames` of them at a random start, and pads a short clip by repeating its last frame. Each frame is resized
on its short side and centre-cropped to a square (no aspect-ratio bucketing).
"""

import dataclasses
import json
from pathlib import Path

import numpy as np

from jaxlab.data import video as video_lib
from jaxlab.errors import UserError

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".avi", ".mkv")
ON_BAD = ("skip", "fail")


@dataclasses.dataclass(frozen=True)
class Clip:
  path: Path
  captions: tuple[str, ...]


@dataclasses.dataclass
class ClipFolder:
  """The usable clips of a folder, and the left-out files with why (`{file name: reason}`)."""
  folder: Path
  clips: list[Clip]
  problems: dict[str, str]

  def report(self, on_bad: str) -> None:
    """One line about the left-out files; with `on_bad='fail'` a `UserError` when there are any."""
    if not self.problems:
      return
    listing = "; ".join(f"{name}: {why}" for name, why in sorted(self.problems.items()))
    line = f"{self.folder}: {len(self.problems)} of {len(self.problems) + len(self.clips)} clips left out ({listing})"
    if on_bad == "fail":
      raise UserError(f"{line}; fix or remove them, or set --config.on_bad_clip=skip")
    print(f"jaxlab: {line}", flush=True)


def _text_json(folder: Path) -> dict:
  path = folder / "text.json"
  if not path.is_file():
    return {}
  try:
    table = json.loads(path.read_text(encoding="utf-8"))
  except json.JSONDecodeError as e:
    raise UserError(f"{path} is not valid JSON ({e}); it maps clip file names to a caption or a list") from None
  if not isinstance(table, dict):
    raise UserError(f"{path} must map clip file names to a caption or a list of captions")
  return table


def _captions(path: Path, table: dict, fallback: str) -> tuple[str, ...]:
  sidecar = path.with_suffix(".txt")
  if sidecar.is_file():
    found = [sidecar.read_text(encoding="utf-8").replace("\n", " ")]
  else:
    entry = table.get(path.name, table.get(path.stem))
    found = [entry] if isinstance(entry, str) else list(entry or []) or [fallback]
  return tuple(" ".join(c.split()) for c in found if c and c.strip())


def read_folder(folder, fallback_prompt: str = "", captions_from_names: bool = False) -> ClipFolder:
  """The clips of `folder` and their captions (instance set: `fallback_prompt`; regularisation set:
  `captions_from_names`)."""
  folder = Path(folder)
  if not folder.is_dir():
    raise UserError(f"clip folder {folder} not found; pass a folder of .mp4 clips (captions in clip.txt beside each)")
  paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
  if not paths:
    raise UserError(f"{folder} holds no video clips ({', '.join(VIDEO_SUFFIXES)})")
  table = _text_json(folder)
  clips, problems = [], {}
  for path in paths:
    fallback = path.stem.replace("_", " ") if captions_from_names else fallback_prompt
    captions = _captions(path, table, fallback)
    if captions:
      clips.append(Clip(path, captions))
    else:
      problems[path.name] = "no caption (no .txt beside it, no text.json entry, no fallback_prompt)"
  return ClipFolder(folder, clips, problems)


def strided_frames(frames: np.ndarray, native_fps: float, target_fps: float) -> np.ndarray:
  """Every stride-th frame, stride = max(1, round(native / target)) (at most the clip's length), as many as
  whole strides fit."""
  stride = min(max(1, round(native_fps / target_fps)), len(frames))
  return frames[::stride][:len(frames) // stride]


def load_frames(path, target_fps: float, size: int) -> np.ndarray:
  """uint8 `[T, size, size, 3]`: the clip's frames at the target rate, short side resized, centre-cropped.
  Raises `video.VideoDecodeError` for a clip that does not decode."""
  frames, fps = video_lib.read_video(path)
  return video_lib.center_crop(strided_frames(frames, fps, target_fps), size)


def window(length: int, num_frames: int, rng: np.random.Generator) -> np.ndarray:
  """`num_frames` consecutive indices into a clip of `length` frames from a random start; a shorter clip gives
  all its frames, then its last one repeated."""
  n = min(num_frames, length)
  start = int(rng.integers(0, length - n + 1))
  return np.concatenate([np.arange(start, start + n), np.full(num_frames - n, start + n - 1)]).astype(np.int64)
