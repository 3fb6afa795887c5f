"""Video decoding, frame-rate resampling, temporal sampling and crops."""

import numpy as np
import pytest

from jaxlab.data import video


def test_segment_indices_are_segment_centres_at_eval_and_inside_segments_in_training():
  np.testing.assert_array_equal(video.segment_indices(16, 4), [2, 6, 10, 14])
  np.testing.assert_array_equal(video.segment_indices(3, 6), [0, 0, 1, 1, 2, 2])  # short clips repeat frames
  rng = np.random.default_rng(0)
  for _ in range(20):
    index = video.segment_indices(16, 4, rng)
    assert all(4 * i <= j < 4 * (i + 1) for i, j in enumerate(index))


def test_resample_fps_keeps_the_latest_frame_at_each_output_time():
  frames = np.arange(30)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
  out = video.resample_fps(frames, 30, 12)
  # output times 0, 1/12, 2/12, ... -> source frames floor(t * 30)
  np.testing.assert_array_equal(out[:, 0, 0, 0], [0, 2, 5, 7, 10, 12, 15, 17, 20, 22, 25, 27])
  assert video.resample_fps(frames, 30, 30) is frames


def test_write_then_read_round_trips_shape_rate_and_content(tmp_path):
  rng = np.random.default_rng(0)
  frames = np.zeros((12, 32, 48, 3), np.uint8)
  for t in range(12):
    frames[t, 8:24, 4 * t:4 * t + 8] = 255  # a white square moving right
  video.write_video(tmp_path / "clip.mp4", frames, fps=24)
  decoded, fps = video.read_video(tmp_path / "clip.mp4")
  assert decoded.shape == frames.shape and fps == 24
  assert np.abs(decoded.astype(int) - frames).mean() < 8
  decoded_bytes, _ = video.read_video((tmp_path / "clip.mp4").read_bytes())
  np.testing.assert_array_equal(decoded, decoded_bytes)


def test_undecodable_and_missing_videos_raise_a_decode_error(tmp_path):
  (tmp_path / "bad.mp4").write_bytes(b"not a video at all" * 10)
  with pytest.raises(video.VideoDecodeError):
    video.read_video(tmp_path / "bad.mp4")
  with pytest.raises(video.VideoDecodeError, match="no such file"):
    video.read_video(tmp_path / "missing.mp4")


def test_crops_have_the_requested_size_and_centre_crop_is_central():
  frames = np.zeros((4, 40, 80, 3), np.uint8)
  frames[:, :, 30:50] = 200  # a bright central band
  out = video.center_crop(frames, 20)
  assert out.shape == (4, 20, 20, 3)
  assert out[:, :, 5:15].mean() > 150 and out[:, :, :3].mean() < 50
  # A 2:1 frame admits no crop of >= 70% area within the 3:4..4:3 ratios: the central crop is the fallback.
  np.testing.assert_array_equal(video.random_resized_crop(frames, 16, np.random.default_rng(1)),
                                video.random_resized_crop(frames, 16, np.random.default_rng(2)))
  frames = np.random.default_rng(0).integers(0, 255, size=(4, 60, 80, 3), dtype=np.uint8)
  rng = np.random.default_rng(0)
  crops = [video.random_resized_crop(frames, 16, rng) for _ in range(5)]
  assert all(c.shape == (4, 16, 16, 3) for c in crops)
  assert len({c.tobytes() for c in crops}) > 1  # random
  again = video.random_resized_crop(frames, 16, np.random.default_rng(0))
  np.testing.assert_array_equal(crops[0], again)  # and reproducible by seed


def test_jpeg_round_trip():
  frame = (np.arange(24 * 32 * 3).reshape(24, 32, 3) % 256).astype(np.uint8)
  assert np.abs(video.decode_jpeg(video.encode_jpeg(frame, 95)).astype(int) - frame).mean() < 12
