"""Video decoding, frame-rate resampling, temporal sampling and spatial crops, on uint8 numpy frames.

Frames are channels-last `[T, H, W, 3]` uint8. Decoding uses PyAV (FFmpeg); resizing uses Pillow.
"""

from collections.abc import Sequence
import io
from pathlib import Path

import av
import numpy as np
from PIL import Image


class VideoDecodeError(Exception):
  """A video that cannot be decoded (missing, truncated, not a video, no frames)."""


def read_video(source: str | Path | bytes) -> tuple[np.ndarray, float]:
  """All frames of a video file (or its bytes) as `[T, H, W, 3]` uint8, and its frame rate."""
  if isinstance(source, (str, Path)) and not Path(source).is_file():
    raise VideoDecodeError(f"{source}: no such file")
  try:
    with av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source)) as container:
      if not container.streams.video:
        raise VideoDecodeError("no video stream")
      stream = container.streams.video[0]
      fps = float(stream.average_rate or stream.guessed_rate or 0)
      frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
  except (av.FFmpegError, OSError, ValueError) as e:
    raise VideoDecodeError(f"{type(e).__name__}: {e}") from None
  if not frames:
    raise VideoDecodeError("no decodable frames")
  if fps <= 0:
    raise VideoDecodeError("unknown frame rate")
  return np.stack(frames), fps


def write_video(path: str | Path, frames: np.ndarray, fps: float, crf: int = 18) -> None:
  """Writes `[T, H, W, 3]` uint8 frames as H.264 (yuv420p, so H and W must be even)."""
  t, h, w, _ = frames.shape
  with av.open(str(path), "w") as container:
    stream = container.add_stream("libx264", rate=int(round(fps)))
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    stream.options = {"crf": str(crf)}
    for frame in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def resample_fps(frames: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
  """The frames a `dst_fps` camera would have seen: for each output time, the latest source frame."""
  if abs(src_fps - dst_fps) < 1e-6:
    return frames
  duration = len(frames) / src_fps
  times = np.arange(0.0, duration - 1e-9, 1.0 / dst_fps)
  index = np.minimum(np.floor(times * src_fps + 1e-6).astype(int), len(frames) - 1)
  return frames[index]


def resize_short_side(frames: np.ndarray, short_side: int) -> np.ndarray:
  """Resizes so the shorter side is `short_side`, keeping the aspect ratio (bilinear with antialiasing)."""
  h, w = frames.shape[1:3]
  if min(h, w) == short_side:
    return frames
  scale = short_side / min(h, w)
  size = (max(1, round(w * scale)), max(1, round(h * scale)))
  return np.stack([np.asarray(Image.fromarray(f).resize(size, Image.BILINEAR)) for f in frames])


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> bytes:
  out = io.BytesIO()
  Image.fromarray(frame).save(out, format="JPEG", quality=quality)
  return out.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def segment_indices(num_frames: int, num_samples: int, rng: np.random.Generator | None = None) -> np.ndarray:
  """`num_samples` frame indices spread uniformly over the clip.

  The clip is cut into `num_samples` equal segments; training (`rng` given) takes a random frame in each
  segment (TSN), evaluation the segment's centre. Clips shorter than `num_samples` repeat frames.
  """
  edges = np.linspace(0.0, num_frames, num_samples + 1)
  if rng is None:
    points = (edges[:-1] + edges[1:]) / 2
  else:
    points = edges[:-1] + rng.random(num_samples) * np.diff(edges)
  return np.clip(np.floor(points).astype(int), 0, num_frames - 1)


def _resize(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Resizes every frame to `size` = (height, width)."""
  if frames.shape[1:3] == tuple(size):
    return frames
  return np.stack([np.asarray(Image.fromarray(f).resize((size[1], size[0]), Image.BILINEAR)) for f in frames])


def random_resized_crop(frames: np.ndarray, size: int, rng: np.random.Generator,
                        scale: Sequence[float] = (0.7, 1.0), ratio: Sequence[float] = (3 / 4, 4 / 3),
                        ) -> np.ndarray:
  """One random crop (area fraction in `scale`, aspect ratio in `ratio`) of every frame, resized to size²."""
  h, w = frames.shape[1:3]
  area = h * w
  for _ in range(10):
    target = area * rng.uniform(*scale)
    aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
    cw, ch = int(round(np.sqrt(target * aspect))), int(round(np.sqrt(target / aspect)))
    if 0 < cw <= w and 0 < ch <= h:
      y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
      return _resize(frames[:, y:y + ch, x:x + cw], (size, size))
  # Fall back to the largest centred crop within the ratio bounds, as torchvision does.
  aspect = np.clip(w / h, ratio[0], ratio[1])
  cw, ch = (int(round(h * aspect)), h) if w / h > aspect else (w, int(round(w / aspect)))
  y, x = (h - ch) // 2, (w - cw) // 2
  return _resize(frames[:, y:y + ch, x:x + cw], (size, size))


def center_crop(frames: np.ndarray, size: int) -> np.ndarray:
  """Resizes the short side to `size`, then takes the central size² square."""
  frames = resize_short_side(frames, size)
  h, w = frames.shape[1:3]
  y, x = (h - size) // 2, (w - size) // 2
  return frames[:, y:y + size, x:x + size]
