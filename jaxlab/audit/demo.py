"""`jaxlab demo` part for Consent in Crisis: the whole audit on a synthetic web, offline.

Corpus shards in the three corpora's formats -> Beam token counts -> HEAD/RANDOM samples -> a crawl of a local
Wayback emulator that injects faults (429 bursts, 503s, a truncated body, malformed JSON, a slow reply, a
redirect) -> robots.txt statuses -> keyword ToS labels -> estimates with bootstrap intervals, SARIMA forecasts,
figures. The synthetic web knows the truth, so the estimate is checked against the token-weighted share over
every domain.
"""

import csv
import json
from pathlib import Path
import shutil
import time

import numpy as np

from jaxlab.methods import DemoSection

N_SITES, HEAD_K, RANDOM_N, SEED = 1500, 25, 60, 0


def _truth(world, table, months, corpus: str) -> dict[str, float]:
  """The restricted shares over every domain, each change observed (no sampling, no archive gaps)."""
  from jaxlab.audit import agents, estimates, tos
  domains = [s.key for s in world.sites]
  weights = table.weights(domains, corpus)
  start_dates = world.start_dates()
  robots_panel = agents.robots_panel(world.truth_robots_json(), start_dates, months).rows(domains)
  tos_panel = tos.tos_panel(world.truth_tos_labels(), domains, start_dates, months)
  robots_w = table.weights(robots_panel.domains, corpus)
  robots_share = estimates.restricted_share(agents.combined(robots_panel) == agents.ALL, robots_panel.present,
                                            robots_w)
  tos_share = estimates.restricted_share(tos.is_restricted(tos_panel.column("ToS")), tos_panel.present, weights)
  return {"robots": float(robots_share[-1]), "tos": float(tos_share[-1])}


def demo(workdir, n_sites: int = N_SITES, resamples: int = 200) -> DemoSection:
  """The audit end to end on a synthetic web of `n_sites` domains (`resamples`: bootstrap resamples)."""
  from jaxlab.audit import crawl, report, robots, synthetic, tokens, tos
  from jaxlab.audit.temporal import month_range
  from jaxlab.audit.wayback import WaybackClient
  from jaxlab.audit.wayback_server import Fault, WaybackServer

  workdir = Path(workdir)
  for folder in ("corpora", "crawl", "report", "report_paper_compat"):
    shutil.rmtree(workdir / folder, ignore_errors=True)
  workdir.mkdir(parents=True, exist_ok=True)
  timings = {}
  start = time.time()
  world = synthetic.make_world(n_sites, SEED)
  shards = world.write_corpora(workdir / "corpora")
  tokens.count_tokens(shards, workdir / "tokens.csv")
  table = tokens.TokenTable.load(workdir / "tokens.csv")
  timings["tokens"] = time.time() - start

  heads = {c: table.head(c, HEAD_K) for c in tokens.CORPORA}
  random = table.random_sample(RANDOM_N, SEED, HEAD_K)
  sampled = sorted((set().union(*heads.values()) | set(random)) & set(world.by_key))
  rows = world.domain_rows(sampled)
  with open(workdir / "domains.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)

  start = time.time()
  faults = [Fault("/cdx/", "429", times=4, retry_after="0"), Fault("/cdx/", "malformed", times=1),
            Fault("id_/", "503", times=6), Fault("id_/", "truncate", times=2), Fault("id_/", "slow", delay=1.5),
            Fault("id_/", "redirect", times=3)]
  with WaybackServer(world.archive(sampled), faults) as server:
    client = WaybackClient(server.cdx_url, server.replay_url, rate=500, timeout=0.75, base_delay=0.02,
                           max_retries=6)
    summary = crawl.crawl(crawl.read_targets(workdir / "domains.csv"), workdir / "crawl", client, workers=8,
                          progress=False)
    requests = len(server.requests)
  crawl.export(workdir / "crawl")
  timings["crawl"] = time.time() - start

  start = time.time()
  tos_json = json.loads((workdir / "crawl" / "tos.json").read_text())
  verdicts = tos.label_pages(tos_json, tos.KeywordLabeller())
  labels = tos.domain_labels(verdicts)
  agree = {t: [] for t in tos.TAXONOMIES}
  for domain, pages in verdicts.items():
    site = world.by_key[domain]
    for url, dated in pages.items():
      history = site.tos["/" + url.split("/", 3)[3]]
      for date, codes in dated.items():
        truth = synthetic.true_codes(synthetic.state_at(history, date[:7] + "-28"))
        for t in tos.TAXONOMIES:
          agree[t].append(codes[t] == truth[t])
  timings["labels"] = time.time() - start

  start = time.time()
  robots_json = json.loads((workdir / "crawl" / "robots.json").read_text())
  texts = [t for dated in robots_json.values() for t in dated.values()]
  parse_start = time.perf_counter()
  for text in texts:
    parsed = robots.parse(text)
    for agent in ("GPTBot", "CCBot", "Google-Extended", "ClaudeBot", "anthropic-ai"):
      parsed.classify_detailed(agent)
  files_per_s = len(texts) / (time.perf_counter() - parse_start)

  config = report.ReportConfig(head_k=HEAD_K, resamples=resamples)
  headline = report.build(workdir / "crawl", table, workdir / "report", config, random, labels)
  paper = report.build(workdir / "crawl", table, workdir / "report_paper_compat",
                       report.ReportConfig(head_k=HEAD_K, paper_compat=True, resamples=0, with_forecasts=False),
                       random, labels)
  timings["report"] = time.time() - start
  truth = _truth(world, table, month_range(config.start, config.end), "c4")

  end = config.end
  figures = {
      "c4_H": headline["c4_H"],
      f"c4_head_restricted_{end}_%": 100 * headline[f"c4_head_restricted_{end}"],
      f"c4_random_restricted_{end}_%": 100 * headline[f"c4_random_restricted_{end}"],
      f"c4_full_restricted_{end}_%": 100 * headline[f"c4_full_restricted_{end}"],
      f"c4_full_restricted_{end}_ci95_lo_%": 100 * headline[f"c4_full_restricted_{end}_lo"],
      f"c4_full_restricted_{end}_ci95_hi_%": 100 * headline[f"c4_full_restricted_{end}_hi"],
      f"c4_full_restricted_{end}_true_%": 100 * truth["robots"],
      "c4_full_restricted_2023-04_%": 100 * headline["c4_full_restricted_2023-04"],
      "c4_full_forecast_2025-04_%": 100 * headline["c4_full_forecast_2025-04"],
      f"c4_head_restricted_{end}_paper_parser_%": 100 * paper[f"c4_head_restricted_{end}"],
      f"c4_tos_full_restricted_{end}_%": 100 * headline[f"c4_tos_full_restricted_{end}"],
      f"c4_tos_full_restricted_{end}_true_%": 100 * truth["tos"],
      "keyword_label_accuracy_%": 100 * float(np.mean([a for v in agree.values() for a in v])),
      "captures_fetched": summary.fetched,
      "crawl_failures": summary.failures,
      "robots_files_per_s": files_per_s,
  }
  report_md = (workdir / "report" / "report.md").read_text()
  markdown = "\n".join([
      f"A synthetic web of {n_sites} domains: Beam token counts over generated C4/RefinedWeb/Dolma shards, "
      f"HEAD = top {HEAD_K} per corpus, RANDOM = {len(random)} domains (seed {SEED}); {len(sampled)} domains "
      f"crawled from a local Wayback emulator with injected faults ({requests} requests, {summary.fetched} "
      f"captures stored, {summary.failures} failures); keyword ToS labels (agreement with the truth: "
      + ", ".join(f"{t} {100 * np.mean(v):.0f}%" for t, v in agree.items()) + ").",
      "",
      f"Full-corpus C4 tokens restricted by robots.txt in {end}: estimate "
      f"{figures[f'c4_full_restricted_{end}_%']:.1f}% (95% CI {figures[f'c4_full_restricted_{end}_ci95_lo_%']:.1f}"
      f"-{figures[f'c4_full_restricted_{end}_ci95_hi_%']:.1f}%), truth over all {n_sites} domains "
      f"{figures[f'c4_full_restricted_{end}_true_%']:.1f}%. ToS-restricted: estimate "
      f"{figures[f'c4_tos_full_restricted_{end}_%']:.1f}%, truth {figures[f'c4_tos_full_restricted_{end}_true_%']:.1f}%."
      f" The paper-time parser puts HEAD C4 at {figures[f'c4_head_restricted_{end}_paper_parser_%']:.1f}% "
      f"(RFC 9309: {figures[f'c4_head_restricted_{end}_%']:.1f}%).",
      "",
      "Seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()) + f". Parser: {files_per_s:,.0f} "
      "robots.txt files/s (parse + 5 agents' detailed status).",
      "", report_md.split("\n", 1)[1]])
  files = sorted((workdir / "report").glob("*.png")) + [workdir / "report" / "report.md"]
  return DemoSection("Consent in Crisis: robots.txt and ToS audit (synthetic crawl)", markdown, figures, files)
