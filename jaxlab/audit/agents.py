"""The user agents the audit tracks, grouped by organisation; their status per snapshot and per month.

An agent without its own group takes the `*` group's status, or `none` when there is no `*` group. An
organisation's status is the strictest of its agents' (`DETAILED_STATUSES` order); the "Combined" status of a
domain is the strictest over the tracked organisations (the paper's "AI Organizations" line and the basis of
its restricted-token estimates).
"""

from collections import Counter
import functools

import numpy as np

from jaxlab.audit import robots as robotslib
from jaxlab.audit.robots import DETAILED_STATUSES
from jaxlab.audit.temporal import Panel, carry_forward, presence

# The paper's agent table (Table 5; `robots_util.BOT_TRACKER` at 6846b95), membership train ∪ retrieval.
# Anthropic's own opt-out honours CCBot as well as ClaudeBot.
ORGANISATIONS: dict[str, tuple[str, ...]] = {
    "OpenAI": ("GPTBot", "ChatGPT-User"),
    "Google": ("Google-Extended",),
    "Common Crawl": ("CCBot",),
    "Anthropic": ("ClaudeBot", "CCBot"),
    "False Anthropic": ("anthropic-ai", "Claude-Web"),  # unofficial names, widely used, not Anthropic's
    "Cohere": ("cohere-ai",),
    "Meta": ("FacebookBot",),
    "Internet Archive": ("ia_archiver",),
    "Google Search": ("Googlebot",),
    "Amazon": ("Amazonbot",),  # in the code, not in the figures
}
# Agents added to the table after the paper (Data-Provenance-Collection HEAD).
NEWER_AGENTS: dict[str, tuple[str, ...]] = {
    "OpenAI": ("OAI-SearchBot",),
    "Perplexity": ("PerplexityBot", "Perplexity-User"),
}
# `ALL_COMPANIES_TO_TRACK`: the temporal figures and the Combined status.
TRACKED = ("Google", "OpenAI", "Anthropic", "Cohere", "Common Crawl", "Meta", "Internet Archive", "Google Search",
           "False Anthropic")
# `COMPANIES_TO_ANALYZE`: the static estimates and the robots-vs-ToS matrix.
ANALYZED = ("Google", "OpenAI", "Anthropic", "Cohere", "Common Crawl", "Meta")
ALL_AGENTS = "*All Agents*"
CODE = {status: i for i, status in enumerate(DETAILED_STATUSES)}
ALL = CODE["all"]


def organisations(newer: bool = False) -> dict[str, tuple[str, ...]]:
  table = dict(ORGANISATIONS)
  if newer:
    for org, agents in NEWER_AGENTS.items():
      table[org] = table.get(org, ()) + agents
  return table


def simple(code: int) -> str:
  """'no_robots', 'none', 'some' or 'all' of a detailed status code."""
  return DETAILED_STATUSES[code].split("_")[0] if code else "no_robots"


@functools.lru_cache(maxsize=8192)
def _org_codes(text: str, paper_compat: bool, groups: tuple[tuple[str, ...], ...]) -> tuple[int, ...]:
  parsed = robotslib.parse(text, paper_compat)
  statuses = {a: CODE[parsed.classify_detailed(a)] for agents in groups for a in agents}
  return tuple(max(statuses[a] for a in agents) for agents in groups)


def robots_panel(robots_json: dict[str, dict[str, str]], start_dates: dict[str, str], months: list[str],
                 orgs: dict[str, tuple[str, ...]] | None = None, paper_compat: bool = False) -> Panel:
  """Per domain, month and organisation: the detailed status code, carried forward from the snapshots.

  Domains come from `robots_json` ({domain: {date: text}}); as in the paper, a domain without any robots
  snapshot is not in the panel, and months before its first snapshot are `no_robots`.
  """
  orgs = orgs or organisations()
  groups = tuple(orgs.values())
  domains = sorted(robots_json)
  codes = np.zeros((len(domains), len(months), len(groups)), np.int8)
  for d, domain in enumerate(domains):
    snapshots = robots_json[domain]
    dates = sorted(snapshots)
    per_date = np.array([_org_codes(snapshots[date] or "", paper_compat, groups) for date in dates], np.int8)
    if dates:
      codes[d] = carry_forward(dates, per_date, months, CODE["no_robots"])
  return Panel(domains, months, list(orgs), codes, presence(domains, start_dates, months))


def combined(panel: Panel, orgs=TRACKED) -> np.ndarray:
  """[D, M]: the strictest detailed code over `orgs`."""
  return np.max(np.stack([panel.column(o) for o in orgs], -1), -1)


def overlap(codes: np.ndarray, orgs: list[str]) -> dict[str, float]:
  """The paper's Table 3: per organisation, P(it is fully restricted | another organisation is).

  `codes` [domains, organisations] holds each domain's latest detailed status per organisation in `orgs`.
  """
  restricted = codes == ALL
  found = {}
  for j, org in enumerate(orgs):
    others = np.delete(restricted, j, axis=1).any(axis=1)
    found[org] = float(restricted[others, j].mean()) if others.any() else float("nan")
  return found


def agent_observations(robots_json: dict[str, dict[str, str]], paper_compat: bool = False) -> list[dict]:
  """The paper's Table 6: per agent, the (domain x snapshot) observations naming it, and how many were
  `all`, `some` and `none`; `*All Agents*` counts every snapshot (`all` when every agent the domain's files
  ever name, and `*`, is `all` in it)."""
  observed, status = Counter(), Counter()
  # Most monthly snapshots repeat the previous month's file: each distinct text is parsed, and judged for an
  # agent, once.
  parsed: dict[str, robotslib.RobotsTxt] = {}
  verdicts: dict[tuple[str, str], str] = {}

  def judge(text: str, agent: str) -> str:
    if (text, agent) not in verdicts:
      verdicts[text, agent] = parsed[text].classify(agent)
    return verdicts[text, agent]

  for snapshots in robots_json.values():
    texts = [text or "" for text in snapshots.values()]
    for text in texts:
      if text not in parsed:
        parsed[text] = robotslib.parse(text, paper_compat)
    named = sorted({a for text in set(texts) for a in parsed[text].agents if a != "*"})
    for text in texts:
      p = parsed[text]
      judged = {agent: judge(text, agent) for agent in ["*"] + named}
      for agent in p.agents:
        observed[agent] += 1
        status[agent, judged[agent]] += 1
      values = judged.values()
      overall = "all" if all(v == "all" for v in values) else "some" if any(
          v != "none" for v in values) else "none"
      observed[ALL_AGENTS] += 1
      status[ALL_AGENTS, overall] += 1
  return [{"agent": agent, "observed": n, **{s: status[agent, s] for s in ("all", "some", "none")}}
          for agent, n in observed.most_common()]
