"""The AirLetters TFDS builder on a synthetic folder in the release layout, with broken videos and rows."""

import csv
import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxlab.data import airletters, airletters_synth
from jaxlab.data import cli as data_cli
from jaxlab.data import video
from jaxlab.errors import UserError

LABELS = ["Drawing the letter A in the air", "Drawing the digit 7 in the air", "Doing nothing"]


@pytest.fixture(scope="module")
def release(tmp_path_factory):
  root = tmp_path_factory.mktemp("airletters")
  airletters_synth.write_dataset(root, {"train": 3, "validation": 1, "test": 1}, labels=LABELS, workers=1)
  return root


def _rows(root, split):
  rows, unreadable = airletters.read_split(root, split)
  assert not unreadable
  return rows


def test_synthetic_release_follows_the_published_layout(release):
  for split, name in airletters.SPLIT_FILES.items():
    with open(release / name) as f:
      assert next(csv.reader(f)) == list(airletters.CSV_COLUMNS)
  rows = _rows(release, "train")
  assert len(rows) == 9 and {r["label"] for r in rows} == set(LABELS)
  assert all(len(r["filename"]) == 12 and r["filename"] == f"{int(r['id']):08d}.mp4" for r in rows)
  frames, fps = video.read_video(release / "videos" / rows[0]["filename"])
  assert fps == 30 and abs(len(frames) / fps * 1000 - int(rows[0]["video_duration"])) <= 34
  workers = {split: {r["worker_id"] for r in _rows(release, split)} for split in airletters.SPLIT_FILES}
  assert not workers["train"] & workers["test"] and not workers["train"] & workers["validation"]


def test_labels_are_the_38_release_strings_in_sorted_order():
  assert len(airletters.LABELS) == 38 and airletters.LABELS == sorted(airletters.LABELS)
  assert "Doing Other Things" in airletters.LABELS and "Drawing the letter Q in the air" in airletters.LABELS


def _broken_copy(release, tmp_path):
  """A copy whose train split has one undecodable and one missing video, a row with an unknown label, an
  unterminated quote on line 3 (before most rows), a row repeated, and a row with too few fields."""
  import shutil
  root = tmp_path / "manual"
  shutil.copytree(release, root)
  rows = _rows(root, "train")
  (root / "videos" / rows[0]["filename"]).write_bytes(b"\x00garbage" * 50)
  (root / "videos" / rows[1]["filename"]).unlink()
  lines = (root / "train.csv").read_text().splitlines()
  lines.insert(2, '77,"00000077.mp4,Doing nothing,5,1000')
  lines += ["999,00000999.mp4,Drawing the letter Ä in the air,5,1000", lines[4], "1001,00001001.mp4"]
  (root / "train.csv").write_text("\n".join(lines) + "\n")
  return root, rows


def test_build_counts_and_lists_bad_videos_and_rows_then_skips_them(release, tmp_path, capsys):
  root, rows = _broken_copy(release, tmp_path)
  path = data_cli.build("airletters", root, tmp_path / "data", "fps15_short48")
  report = json.loads((path / "bad_examples.json").read_text())
  assert report["train"]["rows"] == 13 and report["train"]["bad"] == 6
  reasons = {b["line"]: b["reason"] for b in report["train"]["examples"]}
  assert set(reasons) == {2, 4, 3, 12, 13, 14}  # line 1 is the header; rows[0] on 2, rows[1] after the quote
  assert "Invalid data" in reasons[2]
  assert "no such file" in reasons[4] and "unknown label" in reasons[12]
  assert reasons[3].startswith("unreadable CSV line (unexpected end of data")
  assert reasons[13] == f"id {rows[2]['id']} repeats line 5 of train.csv"
  assert reasons[14] == "2 fields where the header has 5"
  assert report["validation"]["bad"] == 0
  assert "AirLetters train: 7 of 13 rows written, 6 left out" in capsys.readouterr().out

  source = tfds.data_source("airletters/fps15_short48", data_dir=str(tmp_path / "data"))
  assert len(source["train"]) == 7 and len(source["validation"]) == 3 and len(source["test"]) == 3
  example = source["train"][0]
  assert example["height"] == 48 and example["width"] == 64
  assert len(example["frames"]) == example["num_frames"]
  # 15 fps: half the frames of the 30 fps original (the duration is rounded to ms).
  assert abs(example["num_frames"] - example["duration_ms"] * 15 / 1000) <= 1
  assert video.decode_jpeg(example["frames"][0]).shape == (48, 64, 3)
  by_id = {int(r["id"]): r["label"] for r in _rows(release, "train")}
  for i in range(len(source["train"])):
    ex = source["train"][i]
    assert airletters.LABELS[ex["label"]] == by_id[ex["id"]]


def test_build_with_on_bad_video_fail_stops_with_the_offending_id(release, tmp_path):
  root, rows = _broken_copy(release, tmp_path)
  builder_cls = data_cli.load_builder_class("airletters")
  config_cls = type(builder_cls.BUILDER_CONFIGS[0])
  config = config_cls(name="strict", fps=15, short_side=48, on_bad_video="fail", num_workers=1)
  builder = builder_cls(config=config, data_dir=str(tmp_path / "data"), file_format="array_record")
  with pytest.raises(UserError, match=r"train: train.csv line 3: unreadable CSV line .*on_bad_video='skip'"):
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
