"""AirLetters (Dagli et al., 2024): videos of people drawing letters and digits in the air, 38 classes.

Each example holds the clip's frames as JPEG bytes, resampled to the config's frame rate and resized to its
short side, so training decodes only the frames it samples. Build offline from the released folder:

  tfds build datasets/airletters --manual_dir /path/to/airletters --config fps15_short128

Bad videos (missing, undecodable, empty) and malformed CSV rows are counted and listed per split, in the log
and in `bad_examples.json` beside the built dataset; the config field `on_bad_video` ('skip' or 'fail')
decides whether the build goes on without them.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from jaxlab.data import airletters
from jaxlab.data.builder import DatasetBuilder
from jaxlab.data.workers import map_in_processes
from jaxlab.errors import UserError


@dataclasses.dataclass
class AirLettersConfig(tfds.core.BuilderConfig):
  fps: float = 15.0
  short_side: int = 128
  jpeg_quality: int = 90
  on_bad_video: str = "skip"     # 'skip': leave bad videos out (and list them); 'fail': stop at the first
  num_workers: int = 0           # decoding processes; 0 = one per CPU core


class Builder(DatasetBuilder):
  """AirLetters videos, labels and worker ids, as released (train / validation / test)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Frames as JPEG bytes at the config's frame rate and short side."}
  BUILDER_CONFIGS = [
      AirLettersConfig(name="fps15_short128", description="15 fps, short side 128 px", fps=15, short_side=128),
      AirLettersConfig(name="fps30_short256", description="30 fps (as recorded), short side 256 px", fps=30,
                       short_side=256),
      AirLettersConfig(name="fps15_short48", description="15 fps, short side 48 px (quick experiments, demo)",
                       fps=15, short_side=48),
  ]
  DEFAULT_CONFIG_NAME = "fps15_short128"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download AirLetters from https://www.qualcomm.com/developer/software/airletters-dataset (Qualcomm AI Research)
and extract it so that the manual folder looks like:

  <manual_dir>/videos/00000030.mp4 ...     (161,652 clips)
  <manual_dir>/train.csv                   columns: id, filename, label, worker_id, video_duration
  <manual_dir>/val.csv
  <manual_dir>/test.csv

then run `tfds build datasets/airletters --manual_dir <manual_dir>`. For a synthetic folder in the same
layout (no download), run `jaxlab data airletters-synth --out <manual_dir>`.
"""

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "frames": tfds.features.Sequence(tfds.features.Tensor(shape=(), dtype=np.object_),
                                             doc="JPEG-encoded RGB frames"),
            "num_frames": tfds.features.Scalar(np.int32),
            "height": tfds.features.Scalar(np.int32),
            "width": tfds.features.Scalar(np.int32),
            "label": tfds.features.ClassLabel(names=airletters.LABELS),
            "id": tfds.features.Scalar(np.int64),
            "filename": tfds.features.Text(),
            "worker_id": tfds.features.Scalar(np.int64),
            "duration_ms": tfds.features.Scalar(np.int64),
        }),
        supervised_keys=None,
        homepage="https://www.qualcomm.com/developer/software/airletters-dataset",
        citation="""@inproceedings{dagli2024airletters,
  title={AirLetters: An Open Video Dataset of Characters Drawn in the Air},
  author={Dagli, Rishit and Berger, Guillaume and Materzynska, Joanna and Bax, Ingo and Memisevic, Roland},
  booktitle={ECCV Workshops}, year={2024}}""",
        metadata=tfds.core.MetadataDict(fps=self.builder_config.fps, short_side=self.builder_config.short_side),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = Path(dl_manager.manual_dir)
    if self.builder_config.on_bad_video not in ("skip", "fail"):
      raise UserError(f"on_bad_video must be 'skip' or 'fail', not {self.builder_config.on_bad_video!r}")
    if not (root / "videos").is_dir():
      raise UserError(f"{root}/videos not found; the manual folder must hold videos/ and the split CSVs "
                      "(see `MANUAL_DOWNLOAD_INSTRUCTIONS` in datasets/airletters)")
    return {split: self._generate_examples(root, split) for split in airletters.SPLIT_FILES}

  def _generate_examples(self, root: Path, split: str):
    config = self.builder_config
    csv_name = airletters.SPLIT_FILES[split]
    rows, unreadable = airletters.read_split(root, split)
    bad = [{"id": None, "filename": f"{csv_name} line {b['line']}", **b} for b in unreadable]
    jobs, seen = [], {}
    for row in rows:
      problem = airletters.row_problem(row)
      if problem is None and int(row["id"]) in seen:
        problem = f"id {row['id']} repeats line {seen[int(row['id'])]} of {csv_name}"
      if problem:
        bad.append({"id": row.get("id"), "filename": row.get("filename"), "line": row["line"], "reason": problem})
      else:
        seen[int(row["id"])] = row["line"]
        jobs.append((row, root / "videos" / row["filename"], config.fps, config.short_side, config.jpeg_quality))
    self._stop_if_failing(split, bad)
    for row, example, error in map_in_processes(airletters.prepare_example, jobs, config.num_workers, chunksize=4):
      if error is not None:
        bad.append({"id": row["id"], "filename": row["filename"], "line": row["line"], "reason": error})
        self._stop_if_failing(split, bad)
        continue
      yield example["id"], example
    self._report(split, bad, total=len(rows) + len(unreadable))

  def _stop_if_failing(self, split, bad):
    if bad and self.builder_config.on_bad_video == "fail":
      first = bad[0]
      raise UserError(f"{split}: {_name(first)}: {first['reason']}. Fix or remove it, or build with "
                      "on_bad_video='skip' to leave bad videos and rows out.")

  def _report(self, split: str, bad: list, total: int):
    path = Path(self.data_dir) / "bad_examples.json"
    report = json.loads(path.read_text()) if path.exists() else {}
    report[split] = {"rows": total, "bad": len(bad), "examples": bad}
    path.write_text(json.dumps(report, indent=2))
    message = f"AirLetters {split}: {total - len(bad)} of {total} rows written"
    if bad:
      message += f", {len(bad)} left out (listed in {path.name}): " + ", ".join(
          f"{_name(b)} ({b['reason']})" for b in bad[:5]) + (" ..." if len(bad) > 5 else "")
    print(message, flush=True)


def _name(bad: dict) -> str:
  """How a bad row is named in messages: its video id, else its CSV line."""
  return f"video {bad['id']} on line {bad['line']}" if bad.get("id") else bad["filename"]
