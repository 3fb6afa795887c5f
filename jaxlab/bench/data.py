"""`jaxlab bench data`: how fast the AirLetters and Something-Else input pipelines make training batches.

Each method's synthetic release is built into TFDS array_record files (the builders of `datasets/`), then:
- grain: decoded and augmented clips per second through the training pipeline (`jaxlab.data.pipeline`:
  shuffle, the config's training transform, batch) with 0, 1 and 2 worker processes, and per core: clips per
  CPU-second of the process and its workers together;
- PyAV: a plain loop over the release's own video files (decode, resample to the dataset's frame rate and
  size, sample the same frames, the same crop), in this process;
- the tiny config's training step compiled on every device (8 CPU devices, as `jaxlab demo` runs it) beside
  the time its own pipeline takes to make one batch: the step waits on input when that time is the longer.

AirLetters decodes 16 JPEG frames per clip and crops them. Something-Else's tiny model reads boxes only, so
its frames pipeline (the I3D models': 16 frames, every 2nd, cropped to 224 px, plus the boxes) is measured too.
"""

import dataclasses
import json
import os
from pathlib import Path
import tempfile
import time

import numpy as np

from jaxlab.errors import UserError

# grain reads ahead this many batches per process (`pipeline.training_dataset`'s 8 threads, buffer of 2 x 8):
# they are drawn untimed first, so that the timed batches are made while they are waited for.
READ_AHEAD = 16
SIZES = {
    # clips per class of each synthetic release; timed batches per measurement; batch size of the pipelines
    "small": dict(airletters=6, something_else=8, batches=6, batch_size=32),
    "tiny": dict(airletters=1, something_else=2, batches=2, batch_size=2),   # the smoke test's
}
WORKERS = (0, 1, 2)


def _cpu_seconds() -> float:
  """CPU time of this process (all threads) and of its live children (grain's workers), from /proc."""
  total = time.process_time()
  tick = os.sysconf("SC_CLK_TCK")
  for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
      fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
      continue
    if int(fields[1]) == os.getpid():
      total += (int(fields[11]) + int(fields[12])) / tick
  return total


def _rate(produce, count: int, clips_each: int, warmup: int = 1) -> dict:
  """Clips per second and per CPU-second over `count` calls of `produce`, after `warmup` untimed ones."""
  for _ in range(warmup):
    produce()
  cpu, start = _cpu_seconds(), time.perf_counter()
  for _ in range(count):
    produce()
  wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
  clips = count * clips_each
  return {"clips_per_s": clips / wall, "clips_per_cpu_s": clips / max(cpu, 1e-9), "cores_busy": cpu / wall,
          "seconds_per_batch": wall / count}


@dataclasses.dataclass
class Pipeline:
  """One input pipeline: its config, TFDS training split, training transform, and the plain PyAV loop's clip
  function over the release's video files."""
  name: str
  config: object
  source: object
  transform: object
  videos: list[Path]
  pyav_clip: object    # (path, rng) -> augmented frames

  def grain_rate(self, workers: int, batch_size: int, batches: int) -> dict:
    from jaxlab.data import pipeline
    it = iter(pipeline.training_dataset(self.source, self.transform, batch_size=batch_size, seed=0,
                                        workers=workers))
    return _rate(lambda: next(it), batches, batch_size, warmup=READ_AHEAD * (1 + workers) + 1)

  def pyav_rate(self, clips: int) -> dict:
    rng, order = np.random.default_rng(0), iter(np.resize(np.arange(len(self.videos)), clips + 1))
    return _rate(lambda: self.pyav_clip(self.videos[next(order)], rng), clips, 1)


def _builder_config(name: str, dataset: str):
  from jaxlab.data import cli as data_cli
  config_name = dataset.split("/")[1]
  return next(c for c in data_cli.load_builder_class(name).BUILDER_CONFIGS if c.name == config_name)


def airletters_pipeline(root: Path, per_class: int) -> Pipeline:
  from jaxlab import training
  from jaxlab.data import airletters_synth, video
  from jaxlab.data import cli as data_cli
  from jaxlab.methods import airletters
  config = training.load_config("airletters:tiny", [f"data_dir={root / 'tfds'}"])
  airletters_synth.write_dataset(root / "release", {"train": per_class, "validation": 1, "test": 1})
  data_cli.build("airletters", root / "release", root / "tfds", config.dataset.split("/")[1])
  built = _builder_config("airletters", config.dataset)

  def pyav_clip(path, rng):
    frames, fps = video.read_video(path)
    frames = video.resize_short_side(video.resample_fps(frames, fps, built.fps), built.short_side)
    frames = frames[video.segment_indices(len(frames), config.num_frames, rng)]
    return video.random_resized_crop(frames, config.image_size, rng, scale=config.crop_scale)

  return Pipeline("airletters", config, airletters.load_splits(config)["train"],
                  airletters.clip_transform(config.num_frames, config.image_size, True, config.crop_scale),
                  sorted((root / "release" / "videos").glob("*.mp4")), pyav_clip)


def something_else_pipeline(root: Path, per_class: int, variant: str) -> Pipeline:
  """`tiny` (boxes only, the tiny config's) or `paper_i3d` (frames and boxes), on a release of .webm videos."""
  from jaxlab import training
  from jaxlab.data import cli as data_cli
  from jaxlab.data import something_else as se
  from jaxlab.data import something_else_synth as synth
  from jaxlab.data import video
  from jaxlab.methods import something_else
  config = training.load_config(f"something_else:{variant}", [f"data_dir={root / 'tfds'}"])
  if not (root / "release").is_dir():
    synth.write_dataset(root / "release", {"train": per_class, "validation": 1}, video_format="webm")
  data_cli.build("something_else", root / "release", root / "tfds", config.dataset.split("/")[1])

  def pyav_clip(path, rng):
    frames, _ = video.read_video(path)   # written at the dataset's 12 fps
    frames = frames[se.strided_window(len(frames), config.num_frames, 2, rng)]
    return something_else.crop_frames(frames, se.crop_window(rng, config.image_size), config.image_size)

  sources, _ = something_else.load_dataset(config)
  return Pipeline(f"something_else ({'boxes' if variant == 'tiny' else 'frames + boxes'})", config,
                  sources[config.train_split], something_else.clip_transform(config, True),
                  sorted((root / "release" / se.VIDEO_DIR).glob("*.webm")), pyav_clip)


# ------------------------------------------------------------------------------------------ the step

def step_vs_input(method: str, config, workdir: Path, steps: int) -> dict:
  """The tiny config's compiled training step on every device, and its own pipeline's time per batch."""
  import jax
  from jaxlab import methods
  from jaxlab.bench import common
  task = methods.get(method).make_task(config, workdir)
  it = iter(task.train_data())
  input_rate = _rate(lambda: next(it), steps, config.batch_size, warmup=READ_AHEAD * (1 + config.data_workers) + 1)
  step, _, _ = common.jax_train_step(task, next(it), devices=jax.devices())
  step_s = float(np.median(common.time_calls(step, steps)))
  return {"devices": jax.device_count(), "batch": config.batch_size, "step_s": step_s,
          "input_s": input_rate["seconds_per_batch"], "waits_on_input": input_rate["seconds_per_batch"] > step_s}


def run(batch_size=None, steps=10, dtype="float32", reference=True, config="small", out_dir=Path("runs/bench"),
        ) -> dict:
  """Measures every pipeline (grain with each worker count, PyAV) and the tiny steps; prints and writes JSON.

  `steps` is the number of timed training steps; `batch_size` that of the pipeline measurements;
  `reference=False` skips the PyAV loop. `dtype` is not used (the steps run the tiny configs' own).
  """
  from jaxlab import demo
  demo.use_eight_cpu_devices()
  if config not in SIZES:
    raise UserError(f"bench data sizes: {', '.join(SIZES)}; not {config!r}")
  size = dict(SIZES[config])
  batch_size = batch_size or size["batch_size"]
  with tempfile.TemporaryDirectory(prefix="jaxlab-bench-data-") as tmp:
    root = Path(tmp)
    pipelines = [airletters_pipeline(root / "airletters", size["airletters"]),
                 something_else_pipeline(root / "something_else", size["something_else"], "tiny"),
                 something_else_pipeline(root / "something_else", size["something_else"], "paper_i3d")]
    results = {"setup": {"cpu_cores": os.cpu_count(), "batch_size": batch_size, "timed_batches": size["batches"],
                         "note": "wall-clock rates on a shared machine vary with its load; clips_per_cpu_s less so"},
               "pipelines": {}, "steps": {}}
    for p in pipelines:
      rows = {f"grain, {w} workers": p.grain_rate(w, batch_size, size["batches"]) for w in WORKERS}
      if reference:
        rows["PyAV loop, 1 process"] = p.pyav_rate(batch_size * size["batches"])
      results["pipelines"][p.name] = {"clips": len(p.source), **rows}
    for method, p in (("airletters", pipelines[0]), ("something_else", pipelines[1])):
      results["steps"][method] = step_vs_input(method, p.config, root / f"{method}_run", steps)
  _print(results)
  out_dir.mkdir(parents=True, exist_ok=True)
  (out_dir / "data.json").write_text(json.dumps(results, indent=2))
  print(f"  written to {out_dir / 'data.json'}")
  return results


def _print(results: dict) -> None:
  print("\njaxlab bench data: decoded and augmented clips")
  for key, value in results["setup"].items():
    print(f"  {key}: {value}")
  header = f"{'pipeline':<34}{'source':<24}{'clips/s':>10}{'clips/CPU-s':>13}{'cores busy':>12}"
  print(header + "\n" + "-" * len(header))
  for name, rows in results["pipelines"].items():
    for source, r in rows.items():
      if source != "clips":
        print(f"{name:<34}{source:<24}{r['clips_per_s']:>10.1f}{r['clips_per_cpu_s']:>13.1f}{r['cores_busy']:>12.2f}")
  print("\ntiny training step vs its input pipeline (config's data_workers)")
  for method, r in results["steps"].items():
    print(f"  {method}: step {1e3 * r['step_s']:.1f} ms on {r['devices']} devices, input {1e3 * r['input_s']:.1f} "
          f"ms per batch of {r['batch']}: {'waits on input' if r['waits_on_input'] else 'input keeps up'}")
