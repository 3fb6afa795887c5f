"""Metrics to TensorBoard event files and `metrics.jsonl`, and the progress bar."""

import json
import math
import os
import struct
import sys
import time
from pathlib import Path

from etils import epath
import jax
import tqdm


class MetricWriter:
  """Writes scalars on process 0 only; every write is flushed, so a crash loses nothing written.

  A run that starts at `start_step` first drops the records of later steps (written after the checkpoint it
  resumes from, before the previous run died), so that each logged step has exactly one record.
  """

  def __init__(self, workdir: Path, total_steps: int, start_step: int = 0, show_progress: bool = True):
    self.enabled = jax.process_index() == 0
    self._jsonl = None
    self._tb = None
    self._bar = None
    if not self.enabled:
      return
    workdir = epath.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _say_dropped(workdir, start_step, drop_records_after(workdir, start_step))
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


# ----------------------------------------------------------------------------------------- on resume

def _jsonl_after(path: Path, step: int) -> list[int]:
  """Drops the records of `metrics.jsonl` past `step` (and a line cut short by a kill); their steps."""
  if not path.is_file():
    return []
  lines = path.read_text().splitlines()
  kept, dropped = [], []
  for line in lines:
    try:
      record_step = int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
      continue
    if record_step <= step:
      kept.append(line)
    else:
      dropped.append(record_step)
  if len(kept) != len(lines):
    _replace(path, "".join(line + "\n" for line in kept).encode())
  return dropped


def _event_records(data: bytes):
  """`(record bytes, event)` of a TensorBoard event file (TFRecord framing); a record cut short ends it."""
  from tensorboardX.proto import event_pb2
  i = 0
  while i + 12 <= len(data):
    (length,) = struct.unpack("<Q", data[i:i + 8])
    end = i + 12 + length + 4
    if end > len(data):
      return
    yield data[i:end], event_pb2.Event.FromString(data[i + 12:i + 12 + length])
    i = end


def read_events(directory: Path) -> list:
  """Every event in a TensorBoard folder, file by file in name order (what TensorBoard reads)."""
  files = sorted(Path(directory).glob("events.out.tfevents.*"))
  return [event for f in files for _, event in _event_records(f.read_bytes())]


def _events_after(directory: Path, step: int) -> list[int]:
  """Drops the summaries past `step` from the event files (merged into the first one); their steps."""
  files = sorted(Path(directory).glob("events.out.tfevents.*"))
  kept, dropped = [], []
  for f in files:
    for record, event in _event_records(f.read_bytes()):
      late = event.HasField("summary") and event.step > step
      (dropped if late else kept).append(event.step if late else record)
  if dropped:
    _replace(files[0], b"".join(kept))
    for f in files[1:]:
      f.unlink()
  return dropped


def _replace(path: Path, data: bytes) -> None:
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_bytes(data)
  os.replace(tmp, path)


def read_records(workdir) -> list[dict]:
  """The records of a run's `metrics.jsonl`, in the order written."""
  text = (Path(workdir) / "metrics.jsonl").read_text()
  return [json.loads(line) for line in text.splitlines() if line]


def history(workdir, key: str) -> list[tuple[int, float]]:
  """(step, value) of every record of the run that has `key`."""
  return [(r["step"], r[key]) for r in read_records(workdir) if key in r]


def drop_records_after(workdir: Path, step: int) -> list[int]:
  """Drops every metrics record (jsonl and TensorBoard) past `step`; the steps of the jsonl ones dropped."""
  workdir = Path(workdir)
  _events_after(workdir / "tensorboard", step)
  return _jsonl_after(workdir / "metrics.jsonl", step)


def _say_dropped(workdir: Path, start_step: int, dropped: list[int]) -> None:
  if not dropped:
    return
  span = f"steps {min(dropped)}-{max(dropped)}" if len(set(dropped)) > 1 else f"step {dropped[0]}"
  if start_step == 0:
    text = (f"{workdir} has no checkpoint to resume from but holds metrics ({span}): starting over from step 0, "
            "the old records are dropped")
  else:
    text = (f"resuming from step {start_step}: dropped {len(dropped)} metrics records of {span}, logged after "
            "that checkpoint by the run that stopped; they are written again")
  notice(text)


def notice(text: str) -> None:
  """A line for the user from process 0, on stderr beside the progress bar."""
  if jax.process_index() == 0:
    print(f"jaxlab: {text}", file=sys.stderr, flush=True)
