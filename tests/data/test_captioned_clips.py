"""Captioned clip folders (motion customisation): caption lookup, bad clips, frame stride and windows, and the
synthetic motions."""

import json

import numpy as np
import pytest

from jaxlab.data import captioned_clips, motion_synth
from jaxlab.data import video as video_lib
from jaxlab.errors import UserError


def write_clip(path, frames=4, fps=8.0):
  video_lib.write_video(path, np.full((frames, 16, 16, 3), 100, np.uint8), fps)


def test_caption_lookup_order_and_clips_without_one(tmp_path, capsys):
  for name in ("a.mp4", "b.mp4", "c.mp4", "d.mp4"):
    write_clip(tmp_path / name)
  (tmp_path / "a.txt").write_text("A person doing\nthe sks sign.\n")   # the sidecar wins over text.json
  (tmp_path / "text.json").write_text(json.dumps({"a.mp4": "unused", "b.mp4": ["one sks", "two sks"], "c": "three"}))
  folder = captioned_clips.read_folder(tmp_path, fallback_prompt="fallback sks")
  captions = {c.path.name: c.captions for c in folder.clips}
  assert captions == {"a.mp4": ("A person doing the sks sign.",), "b.mp4": ("one sks", "two sks"),
                      "c.mp4": ("three",), "d.mp4": ("fallback sks",)}
  without = captioned_clips.read_folder(tmp_path)
  assert [c.path.name for c in without.clips] == ["a.mp4", "b.mp4", "c.mp4"]
  assert list(without.problems) == ["d.mp4"] and "no caption" in without.problems["d.mp4"]
  without.report("skip")
  assert "1 of 4 clips left out (d.mp4: no caption" in capsys.readouterr().out
  with pytest.raises(UserError, match="d.mp4.*on_bad_clip=skip"):
    without.report("fail")


def test_regularisation_captions_come_from_file_names(tmp_path):
  write_clip(tmp_path / "a_man_waving.mp4")
  write_clip(tmp_path / "clapping.mp4")
  (tmp_path / "clapping.txt").write_text("people clapping")
  folder = captioned_clips.read_folder(tmp_path, captions_from_names=True)
  assert [c.captions for c in folder.clips] == [("a man waving",), ("people clapping",)]


def test_user_mistakes_end_in_one_line(tmp_path):
  with pytest.raises(UserError, match="not found"):
    captioned_clips.read_folder(tmp_path / "missing")
  with pytest.raises(UserError, match="no video clips"):
    captioned_clips.read_folder(tmp_path)
  write_clip(tmp_path / "a.mp4")
  (tmp_path / "text.json").write_text("{not json")
  with pytest.raises(UserError, match="text.json is not valid JSON"):
    captioned_clips.read_folder(tmp_path)


def test_frames_are_taken_by_stride_at_the_target_rate(tmp_path):
  frames = np.arange(50)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
  # 48 fps to 24: every 2nd frame, 25 of them; 30 to 24: stride round(1.25) = 1; 60 to 24: round(2.5) = 2.
  np.testing.assert_array_equal(captioned_clips.strided_frames(frames, 48, 24)[:, 0, 0, 0], np.arange(0, 50, 2))
  assert len(captioned_clips.strided_frames(frames, 30, 24)) == 50
  assert len(captioned_clips.strided_frames(frames[:7], 100, 24)) == 1   # stride 4 -> 7 // 4 whole strides
  video_lib.write_video(tmp_path / "clip.mp4", np.zeros((12, 20, 40, 3), np.uint8), fps=16)
  assert captioned_clips.load_frames(tmp_path / "clip.mp4", 8.0, 16).shape == (6, 16, 16, 3)  # stride 2, crop
  (tmp_path / "bad.mp4").write_bytes(b"not a video" * 20)
  with pytest.raises(video_lib.VideoDecodeError):
    captioned_clips.load_frames(tmp_path / "bad.mp4", 8.0, 16)


def test_windows_start_anywhere_and_short_clips_repeat_their_last_frame():
  rng = np.random.default_rng(0)
  starts = {int(captioned_clips.window(10, 4, rng)[0]) for _ in range(200)}
  assert starts == set(range(7))
  np.testing.assert_array_equal(captioned_clips.window(10, 4, np.random.default_rng(1)) -
                                captioned_clips.window(10, 4, np.random.default_rng(1))[0], [0, 1, 2, 3])
  np.testing.assert_array_equal(captioned_clips.window(3, 6, rng), [0, 1, 2, 2, 2, 2])


def test_synthetic_motions_differ_only_in_their_horizontal_swing():
  rng = np.random.default_rng(0)
  circle, line = (motion_synth.trajectory(m, 16, 8, rng) for m in motion_synth.MOTIONS)
  assert np.ptp(circle[:, 0]) > 0.35 and np.ptp(line[:, 0]) == 0
  assert np.ptp(circle[:, 1]) > 0.35 and np.ptp(line[:, 1]) > 0.35
  np.testing.assert_allclose(circle[:8], circle[8:], atol=1e-12)  # one cycle every 8 frames
  clip = motion_synth.render("circle", rng, size=32, num_frames=8)
  assert clip.shape == (8, 32, 32, 3) and clip.dtype == np.uint8
  brightest = [np.unravel_index(f.sum(-1).argmax(), f.shape[:2]) for f in clip]
  assert len(set(brightest)) == 8  # the blob is somewhere else in every frame
