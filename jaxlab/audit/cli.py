"""`jaxlab audit ...`: the Consent in Crisis pipeline, one verb per step.

  jaxlab audit tokens --c4 'c4/*.json.gz' --rf 'rw/*.parquet' --dolma 'dolma/*.json.gz' --out tokens.csv
  jaxlab audit sample --tokens tokens.csv --head-k 2000 --random-n 10000 --out sample/
  jaxlab audit crawl --domains sample/domains.csv --out crawl/      (on N machines: --shard K/N, then
  jaxlab audit export --out crawl/ [SHARD_FOLDERS...]                 export merges the shard folders)
  jaxlab audit label --crawl crawl/ --labeller openai:gpt-4o      (or keyword, local:PATH, scripted:FILE)
  jaxlab audit report --crawl crawl/ --tokens tokens.csv --random sample/random.txt --out report/
  jaxlab audit robots FILE... | --json crawl/robots.json [--agent GPTBot] [--path /x] [--paper-compat]
"""

import argparse
import csv
import json
from pathlib import Path
import shlex
import sys
import time

from jaxlab.errors import UserError, read_json


def _domains_file(path: str | None) -> list[str] | None:
  if not path:
    return None
  from jaxlab.audit.tokens import normalise_domain
  path = Path(path)
  if not path.is_file():
    raise UserError(f"domain list {path} not found")
  return [normalise_domain(line.split(",")[0]) for line in path.read_text().splitlines()
          if line.strip() and not line.startswith("#") and line.split(",")[0].strip().lower() not in ("url", "domain")]


def _tokens(args) -> int:
  from jaxlab.audit import tokens
  shards = {c: getattr(args, c) for c in tokens.CORPORA if getattr(args, c)}
  if not shards:
    raise UserError("give at least one corpus: --c4, --rf or --dolma (file patterns of JSON-lines or Parquet shards)")
  start = time.time()
  tokens.count_tokens(shards, args.out, shlex.split(args.beam_args or ""), normalise_www=not args.keep_www)
  table = tokens.TokenTable.load(args.out)
  print(f"{len(table)} domains -> {args.out} ({time.time() - start:.1f} s); totals: "
        + ", ".join(f"{c}={table.total(c):,}" for c in shards))
  return 0


def _sample(args) -> int:
  from jaxlab.audit import crawl, tokens
  table = tokens.TokenTable.load(args.tokens)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  heads = {c: table.head(c, args.head_k) for c in tokens.CORPORA}
  for corpus, domains in heads.items():
    (out / f"head_{corpus}.txt").write_text("\n".join(domains) + "\n")
    print(f"HEAD {corpus}: {len(domains)} domains, H = {table.head_share(corpus, args.head_k):.4f}")
  random = table.random_sample(args.random_n, args.seed, args.head_k, require_all_corpora=not args.any_corpus)
  (out / "random.txt").write_text("\n".join(random) + "\n")
  links = {}
  if args.tos_links:
    with open(args.tos_links, newline="") as f:
      for row in csv.DictReader(f):
        links[tokens.normalise_domain(row.get("URL") or row.get("Domain") or "")] = row
  union = sorted(set().union(*heads.values()) | set(random))
  with open(out / "domains.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(("URL",) + crawl.TOS_COLUMNS)
    for domain in union:
      writer.writerow([domain] + [links.get(domain, {}).get(c, "") for c in crawl.TOS_COLUMNS])
  print(f"RANDOM: {len(random)} domains (seed {args.seed}); {len(union)} domains to crawl -> {out / 'domains.csv'}")
  return 0


def _crawl(args) -> int:
  from jaxlab.audit import crawl
  from jaxlab.audit.wayback import WaybackClient
  kinds = [k for k in args.kinds.split(",") if k]
  targets = crawl.read_targets(args.domains, kinds)
  if args.shard:
    index, count = crawl.parse_shard(args.shard)
    targets = [t for t in targets if crawl.shard_of(t.domain, count) == index]
  client = WaybackClient(args.cdx_url, args.replay_url, rate=args.rate, timeout=args.timeout,
                         max_retries=args.retries, base_delay=args.backoff)
  summary = crawl.crawl(targets, args.out, client, start=getattr(args, "from"), end=args.to, workers=args.workers)
  print(f"{summary.targets} URLs, {summary.listed} captures listed: {summary.fetched} fetched now, "
        f"{summary.already_stored} already stored, {summary.truncated} truncated, {summary.non_text} not text, "
        f"{summary.failures} failures")
  for domain, count in sorted(summary.failures_by_domain.items(), key=lambda x: -x[1])[:20]:
    print(f"  failures {domain}: {count} (see {Path(args.out) / 'failures.jsonl'})")
  if args.shard:
    print(f"shard {args.shard} done; once every shard is, merge them: jaxlab audit export --out {args.out} "
          "[the other shards' --out folders]")
  elif not args.no_export:
    _export(args)
  return 1 if summary.failures else 0


def _export(args) -> int:
  from jaxlab.audit import crawl
  for folder in [args.out, *getattr(args, "shards", ())]:
    if not Path(folder).is_dir():
      raise UserError(f"crawl folder {folder} not found")
  paths = crawl.export(args.out, getattr(args, "shards", ()))
  print("exported " + ", ".join(str(p) for p in paths.values()))
  return 0


def _label(args) -> int:
  from jaxlab.audit import tos
  crawl_dir = Path(args.crawl)
  if not crawl_dir.is_dir():
    raise UserError(f"--crawl {crawl_dir} is not a folder; give the --out folder of `jaxlab audit crawl`")
  tos_path = crawl_dir / "tos.json"
  if not tos_path.is_file():
    from jaxlab.audit.crawl import export
    export(crawl_dir)
  tos_json = read_json(tos_path, "the ToS snapshots of a crawl")
  if args.labeller == "keyword":
    labeller = tos.KeywordLabeller()
  else:
    from jaxlab.lm import make_lm
    labeller = tos.LMLabeller(make_lm(args.labeller), args.cache or crawl_dir / "tos_label_cache.jsonl")
  verdicts = tos.label_pages(tos_json, labeller, per_year=args.per_year, workers=args.workers)
  labels = tos.domain_labels(verdicts)
  out = Path(args.out or crawl_dir / "tos_labels.json")
  out.write_text(json.dumps({"labeller": labeller.name, "per_year": args.per_year, "verdicts": verdicts,
                             "labels": labels}, indent=1, sort_keys=True))
  pages = sum(len(dates) for pages in verdicts.values() for dates in pages.values())
  calls = f", {labeller.calls} LM calls (the rest from the cache)" if hasattr(labeller, "calls") else ""
  print(f"{len(labels)} domains, {pages} page snapshots labelled by {labeller.name}{calls} -> {out}")
  return 0


def _labels(path: Path) -> dict:
  labels = read_json(path, "ToS labels from `jaxlab audit label`")
  if not isinstance(labels, dict) or "labels" not in labels:
    raise UserError(f"{path} holds no \"labels\"; make it with `jaxlab audit label`")
  return labels["labels"]


def _report(args) -> int:
  from jaxlab.audit import report, tokens
  totals = None
  if args.paper_totals:
    totals = tokens.PAPER_TOTALS
  table = tokens.TokenTable.load(args.tokens, totals)
  labels_path = Path(args.labels) if args.labels else Path(args.crawl) / "tos_labels.json"
  labels = _labels(labels_path) if labels_path.is_file() else None
  if labels is None:
    print(f"no ToS labels ({labels_path}); the report covers robots.txt only. Run `jaxlab audit label` first.")
  config = report.ReportConfig(head_k=args.head_k, figure_corpus=args.corpus, start=args.start, end=args.end,
                               paper_compat=args.paper_compat, newer_agents=args.newer_agents,
                               resamples=args.resamples, seed=args.seed, with_forecasts=not args.no_forecast)
  headline = report.build(args.crawl, table, args.out, config, _domains_file(args.random), labels)
  for key, value in sorted(headline.items()):
    print(f"{key}: {value:.4f}")
  print(f"report: {Path(args.out) / 'report.md'}")
  return 0


def _robots(args) -> int:
  from jaxlab.audit import agents, robots
  texts: list[tuple[str, str]] = []
  if args.json:
    data = read_json(args.json, "a crawl's robots.json")
    if not isinstance(data, dict) or not all(isinstance(dated, dict) for dated in data.values()):
      raise UserError(f"{args.json} should map domains to {{date: robots.txt text}}, as a crawl's robots.json does")
    texts = [(f"{domain} {date}", text or "") for domain, dated in data.items() for date, text in dated.items()]
  if args.synthetic:
    from jaxlab.audit.synthetic import benchmark_robots
    texts += [(f"synthetic {i}", text) for i, text in enumerate(benchmark_robots(args.synthetic))]
  for name in args.files:
    path = Path(name)
    if not path.is_file():
      raise UserError(f"{path} not found")
    texts.append((name, path.read_text(errors="replace")))
  if not texts:
    raise UserError("give robots.txt files, --json crawl/robots.json or --synthetic N")
  names = args.agent or sorted({a for agents_ in agents.organisations(args.newer_agents).values() for a in agents_})
  start = time.perf_counter()
  results = []
  for label, text in texts:
    parsed = robots.parse(text, args.paper_compat)
    results.append((label, {a: parsed.classify_detailed(a) for a in names},
                    parsed.allowed(names[0], args.path) if args.path else None))
  seconds = time.perf_counter() - start
  if len(texts) <= args.show:
    for label, statuses, allowed in results:
      print(label + ": " + ", ".join(f"{a}={s}" for a, s in statuses.items())
            + (f"; {names[0]} {'may' if allowed else 'may not'} fetch {args.path}" if args.path else ""))
  size = sum(len(text.encode("utf-8", "replace")) for _, text in texts) / len(texts)
  print(f"{len(texts)} robots.txt files ({size / 1024:.1f} KiB on average), {len(names)} agents each: {seconds:.3f} s, "
        f"{len(texts) / seconds:,.0f} files/s ({'paper-time' if args.paper_compat else 'RFC 9309'} parser)",
        file=sys.stderr)
  return 0


def register(subparsers) -> None:
  from jaxlab.cli import at_least
  audit = subparsers.add_parser("audit", help="Consent in Crisis: token counts, Wayback crawl, robots.txt and "
                                "ToS labels, restriction estimates, forecasts and figures",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  steps = audit.add_subparsers(dest="audit_command", required=True, metavar="STEP")

  p = steps.add_parser("tokens", help="\\w+ tokens per domain in C4/RefinedWeb/Dolma shards (Apache Beam)")
  p.add_argument("--c4", help="C4 shards: JSON lines with url, text (a file pattern)")
  p.add_argument("--rf", help="RefinedWeb shards: Parquet or JSON lines with url, content")
  p.add_argument("--dolma", help="Dolma shards: JSON lines with text, source, metadata")
  p.add_argument("--out", required=True, help="the token table CSV")
  p.add_argument("--keep-www", action="store_true", help="do not merge x.com into www.x.com")
  p.add_argument("--beam-args", default="", help="Beam pipeline options, e.g. '--runner=DataflowRunner "
                 "--project=P --region=R --temp_location=gs://B/tmp' (default: the local DirectRunner)")
  p.set_defaults(handler=lambda args, overrides: _tokens(args))

  p = steps.add_parser("sample", help="HEAD (top k per corpus) and RANDOM domains, reproducible by seed")
  p.add_argument("--tokens", required=True)
  p.add_argument("--head-k", type=at_least(1), default=2000)
  p.add_argument("--random-n", type=at_least(0), default=10000)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--any-corpus", action="store_true",
                 help="draw RANDOM from all domains, not only those in all three corpora")
  p.add_argument("--tos-links", help="a CSV with URL and 'Terms of Use Link 1..5' columns to carry over")
  p.add_argument("--out", required=True)
  p.set_defaults(handler=lambda args, overrides: _sample(args))

  p = steps.add_parser("crawl", help="monthly Wayback snapshots of robots.txt, home pages and ToS pages")
  p.add_argument("--domains", required=True, help="CSV with URL (+ Terms of Use Link 1..5) or one domain a line")
  p.add_argument("--out", required=True)
  p.add_argument("--kinds", default="robots,main,tos")
  p.add_argument("--from", default="20160101")
  p.add_argument("--to", default="20240419")
  p.add_argument("--rate", type=float, default=2.0, help="requests per second, all threads together")
  p.add_argument("--workers", type=at_least(1), default=4)
  p.add_argument("--timeout", type=float, default=30.0)
  p.add_argument("--retries", type=at_least(0), default=6)
  p.add_argument("--backoff", type=float, default=1.0, help="base of the exponential backoff, seconds")
  p.add_argument("--cdx-url", default="https://web.archive.org/cdx/search/cdx")
  p.add_argument("--replay-url", default="https://web.archive.org/web")
  p.add_argument("--no-export", action="store_true", help="skip writing robots.json/main.json/tos.json")
  p.add_argument("--shard", help="K/N: crawl only the domains of shard K (0 .. N-1), e.g. one per machine")
  p.set_defaults(handler=lambda args, overrides: _crawl(args))

  p = steps.add_parser("export", help="robots.json, main.json, tos.json from a crawl folder (and shard folders)")
  p.add_argument("--out", required=True, help="the crawl folder (written into)")
  p.add_argument("shards", nargs="*", help="other shards' crawl folders to merge in")
  p.set_defaults(handler=lambda args, overrides: _export(args))

  p = steps.add_parser("label", help="label ToS snapshots in the paper's three taxonomies")
  p.add_argument("--crawl", required=True)
  p.add_argument("--labeller", default="keyword",
                 help="keyword | openai:MODEL[@BASE_URL] | local:PATH | scripted:FILE.json")
  p.add_argument("--per-year", type=at_least(0), default=2, help="snapshots per page and year to label (0: all)")
  p.add_argument("--workers", type=at_least(1), default=4)
  p.add_argument("--cache", help="verdict cache (default: CRAWL/tos_label_cache.jsonl)")
  p.add_argument("--out", help="default: CRAWL/tos_labels.json")
  p.set_defaults(handler=lambda args, overrides: _label(args))

  p = steps.add_parser("report", help="restricted-token estimates, intervals, forecasts, figures and tables")
  p.add_argument("--crawl", required=True)
  p.add_argument("--tokens", required=True)
  p.add_argument("--labels", help="ToS labels (default: CRAWL/tos_labels.json)")
  p.add_argument("--random", help="the RANDOM domains (default: every crawled domain outside the heads)")
  p.add_argument("--out", required=True)
  p.add_argument("--head-k", type=at_least(1), default=2000)
  p.add_argument("--corpus", default="c4", help="corpus of the status/organisation/matrix figures")
  p.add_argument("--start", default="2016-01")
  p.add_argument("--end", default="2024-04")
  p.add_argument("--paper-compat", action="store_true", help="the paper-time robots.txt parser")
  p.add_argument("--newer-agents", action="store_true", help="track the agents added since the paper too")
  p.add_argument("--resamples", type=at_least(1), default=200)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--no-forecast", action="store_true")
  p.add_argument("--paper-totals", action="store_true",
                 help="corpus totals from the paper (for a token table of the sampled domains only)")
  p.set_defaults(handler=lambda args, overrides: _report(args))

  p = steps.add_parser("robots", help="classify robots.txt files per agent (and time the parser)")
  p.add_argument("files", nargs="*")
  p.add_argument("--json", help="a crawl's robots.json: every snapshot in it")
  p.add_argument("--synthetic", type=at_least(0), default=0, help="also N generated files the size of a large site's")
  p.add_argument("--agent", action="append", help="agent to classify (repeatable; default: the tracked ones)")
  p.add_argument("--path", help="also say whether the first agent may fetch this path (RFC 9309)")
  p.add_argument("--paper-compat", action="store_true")
  p.add_argument("--newer-agents", action="store_true")
  p.add_argument("--show", type=at_least(0), default=50, help="print per-file results up to this many files")
  p.set_defaults(handler=lambda args, overrides: _robots(args))
