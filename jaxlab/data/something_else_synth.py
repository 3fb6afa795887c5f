"""Synthetic Something-Else: box tracks of six actions whose only evidence is how the boxes move, in the
release layout.

The actions are real SSv2 templates: pushing something left to right or right to left (one object and the
hand move together), putting something onto something and taking something from somewhere (the same motion
reversed in time), and moving two things closer to or away from each other. Start positions, sizes,
distances, timing, jitter, a hand that enters late, and a static distractor object vary per clip, so no single
frame tells the class.

`write_dataset(root, ...)` writes what a user downloads: frames at 12 fps (`frames/<id>/0001.jpg`, or
`20bn-something-something-v2/<id>.webm`), the box annotations in four parts
(`bounding_box_smthsmth_part{1..4}.json`), the SSv2 label file and lists, and `dataset_splits/` with the
compositional, shuffled, one-object and few-shot splits, so the Something-Else TFDS builder reads it unchanged.
Frames are drawn at half the SSv2 size (120 px tall), with the boxes in the same pixel space.
"""

import json
from pathlib import Path

import numpy as np

from jaxlab.data import something_else as se
from jaxlab.data import video as video_lib

CLASSES = [  # (template, number of objects)
    ("Pushing [something] from left to right", 1),
    ("Pushing [something] from right to left", 1),
    ("Putting [something] onto [something]", 2),
    ("Taking [something] from [somewhere]", 2),
    ("Moving [something] and [something] closer to each other", 2),
    ("Moving [something] and [something] away from each other", 2),
]
BASE_CLASSES, NOVEL_CLASSES = (0, 1, 2, 3), (4, 5)   # few-shot split
OBJECTS_A = ["cup", "book", "phone", "bottle", "remote", "box of tissues"]
OBJECTS_B = ["pen", "wallet", "glass", "spoon", "mug", "charger"]
HEIGHT, WIDTHS = 120, (160, 176, 213)


def _ease(t: np.ndarray, start: float, end: float) -> np.ndarray:
  """0 before `start`, 1 after `end`, a smooth ramp between (fractions of the clip)."""
  u = np.clip((t - start) / max(end - start, 1e-6), 0, 1)
  return u * u * (3 - 2 * u)


def _track(cx, cy, size, frames: int) -> np.ndarray:
  """`[T, 4]` (cx, cy, w, h) from centre coordinates (scalars or per-frame arrays) and a fixed size."""
  return np.stack(np.broadcast_arrays(cx, cy, size[0], size[1], np.zeros(frames))[:4], axis=1).astype(float)


def _tracks(action: int, frames: int, width: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
  """Centre-size tracks `[T, 4]` in pixels, keyed by standard_category."""
  t = np.linspace(0, 1, frames)
  start = rng.uniform(0.15, 0.3)
  end = start + rng.uniform(0.35, 0.5)
  motion = _ease(t, start, end)
  table = HEIGHT * rng.uniform(0.75, 0.9)                        # the surface objects rest on
  size = lambda: np.array([rng.uniform(0.12, 0.2) * width, rng.uniform(0.15, 0.3) * HEIGHT])
  a, b, hand = size(), size(), np.array([0.13 * width, 0.17 * HEIGHT]) * rng.uniform(0.8, 1.2)
  tracks = {}
  if action in (0, 1):                                           # pushing left to right / right to left
    direction = 1 if action == 0 else -1
    distance = rng.uniform(0.3, 0.45) * width
    ax = width / 2 + direction * distance * (motion - 0.5) + rng.normal(0, 0.05 * width)
    ay = table - a[1] / 2
    tracks["0000"] = _track(ax, ay, a, frames)
    # The hand comes from behind the object before the push and stays beside it.
    behind = ax - direction * ((a[0] + hand[0]) / 2 + 0.3 * width * (1 - _ease(t, 0, start)))
    tracks["hand"] = _track(behind, ay + rng.normal(0, 0.03 * HEIGHT), hand, frames)
  elif action in (2, 3):                                         # putting onto / taking from
    bx = rng.uniform(0.35, 0.65) * width
    tracks["0001"] = _track(bx, table - b[1] / 2, b, frames)
    on = np.array([bx, table - b[1] - a[1] / 2])                 # A resting on B
    held = on + [rng.choice([-1, 1]) * rng.uniform(0.25, 0.4) * width, -rng.uniform(0.2, 0.35) * HEIGHT]
    on_b = motion if action == 2 else 1 - motion                  # 1 when A rests on B
    apos = held[None] + (on - held)[None] * on_b[:, None]
    tracks["0000"] = _track(apos[:, 0], apos[:, 1], a, frames)
    # The hand holds A from above; while A rests on B it is away: leaving after a put, arriving before a take.
    away = _ease(t, end, end + 0.15) if action == 2 else 1 - _ease(t, start - 0.15, start)
    hy = apos[:, 1] - (a[1] + hand[1]) / 2 - 0.25 * HEIGHT * away
    tracks["hand"] = _track(apos[:, 0], hy, hand, frames)
  else:                                                          # moving closer / away from each other
    far, near = rng.uniform(0.45, 0.6) * width, rng.uniform(0.12, 0.2) * width
    closer = motion if action == 4 else 1 - motion
    gap = far + (near - far) * closer
    centre = width / 2 + rng.normal(0, 0.05 * width)
    tracks["0000"] = _track(centre - gap / 2, table - a[1] / 2, a, frames)
    tracks["0001"] = _track(centre + gap / 2, table - b[1] / 2, b, frames)
    tracks["hand"] = _track(centre - gap / 2 - (a[0] + hand[0]) / 2, table - a[1] / 2, hand, frames)
  if rng.random() < 0.3:                                         # a static object nobody touches
    d = size()
    key = "0002" if "0001" in tracks else "0001"
    tracks[key] = _track(rng.uniform(0.1, 0.9) * width, table - d[1] / 2 - rng.uniform(0, 0.1) * HEIGHT, d,
                         frames)
  for track in tracks.values():                                  # annotators' jitter
    track[:, :2] += rng.normal(0, 0.01 * width, (frames, 2))
    track[:, 2:] *= rng.normal(1, 0.03, (frames, 2))
  return tracks


def _annotation(video_id: str, tracks: dict, nouns: list[str], width: int, frames: int,
                rng: np.random.Generator) -> list[dict]:
  """Per-frame records in the released schema; the hand enters late in some clips."""
  hand_from = rng.integers(1, frames // 4) if rng.random() < 0.3 else 0
  out = []
  for i in range(frames):
    labels = []
    for key in sorted(tracks):
      if key == "hand" and i < hand_from:
        continue
      cx, cy, w, h = tracks[key][i]
      box = {"x1": float(np.clip(cx - w / 2, 0, width)), "y1": float(np.clip(cy - h / 2, 0, HEIGHT)),
             "x2": float(np.clip(cx + w / 2, 0, width)), "y2": float(np.clip(cy + h / 2, 0, HEIGHT))}
      noun = "hand" if key == "hand" else (nouns + ["thing"] * 3)[int(key)]
      labels.append({"box2d": box, "category": noun, "standard_category": key,
                     "gt_annotation": f"object {'hand' if key == 'hand' else int(key)}"})
    out.append({"name": f"{video_id}/{i + 1:04d}.jpg", "labels": labels, "gt_placeholders": nouns,
                "nr_instances": len(labels), "url": "", "split": "synthetic", "task_index": 0})
  return out


def _render(annotation: list[dict], width: int, rng: np.random.Generator) -> np.ndarray:
  """Frames `[T, H, W, 3]`: a textured table scene with each box drawn as a flat patch."""
  background = (rng.uniform(60, 200, 3) + rng.normal(0, 12, (HEIGHT, width, 1))).clip(0, 255)
  colours = {}
  frames = np.empty((len(annotation), HEIGHT, width, 3), np.uint8)
  for i, frame in enumerate(annotation):
    image = background.copy()
    for box in frame["labels"]:
      key = box["standard_category"]
      colour = colours.setdefault(key, np.array([225, 180, 150]) if key == "hand" else rng.uniform(0, 255, 3))
      b = box["box2d"]
      image[int(b["y1"]):int(np.ceil(b["y2"])), int(b["x1"]):int(np.ceil(b["x2"]))] = colour
    frames[i] = image.astype(np.uint8)
  return frames


def _entry(video_id: str, action: int, nouns: list[str]) -> dict:
  template = CLASSES[action][0]
  caption = template
  for noun in nouns:
    caption = caption.replace("[something]", noun, 1).replace("[somewhere]", noun, 1)
  return {"id": video_id, "label": caption[0].lower() + caption[1:], "template": template,
          "placeholders": list(nouns)}


def _labels_file(classes) -> dict:
  """`{class name: id}` with ids in an order that is not the sorted one, like the released label files."""
  names = [se.class_name(CLASSES[c][0]) for c in classes]
  return {name: i for i, name in enumerate(reversed(names))}


def write_dataset(root, per_class: dict[str, int] | None = None, seed: int = 0, video_format: str = "frames",
                  ) -> Path:
  """Writes a synthetic release under `root`; `per_class` gives the clips per class of the compositional
  train and validation sets (the other splits re-use those clips)."""
  per_class = per_class or {"train": 48, "validation": 16}
  if video_format not in ("frames", "webm"):
    raise ValueError(f"video_format must be 'frames' or 'webm', not {video_format!r}")
  root = Path(root)
  rng = np.random.default_rng(seed)
  ids = iter(str(i) for i in rng.choice(np.arange(1, 220_000), size=len(CLASSES) * sum(per_class.values()),
                                         replace=False))
  boxes, rows = {}, {"train": [], "validation": []}
  for action, (_, count) in enumerate(CLASSES):
    for split, n in per_class.items():
      for k in range(n):
        # Compositional: half of the actions meet objects A in training and B in validation, the rest the
        # reverse, so no action-noun pair is shared between the two.
        in_a = (action % 2 == 0) == (split == "train")
        pool = OBJECTS_A if in_a else OBJECTS_B
        nouns = [pool[(k + j) % len(pool)] for j in range(count)]
        video_id, frames, width = next(ids), int(rng.integers(20, 41)), int(rng.choice(WIDTHS))
        annotation = _annotation(video_id, _tracks(action, frames, width, rng), nouns, width, frames, rng)
        boxes[video_id] = annotation
        rows[split].append((_entry(video_id, action, nouns), action))
        _write_frames(root, video_id, _render(annotation, width, rng), video_format)
  _write_boxes(root, boxes)
  _write_splits(root, rows, rng)
  _write_ssv2(root, rows)
  return root


def _write_frames(root: Path, video_id: str, frames: np.ndarray, video_format: str):
  if video_format == "webm":
    (root / se.VIDEO_DIR).mkdir(parents=True, exist_ok=True)
    video_lib.write_video(root / se.VIDEO_DIR / f"{video_id}.webm", frames, se.FPS, crf=30)
    return
  folder = root / se.FRAMES_DIR / video_id
  folder.mkdir(parents=True, exist_ok=True)
  for i, frame in enumerate(frames):
    (folder / f"{i + 1:04d}.jpg").write_bytes(video_lib.encode_jpeg(frame, quality=75))


def _write_boxes(root: Path, boxes: dict):
  """Four parts, each holding a share of the videos, as on the Google Drive."""
  ids = sorted(boxes)
  for part in range(4):
    share = {video_id: boxes[video_id] for video_id in ids[part::4]}
    (root / f"bounding_box_smthsmth_part{part + 1}.json").write_text(json.dumps(share))


def _dump(path: Path, data):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(data))


def _write_splits(root: Path, rows: dict, rng: np.random.Generator):
  splits = root / se.SPLITS_DIR
  every = list(range(len(CLASSES)))
  train = [entry for entry, _ in rows["train"]]
  validation = [entry for entry, _ in rows["validation"]]
  for folder in ("compositional", "compositional_shuffled", "compositional_oneobject"):
    _dump(splits / folder / "labels.json", _labels_file(every))
  _dump(splits / "compositional" / "train.json", train)
  _dump(splits / "compositional" / "validation.json", validation)
  _dump(splits / "compositional" / "objectsA.json", OBJECTS_A)
  _dump(splits / "compositional" / "objectsB.json", OBJECTS_B)
  # Shuffled: the same videos, split at random with the same sizes.
  shuffled = [(train + validation)[i] for i in rng.permutation(len(train) + len(validation))]
  _dump(splits / "compositional_shuffled" / "train.json", shuffled[:len(train)])
  _dump(splits / "compositional_shuffled" / "validation.json", shuffled[len(train):])
  # One object: every entry also names its normalised nouns (the release spells the key `new_placeholdes`).
  one = lambda entries: [dict(e, new_placeholdes=["box"] + [""] * (len(e["placeholders"]) - 1)) for e in entries]
  _dump(splits / "compositional_oneobject" / "train.json", one(train))
  _dump(splits / "compositional_oneobject" / "validation.json", one(validation))
  # Few-shot: base classes train and validate as usual; each novel class gives 5 or 10 clips for training and
  # the rest for validation.
  of = lambda split, actions: [entry for entry, action in rows[split] if action in actions]
  novel = {a: of("train", (a,)) + of("validation", (a,)) for a in NOVEL_CLASSES}
  held_out = [entry for a in NOVEL_CLASSES for entry in novel[a][10:]]
  fewshot = splits / "fewshot"
  _dump(fewshot / "base_labels.json", _labels_file(BASE_CLASSES))
  _dump(fewshot / "finetune_labels.json", _labels_file(NOVEL_CLASSES))
  _dump(fewshot / "base_training_set.json", of("train", BASE_CLASSES))
  _dump(fewshot / "base_validation_set.json", of("validation", BASE_CLASSES))
  _dump(fewshot / "finetune_5shot_training.json", [entry for a in NOVEL_CLASSES for entry in novel[a][:5]])
  _dump(fewshot / "finetune_10shot_train.json", [entry for a in NOVEL_CLASSES for entry in novel[a][:10]])
  _dump(fewshot / "finetune_5shot_validation.json", held_out)
  _dump(fewshot / "finetune_10shot_validation.json", held_out)


def _write_ssv2(root: Path, rows: dict):
  """The SSv2 label file (template -> id as a string) and lists, restricted to the synthetic classes; the
  ids are this generator's, not SSv2's."""
  _dump(root / se.SSV2_LABELS, {se.class_name(t): str(100 + i) for i, (t, _) in enumerate(CLASSES)})
  for split, name in se.SSV2_LISTS.items():
    _dump(root / name, [entry for entry, _ in rows[split]])
