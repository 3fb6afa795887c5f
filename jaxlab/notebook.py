"""What the notebooks in `train/colab/` call besides the methods: start-up, figures and clips shown inline."""

from pathlib import Path

import numpy as np


def setup() -> None:
  """8 CPU devices, as `jaxlab demo` runs the tiny configs (before JAX starts; GPUs and TPUs are unaffected)."""
  from jaxlab import demo
  demo.use_eight_cpu_devices()


def show(*paths, width: int | None = None) -> None:
  """PNG or GIF files, inline."""
  from IPython.display import Image, display
  for path in paths:
    display(Image(filename=str(path), width=width))


def show_markdown(text: str) -> None:
  from IPython.display import Markdown, display
  display(Markdown(text))


def write_gif(frames: np.ndarray, path, fps: float, scale: int = 1) -> Path:
  """`[T, H, W, 3]` uint8 frames as a looping GIF, enlarged `scale` times (nearest) so small clips stay visible."""
  from PIL import Image
  images = [Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), Image.Resampling.NEAREST)
            for f in frames]
  path = Path(path)
  images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
  return path


def plot_metrics(workdir, keys: list[str], path) -> Path:
  """One panel per metric of `metrics.jsonl` against the step, saved as a PNG."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from jaxlab.training import metrics
  records = metrics.read_records(workdir)
  fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
  for ax, key in zip(axes[0], keys):
    points = [(r["step"], r[key]) for r in records if key in r]
    ax.plot(*zip(*points), marker="." if len(points) < 30 else None)
    ax.set(xlabel="step", title=key)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return Path(path)
