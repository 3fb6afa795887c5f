"""Synthetic motions for motion customisation's tiny config, demo and tests.

A soft bright blob on a plain dark background either traces a circle or moves up and down along a line: the
two motions share their vertical movement, so only the motion over several frames (the horizontal swing) tells
them apart, never one frame. Size, brightness, centre, radius, phase and direction vary a little per clip.

`write_clip_folder` writes captioned clips the way motion customisation reads them (`clip.mp4` + `clip.txt`);
`write_classifier_release` writes the same motions as an AirLetters-layout release, labelled 'O' (circle) and
'I' (line), so that `jaxlab train airletters` learns a classifier that tells them apart.
"""

from pathlib import Path

import numpy as np

from jaxlab.data import airletters, airletters_synth
from jaxlab.data.video import write_video

MOTIONS = ("circle", "line")
# The AirLetters class standing for each motion (a fingertip drawing O traces a circle, drawing I a line).
LABELS = {"circle": airletters.label_of("O"), "line": airletters.label_of("I")}


def trajectory(motion: str, num_frames: int, frames_per_cycle: float, rng: np.random.Generator) -> np.ndarray:
  """Blob centres `[T, 2]` (x, y in [0, 1]) of one clip."""
  if motion not in MOTIONS:
    raise ValueError(f"motion {motion!r}: use one of {MOTIONS}")
  phase = rng.uniform(0, 2 * np.pi) + rng.choice([-1, 1]) * 2 * np.pi * np.arange(num_frames) / frames_per_cycle
  centre = 0.5 + rng.uniform(-0.05, 0.05, size=2)
  radius = rng.uniform(0.2, 0.28)
  dx = radius * np.cos(phase) if motion == "circle" else np.zeros(num_frames)
  return centre + np.stack([dx, radius * np.sin(phase)], axis=1)


def render(motion: str, rng: np.random.Generator, size: int = 32, num_frames: int = 16,
           frames_per_cycle: float = 8) -> np.ndarray:
  """uint8 `[T, size, size, 3]`: the blob performing `motion`, one cycle every `frames_per_cycle` frames."""
  path = trajectory(motion, num_frames, frames_per_cycle, rng) * size
  background = rng.uniform(35, 55) * np.ones(3)
  colour = rng.uniform(200, 255, size=3)
  sigma = rng.uniform(0.08, 0.1) * size
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
  weight = np.exp(-((xx - path[:, :1, None]) ** 2 + (yy - path[:, 1:, None]) ** 2) / (2 * sigma**2))[..., None]
  return np.clip(background + weight * (colour - background), 0, 255).astype(np.uint8)


def render_airletters(label: str, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """`airletters_synth.write_dataset`'s renderer: one cycle of the motion `label` stands for, over one second."""
  motion = {v: k for k, v in LABELS.items()}[label]
  fps = int(airletters.FPS)
  return render(motion, rng, min(height, width), fps, fps)


def write_clip_folder(folder, motion: str, num_clips: int, caption: str, seed: int = 0, size: int = 32,
                      num_frames: int = 16, fps: float = 8.0, frames_per_cycle: float = 8) -> Path:
  """`num_clips` clips `motion_<i>.mp4`, each with `caption` in `motion_<i>.txt` beside it."""
  folder = Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  for i in range(num_clips):
    write_video(folder / f"{motion}_{i:03d}.mp4", render(motion, rng, size, num_frames, frames_per_cycle), fps)
    (folder / f"{motion}_{i:03d}.txt").write_text(caption + "\n")
  return folder


def write_classifier_release(root, clips_per_class: dict[str, int], seed: int = 0, size: int = 32) -> Path:
  """An AirLetters-layout release of the motions (labels `LABELS`), for `jaxlab data build airletters`."""
  return airletters_synth.write_dataset(root, clips_per_class, seed=seed, height=size, width=size, workers=1,
                                        labels=[LABELS[m] for m in MOTIONS], render=render_airletters)
