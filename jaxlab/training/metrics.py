"""Metrics to TensorBoard event files and `metrics.jsonl`, and the progress bar."""

import json
import math
import time
from pathlib import Path

from etils import epath
import jax
import tqdm


class MetricWriter:
  """Writes scalars on process 0 only; every write is flushed, so a crash loses nothing written."""

  def __init__(self, workdir: Path, total_steps: int, start_step: int = 0, show_progress: bool = True):
    self.enabled = jax.process_index() == 0
    self._jsonl = None
    self._tb = None
    self._bar = None
    if not self.enabled:
      return
    workdir = epath.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    self._jsonl = (workdir / "metrics.jsonl").open("a")
    from tensorboardX import SummaryWriter  # imported here: only process 0 writes events
    self._tb = SummaryWriter(str(workdir / "tensorboard"))
    if show_progress:
      self._bar = tqdm.tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                            smoothing=0.1, mininterval=1.0)

  def write(self, step: int, scalars: dict, prefix: str = "train") -> None:
    if not self.enabled:
      return
    record = {"step": int(step), "time": time.time()}
    for name, value in scalars.items():
      value = float(value)
      record[f"{prefix}/{name}"] = value if math.isfinite(value) else str(value)
      self._tb.add_scalar(f"{prefix}/{name}", value, int(step))
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    self._tb.flush()
    if self._bar is not None and prefix == "train" and "loss" in scalars:
      self._bar.set_postfix(loss=f"{float(scalars['loss']):.4g}", refresh=False)

  def advance(self, steps: int = 1) -> None:
    if self._bar is not None:
      self._bar.update(steps)

  def message(self, text: str) -> None:
    if not self.enabled:
      return
    if self._bar is not None:
      self._bar.write(text)
    else:
      print(text, flush=True)

  def close(self) -> None:
    if not self.enabled:
      return
    if self._bar is not None:
      self._bar.close()
    self._jsonl.close()
    self._tb.close()
