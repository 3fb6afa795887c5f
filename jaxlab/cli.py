"""The `jaxlab` command.

  jaxlab train METHOD --config METHOD:VARIANT --workdir DIR [--config.KEY=VALUE ...]   (or --config FILE.py:VARIANT)
  jaxlab eval METHOD --workdir DIR [--step N]
  jaxlab demo [--workdir DIR] [--only METHOD,...]
  jaxlab bench MODEL [--batch-size N] [--steps N]
  jaxlab bench all --out DIR [--dry-run]

plus method verbs registered by their packages (`jaxlab find ...`, `jaxlab audit ...`, `jaxlab generate`).
Errors a user can cause end in one line that says what is wrong, never a traceback.
"""

import argparse
import importlib
import os
import sys

from jaxlab import compilation_cache
from jaxlab.errors import UserError

# Packages that add their own verbs: each has `register(subparsers)`; heavy imports stay in the handlers.
_VERB_MODULES = ("jaxlab.find.cli", "jaxlab.audit.cli", "jaxlab.diffusion.cli", "jaxlab.data.cli")


def at_least(minimum: int):
  """An argparse type: an integer >= `minimum` (for counts and sizes, where 0 or -1 would silently do nothing)."""

  def parse(text: str) -> int:
    try:
      value = int(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < minimum:
      raise argparse.ArgumentTypeError(f"{value} is less than {minimum}")
    return value

  parse.__name__ = f"integer >= {minimum}"  # argparse names the type in its message
  return parse


def _split_config_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
  """Separates `--config.key=value` (or `--config.key value`) from the other arguments."""
  rest, overrides = [], []
  i = 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith("--config."):
      item = arg[len("--config."):]
      if "=" not in item:
        if i + 1 >= len(argv):
          raise UserError(f"{arg} needs a value: {arg}=VALUE")
        item = f"{item}={argv[i + 1]}"
        i += 1
      overrides.append(item)
    else:
      rest.append(arg)
    i += 1
  return rest, overrides


def _train(args, overrides) -> int:
  from jaxlab import methods, training, parallel
  parallel.initialize()
  method = methods.get(args.method, needs="make_task")
  config = training.load_config(args.config, overrides)
  methods.check_config(args.method, config, args.config, f"pass --config {args.method}:VARIANT")
  training.check_settings(config)
  with training.workdir.hold(args.workdir):
    task = method.make_task(config, args.workdir)
    try:
      result = training.train(task, config, args.workdir)
    except training.TrainingStopped as e:
      print(f"jaxlab: training stopped: {e}", file=sys.stderr)
      return 1
    summary = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items())
    print(f"{'preempted' if result.get('preempted') else 'done'}: {summary}")
    if hasattr(method, "export") and not result.get("preempted"):
      for path in method.export(config, args.workdir) or ():
        print(f"exported {path}")
  return 0


def _eval(args, overrides) -> int:
  from jaxlab import methods, training, parallel
  parallel.initialize()
  method = methods.get(args.method, needs="evaluate")
  config = training.load_saved_config(args.workdir)
  methods.check_config(args.method, config, f"{args.workdir}/config.json",
                       f"evaluate it with `jaxlab eval {{owner}} --workdir {args.workdir}`")
  for item in overrides:
    training.config.apply_override(config, item)
  metrics = method.evaluate(config, args.workdir, step=args.step)
  for name, value in metrics.items():
    print(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}")
  return 0


def _demo(args, overrides) -> int:
  from jaxlab import demo
  only = [m for m in args.only.split(",") if m] if args.only else None
  return demo.run(args.workdir, only=only)


def _bench(args, overrides) -> int:
  from jaxlab import bench
  if args.model == "all":
    bench.run_all(args.out, steps=args.steps, dry_run=args.dry_run)
    return 0
  bench.run(args.model, batch_size=args.batch_size, steps=args.steps, dtype=args.dtype,
            reference=not args.no_reference, config=args.config_variant)
  return 0


class _Parser(argparse.ArgumentParser):
  """argparse, with a wrong flag reported in one line (usage is one `--help` away)."""

  def error(self, message):
    print(f"{self.prog}: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
    sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
  parser = _Parser(prog="jaxlab", description=__doc__.split("\n\n")[0])
  sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

  p = sub.add_parser("train", help="train a method; resumes from the latest checkpoint in --workdir")
  p.add_argument("method")
  p.add_argument("--config", required=True, help="METHOD:VARIANT (the packaged config) or path/to/config.py:VARIANT")
  p.add_argument("--workdir", required=True)
  p.set_defaults(handler=_train)

  p = sub.add_parser("eval", help="evaluate the latest (or --step) checkpoint of a run")
  p.add_argument("method")
  p.add_argument("--workdir", required=True)
  p.add_argument("--step", type=at_least(0), default=None)
  p.set_defaults(handler=_eval)

  p = sub.add_parser("demo", help="every method's tiny config end to end, then a report")
  p.add_argument("--workdir", default="runs/demo")
  p.add_argument("--only", default="", help="comma-separated methods (default: all)")
  p.set_defaults(handler=_demo)

  p = sub.add_parser("bench", help="step time, throughput, MFU and memory, beside the PyTorch reference")
  p.add_argument("model", help="a model, or all (every paper-size bench and the bf16 check, one table)")
  p.add_argument("--batch-size", type=at_least(1), default=None)
  p.add_argument("--steps", type=at_least(1), default=10)
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  p.add_argument("--config", dest="config_variant", default="small",
                 help="model size: tiny | small | paper (cnn3d: also *_i3d)")
  p.add_argument("--no-reference", action="store_true", help="skip the PyTorch side")
  p.add_argument("--out", default="runs/bench/all", help="bench all: where the markdown table goes")
  p.add_argument("--dry-run", action="store_true", help="bench all: the plan, each bench at a tiny size")
  p.set_defaults(handler=_bench)

  for name in _VERB_MODULES:
    try:
      module = importlib.import_module(name)
    except ModuleNotFoundError as e:
      if e.name in (name, name.rsplit(".", 1)[0]):
        continue  # that package is not in this checkout
      raise
    module.register(sub)
  return parser


def main(argv: list[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  try:
    argv, overrides = _split_config_overrides(argv)
    args = build_parser().parse_args(argv)
    if overrides and args.command not in ("train", "eval"):
      raise UserError(f"--config.* overrides apply to train and eval, not {args.command}")
    compilation_cache.configure(compilation_cache.default_directory())
    return args.handler(args, overrides) or 0
  except UserError as e:
    print(f"jaxlab: error: {e}", file=sys.stderr)
    return 2
  except OSError as e:
    if e.filename is None:  # not about a path the user gave (a socket, a library): a bug until shown otherwise
      raise
    # A path that is a file where a folder is needed (or the reverse), missing, or not writable.
    print(f"jaxlab: error: {e.filename}: {e.strerror}; check the path", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("jaxlab: interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
