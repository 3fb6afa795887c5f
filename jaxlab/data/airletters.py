"""The AirLetters release: its 38 label strings, class ids, and the layout of its CSVs.

Layout (as released): `videos/<id>.mp4` (12-character names such as `00000030.mp4`) and `train.csv`,
`val.csv`, `test.csv` with columns `id, filename, label, worker_id, video_duration` (milliseconds). The split
is given by which CSV holds a row. No class-id file is released; ids are the sorted label strings.
"""

import csv
from pathlib import Path

from jaxlab.data import video as video_lib
from jaxlab.errors import UserError

LETTERS = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
DIGITS = [str(d) for d in range(10)]
CONTRAST = ["Doing nothing", "Doing Other Things"]
CHARACTERS = LETTERS + DIGITS


def label_of(character: str) -> str:
  kind = "letter" if character.isalpha() else "digit"
  return f"Drawing the {kind} {character} in the air"


LABELS = sorted([label_of(c) for c in CHARACTERS] + CONTRAST)  # class id = position in sorted order
CSV_COLUMNS = ("id", "filename", "label", "worker_id", "video_duration")
SPLIT_FILES = {"train": "train.csv", "validation": "val.csv", "test": "test.csv"}
FPS = 30.0


def short_name(label: str) -> str:
  """`A`, `7`, `nothing`, `other`: compact names for plots."""
  if label.startswith("Drawing the"):
    return label.split()[3]
  return "nothing" if label == "Doing nothing" else "other"


def read_split(root: Path, split: str) -> tuple[list[dict], list[dict]]:
  """The rows of one split's CSV (dicts keyed by column, plus their `line`), and the lines that are no row.

  Every line is read on its own (the release has no quoted line breaks), so an unterminated quote spoils only
  its line instead of swallowing the rest of the file; a line with another number of fields than the header
  is no row either. Unreadable lines come back as `{'line': n, 'reason': ...}`.
  """
  path = Path(root) / SPLIT_FILES[split]
  if not path.is_file():
    raise UserError(f"{path} not found; the AirLetters folder must hold videos/ and "
                    f"{', '.join(SPLIT_FILES.values())}")
  lines = path.read_text(encoding="utf-8", errors="replace").lstrip("\ufeff").splitlines()
  header = _fields(lines[0]) if lines else []
  missing = set(CSV_COLUMNS) - set(header)
  if missing:
    raise UserError(f"{path} lacks columns {sorted(missing)}; expected {', '.join(CSV_COLUMNS)}")
  rows, bad = [], []
  for number, text in enumerate(lines[1:], start=2):
    if not text.strip():
      continue
    try:
      fields = _fields(text)
    except csv.Error as e:
      bad.append({"line": number, "reason": f"unreadable CSV line ({e})"})
      continue
    if len(fields) != len(header):
      bad.append({"line": number, "reason": f"{len(fields)} fields where the header has {len(header)}"})
      continue
    rows.append({**dict(zip(header, fields)), "line": number})
  return rows, bad


def _fields(line: str) -> list[str]:
  return next(csv.reader([line], skipinitialspace=True, strict=True))


def row_problem(row: dict) -> str | None:
  """Why a CSV row cannot be used, or None."""
  if row.get("label") not in LABELS:
    return f"unknown label {row.get('label')!r}"
  for column in ("id", "worker_id", "video_duration"):
    try:
      int(row[column])
    except (TypeError, ValueError):
      return f"{column} {row.get(column)!r} is not an integer"
  if not row.get("filename"):
    return "empty filename"
  return None


def prepare_example(job) -> tuple[dict, dict | None, str | None]:
  """One CSV row's video decoded, resampled to `fps`, resized to `short_side` and JPEG-encoded per frame.

  `job` is `(row, path, fps, short_side, jpeg_quality)`; returns `(row, example, None)` or
  `(row, None, why it failed)`.
  """
  row, path, fps, short_side, quality = job
  try:
    frames, source_fps = video_lib.read_video(path)
  except video_lib.VideoDecodeError as e:
    return row, None, str(e)
  frames = video_lib.resize_short_side(video_lib.resample_fps(frames, source_fps, fps), short_side)
  example = {
      "frames": [video_lib.encode_jpeg(f, quality) for f in frames],
      "num_frames": len(frames),
      "height": frames.shape[1],
      "width": frames.shape[2],
      "label": row["label"],
      "id": int(row["id"]),
      "filename": row["filename"],
      "worker_id": int(row["worker_id"]),
      "duration_ms": int(row["video_duration"]),
  }
  return row, example, None
