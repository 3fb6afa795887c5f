"""`jaxlab audit report`: estimates, intervals, forecasts, the paper's figures and tables from a crawl.

Inputs: a crawl folder (its robots.json and start_dates.json, written by `crawl.export`), the token table,
and optionally the ToS labels of `jaxlab audit label`. Outputs in the report folder: per corpus the robots
and ToS estimate tables (`period, Head, Random, Head Portion, Rand Portion, Full Corpus` + bootstrap bounds),
per-organisation series, the robots-vs-ToS matrix, the agent table, forecasts, PNG figures, and report.md.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from jaxlab.audit import agents, estimates, figures, forecast, tos
from jaxlab.audit.crawl import export
from jaxlab.audit.robots import DETAILED_STATUSES
from jaxlab.audit.temporal import END_MONTH, START_MONTH, month_range
from jaxlab.audit.tokens import CORPORA, TokenTable
from jaxlab.errors import read_json


@dataclasses.dataclass
class ReportConfig:
  head_k: int = 2000  # HEAD: each corpus's top k domains
  corpora: tuple[str, ...] = CORPORA
  figure_corpus: str = "c4"  # the corpus of the status, organisation and matrix figures (the paper: C4)
  start: str = START_MONTH
  end: str = END_MONTH
  paper_compat: bool = False  # the paper-time robots.txt parser
  newer_agents: bool = False  # add the agents tracked since the paper
  resamples: int = 200  # bootstrap resamples of the RANDOM domains
  seed: int = 0
  with_forecasts: bool = True
  horizon: int = forecast.HORIZON


def _markdown(frame: pd.DataFrame, digits: int = 1, index: bool = True) -> str:
  def fmt(v):
    if not isinstance(v, (float, np.floating)):
      return str(v)
    if not np.isfinite(v):
      return ""
    return f"{v:.{digits}f}" if v == 0 or abs(v) >= 10**-digits else f"{v:.2g}"
  columns = ([frame.index.name or ""] if index else []) + [str(c) for c in frame.columns]
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  for key, *row in frame.itertuples():
    lines.append("| " + " | ".join(([str(key)] if index else []) + [fmt(v) for v in row]) + " |")
  return "\n".join(lines)


def load_crawl(crawl_dir: str | Path) -> tuple[dict, dict]:
  """robots.json and start_dates.json of a crawl, exporting them first if the crawl has not been."""
  crawl_dir = Path(crawl_dir)
  if not (crawl_dir / "robots.json").is_file() and any(crawl_dir.glob("robots/*/cdx.json")):
    export(crawl_dir)
  robots_json = read_json(crawl_dir / "robots.json", "give a crawl folder made by `jaxlab audit crawl`")
  start_dates = json.loads((crawl_dir / "start_dates.json").read_text()) if (
      crawl_dir / "start_dates.json").is_file() else {}
  return robots_json, start_dates


def _value(frame: pd.DataFrame, period: str, column: str) -> float:
  row = frame.loc[frame["period"] == period, column]
  return float(row.iloc[0]) if len(row) else float("nan")


def build(crawl_dir: str | Path, token_table: TokenTable, out_dir: str | Path, config: ReportConfig = ReportConfig(),
          random_domains: list[str] | None = None, tos_labels: dict | None = None) -> dict[str, float]:
  """Writes the report into `out_dir` and returns its headline numbers."""
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  robots_json, start_dates = load_crawl(crawl_dir)
  months = month_range(config.start, config.end)
  orgs = agents.organisations(config.newer_agents)
  panel = agents.robots_panel(robots_json, start_dates, months, orgs, config.paper_compat)
  heads = {c: token_table.head(c, config.head_k) for c in config.corpora}
  all_heads = set().union(*heads.values())
  if random_domains is None:  # the paper's code: every crawled domain outside the heads
    random_domains = [d for d in panel.domains if d not in all_heads]
  sampled = sorted(all_heads | set(random_domains))
  tos_panel = tos.tos_panel(tos_labels, sampled, start_dates, months) if tos_labels is not None else None
  combined = agents.combined(panel)
  headline: dict[str, float] = {}
  year_before = f"{int(config.end[:4]) - 1}{config.end[4:]}"
  robot_tables, corpus_forecasts, coefficients = {}, {}, {}

  def weights(domains, corpus):
    return token_table.weights(domains, corpus)

  random_set = set(random_domains)
  for corpus in config.corpora:
    H = token_table.head_share(corpus, config.head_k)
    head_set = set(heads[corpus])
    head_rows = [i for i, d in enumerate(panel.domains) if d in head_set]
    rand_rows = [i for i, d in enumerate(panel.domains) if d in random_set]

    def series(restricted, rows_h=head_rows, rows_r=rand_rows, present=panel.present, domains=panel.domains,
               resamples=config.resamples):
      return estimates.corpus_series(
          months, (restricted[rows_h], present[rows_h], weights([domains[i] for i in rows_h], corpus)),
          (restricted[rows_r], present[rows_r], weights([domains[i] for i in rows_r], corpus)), H,
          resamples=resamples, seed=config.seed)

    frame = series(combined == agents.ALL)
    frame.to_csv(out / f"robots_{corpus}_estimates.csv", index=False)
    robot_tables[corpus] = frame
    by_org = pd.concat([series(panel.column(o) == agents.ALL, resamples=0)[["period", "Head", "Random", "Full Corpus"]]
                        .assign(organisation=o) for o in agents.TRACKED], ignore_index=True)
    by_org.to_csv(out / f"robots_{corpus}_by_organisation.csv", index=False)
    headline.update({f"{corpus}_H": H,
                     f"{corpus}_head_restricted_{config.end}": _value(frame, config.end, "Head"),
                     f"{corpus}_random_restricted_{config.end}": _value(frame, config.end, "Random"),
                     f"{corpus}_full_restricted_{config.end}": _value(frame, config.end, "Full Corpus"),
                     f"{corpus}_full_restricted_{year_before}": _value(frame, year_before, "Full Corpus")})
    if config.resamples:
      headline[f"{corpus}_full_restricted_{config.end}_lo"] = _value(frame, config.end, "Full Corpus lo")
      headline[f"{corpus}_full_restricted_{config.end}_hi"] = _value(frame, config.end, "Full Corpus hi")
    if config.with_forecasts:
      corpus_forecasts[corpus] = forecast.sarima(frame["Full Corpus"].to_numpy(), months,
                                                 forecast.CORPUS_ORDERS.get(corpus, (1, 2, 1)),
                                                 forecast.SEASONAL_ORDER, config.horizon)
      corpus_forecasts[corpus].to_csv(out / f"robots_{corpus}_full_forecast.csv", index=False)
      coefficients[corpus] = corpus_forecasts[corpus].attrs.get("params", {})
      headline[f"{corpus}_full_forecast_{corpus_forecasts[corpus]['period'].iloc[-1]}"] = float(
          corpus_forecasts[corpus]["forecast"].iloc[-1])
    if tos_panel is not None:
      t_head = [i for i, d in enumerate(tos_panel.domains) if d in head_set]
      t_rand = [i for i, d in enumerate(tos_panel.domains) if d in random_set]
      tos_frame = series(tos.is_restricted(tos_panel.column("ToS")), t_head, t_rand, tos_panel.present,
                         tos_panel.domains)
      tos_frame.to_csv(out / f"tos_{corpus}_estimates.csv", index=False)
      headline[f"{corpus}_tos_head_restricted_{config.end}"] = _value(tos_frame, config.end, "Head")
      headline[f"{corpus}_tos_full_restricted_{config.end}"] = _value(tos_frame, config.end, "Full Corpus")

  markdown = ["# Consent in Crisis audit report", "",
              f"Months {config.start} to {config.end}; HEAD = top {config.head_k} domains per corpus; "
              f"{len(random_domains)} RANDOM domains; robots.txt parser: "
              f"{'paper-time (paper_compat)' if config.paper_compat else 'RFC 9309'}; {len(panel.domains)} domains "
              f"with robots.txt snapshots.", "",
              "## Restricted tokens (robots.txt fully restricts the tracked organisations), %", ""]
  summary = pd.DataFrame({c: {k: 100 * headline[f"{c}_{k}"] for k in
                              (f"head_restricted_{config.end}", f"random_restricted_{config.end}",
                               f"full_restricted_{year_before}", f"full_restricted_{config.end}")}
                          for c in config.corpora})
  markdown += [_markdown(summary), ""]
  if coefficients:  # Table 9: the SARIMA fits of the full-corpus series
    table9 = pd.DataFrame(coefficients)
    table9.to_csv(out / "forecast_coefficients.csv", index_label="parameter")
    markdown += ["## SARIMA coefficients of the full-corpus series", "", _markdown(table9, digits=3), ""]
  figure_paths = [figures.corpus_lines(robot_tables, corpus_forecasts, "Tokens fully restricted by robots.txt",
                                       out / "fig2_restricted_tokens.png")]

  corpus = config.figure_corpus
  if corpus in config.corpora:
    head_set = set(heads[corpus])
    hp = panel.rows([d for d in panel.domains if d in head_set])
    w = weights(hp.domains, corpus)
    shares = estimates.status_shares(agents.combined(hp), hp.present, w, DETAILED_STATUSES)
    shares.insert(0, "period", months)
    shares.to_csv(out / f"robots_{corpus}_head_status_shares.csv", index=False)
    share_values = shares.drop(columns="period")
    status_forecast = forecast.forecast_shares(share_values, months, config.horizon) if config.with_forecasts else None
    if status_forecast is not None:
      status_forecast.to_csv(out / f"robots_{corpus}_head_status_forecast.csv", index_label="period")
    figure_paths.append(figures.status_area(
        share_values, months, status_forecast, figures.ROBOTS_COLOURS, figures.ROBOTS_NAMES,
        f"robots.txt restrictions on the tracked AI organisations, HEAD of {corpus.upper()} (% of tokens)",
        out / f"fig1_robots_{corpus}.png"))
    org_series = {o: estimates.restricted_share(hp.column(o) == agents.ALL, hp.present, w) for o in agents.TRACKED}
    org_forecasts = {o: forecast.sarima(v, months, steps=config.horizon) for o, v in org_series.items()} if (
        config.with_forecasts) else {}
    for o, v in org_series.items():
      headline[f"{corpus}_head_{o}_{config.end}"] = float(v[months.index(config.end)])
    figure_paths.append(figures.organisation_lines(
        org_series, months, org_forecasts, f"Fully restricted, by organisation, HEAD of {corpus.upper()}",
        out / f"fig1_organisations_{corpus}.png"))
    agent_frame = pd.DataFrame({o: 100 * headline[f"{corpus}_head_{o}_{config.end}"] for o in agents.TRACKED},
                               index=[f"% of HEAD {corpus.upper()} tokens, {config.end}"]).T
    markdown += [f"## Fully restricted by organisation, HEAD of {corpus.upper()}", "", _markdown(agent_frame), ""]
    # Table 3 over every sampled domain's status in the last month.
    sample_panel = panel.rows([d for d in panel.domains if d in head_set or d in random_set])
    latest = np.stack([sample_panel.column(o)[:, -1] for o in agents.TRACKED], -1)
    overlap = pd.DataFrame({"% restricted given another is": {o: 100 * v for o, v in agents.overlap(
        latest, list(agents.TRACKED)).items()}}).sort_values("% restricted given another is", ascending=False)
    overlap.to_csv(out / "organisation_overlap.csv", index_label="organisation")
    markdown += [f"## P(organisation fully restricted | another one is), sampled domains, {config.end}", "",
                 _markdown(overlap), ""]

    if tos_panel is not None:
      tp = tos_panel.rows([d for d in tos_panel.domains if d in head_set])
      tw = weights(tp.domains, corpus)
      tos_shares = estimates.status_shares(tp.column("ToS"), tp.present, tw, tos.LABELS)
      tos_shares.insert(0, "period", months)
      tos_shares.to_csv(out / f"tos_{corpus}_head_label_shares.csv", index=False)
      tos_values = tos_shares.drop(columns="period")
      tos_forecast = forecast.forecast_shares(tos_values, months, config.horizon) if config.with_forecasts else None
      figure_paths.append(figures.status_area(
          tos_values, months, tos_forecast, figures.TOS_COLOURS, None,
          f"Terms of Service restrictions, HEAD of {corpus.upper()} (% of tokens)", out / f"fig1_tos_{corpus}.png"))
      # Fig. 3: latest robots status over the analysed organisations against the latest ToS label.
      last = months.index(config.end)
      robots_latest = agents.combined(hp, agents.ANALYZED)[:, last]
      tos_index = {d: i for i, d in enumerate(tp.domains)}
      tos_latest = np.array([tp.codes[tos_index[d], last, 0] if d in tos_index else tos.NO_TERMS
                             for d in hp.domains], np.int64)
      matrix = estimates.robots_tos_matrix(robots_latest, tos_latest, w, tos.LABELS)
      matrix = matrix.rename(columns=lambda c: tos.FIGURE_NAMES.get(c, c))
      matrix["row sum"] = matrix.sum(axis=1)
      matrix.to_csv(out / f"robots_vs_tos_{corpus}.csv", index_label="robots")
      for row, total in matrix["row sum"].items():
        headline[f"{corpus}_matrix_{row.lower()}_row_sum"] = float(total)
      figure_paths.append(figures.matrix(matrix.drop(columns="row sum"),
                                         f"robots.txt vs ToS, HEAD of {corpus.upper()} (% of tokens)",
                                         out / f"fig3_robots_vs_tos_{corpus}.png"))
      markdown += [f"## robots.txt vs Terms of Service, HEAD of {corpus.upper()}, {config.end} (% of tokens)", "",
                   _markdown(matrix), ""]
      tos_summary = pd.DataFrame({c: {"head": 100 * headline[f"{c}_tos_head_restricted_{config.end}"],
                                      "full corpus": 100 * headline[f"{c}_tos_full_restricted_{config.end}"]}
                                  for c in config.corpora})
      markdown += [f"## Restrictive Terms of Service, {config.end} (% of tokens)", "", _markdown(tos_summary), ""]

  table = pd.DataFrame(agents.agent_observations({d: robots_json[d] for d in sampled if d in robots_json},
                                                 config.paper_compat))
  if len(table):
    tracked = {a.lower() if not config.paper_compat else a for names in orgs.values() for a in names}
    keep = table.head(40)["agent"].tolist() + [a for a in table["agent"] if a in tracked]
    table = table[table["agent"].isin(set(keep))]
    for status in ("all", "some", "none"):
      table[f"{status} %"] = 100 * table[status] / table["observed"]
  table.to_csv(out / "agent_table.csv", index=False)
  markdown += ["## User agents in the sampled robots.txt files (domain x snapshot observations)", "",
               _markdown(table.set_index("agent")[["observed", "all %", "some %", "none %"]].head(25))
               if len(table) else "(none)", ""]
  markdown += ["## Files", ""] + [f"- {p.name}" for p in figure_paths] + [
      f"- {p.name}" for p in sorted(out.glob("*.csv"))]
  (out / "report.md").write_text("\n".join(markdown) + "\n")
  (out / "headline.json").write_text(json.dumps(headline, indent=1, sort_keys=True))
  return headline
