"""`jaxlab data ...`: make the synthetic datasets and build TFDS datasets without the `tfds` command."""

import importlib
from pathlib import Path

from jaxlab.errors import UserError


def register(subparsers) -> None:
  data = subparsers.add_parser("data", help="synthetic datasets and TFDS builds")
  verbs = data.add_subparsers(dest="data_command", required=True, metavar="VERB")

  p = verbs.add_parser("airletters-synth", help="write a synthetic AirLetters folder in the release layout")
  p.add_argument("--out", required=True)
  p.add_argument("--per-class", default="train=24,validation=4,test=6",
                 help="clips per class and split, e.g. train=24,validation=4,test=6")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--size", default="48x64", help="frame height x width")
  p.set_defaults(handler=_airletters_synth)

  p = verbs.add_parser("something-else-synth",
                       help="write a synthetic Something-Else folder (box tracks, frames, splits) as released")
  p.add_argument("--out", required=True)
  p.add_argument("--per-class", default="train=48,validation=16",
                 help="clips per class in the compositional train and validation sets")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--video-format", default="frames", choices=["frames", "webm"])
  p.set_defaults(handler=_something_else_synth)

  p = verbs.add_parser("build", help="build a TFDS dataset from datasets/NAME (same as `tfds build`)")
  p.add_argument("name")
  p.add_argument("--manual-dir", required=True)
  p.add_argument("--data-dir", required=True)
  p.add_argument("--config", default=None,
                 help="builder config name, or a JSON object of config fields ('{\"name\": \"strict\", ...}')")
  p.set_defaults(handler=_build)


def _airletters_synth(args, overrides) -> int:
  from jaxlab.data import airletters_synth
  try:
    per_class = {k: int(v) for k, v in (item.split("=") for item in args.per_class.split(","))}
    height, width = (int(v) for v in args.size.split("x"))
  except ValueError:
    raise UserError(f"--per-class {args.per_class!r} / --size {args.size!r} not understood") from None
  if min(height, width) < 16 or min(per_class.values()) < 0 or not set(per_class) <= {"train", "validation", "test"}:
    raise UserError(f"--size {args.size} must be at least 16x16 and --per-class {args.per_class} give counts >= 0 "
                    "for train, validation, test")
  root = airletters_synth.write_dataset(args.out, per_class, seed=args.seed, height=height, width=width)
  print(f"wrote {root}")
  return 0


def _something_else_synth(args, overrides) -> int:
  from jaxlab.data import something_else_synth
  try:
    per_class = {k: int(v) for k, v in (item.split("=") for item in args.per_class.split(","))}
  except ValueError:
    raise UserError(f"--per-class {args.per_class!r} not understood; e.g. train=48,validation=16") from None
  if set(per_class) != {"train", "validation"}:
    raise UserError("--per-class must give train=N,validation=M")
  root = something_else_synth.write_dataset(args.out, per_class, seed=args.seed, video_format=args.video_format)
  print(f"wrote {root}")
  return 0


def _build(args, overrides) -> int:
  path = build(args.name, args.manual_dir, args.data_dir, args.config)
  print(f"built {path}")
  return 0


def builder_names() -> list[str]:
  """The TFDS builders: `datasets/<name>/<name>_dataset_builder.py`, packaged as `jaxlab.datasets.<name>`."""
  import jaxlab.datasets
  return sorted(p.name for folder in map(Path, jaxlab.datasets.__path__) for p in folder.iterdir()
                if (p / f"{p.name}_dataset_builder.py").is_file())


def load_builder_class(name: str):
  """The `Builder` class of `datasets/<name>/<name>_dataset_builder.py`."""
  if name not in builder_names():
    raise UserError(f"no dataset {name!r}; datasets: {', '.join(builder_names())}")
  return importlib.import_module(f"jaxlab.datasets.{name}.{name}_dataset_builder").Builder


def builder_config(builder_cls, config: str | None):
  """`--config`: the name of one of the builder's configs, or a JSON object of config fields (as `tfds build`
  takes), which becomes a config of the builder's config class."""
  import dataclasses
  import json
  if config is None or not builder_cls.BUILDER_CONFIGS:
    return config
  names = [c.name for c in builder_cls.BUILDER_CONFIGS]
  if not config.lstrip().startswith("{"):
    if config not in names:
      raise UserError(f"{builder_cls.name} has no config {config!r}; its configs: {', '.join(names)} (or a JSON "
                      "object of config fields, e.g. '{\"name\": \"mine\", ...}')")
    return config
  try:
    fields = json.loads(config)
  except ValueError as e:
    raise UserError(f"--config {config!r} is not valid JSON ({e})") from None
  config_cls = builder_cls.builder_config_cls
  known = [f.name for f in dataclasses.fields(config_cls)]
  unknown = sorted(set(fields) - set(known)) if isinstance(fields, dict) else None
  if unknown is None or unknown or "name" not in fields:
    raise UserError(f"--config must be a JSON object with a \"name\" and fields of {config_cls.__name__} "
                    f"({', '.join(known)})" + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
  return config_cls(**fields)


def build(name: str, manual_dir, data_dir, config: str | None = None) -> Path:
  """Builds `datasets/<name>` into `data_dir` (array_record files), reading `manual_dir`."""
  import tensorflow_datasets as tfds
  if not Path(manual_dir).is_dir():
    raise UserError(f"--manual-dir {manual_dir} is not a folder")
  if Path(data_dir).is_file():
    raise UserError(f"--data-dir {data_dir} is a file; pass a folder (it is created if missing)")
  builder_cls = load_builder_class(name)
  builder = builder_cls(config=builder_config(builder_cls, config), data_dir=str(data_dir),
                        file_format="array_record")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return Path(builder.data_dir)
