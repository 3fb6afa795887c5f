"""`jaxlab find build | interpret | score`.

  jaxlab find build --out DIR [--release RELEASE_DIR] [--numeric N] [--strings N] [--seed S]
  jaxlab find interpret --dataset DIR --category numeric --out RESULTS [--backend offline|openai:M@URL|local:PATH|scripted:F]
  jaxlab find score --dataset DIR --results RESULTS [--judge openai:M@URL|...]
"""

import sys

CATEGORIES = ("numeric", "strings", "neurons_entities", "neurons_relations")


def make_backend(spec: str):
  """`offline` (the default interpreter), `offline:nofallback`, or any `jaxlab.lm.make_lm` spec."""
  if spec in ("offline", "offline:nofallback"):
    from jaxlab.find.offline import OfflineInterpreter
    return OfflineInterpreter(fallback=spec == "offline")
  from jaxlab.errors import UserError
  from jaxlab.lm import make_lm
  if spec.partition(":")[0] not in ("openai", "local", "scripted"):
    raise UserError(f"backend {spec!r} not understood; use offline, offline:nofallback, openai:MODEL[@BASE_URL], "
                    "local:PATH or scripted:FILE.json")
  return make_lm(spec)


def build(out, *, release=None, n_numeric=1000, n_strings=1000, seed=0, mlp_epochs=None, categories=CATEGORIES,
          log=print) -> dict:
  """Writes a benchmark folder; returns {category: number of functions}."""
  from pathlib import Path

  from jaxlab.errors import UserError
  from jaxlab.find import dataset, mlp, numeric, strings
  written = {}
  if "numeric" in categories and (release or n_numeric):
    if release:
      functions = dataset.load_numeric(Path(release) / "numeric")
      source = f"rebuilt from {release}/numeric (release bugs kept)"
    else:
      functions = numeric.generate(n_numeric, seed)
      source = f"generated, seed {seed}"
    todo = sum(f.variant == "mlp" and f.mlp is None for f in functions)
    if todo:
      log(f"numeric: training {todo} MLP approximations ({mlp_epochs or mlp.EPOCHS} epochs each)")
    functions = mlp.fit_functions(functions, seed=seed, log=lambda line: log(f"numeric: {line}"),
                                  **({"epochs": mlp_epochs} if mlp_epochs else {}))
    dataset.write(out, "numeric", functions)
    written["numeric"] = len(functions)
    log(f"numeric: {len(functions)} functions, {source}")
  if "strings" in categories and n_strings:
    functions = strings.generate(n_strings, seed)
    dataset.write(out, "strings", functions, strings.unit_tests(functions, seed))
    written["strings"] = len(functions)
    log(f"strings: {len(functions)} functions with unit tests, seed {seed}")
  for category in ("neurons_entities", "neurons_relations"):
    if category not in categories:
      continue
    if not release:
      log(f"{category}: skipped (the neurons' concepts and unit tests come from a release folder: --release)")
      continue
    try:
      functions = dataset.load(release, category)
    except UserError as e:
      log(f"{category}: skipped ({e})")
      continue
    tests = dataset.load_unit_tests(release, category)
    dataset.write(out, category, functions, [tests[f.name] for f in functions if f.name in tests] or None)
    written[category] = len(functions)
    log(f"{category}: {len(functions)} neurons from {release}")
  return written


def _categories(text: str | None) -> tuple[str, ...]:
  from jaxlab.errors import UserError
  if not text:
    return CATEGORIES
  chosen = tuple(c.strip() for c in text.split(",") if c.strip())
  unknown = [c for c in chosen if c not in CATEGORIES]
  if unknown:
    raise UserError(f"unknown categories {unknown}; choose from {', '.join(CATEGORIES)}")
  return chosen


def _build(args) -> int:
  build(args.out, release=args.release, n_numeric=args.numeric, n_strings=args.strings, seed=args.seed,
        mlp_epochs=args.mlp_epochs, categories=_categories(args.categories))
  print(f"benchmark written to {args.out}")
  return 0


def _interpret(args) -> int:
  from jaxlab.errors import UserError
  from jaxlab.find import dataset, protocol
  neuron_lm = make_backend(args.neuron_lm) if args.neuron_lm else None
  if args.category.startswith("neurons") and neuron_lm is None:
    raise UserError(f"{args.category} functions are LM-backed: pass --neuron-lm (e.g. openai:MODEL@URL)")
  functions = dataset.load(args.dataset, args.category, neuron_lm=neuron_lm)
  if args.functions:
    wanted = [name.strip() for name in args.functions.split(",") if name.strip()]
    unknown = sorted(set(wanted) - {f.name for f in functions})
    if unknown:
      names = [f.name for f in functions]
      raise UserError(f"--functions names {', '.join(unknown[:5])}, which {args.dataset}/{args.category} does not "
                      f"have; it has {names[0]} ... {names[-1]} ({len(names)} functions)" if names else
                      f"{args.dataset}/{args.category} has no functions")
    functions = [f for f in functions if f.name in set(wanted)]
  if args.limit:
    functions = functions[:args.limit]
  lm = make_backend(args.backend)
  counts = protocol.interpret(functions, lm, args.out, hints=args.hints, single_round=args.single_round,
                              temperature=args.temperature, strict_system=args.strict_system_prompt,
                              progress=lambda line: print(line, flush=True))
  print(f"{args.category}: {counts['done']} interpreted, {counts['skipped']} already done, {counts['failed']} failed "
        f"(in {args.out})")
  return 1 if counts["failed"] else 0


def _score(args) -> int:
  from jaxlab.find import scoring
  judge = make_backend(args.judge) if args.judge else None
  categories = _categories(args.categories) if args.categories else None
  summaries = scoring.score_run(args.dataset, args.results, judge=judge, categories=categories, workers=args.workers)
  print(scoring.table(summaries))
  if judge is None and any(not c.startswith("numeric") for c in summaries):
    print("(description metrics need a judge LM: --judge openai:MODEL@URL)", file=sys.stderr)
  return 0


def register(subparsers) -> None:
  from jaxlab.cli import at_least
  parser = subparsers.add_parser("find", help="the FIND function-description benchmark")
  verbs = parser.add_subparsers(dest="find_command", required=True, metavar="VERB")

  p = verbs.add_parser("build", help="write a benchmark folder (generated, or rebuilt from a release)")
  p.add_argument("--out", required=True)
  p.add_argument("--release", help="a released FIND folder (numeric/data.json, neurons_*/...) to rebuild from")
  p.add_argument("--numeric", type=at_least(0), default=1000, help="numeric functions to generate (without --release)")
  p.add_argument("--strings", type=at_least(0), default=1000, help="string functions to generate")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--mlp-epochs", type=at_least(1), default=None, help="epochs for the MLP approximations (default 10000)")
  p.add_argument("--categories", default="", help="comma-separated subset of " + ",".join(CATEGORIES))
  p.set_defaults(handler=lambda args, overrides: _build(args))

  p = verbs.add_parser("interpret", help="run an interpreter on one category (resumable)")
  p.add_argument("--dataset", required=True)
  p.add_argument("--category", required=True, choices=CATEGORIES)
  p.add_argument("--out", required=True, help="results folder; interpretations go to OUT/CATEGORY[_hints]/fNNNNN/")
  p.add_argument("--backend", default="offline",
                 help="offline | offline:nofallback | openai:MODEL[@BASE_URL] | local:PATH | scripted:FILE.json")
  p.add_argument("--neuron-lm", default=None, help="the LM behind the synthetic neurons (same forms as --backend)")
  p.add_argument("--hints", action="store_true", help="search initialisation: start from initial.json's words")
  p.add_argument("--single-round", action="store_true", help="MILAN-style: one experiment, then a description")
  p.add_argument("--temperature", type=float, default=0.0)
  p.add_argument("--strict-system-prompt", action="store_true", help="the original's Llama-2 system prompt")
  p.add_argument("--limit", type=at_least(0), default=0, help="only the first N functions")
  p.add_argument("--functions", default="", help="comma-separated function names (f00003,...)")
  p.set_defaults(handler=lambda args, overrides: _interpret(args))

  p = verbs.add_parser("score", help="score a results folder; writes scores.json and table.md there")
  p.add_argument("--dataset", required=True)
  p.add_argument("--results", required=True)
  p.add_argument("--judge", default=None, help="LM for the description unit tests (openai:MODEL@URL, ...)")
  p.add_argument("--categories", default="")
  p.add_argument("--workers", type=at_least(1), default=2, help="parallel sandboxes")
  p.set_defaults(handler=lambda args, overrides: _score(args))
