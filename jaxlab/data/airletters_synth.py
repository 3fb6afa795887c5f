"""Synthetic AirLetters: a hand-like blob tracing each letter and digit in the air, in the release layout.

Each clip shows a textured background (a wall with shelves), and a skin-coloured hand and forearm with a
bright fingertip that traces the strokes of one character, moving continuously between strokes as people do
in the air. Position, size, slant, speed, timing and the scene vary per clip, and no trail is drawn, so no
single frame shows the character: a model must follow the motion. The two contrast classes are a hand that
rests with small tremor ("Doing nothing") and one that wanders smoothly ("Doing Other Things").

`write_dataset(root, ...)` writes `videos/<id>.mp4` and `train.csv`/`val.csv`/`test.csv` exactly as the
release is laid out, with disjoint workers per split, so the AirLetters TFDS builder reads it unchanged.
"""

import csv
import os
from pathlib import Path

import numpy as np

from jaxlab.data import airletters
from jaxlab.data.video import write_video
from jaxlab.data.workers import map_in_processes


def _arc(cx, cy, rx, ry, start_deg, end_deg, n=12):
  """Points on an ellipse arc; angles in degrees, 0 = right, 90 = down (image coordinates)."""
  a = np.radians(np.linspace(start_deg, end_deg, n))
  return list(zip(cx + rx * np.cos(a), cy + ry * np.sin(a)))


# Strokes of each character in a unit box (x right, y down), in writing order.
STROKES = {
    "A": [[(0, 1), (0.5, 0), (1, 1)], [(0.22, 0.6), (0.78, 0.6)]],
    "B": [[(0, 1), (0, 0)], [(0, 0)] + _arc(0.35, 0.25, 0.45, 0.25, -90, 90) + [(0, 0.5)],
          [(0, 0.5)] + _arc(0.4, 0.75, 0.55, 0.25, -90, 90) + [(0, 1)]],
    "C": [_arc(0.55, 0.5, 0.5, 0.5, -40, -320, 16)],
    "D": [[(0, 0), (0, 1)], [(0, 1)] + _arc(0.2, 0.5, 0.75, 0.5, 90, -90, 16) + [(0, 0)]],
    "E": [[(1, 0), (0, 0), (0, 1), (1, 1)], [(0, 0.5), (0.7, 0.5)]],
    "F": [[(1, 0), (0, 0), (0, 1)], [(0, 0.5), (0.7, 0.5)]],
    "G": [_arc(0.55, 0.5, 0.5, 0.5, -40, -340, 16) + [(1, 0.55), (0.6, 0.55)]],
    "H": [[(0, 0), (0, 1)], [(1, 0), (1, 1)], [(0, 0.5), (1, 0.5)]],
    "I": [[(0.2, 0), (0.8, 0)], [(0.5, 0), (0.5, 1)], [(0.2, 1), (0.8, 1)]],
    "J": [[(0.85, 0), (0.85, 0.7)] + _arc(0.5, 0.7, 0.35, 0.3, 0, 180)],
    "K": [[(0, 0), (0, 1)], [(1, 0), (0, 0.55), (1, 1)]],
    "L": [[(0, 0), (0, 1), (1, 1)]],
    "M": [[(0, 1), (0, 0), (0.5, 0.6), (1, 0), (1, 1)]],
    "N": [[(0, 1), (0, 0), (1, 1), (1, 0)]],
    "O": [_arc(0.5, 0.5, 0.5, 0.5, -90, -450, 20)],
    "P": [[(0, 1), (0, 0)] + _arc(0.3, 0.27, 0.5, 0.27, -90, 90) + [(0, 0.54)]],
    "Q": [_arc(0.5, 0.5, 0.5, 0.5, -90, -450, 20), [(0.55, 0.65), (1, 1.05)]],
    "R": [[(0, 1), (0, 0)] + _arc(0.3, 0.27, 0.5, 0.27, -90, 90) + [(0, 0.54), (1, 1)]],
    "S": [_arc(0.5, 0.25, 0.45, 0.25, -20, -270) + _arc(0.5, 0.75, 0.45, 0.25, -90, 160)],
    "T": [[(0, 0), (1, 0)], [(0.5, 0), (0.5, 1)]],
    "U": [[(0, 0), (0, 0.6)] + _arc(0.5, 0.6, 0.5, 0.4, 180, 0) + [(1, 0)]],
    "V": [[(0, 0), (0.5, 1), (1, 0)]],
    "W": [[(0, 0), (0.25, 1), (0.5, 0.35), (0.75, 1), (1, 0)]],
    "X": [[(0, 0), (1, 1)], [(1, 0), (0, 1)]],
    "Y": [[(0, 0), (0.5, 0.5), (1, 0)], [(0.5, 0.5), (0.5, 1)]],
    "Z": [[(0, 0), (1, 0), (0, 1), (1, 1)]],
    "0": [_arc(0.5, 0.5, 0.3, 0.5, -90, -450, 20)],
    "1": [[(0.25, 0.25), (0.55, 0), (0.55, 1)]],
    "2": [_arc(0.5, 0.3, 0.45, 0.3, 200, 380) + [(0, 1), (1, 1)]],
    "3": [_arc(0.45, 0.25, 0.45, 0.25, -160, 90) + _arc(0.45, 0.75, 0.5, 0.25, -90, 160)],
    "4": [[(0.75, 1), (0.75, 0), (0, 0.7), (1, 0.7)]],
    "5": [[(0.9, 0), (0.2, 0), (0.15, 0.45)] + _arc(0.45, 0.7, 0.45, 0.3, -120, 150)],
    "6": [_arc(0.55, 0.5, 0.45, 0.5, -60, -180) + _arc(0.5, 0.72, 0.4, 0.28, 180, 540, 16)],
    "7": [[(0, 0), (1, 0), (0.35, 1)]],
    "8": [_arc(0.5, 0.25, 0.35, 0.25, 0, -360, 14) + _arc(0.5, 0.75, 0.42, 0.25, 0, 360, 14)],
    "9": [_arc(0.5, 0.28, 0.4, 0.28, 0, -360, 16) + [(0.9, 0.28), (0.85, 1)]],
}


def _polyline(points: np.ndarray, n: int) -> np.ndarray:
  """`n` points at equal arc length along a polyline."""
  seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
  cum = np.concatenate([[0], np.cumsum(seg)])
  if cum[-1] == 0:
    return np.repeat(points[:1], n, axis=0)
  s = np.linspace(0, cum[-1], n)
  return np.stack([np.interp(s, cum, points[:, 0]), np.interp(s, cum, points[:, 1])], axis=1)


def character_path(character: str, n: int) -> np.ndarray:
  """The fingertip path of one character in the unit box: strokes joined by the moves between them."""
  points = np.concatenate([np.asarray(stroke, float) for stroke in STROKES[character]])
  return _polyline(points, n)


def _smooth_noise(rng, n, scale, knots=6):
  t = np.linspace(0, 1, knots)
  return np.stack([np.interp(np.linspace(0, 1, n), t, rng.normal(0, scale, knots)) for _ in range(2)], axis=1)


def _trajectory(label: str, num_frames: int, rng: np.random.Generator) -> np.ndarray:
  """Fingertip positions in [0, 1]² for every frame, with pauses before and after the gesture."""
  lead, tail = rng.integers(2, max(3, num_frames // 8), size=2)
  active = num_frames - lead - tail
  if label == "Doing nothing":
    rest = rng.uniform(0.35, 0.65, size=2)
    return rest + rng.normal(0, 0.004, size=(num_frames, 2))
  if label == "Doing Other Things":
    knots = rng.uniform(0.15, 0.85, size=(rng.integers(3, 6), 2))
    path = _polyline(knots, active)
  else:
    character = airletters.short_name(label)
    # Writing speed varies along the path: a random monotone time warp.
    warp = np.cumsum(rng.uniform(0.5, 1.5, size=active))
    unit = character_path(character, 400)
    unit = unit[np.clip((warp - warp[0]) / (warp[-1] - warp[0]) * 399, 0, 399).astype(int)]
    slant = rng.uniform(-0.25, 0.25)
    size = rng.uniform(0.4, 0.65)
    aspect = rng.uniform(0.75, 1.2)
    xy = unit - 0.5
    xy = np.stack([xy[:, 0] * aspect + slant * xy[:, 1], xy[:, 1]], axis=1) * size
    centre = rng.uniform(0.5 - (0.5 - size / 2) * 0.6, 0.5 + (0.5 - size / 2) * 0.6, size=2)
    path = xy + centre
  path = path + _smooth_noise(rng, active, 0.01)
  return np.concatenate([np.repeat(path[:1], lead, 0), path, np.repeat(path[-1:], tail, 0)])


# The wall's colour: every scene is lit alike, so clips differ in texture and layout rather than in overall
# colour. A small model trained from scratch on mean-pooled tokens learns in minutes only then (per-clip
# colour shifts and a seated body of random colour each delayed learning past the demo's budget).
_WALL = np.array([118.0, 112.0, 104.0])
_SHELF = np.array([84.0, 64.0, 48.0])


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
  """A textured wall: blotchy plaster, a vertical light gradient, and one or two shelves."""
  yy = np.mgrid[0:h, 0:w][0] / max(h, w)
  img = _WALL + rng.uniform(-4, 4, size=3) + rng.uniform(-8, 8) * (yy[..., None] - 0.4)
  coarse = rng.normal(0, 8, size=(h // 8 + 2, w // 8 + 2, 3))
  img = img + np.kron(coarse, np.ones((8, 8, 1)))[:h, :w]
  for _ in range(rng.integers(1, 3)):
    y0, x0 = rng.integers(0, h // 2), rng.integers(0, w)
    img[y0:y0 + rng.integers(2, 4), x0:x0 + rng.integers(w // 6, w // 3)] = _SHELF
  return img


def render_clip(label: str, rng: np.random.Generator, height: int = 48, width: int = 64,
                num_frames: int | None = None) -> np.ndarray:
  """One clip `[T, H, W, 3]` uint8 of `label` being performed."""
  num_frames = num_frames or int(rng.integers(45, 75))
  background = _background(rng, height, width)
  path = _trajectory(label, num_frames, rng)
  skin = rng.uniform(150, 235) * np.array([1.0, rng.uniform(0.7, 0.85), rng.uniform(0.55, 0.7)])
  hand_r = rng.uniform(0.06, 0.09) * height
  yy, xx = np.mgrid[0:height, 0:width].astype(float)
  shake = np.cumsum(rng.normal(0, 0.15, size=(num_frames, 2)), axis=0)  # slow camera drift
  frames = np.empty((num_frames, height, width, 3), np.uint8)
  for t in range(num_frames):
    fx, fy = path[t, 0] * width + shake[t, 0], path[t, 1] * height + shake[t, 1]
    img = np.roll(background, (int(shake[t, 1]), int(shake[t, 0])), axis=(0, 1)).copy()
    # Palm below the fingertip, a forearm towards the bottom edge, and the bright fingertip itself.
    palm = (xx - fx) ** 2 + ((yy - fy - 1.6 * hand_r) / 1.2) ** 2 < hand_r ** 2
    arm = (np.abs(xx - fx - 0.15 * (yy - fy)) < 0.55 * hand_r) & (yy > fy + 2 * hand_r)
    finger = (xx - fx) ** 2 + (yy - fy) ** 2 < (0.45 * hand_r) ** 2
    img[arm] = skin * 0.85
    img[palm] = skin
    img[finger] = np.minimum(skin * 1.15, 255)
    frames[t] = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
  return frames


def _write_one(args):
  root, video_id, label, seed, height, width, render = args
  rng = np.random.default_rng(seed)
  frames = render(label, rng, height, width)
  filename = f"{video_id:08d}.mp4"
  write_video(Path(root) / "videos" / filename, frames, airletters.FPS)
  return filename, int(round(1000 * len(frames) / airletters.FPS))


def write_dataset(root, clips_per_class: dict[str, int] | None = None, seed: int = 0, height: int = 48,
                  width: int = 64, workers: int | None = None, labels: list[str] | None = None,
                  render=render_clip) -> Path:
  """Writes a synthetic AirLetters release under `root`; returns `root`.

  `clips_per_class` maps each split to clips per class (default train 24, validation 4, test 6); `labels`
  restricts the classes (default all 38). Each split has its own workers (as in the release) and ids are
  unique but not contiguous. `render(label, rng, height, width)` draws a clip's frames (a module-level
  function: workers import it by name), by default the hand tracing characters.
  """
  clips_per_class = clips_per_class or {"train": 24, "validation": 4, "test": 6}
  root = Path(root)
  (root / "videos").mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  jobs, rows = [], {split: [] for split in airletters.SPLIT_FILES}
  next_id, next_worker = 1, 100
  for split, per_class in clips_per_class.items():
    workers_here = list(range(next_worker, next_worker + max(2, per_class)))
    next_worker += len(workers_here) + 7
    for label in labels or airletters.LABELS:
      for _ in range(per_class):
        next_id += int(rng.integers(1, 4))
        worker = int(rng.choice(workers_here))
        jobs.append((root, next_id, label, int(rng.integers(2**31)), height, width, render))
        rows[split].append({"id": next_id, "label": label, "worker_id": worker})
  results = list(map_in_processes(_write_one, jobs, workers or min(8, os.cpu_count() or 1)))
  by_id = {job[1]: result for job, result in zip(jobs, results)}
  for split, split_rows in rows.items():
    order = np.random.default_rng(seed + 1).permutation(len(split_rows))
    with open(root / airletters.SPLIT_FILES[split], "w", newline="") as f:
      writer = csv.writer(f)
      writer.writerow(airletters.CSV_COLUMNS)
      for i in order:
        row = split_rows[i]
        filename, duration = by_id[row["id"]]
        writer.writerow([row["id"], filename, row["label"], row["worker_id"], duration])
  return root
