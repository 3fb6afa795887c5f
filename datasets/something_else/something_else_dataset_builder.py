"""Something-Else (Materzynska et al., CVPR 2020): Something-Something V2 videos with per-frame boxes of every
object and hand, on the compositional, shuffled, one-object and few-shot splits.

Each example holds the video's box track on fixed slots (one per object id, sorted, "hand" last): boxes in
pixels of the original frames, presence, hand flags and category nouns per frame; the label (the position of
its class in the sorted class names of the split's label file, as the released models expect), the SSv2 class
id, and, except in the `*_boxes` configs, the frames as JPEG bytes at 12 fps, aligned with the boxes. Build
offline from the downloaded folder:

  tfds build datasets/something_else --manual_dir /path/to/smth --config compositional_boxes

Rows that cannot be used (an unknown template, a video without boxes, more objects than slots, a missing or
undecodable video) are counted and listed per split, in the log and in `bad_examples.json` beside the built
dataset; the config field `on_bad_example` ('skip' or 'fail') decides whether the build goes on without them.
Rows that are kept but adjusted (boxes for frames the video does not have, frames without boxes, a box id
repeated within a frame) are listed there too.
"""

from collections import Counter
import dataclasses
import json
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from jaxlab.data import something_else as se
from jaxlab.data.builder import DatasetBuilder
from jaxlab.data.workers import map_in_processes
from jaxlab.errors import UserError


@dataclasses.dataclass
class SomethingElseConfig(tfds.core.BuilderConfig):
  family: str = "compositional"   # compositional | shuffled | oneobject | fewshot
  pixels: bool = True             # False: boxes only (coordinate models); frames are read only for their size
  box_source: str = "ground_truth"  # or 'detected' (the compositional split's detected boxes)
  max_objects: int = 8            # box slots stored per frame; videos with more object ids are bad examples
  jpeg_quality: int = 90          # when frames are decoded from .webm and re-encoded
  on_bad_example: str = "skip"    # 'skip': leave bad rows out (and list them); 'fail': stop at the first
  num_workers: int = 0            # processes reading videos; 0 = one per CPU core


def _configs():
  configs = []
  for family, about in [("compositional", "compositional split (train/validation verb-noun pairs disjoint)"),
                        ("shuffled", "compositional videos re-split at random"),
                        ("oneobject", "one-object compositional split"),
                        ("fewshot", "few-shot split: 88 base classes, 5/10-shot sets of 86 novel classes")]:
    configs.append(SomethingElseConfig(name=family, description=f"{about}; frames and boxes", family=family))
    configs.append(SomethingElseConfig(name=f"{family}_boxes", description=f"{about}; boxes only",
                                       family=family, pixels=False))
  about = "compositional split with the detected (not ground-truth) boxes"
  configs.append(SomethingElseConfig(name="compositional_detected", description=f"{about}; frames and boxes",
                                     box_source="detected"))
  configs.append(SomethingElseConfig(name="compositional_detected_boxes", description=f"{about}; boxes only",
                                     box_source="detected", pixels=False))
  return configs


def _one_label_file(family: str) -> bool:
  """Whether every split of the family shares one label file (one label set: a `ClassLabel`)."""
  return len({labels for _, labels in se.FAMILIES[family].splits.values()}) == 1


class Builder(DatasetBuilder):
  """Something-Else box tracks (and SSv2 frames) on the repository's splits."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Box tracks on fixed slots; frames as JPEG bytes at 12 fps."}
  BUILDER_CONFIGS = _configs()
  DEFAULT_CONFIG_NAME = "compositional_boxes"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download Something-Something V2 (https://developer.qualcomm.com/software/ai-datasets/something-something),
the Something-Else box annotations (https://drive.google.com/open?id=1XqZC2jIHqrLPugPOVJxCH_YWa275PBrZ, four
parts) and the Something-Else repository (https://github.com/joaanna/something_else, for code/dataset_splits),
and arrange them so that the manual folder looks like:

  <manual_dir>/20bn-something-something-v2/<id>.webm    (or frames/<id>/0001.jpg ..., extracted at 12 fps)
  <manual_dir>/something-something-v2-labels.json
  <manual_dir>/something-something-v2-train.json        (optional: the ssv2_split field)
  <manual_dir>/something-something-v2-validation.json   (optional)
  <manual_dir>/bounding_box_smthsmth_part1.json ... part4.json   (or one merged annotations.json)
  <manual_dir>/detected_compositional_part1.json ...    (only for the compositional_detected configs)
  <manual_dir>/dataset_splits/compositional/ compositional_shuffled/ compositional_oneobject/ fewshot/

then run `tfds build datasets/something_else --manual_dir <manual_dir> --config compositional_boxes`. For a
synthetic folder in the same layout (no download), run `jaxlab data something-else-synth --out <manual_dir>`.
"""

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    slots = c.max_objects
    features = {
        "id": tfds.features.Text(doc="SSv2 video id"),
        "label": tfds.features.ClassLabel(doc="the class, by its position in the sorted class names of the "
                                          "label file (names set from it when building)")
                 if _one_label_file(c.family) else
                 tfds.features.Scalar(np.int32, doc="position of the class in the sorted class names of the "
                                      "split's label file (metadata['classes'][split]): the few-shot splits "
                                      "have two label sets"),
        "template": tfds.features.Text(doc="the class: the SSv2 template without brackets"),
        "caption": tfds.features.Text(doc="the filled-in caption (the split entry's `label`)"),
        "placeholders": tfds.features.Sequence(tfds.features.Text()),
        "ssv2_label": tfds.features.Scalar(np.int32, doc="SSv2 class id; -1 without the SSv2 labels file"),
        "ssv2_split": tfds.features.Text(doc="'train' or 'validation' in SSv2; '' when unknown"),
        "height": tfds.features.Scalar(np.int32, doc="frame height: the boxes' pixel space"),
        "width": tfds.features.Scalar(np.int32),
        "num_frames": tfds.features.Scalar(np.int32),
        "objects": tfds.features.Sequence(tfds.features.Text(), doc="standard_category of each slot, sorted"),
        "boxes": tfds.features.Tensor(shape=(None, slots, 4), dtype=np.float32,
                                      doc="x1, y1, x2, y2 in pixels per frame and slot; zeros where absent"),
        "present": tfds.features.Tensor(shape=(None, slots), dtype=np.bool_),
        "hand": tfds.features.Tensor(shape=(None, slots), dtype=np.bool_),
        "categories": tfds.features.Tensor(shape=(None, slots), dtype=np.object_,
                                           doc="category noun per frame and slot; '' where absent"),
    }
    if c.pixels:
      features["frames"] = tfds.features.Sequence(tfds.features.Tensor(shape=(), dtype=np.object_),
                                                  doc="JPEG-encoded RGB frames at 12 fps")
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(features),
        supervised_keys=None,
        homepage="https://joaanna.github.io/something_else/",
        citation="""@inproceedings{CVPR2020_SomethingElse,
  title={Something-Else: Compositional Action Recognition with Spatial-Temporal Interaction Networks},
  author={Materzynska, Joanna and Xiao, Tete and Herzig, Roei and Xu, Huijuan and Wang, Xiaolong and Darrell, Trevor},
  booktitle={CVPR}, year={2020}}""",
        metadata=tfds.core.MetadataDict(fps=se.FPS, family=c.family, box_source=c.box_source,
                                        max_objects=slots),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    c = self.builder_config
    if c.on_bad_example not in ("skip", "fail"):
      raise UserError(f"on_bad_example must be 'skip' or 'fail', not {c.on_bad_example!r}")
    root = Path(dl_manager.manual_dir)
    paths = se.split_paths(root, c.family)
    classes = {split: se.read_classes(labels) for split, (_, labels) in paths.items()}
    self.info.metadata["classes"] = classes
    if _one_label_file(c.family):
      self.info.features["label"].names = next(iter(classes.values()))
    boxes, duplicates = se.read_boxes(root, c.box_source)
    if duplicates:
      print(f"Something-Else: {len(duplicates)} video ids appear in more than one box file; the first part's "
            f"boxes are kept (e.g. {', '.join(duplicates[:5])})", flush=True)
    ssv2 = se.read_ssv2(root)
    generators = {}
    for split, (entries_path, _) in paths.items():
      rows, jobs, bad = self._plan(root, split, entries_path, classes[split], boxes, ssv2)
      if jobs:
        generators[split] = self._generate_examples(split, rows, jobs, bad)
      else:  # TFDS cannot write an empty split
        self._report(split, rows, bad, [], Counter(), note="split left out: no usable rows")
    return generators

  def _plan(self, root: Path, split: str, entries_path: Path, classes, boxes, ssv2):
    """The split's rows that can be labelled and have boxes and a video, as jobs for `_prepare`, and the rest
    as bad examples with the reason."""
    c = self.builder_config
    ssv2_labels, ssv2_splits = ssv2
    entries = se.read_split(entries_path)
    bad, jobs, seen = [], [], set()
    for position, entry in enumerate(entries, start=1):
      video_id = str(entry.get("id")) if isinstance(entry, dict) else None
      kind, problem = "split entry", se.entry_problem(entry, classes)
      if problem is None and video_id in seen:
        problem = "listed twice in the split"
      track = source = None
      if problem is None:
        seen.add(video_id)
        kind = "boxes"
        track, problem = se.box_track(video_id, boxes.get(video_id), c.max_objects)
      if problem is None:
        kind, source = "video", se.frame_source(root, video_id)
        if source is None:
          problem = f"no video ({se.VIDEO_DIR}/{video_id}.webm or {se.FRAMES_DIR}/{video_id}/)"
      if problem:
        bad.append({"id": video_id, "entry": f"{entries_path.name} entry {position}", "kind": kind,
                    "reason": problem})
        self._stop_if_failing(split, bad)
        continue
      name = se.class_name(entry["template"])
      example = {
          "id": video_id, "label": classes.index(name), "template": name,
          "caption": str(entry.get("label", "")), "placeholders": [str(p) for p in entry.get("placeholders", [])],
          "ssv2_label": ssv2_labels.get(name, -1), "ssv2_split": ssv2_splits.get(video_id, ""),
      }
      jobs.append((example, track, source, c.pixels, c.jpeg_quality))
    return len(entries), jobs, bad

  def _generate_examples(self, split: str, rows: int, jobs: list, bad: list):
    adjusted, objects = [], Counter()
    for video_id, example, problem, notes in map_in_processes(se.prepare_example, jobs, self.builder_config.num_workers):
      if problem:
        bad.append({"id": video_id, "kind": "video", "reason": problem})
        self._stop_if_failing(split, bad)
        continue
      if notes:
        adjusted.append({"id": video_id, "notes": notes})
      objects[len(example["objects"])] += 1
      yield video_id, example
    self._report(split, rows, bad, adjusted, objects)

  def _stop_if_failing(self, split, bad):
    if bad and self.builder_config.on_bad_example == "fail":
      first = bad[0]
      where = f" ({first['entry']})" if "entry" in first else ""
      raise UserError(f"{split}: video {first['id']}{where}: {first['reason']}. Fix or remove it, or build with "
                      "on_bad_example='skip' to leave such rows out.")

  def _report(self, split: str, rows: int, bad: list, adjusted: list, objects: Counter, note: str = ""):
    path = Path(self.data_dir) / "bad_examples.json"
    report = json.loads(path.read_text()) if path.exists() else {}
    kinds = Counter(b["kind"] for b in bad)
    report[split] = {"rows": rows, "bad": len(bad), "adjusted": len(adjusted),
                     "objects_per_video": {str(k): v for k, v in sorted(objects.items())},
                     "examples": bad, "adjusted_examples": adjusted}
    path.write_text(json.dumps(report, indent=2))
    message = f"Something-Else {split}: {rows - len(bad)} of {rows} videos written"
    if bad:
      message += f", {len(bad)} left out (listed in {path.name}): " + ", ".join(
          f"{n} for their {kind}" for kind, n in kinds.most_common())
    if adjusted:
      message += f"; {len(adjusted)} kept with adjustments"
    print(message + (f"; {note}" if note else ""), flush=True)
