"""Something-Else (Materzynska et al., CVPR 2020): the release layout, its box tracks, and STIN's inputs.

The manual folder holds what users download, as published:

  20bn-something-something-v2/<id>.webm         the SSv2 videos (or frames/<id>/0001.jpg ... extracted at 12 fps)
  something-something-v2-labels.json            SSv2 template -> class id (a string), for the `ssv2_label` field
  something-something-v2-{train,validation}.json  SSv2 lists, for the `ssv2_split` field (optional)
  bounding_box_smthsmth_part{1..4}.json         ground-truth boxes, merged by video id (or one annotations.json)
  detected_compositional_part{1..3}.json        detected boxes of the compositional split (optional; or one
                                                merged detected_annotations.json)
  dataset_splits/                               the Something-Else repository's folder, as it is

A box file maps a video id to its frames at 12 fps; frame i (`name` "<id>/<i+1 as %04d>.jpg") lists boxes with
`box2d` {x1, y1, x2, y2} in pixels, a `category` noun and a `standard_category` ("0000", "0001", ..., "hand")
that names the object instance across frames. A split file lists {id, label, template, placeholders}; the class
is the template without brackets, and class ids are positions in the sorted class names of the split family's
label file (its integer values are ignored, as the original loader does).
"""

from collections.abc import Sequence
import dataclasses
from pathlib import Path

import numpy as np

from jaxlab.data import video as video_lib
from jaxlab.errors import UserError, read_json

FPS = 12.0
VIDEO_DIR = "20bn-something-something-v2"
FRAMES_DIR = "frames"
SPLITS_DIR = "dataset_splits"
SSV2_LABELS = "something-something-v2-labels.json"
SSV2_LISTS = {"train": "something-something-v2-train.json", "validation": "something-something-v2-validation.json"}
BOX_FILES = {  # box source -> (the released parts, merged by video id; or one merged file)
    "ground_truth": ([f"bounding_box_smthsmth_part{i}.json" for i in range(1, 5)], "annotations.json"),
    "detected": ([f"detected_compositional_part{i}.json" for i in range(1, 4)], "detected_annotations.json"),
}


@dataclasses.dataclass(frozen=True)
class SplitFamily:
  folder: str
  splits: dict  # split name -> (split file, label file)


FAMILIES = {
    "compositional": SplitFamily("compositional", {"train": ("train.json", "labels.json"),
                                                   "validation": ("validation.json", "labels.json")}),
    "shuffled": SplitFamily("compositional_shuffled", {"train": ("train.json", "labels.json"),
                                                       "validation": ("validation.json", "labels.json")}),
    "oneobject": SplitFamily("compositional_oneobject", {"train": ("train.json", "labels.json"),
                                                         "validation": ("validation.json", "labels.json")}),
    "fewshot": SplitFamily("fewshot", {
        "base_train": ("base_training_set.json", "base_labels.json"),
        "base_validation": ("base_validation_set.json", "base_labels.json"),
        "novel_5shot_train": ("finetune_5shot_training.json", "finetune_labels.json"),
        "novel_10shot_train": ("finetune_10shot_train.json", "finetune_labels.json"),
        "novel_5shot_validation": ("finetune_5shot_validation.json", "finetune_labels.json"),
        "novel_10shot_validation": ("finetune_10shot_validation.json", "finetune_labels.json"),
    }),
}


def class_name(template: str) -> str:
  """`Putting [something] onto [something]` -> `Putting something onto something`."""
  return template.replace("[", "").replace("]", "")


def read_classes(path: Path) -> list[str]:
  """The sorted class names of a label file (`{class name: id}`); the sorted position is the class id."""
  labels = read_json(path, "a Something-Else label file")
  if not isinstance(labels, dict) or not labels:
    raise UserError(f"{path} should map class names to ids")
  return sorted(labels)


def split_paths(root: Path, family: str) -> dict[str, tuple[Path, Path]]:
  """Split name -> (split file, label file) under `<root>/dataset_splits/`; every file must exist."""
  spec = FAMILIES[family]
  folder = Path(root) / SPLITS_DIR / spec.folder
  paths = {split: (folder / entries, folder / labels) for split, (entries, labels) in spec.splits.items()}
  missing = sorted({str(p) for pair in paths.values() for p in pair if not p.is_file()})
  if missing:
    raise UserError(f"the {family} split needs {', '.join(missing)}; copy the Something-Else repository's "
                    f"{SPLITS_DIR}/ folder into the manual folder as it is")
  return paths


def read_split(path: Path) -> list:
  entries = read_json(path, "a Something-Else split file")
  if not isinstance(entries, list):
    raise UserError(f"{path} should hold a list of {{id, label, template, placeholders}} entries")
  return entries


def entry_problem(entry, classes: Sequence[str]) -> str | None:
  """Why a split entry cannot be labelled, or None."""
  if not isinstance(entry, dict) or not isinstance(entry.get("id"), (str, int)) or \
      not isinstance(entry.get("template"), str):
    return "malformed entry (needs id and template)"
  if class_name(entry["template"]) not in classes:
    return f"template {entry['template']!r} is not in the split's label file"
  return None


def read_ssv2(root: Path) -> tuple[dict[str, int], dict[str, str]]:
  """SSv2 class name -> SSv2 class id, and video id -> SSv2 split, from whichever SSv2 files are present."""
  root = Path(root)
  labels = {}
  if (root / SSV2_LABELS).is_file():
    labels = {name: int(index) for name, index in read_json(root / SSV2_LABELS, "SSv2 labels").items()}
  splits = {}
  for split, name in SSV2_LISTS.items():
    if (root / name).is_file():
      splits.update({str(e["id"]): split for e in read_json(root / name, "an SSv2 list") if "id" in e})
  return labels, splits


def read_boxes(root: Path, source: str = "ground_truth") -> tuple[dict, list[str]]:
  """The box annotations (video id -> frames), merged over the parts, and the ids found in more than one part
  (the first part's frames are kept)."""
  part_names, merged = BOX_FILES[source]
  root = Path(root)
  missing = [name for name in part_names if not (root / name).is_file()]
  if missing and len(missing) < len(part_names):
    raise UserError(f"{root} lacks {', '.join(missing)} of the {len(part_names)} box annotation parts; download "
                    f"the missing part (or merge the parts you mean to use into one {merged})")
  files = [root / name for name in part_names] if not missing else \
      [root / merged] if (root / merged).is_file() else []
  if not files:
    raise UserError(f"no box annotations in {root}: expected {part_names[0]} ... {part_names[-1]} (the Google "
                    f"Drive parts) or one merged {merged}")
  boxes, duplicates = {}, []
  for path in files:
    part = read_json(path, "box annotations")
    if not isinstance(part, dict):
      raise UserError(f"{path} should map video ids to lists of frames")
    for video_id, frames in part.items():
      if video_id in boxes:
        duplicates.append(video_id)
      else:
        boxes[video_id] = frames
  return boxes, duplicates


def frame_source(root: Path, video_id: str) -> tuple[str, Path] | None:
  """`('frames', folder)` for extracted 12 fps frames, else `('webm', file)`, else None."""
  folder = Path(root) / FRAMES_DIR / video_id
  if folder.is_dir():
    return "frames", folder
  video = Path(root) / VIDEO_DIR / f"{video_id}.webm"
  if video.is_file():
    return "webm", video
  return None


def frame_files(folder: Path) -> list[Path]:
  return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))


# ------------------------------------------------------------------------------------------ box tracks

@dataclasses.dataclass
class BoxTrack:
  """One video's boxes on fixed slots: slot j is the j-th object id in sorted order ("hand" sorts last)."""
  objects: list[str]          # standard_category of each slot
  boxes: np.ndarray           # [T, max_objects, 4] float32 (x1, y1, x2, y2) pixels; zeros where absent
  present: np.ndarray         # [T, max_objects] bool
  hand: np.ndarray            # [T, max_objects] bool
  categories: np.ndarray      # [T, max_objects] object (the category noun; '' where absent)
  duplicates: int = 0         # boxes that repeated an object id within a frame (the last one is kept)

  def truncated(self, num_frames: int) -> "BoxTrack":
    return dataclasses.replace(self, boxes=self.boxes[:num_frames], present=self.present[:num_frames],
                               hand=self.hand[:num_frames], categories=self.categories[:num_frames])

  def padded(self, num_frames: int) -> "BoxTrack":
    extra = num_frames - len(self.boxes)
    pad = lambda a, value: np.concatenate([a, np.full((extra,) + a.shape[1:], value, a.dtype)])
    return dataclasses.replace(self, boxes=pad(self.boxes, 0), present=pad(self.present, False),
                               hand=pad(self.hand, False), categories=pad(self.categories, ""))


def box_track(video_id: str, frames, max_objects: int) -> tuple[BoxTrack | None, str | None]:
  """The video's box track, or (None, why it cannot be used)."""
  if not isinstance(frames, list) or not frames:
    return None, "no box annotation"
  try:
    objects = sorted({box["standard_category"] for frame in frames for box in frame["labels"]})
  except (TypeError, KeyError):
    return None, "malformed box annotation (frames need labels with standard_category)"
  if not objects:
    return None, "no boxes in any frame"
  if len(objects) > max_objects:
    return None, f"{len(objects)} objects, more than the {max_objects} slots"
  slot = {name: i for i, name in enumerate(objects)}
  t = len(frames)
  track = BoxTrack(objects, np.zeros((t, max_objects, 4), np.float32), np.zeros((t, max_objects), bool),
                   np.zeros((t, max_objects), bool), np.full((t, max_objects), "", object))
  for i, frame in enumerate(frames):
    name = str(frame.get("name", ""))
    if not name.endswith(f"{i + 1:04d}.jpg"):
      return None, f"frame {i + 1} is named {name!r}; frames must be listed in order"
    for box in frame["labels"]:
      j = slot[box["standard_category"]]
      try:
        coords = [float(box["box2d"][k]) for k in ("x1", "y1", "x2", "y2")]
      except (TypeError, KeyError, ValueError):
        return None, f"frame {i + 1}: malformed box2d {box.get('box2d')!r}"
      track.duplicates += int(track.present[i, j])
      track.boxes[i, j] = coords
      track.present[i, j] = True
      track.hand[i, j] = box["standard_category"] == "hand"
      track.categories[i, j] = str(box.get("category", ""))
  return track, None


# ---------------------------------------------------------------------------------- STIN's model inputs

CANVAS = (256, 340)            # (height, width) every frame is resized to before cropping, as in the original
CROP_SCALES = (1.0, 0.875, 0.75)


def crop_window(rng: np.random.Generator | None, size: int = 224) -> tuple[int, int, int, int]:
  """`(x, y, width, height)` of the crop on the 340x256 canvas.

  Training (`rng` given): TSN's multi-scale crop: side lengths from 256 x {1, .875, .75} (snapped to `size`
  within 3 px), width and height at most one scale apart, placed at one of 13 fixed positions. Evaluation:
  the central 256x256 square (the original sometimes took the upper-left corner instead; fixed here).
  """
  canvas_h, canvas_w = CANVAS
  base = min(CANVAS)
  if rng is None:
    return (canvas_w - base) // 4 * 2, (canvas_h - base) // 4 * 2, base, base
  sides = [size if abs(int(base * s) - size) < 3 else int(base * s) for s in CROP_SCALES]
  pairs = [(w, h) for i, h in enumerate(sides) for j, w in enumerate(sides) if abs(i - j) <= 1]
  w, h = pairs[rng.integers(len(pairs))]
  sx, sy = (canvas_w - w) // 4, (canvas_h - h) // 4
  grid = [(0, 0), (2, 2), (4, 0), (0, 4), (4, 4), (0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3)]
  gx, gy = grid[rng.integers(len(grid))]
  return gx * sx, gy * sy, w, h


def crop_boxes(boxes: np.ndarray, frame_size: tuple[int, int], window, size: int = 224) -> np.ndarray:
  """Pixel boxes `[..., 4]` (x1, y1, x2, y2) of a `frame_size` = (height, width) frame -> `(cx, cy, w, h)` in
  [0, 1] of the `size`² crop `window` of the canvas, clipped to the crop (the original's box transform)."""
  x, y, cw, ch = window
  scale = np.array([CANVAS[1] / frame_size[1], CANVAS[0] / frame_size[0]] * 2, np.float32)
  b = boxes * scale - np.array([x, y, x, y], np.float32)
  b = np.clip(b, 0, np.array([cw - 1, ch - 1, cw - 1, ch - 1], np.float32))
  b = np.clip(b * np.array([size / cw, size / ch] * 2, np.float32), 0, size - 1)
  return np.stack([(b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2, b[..., 2] - b[..., 0],
                   b[..., 3] - b[..., 1]], axis=-1) / size


def slot_inputs(example, index: np.ndarray, num_boxes: int, window, size: int = 224):
  """STIN's `(boxes [T, num_boxes, 4], categories [T, num_boxes])` for the frames `index` of an example.

  Slots are the objects seen in those frames, in sorted id order (hand last); beyond `num_boxes` they are
  dropped, as in the original. Categories: 1 hand, 2 object, 0 no box.
  """
  present = np.asarray(example["present"])[index]
  seen = np.flatnonzero(present.any(axis=0))[:num_boxes]
  frame_size = (int(example["height"]), int(example["width"]))
  boxes = np.zeros((len(index), num_boxes, 4), np.float32)
  categories = np.zeros((len(index), num_boxes), np.int32)
  chosen = present[:, seen]
  boxes[:, :len(seen)] = np.where(chosen[..., None],
                                  crop_boxes(np.asarray(example["boxes"])[index][:, seen], frame_size, window, size),
                                  0)
  categories[:, :len(seen)] = np.where(chosen, np.where(np.asarray(example["hand"])[index][:, seen], 1, 2), 0)
  return boxes, categories


def strided_window(num_frames: int, count: int, stride: int, rng: np.random.Generator | None) -> np.ndarray:
  """`count` frame indices `stride` apart from a window of the clip (random offset when training, centred
  otherwise); clips shorter than the window are spanned evenly instead. The I3D branch's frames."""
  span = count * stride
  if num_frames > span:
    offset = rng.integers(0, num_frames - span + 1) if rng is not None else (num_frames - span) // 2
    return offset + stride * np.arange(count)
  return np.round(np.linspace(0, num_frames - 1, count)).astype(int)


def prepare_example(job):
  """Reads one video's frames (or only its size) and joins them with its box track.

  Returns (video id, example or None, problem or None, notes on adjustments).
  """
  example, track, source, pixels, quality = job
  kind, path = source
  video_id, notes = example["id"], []
  try:
    if kind == "frames":
      files = frame_files(path)
      if not files:
        return video_id, None, f"{path} holds no frames", notes
      size = video_lib.read_frame_size(files[0])
      frames = [f.read_bytes() for f in files] if pixels else None
    elif pixels:
      decoded, fps = video_lib.read_video(path)
      decoded = video_lib.resample_fps(decoded, fps, FPS)
      size = decoded.shape[1:3]
      frames = [video_lib.encode_jpeg(f, quality) for f in decoded]
    else:
      size, frames = video_lib.read_frame_size(path), None
  except (video_lib.VideoDecodeError, OSError) as e:
    return video_id, None, f"unreadable video {path.name}: {e}", notes
  if frames is not None:
    annotated, count = len(track.boxes), len(frames)
    if annotated > count:
      notes.append(f"boxes for {annotated - count} frames beyond the video's {count} dropped")
      track = track.truncated(count)
    elif annotated < count:
      notes.append(f"{count - annotated} frames without boxes")
      track = track.padded(count)
    example["frames"] = frames
  if track.duplicates:
    notes.append(f"{track.duplicates} boxes repeated an object id within a frame (the last kept)")
  example.update(
      height=int(size[0]), width=int(size[1]), num_frames=len(track.boxes), objects=track.objects,
      boxes=track.boxes, present=track.present, hand=track.hand, categories=track.categories)
  return video_id, example, None, notes
