"""The Something-Else TFDS builder on the real sample (13 annotated videos, the released split files) and on
generated releases in the same schemas (.webm videos, broken rows)."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow_datasets")
import tensorflow_datasets as tfds  # noqa: E402

from jaxlab.data import cli as data_cli  # noqa: E402
from jaxlab.data import something_else as se  # noqa: E402
from jaxlab.data import something_else_synth as synth  # noqa: E402
from jaxlab.data import video as video_lib  # noqa: E402
from jaxlab.errors import UserError  # noqa: E402

REAL_IDS = ["13201", "151201", "2", "2003", "22983", "3201", "4", "44862", "57082", "6981", "77005", "80962", "862"]


def build(manual_dir, data_dir, name, **fields):
  builder_cls = data_cli.load_builder_class("something_else")
  config = next(c for c in builder_cls.BUILDER_CONFIGS if c.name == name)
  # A custom config (TFDS refuses one named like a registered config with other fields).
  config = dataclasses.replace(config, name=f"{name}_test", num_workers=1, **fields)
  builder = builder_cls(config=config, data_dir=str(data_dir), file_format="array_record")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder


def report(builder) -> dict:
  return json.loads((Path(builder.data_dir) / "bad_examples.json").read_text())


def examples(builder, split) -> dict:
  source = builder.as_data_source(split=split)
  return {ex["id"].decode(): ex for ex in (source[i] for i in range(len(source)))}


def real_release(shared_data: Path, tmp_path: Path, family: str, generated: dict) -> Path:
  """A manual folder over the real sample: its boxes, its frames as `frames/<id>/`, the real split files of
  `family`, and `generated` ones (file name -> entries) for those the sample does not ship."""
  sample = shared_data / "something_else"
  root = tmp_path / "release"
  folder = root / se.SPLITS_DIR / se.FAMILIES[family].folder
  folder.mkdir(parents=True)
  (root / "annotations.json").symlink_to(sample / "annotations.json")
  (root / se.FRAMES_DIR).symlink_to(sample / "annotated_videos")
  for path in (sample / se.SPLITS_DIR / se.FAMILIES[family].folder).iterdir():
    (folder / path.name).symlink_to(path)
  for name, entries in generated.items():
    (folder / name).write_text(json.dumps(entries))
  return root


def test_real_fewshot_boxes(shared_data, tmp_path):
  fewshot = shared_data / "something_else" / se.SPLITS_DIR / "fewshot"
  base = se.read_classes(fewshot / "base_labels.json")
  novel = se.read_classes(fewshot / "finetune_labels.json")
  root = real_release(shared_data, tmp_path, "fewshot", {
      "base_training_set.json": [{"id": "4", "label": "putting pillow on a surface", "placeholders": ["pillow"],
                                  "template": "Putting [something] on a surface"}],
      "finetune_5shot_validation.json": [], "finetune_10shot_validation.json": []})
  builder = build(root, tmp_path / "tfds", "fewshot_boxes")

  # Of the released sets only these sample videos have boxes: 80962 and 2 (base validation), 13201 (10-shot).
  assert set(builder.info.splits) == {"base_train", "base_validation", "novel_10shot_train"}
  assert builder.info.metadata["classes"]["base_validation"] == base and len(base) == 88
  assert builder.info.metadata["classes"]["novel_10shot_train"] == novel and len(novel) == 86
  # Two label sets (base and novel): the label stays an index into each split's classes, not one ClassLabel.
  assert not isinstance(builder.info.features["label"], tfds.features.ClassLabel)
  by_value = json.loads((fewshot / "base_labels.json").read_text())
  assert sorted(by_value, key=by_value.get) != base  # the file's own ids are not the sorted order
  found = report(builder)
  assert (found["base_validation"]["rows"], found["base_validation"]["bad"]) == (12467, 12465)
  assert {b["kind"] for b in found["base_validation"]["examples"]} == {"boxes"}
  assert (found["novel_5shot_train"]["rows"], found["novel_5shot_train"]["bad"]) == (430, 430)
  assert found["novel_10shot_train"]["bad"] == 859

  validation = examples(builder, "base_validation")
  assert set(validation) == {"80962", "2"}
  # Class ids are positions in the sorted class names, not the label file's values.
  assert validation["80962"]["label"] == base.index("Poking something so it slightly moves")
  assert validation["2"]["label"] == base.index("Pretending to pick something up")
  assert examples(builder, "novel_10shot_train")["13201"]["label"] == novel.index(
      "Pretending to sprinkle air onto something")

  # The box track of video 2, frame by frame, as annotated.
  annotation = json.loads((shared_data / "something_else" / "annotations.json").read_text())["2"]
  ex = validation["2"]
  objects = [o.decode() for o in ex["objects"]]
  first = shared_data / "something_else" / "annotated_videos" / "2" / "0001.jpg"
  assert objects == ["0000", "hand"] and (ex["height"], ex["width"]) == video_lib.read_frame_size(first) == (240, 427)
  assert ex["boxes"].shape == (len(annotation), 8, 4) and ex["num_frames"] == len(annotation)
  for i, frame in enumerate(annotation):
    assert ex["present"][i].sum() == len(frame["labels"])
    for box in frame["labels"]:
      slot = objects.index(box["standard_category"])
      np.testing.assert_allclose(ex["boxes"][i, slot], [box["box2d"][k] for k in ("x1", "y1", "x2", "y2")],
                                 rtol=1e-6)
      assert ex["hand"][i, slot] == (box["standard_category"] == "hand")
      assert ex["categories"][i, slot].decode() == box["category"]
  assert not ex["present"][:, len(objects):].any()


def test_real_frames_with_pixels(shared_data, tmp_path):
  """The one-object split (real train.json) with frames: the JPEGs are kept as they are, aligned with the
  boxes; the other sample videos are labelled by a generated validation file."""
  labels = json.loads((shared_data / "something_else" / se.SPLITS_DIR / "compositional_oneobject" /
                       "labels.json").read_text())
  template = "Pushing [something] so that it slightly moves"
  assert se.class_name(template) in labels
  others = [i for i in REAL_IDS if i != "57082"]
  root = real_release(shared_data, tmp_path, "oneobject", {
      "validation.json": [{"id": i, "label": "x", "placeholders": ["box"], "template": template} for i in others]})
  (root / se.SSV2_LABELS).write_text(json.dumps({se.class_name(template): "68"}))
  builder = build(root, tmp_path / "tfds", "oneobject")

  train = examples(builder, "train")
  assert list(train) == ["57082"] and report(builder)["train"]["bad"] == 6559
  frames_dir = shared_data / "something_else" / "annotated_videos"
  ex = train["57082"]
  files = sorted((frames_dir / "57082").glob("*.jpg"))
  assert len(ex["frames"]) == ex["num_frames"] == len(files) == 38
  assert ex["frames"][5] == files[5].read_bytes()
  assert ex["ssv2_label"] == -1  # its template is not in the (generated) SSv2 label file

  validation = examples(builder, "validation")
  assert set(validation) == set(others)
  assert all(v["ssv2_label"] == 68 and v["template"].decode() == se.class_name(template)
             for v in validation.values())
  assert report(builder)["validation"]["adjusted"] == 0
  assert max(len(v["objects"]) for v in validation.values()) == 4  # video 4: three objects and a hand


@pytest.fixture(scope="module")
def webm_release(tmp_path_factory):
  """A small generated release with .webm videos and a few broken rows."""
  root = synth.write_dataset(tmp_path_factory.mktemp("webm") / "release", {"train": 2, "validation": 1},
                             seed=3, video_format="webm")
  splits = root / se.SPLITS_DIR / "compositional"
  train = json.loads((splits / "train.json").read_text())
  parts = {p: json.loads(p.read_text()) for p in root.glob("bounding_box_smthsmth_part*.json")}
  boxes = {k: v for part in parts.values() for k, v in part.items()}
  no_boxes, longer, crowded, missing, corrupt = (train[i]["id"] for i in range(5))
  frames = len(boxes[longer])
  for part in parts.values():
    part.pop(no_boxes, None)
    if longer in part:
      part[longer] += [dict(part[longer][-1], name=f"{longer}/{len(part[longer]) + k + 1:04d}.jpg")
                       for k in range(3)]
    if crowded in part:
      part[crowded][0]["labels"] += [dict(part[crowded][0]["labels"][0], standard_category=f"01{k:02d}")
                                     for k in range(8)]
  for path, part in parts.items():
    path.write_text(json.dumps(part))
  (root / se.VIDEO_DIR / f"{missing}.webm").unlink()
  (root / se.VIDEO_DIR / f"{corrupt}.webm").write_bytes(b"not a video")
  train.append({"id": "999999", "label": "x", "template": "Juggling [something]", "placeholders": ["ball"]})
  (splits / "train.json").write_text(json.dumps(train))
  return root, {"no_boxes": no_boxes, "longer": longer, "crowded": crowded, "missing": missing,
                "corrupt": corrupt, "frames": frames}


def test_webm_videos_and_broken_rows(webm_release, tmp_path):
  root, ids = webm_release
  builder = build(root, tmp_path / "tfds", "compositional")
  train_report = report(builder)["train"]
  reasons = {b["id"]: b["reason"] for b in train_report["examples"]}
  assert train_report["rows"] == 13 and train_report["bad"] == 5
  assert reasons[ids["no_boxes"]] == "no box annotation"
  assert reasons[ids["crowded"]] == "10 objects, more than the 8 slots"
  assert reasons[ids["missing"]].startswith("no video")
  assert reasons[ids["corrupt"]].startswith("unreadable video")
  assert "not in the split's label file" in reasons["999999"]
  assert {b["id"]: b.get("entry") for b in train_report["examples"]}["999999"] == "train.json entry 13"
  assert train_report["adjusted_examples"] == [
      {"id": ids["longer"], "notes": [f"boxes for 3 frames beyond the video's {ids['frames']} dropped"]}]

  train = examples(builder, "train")
  assert len(train) == 8
  ex = train[ids["longer"]]
  assert ex["num_frames"] == len(ex["frames"]) == len(ex["boxes"]) == ids["frames"]
  frame = video_lib.decode_jpeg(ex["frames"][0])
  assert frame.shape == (synth.HEIGHT, ex["width"], 3) and ex["height"] == synth.HEIGHT
  classes = builder.info.metadata["classes"]["train"]
  assert classes == sorted(se.class_name(t) for t, _ in synth.CLASSES)
  assert all(classes[e["label"]] == e["template"].decode() for e in train.values())
  assert all(e["ssv2_split"] == b"train" and e["ssv2_label"] >= 100 for e in train.values())

  assert builder.info.features["label"].names == classes  # one label set: a ClassLabel, today's indices
  assert all(builder.info.features["label"].int2str(e["label"]) == e["template"].decode() for e in train.values())

  with pytest.raises(UserError, match="no box annotation"):
    build(root, tmp_path / "tfds_fail", "compositional_boxes", on_bad_example="fail")


@pytest.mark.parametrize("source, present, missing", [
    ("ground_truth", (1, 2, 4), "bounding_box_smthsmth_part3.json"),
    ("detected", (1, 3), "detected_compositional_part2.json"),
])
def test_a_missing_box_part_is_named(tmp_path, source, present, missing):
  for i in present:
    (tmp_path / se.BOX_FILES[source][0][i - 1]).write_text("{}")
  with pytest.raises(UserError, match=rf"lacks {missing} of the {len(se.BOX_FILES[source][0])} box annotation"):
    se.read_boxes(tmp_path, source)


def test_crop_and_slots_by_hand():
  # A full 320x240 frame box, evaluation crop (the canvas' central 256² square, x from 42): the box covers
  # the crop, clipped to 255 px, scaled to 224 and clipped to 223.
  full = np.array([[0, 0, 320, 240]], np.float32)
  assert se.crop_window(None) == (42, 0, 256, 256)
  np.testing.assert_allclose(se.crop_boxes(full, (240, 320), (42, 0, 256, 256)),
                             [[111.5 / 224, 111.5 / 224, 223 / 224, 223 / 224]], rtol=1e-6)
  # A 64x48 box at (100, 60) in a 240x320 frame: canvas (106.25, 64, 68, 51.2), minus the window offset.
  box = np.array([[100, 60, 164, 108]], np.float32)
  x0, y0, x1, y1 = 100 * 340 / 320 - 42, 64.0, 164 * 340 / 320 - 42, 108 * 256 / 240
  s = 224 / 256
  np.testing.assert_allclose(se.crop_boxes(box, (240, 320), (42, 0, 256, 256)),
                             [[(x0 + x1) / 2 * s / 224, (y0 + y1) / 2 * s / 224, (x1 - x0) * s / 224,
                               (y1 - y0) * s / 224]], rtol=1e-5)
  rng = np.random.default_rng(0)
  for _ in range(50):
    x, y, w, h = se.crop_window(rng)
    assert {w, h} <= {256, 224, 192} and abs([256, 224, 192].index(w) - [256, 224, 192].index(h)) <= 1
    assert 0 <= x <= 340 - w and 0 <= y <= 256 - h

  # Slots: the objects seen in the sampled frames, in stored (sorted) order; beyond num_boxes dropped.
  present = np.zeros((4, 8), bool)
  present[:, 1] = True           # object 0001 in every frame
  present[2, 0] = True           # object 0000 only in frame 2
  present[:, 3] = True           # the hand
  hand = np.zeros((4, 8), bool)
  hand[:, 3] = True
  boxes = np.tile(np.array([0, 0, 320, 240], np.float32), (4, 8, 1))
  example = {"present": present, "hand": hand, "boxes": boxes, "height": 240, "width": 320}
  b, c = se.slot_inputs(example, np.array([0, 1]), 4, (42, 0, 256, 256))
  np.testing.assert_array_equal(c, [[2, 1, 0, 0], [2, 1, 0, 0]])   # 0001 then hand; 0000 unseen
  assert (b[:, 2:] == 0).all() and (b[:, :2] > 0).all()
  b, c = se.slot_inputs(example, np.array([1, 2]), 2, (42, 0, 256, 256))
  np.testing.assert_array_equal(c, [[0, 2], [2, 2]])                # 0000, 0001; the hand dropped
  np.testing.assert_array_equal(se.strided_window(40, 4, 2, None), [16, 18, 20, 22])
  np.testing.assert_array_equal(se.strided_window(5, 4, 2, None), [0, 1, 3, 4])
