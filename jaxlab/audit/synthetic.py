"""A synthetic web for the demo and the tests: domains with tokens in three corpora, robots.txt and Terms of
Service histories, their Wayback archive (monthly captures with gaps, 404s, revisit records, several captures
in a month), and the ground truth the audit should recover.

The histories follow the paper's story in miniature: most sites restrict little until mid-2023, then many
block GPTBot and other AI crawlers, the larger (HEAD) sites and news sites more often; ToS pages add
scraping, AI, non-commercial and non-compete terms. The robots.txt files are written the ways real ones are
(stacked user-agent lines, lower-case keys, comments between lines, Allow exceptions), so the RFC 9309 and
paper-time parsers disagree on some of them, as they do on the real web.
"""

import dataclasses
import gzip
import json
from pathlib import Path

import numpy as np

from jaxlab.audit import tos as toslib
from jaxlab.audit.crawl import TOS_COLUMNS
from jaxlab.audit.temporal import month_range
from jaxlab.audit.tokens import CORPORA, normalise_domain
from jaxlab.audit.wayback_server import Archive, ArchivedCapture

CATEGORIES = {  # name stem -> extra probability of blocking AI crawlers
    "news": 0.30, "daily": 0.25, "times": 0.25, "forum": 0.15, "wiki": 0.10, "recipes": 0.05, "shop": 0.0,
    "blog": -0.02, "travel": 0.0, "tech": 0.05, "science": 0.05, "sports": 0.10, "music": 0.05, "law": 0.05,
}
TLDS = ("com", "org", "net", "co.uk", "io", "de")
BASES = {
    "empty": "User-agent: *\nDisallow:\n",
    "sitemap": "User-agent: *\nDisallow:\n\nSitemap: https://{host}/sitemap.xml\n",
    "crawl_delay": "User-agent: *\nCrawl-delay: 10\nDisallow:\n",
    "private": "User-agent: *\nDisallow: /admin/\nDisallow: /private/\n",
    "pattern": "User-agent: *\nDisallow: /search?q=\nDisallow: /*?sessionid=\n",
    "other": "# robots.txt for {host}\nUser-agent: *\nDisallow: /tmp/ # scratch\nDisallow: /cgi-bin/\n",
    "block_all": "User-agent: *\nDisallow: /\n",
}
BASE_WEIGHTS = {"empty": 0.22, "sitemap": 0.22, "crawl_delay": 0.05, "private": 0.18, "pattern": 0.13,
                "other": 0.19, "block_all": 0.01}
AI_AGENTS = {"GPTBot": 1.0, "CCBot": 0.6, "ChatGPT-User": 0.5, "Google-Extended": 0.4, "anthropic-ai": 0.35,
             "Claude-Web": 0.3, "ClaudeBot": 0.15, "FacebookBot": 0.12, "cohere-ai": 0.12, "Amazonbot": 0.1}
BLOCK_STYLES = {"separate": 0.4, "stacked": 0.3, "lower": 0.12, "commented": 0.1, "partial": 0.08}
WORDS = ("the of and to in is was for on that with as by at from this data web site page news model content "
         "policy terms use service text people time year work world city market report study new more").split()
CLAUSES = {
    "general": "These Terms of Use govern your access to and use of the {host} website. By using the site you "
               "agree to these terms.",
    "scraping": "You may not use any robot, spider, scraper or other automated means to access the site or "
                "collect its content for any purpose.",
    "ai": "You may not use the content of this site to train, develop or improve any artificial intelligence or "
          "machine learning model.",
    "conditional": "Automated access is permitted only through our public API and subject to the API terms.",
    "nc": "The content is provided for your personal, non-commercial use only.",
    "commercial": "Commercial use of the content requires a written license agreement with us.",
    "compete": "You may not use the service to build or offer a competing product or service.",
    "redistribute": "You may not redistribute, resell or republish any content from the site.",
    "privacy": "We respect your privacy. This policy explains which cookies we set and why.",
}


def _date(rng, start: str, end: str) -> str:
  months = month_range(start, end)
  return f"{months[rng.integers(len(months))]}-{rng.integers(1, 29):02d}"


def _choice(rng, weights: dict):
  keys = list(weights)
  p = np.array([weights[k] for k in keys], float)
  return keys[rng.choice(len(keys), p=p / p.sum())]


@dataclasses.dataclass
class Site:
  name: str  # bare domain, e.g. news17.com
  category: str
  size: float  # percentile of its C4 tokens, 0 (smallest) .. 1
  tokens: dict[str, int]
  start: str  # first home-page capture
  robots: list[tuple[str, str | None]]  # (effective date, robots.txt text; None = no robots.txt)
  tos: dict[str, list[tuple[str, dict]]]  # url -> [(effective date, clause flags)]

  @property
  def key(self) -> str:
    return normalise_domain(self.name)


def _robots_history(rng, site_name: str, start: str, size: float, bonus: float) -> list[tuple[str, str | None]]:
  host = f"www.{site_name}"
  events = []  # (date, kind, payload)
  missing_until = _date(rng, start[:7], "2021-12") if start < "2021-12" and rng.random() < 0.15 else None
  base = _choice(rng, BASE_WEIGHTS)
  events.append((missing_until or start, "base", base))
  if rng.random() < 0.3:
    events.append((_date(rng, "2016-01", "2023-06"), "base", _choice(rng, BASE_WEIGHTS)))
  if rng.random() < 0.02:
    events.append((_date(rng, "2016-01", "2022-12"), "block", ("ia_archiver",)))
  if rng.random() < 0.01:
    events.append((_date(rng, "2019-01", "2023-06"), "block", ("CCBot",)))
  if rng.random() < 0.01 + 0.35 * size**4 + bonus:
    agents = tuple(a for a, p in AI_AGENTS.items() if a == "GPTBot" or rng.random() < p)
    events.append((_date(rng, "2023-08", "2024-04"), "block", agents))
    if rng.random() < 0.25:
      events.append((_date(rng, "2024-01", "2024-04"), "block", ("ClaudeBot", "anthropic-ai")))
  style = _choice(rng, BLOCK_STYLES)
  events.sort(key=lambda e: e[0])
  history, current_base, blocked = [], None, []
  if missing_until:
    history.append((start, None))
  for date, kind, payload in events:
    if kind == "base":
      current_base = payload
    else:
      blocked += [a for a in payload if a not in blocked]
    history.append((date, _robots_text(BASES[current_base or "empty"].format(host=host), blocked, style)))
  return [(d, t) for d, t in sorted(history, key=lambda h: h[0]) if d >= start]


def _robots_text(base: str, blocked: list[str], style: str) -> str:
  if not blocked:
    return base
  if style == "stacked":
    return base + "\n" + "".join(f"User-agent: {a}\n" for a in blocked) + "Disallow: /\n"
  if style == "lower":
    return base + "".join(f"\nuser-agent: {a.lower()}\ndisallow: /\n" for a in blocked)
  if style == "commented":
    return base + "".join(f"\n# {a} is an AI crawler\nUser-agent: {a}\n# no training\nDisallow: /\n" for a in blocked)
  if style == "partial":
    return base + "".join(f"\nUser-agent: {a}\nDisallow: /\nAllow: /about\n" for a in blocked)
  return base + "".join(f"\nUser-agent: {a}\nDisallow: /\n" for a in blocked)


def _tos_history(rng, start: str, size: float, bonus: float) -> dict[str, list[tuple[str, dict]]]:
  if rng.random() > 0.75:
    return {}
  created = max(start, _date(rng, "2012-01", "2019-12"))
  flags = {"scraping": False, "ai": False, "conditional": False, "nc": rng.random() < 0.15,
           "commercial": rng.random() < 0.05, "compete": rng.random() < 0.08, "redistribute": rng.random() < 0.2}
  events = [(created, dict(flags))]
  if rng.random() < 0.3 + 0.3 * size:
    flags["scraping"] = True
    events.append((max(created, _date(rng, "2016-01", "2024-03")), dict(flags)))
  if rng.random() < 0.05 + 0.4 * size**2 + bonus:
    flags["ai"] = True
    events.append((max(created, _date(rng, "2023-01", "2024-04")), dict(flags)))
  elif rng.random() < 0.05:
    flags["conditional"] = True
    events.append((max(created, _date(rng, "2018-01", "2024-04")), dict(flags)))
  events.sort(key=lambda e: e[0])
  pages = {"/terms": events}
  if rng.random() < 0.3:
    pages["/legal/privacy?lang=en"] = [(created, {"privacy": True})]
  return pages


def tos_html(host: str, flags: dict) -> str:
  paragraphs = [CLAUSES["general"].format(host=host)] + [CLAUSES[k] for k, on in flags.items() if on]
  body = "".join(f"<p>{p}</p>" for p in paragraphs)
  return (f"<!doctype html><html><head><title>Terms | {host}</title><script>var t = 1;</script>"
          f"<style>p {{margin: 0}}</style></head><body><h1>Terms of Use</h1><h2>1. Using {host}</h2>{body}"
          f"<br>Last updated.</body></html>")


def true_codes(flags: dict) -> dict[str, int]:
  """The taxonomy codes a careful reader gives a page with these clauses."""
  scraping, ai = flags.get("scraping"), flags.get("ai")
  ai_code = 1 if scraping and ai else 2 if scraping else 3 if ai else 4 if flags.get("conditional") else 5
  license_code = 1 if flags.get("nc") else 2 if flags.get("commercial") else 3
  compete, redistribute = flags.get("compete"), flags.get("redistribute")
  compete_code = 3 if compete and redistribute else 1 if compete else 2 if redistribute else 4
  return {"ai": ai_code, "license": license_code, "compete": compete_code}


class World:

  def __init__(self, sites: list[Site], seed: int):
    self.sites = sites
    self.seed = seed
    self.by_key = {s.key: s for s in sites}

  def token_rows(self) -> list[tuple[str, int, int, int]]:
    return [(s.name, *(s.tokens[c] for c in CORPORA)) for s in self.sites]

  def domain_rows(self, keys) -> list[dict]:
    """The crawl input for these domains: URL plus Terms of Use Link columns (the annotators' sheet)."""
    rows = []
    for key in keys:
      site = self.by_key[key]
      links = [f"https://www.{site.name}{path}" for path in site.tos]
      rows.append({"URL": site.name, **{c: (links[i] if i < len(links) else "") for i, c in enumerate(TOS_COLUMNS)}})
    return rows

  def write_corpora(self, folder: str | Path, words_per_doc: int = 400) -> dict[str, str]:
    """Shards in each corpus's format: C4 JSON lines (gzip), RefinedWeb Parquet, Dolma JSON lines (gzip)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(self.seed + 1)
    docs = {c: [] for c in CORPORA}
    for site in self.sites:
      for corpus in CORPORA:
        left, j = site.tokens[corpus], 0
        while left > 0:
          n = min(left, words_per_doc)
          host = f"www.{site.name}" if rng.random() < 0.7 else site.name  # both forms occur; counted as one
          url = f"https://{host}/page/{j}"
          text = " ".join(rng.choice(WORDS, n))
          if corpus == "c4":
            docs[corpus].append({"url": url, "text": text, "timestamp": "2019-04-20T00:00:00Z"})
          elif corpus == "rf":
            docs[corpus].append({"url": url, "content": text})
          else:
            meta = {"source_domain": host} if rng.random() < 0.3 else {"url": url}
            docs[corpus].append({"id": f"{site.name}-{j}", "text": text, "source": "common-crawl", "metadata": meta})
          left, j = left - n, j + 1
    docs["dolma"].append({"id": "s2-0", "text": "a paper about models", "source": "s2", "metadata": {}})
    with gzip.open(folder / "c4-00000.json.gz", "wt") as f:
      f.writelines(json.dumps(d) + "\n" for d in docs["c4"])
    pq.write_table(pa.Table.from_pylist(docs["rf"]), folder / "refinedweb-00000.parquet")
    with gzip.open(folder / "dolma-00000.json.gz", "wt") as f:
      f.writelines(json.dumps(d) + "\n" for d in docs["dolma"])
    return {"c4": str(folder / "c4-*.json.gz"), "rf": str(folder / "refinedweb-*.parquet"),
            "dolma": str(folder / "dolma-*.json.gz")}

  def archive(self, keys=None, start: str = "2015-06", end: str = "2024-04") -> Archive:
    """The Wayback Machine's view of the sites: captures in some months (more for larger sites), missing
    robots.txt as 404 captures, revisit records, and sometimes a second capture in a month."""
    rng = np.random.default_rng(self.seed + 2)
    archive = Archive()
    months = month_range(start, end)
    for key in (keys if keys is not None else self.by_key):
      site = self.by_key[key]
      host = f"www.{site.name}"
      robots_p, robots_url = 0.35 + 0.5 * site.size, f"http://{site.name}/robots.txt"
      archive.add(ArchivedCapture(site.start.replace("-", "") + "120000", f"https://{site.name}",
                                  f"<html><body><h1>{host}</h1><p>Welcome.</p></body></html>".encode(), "text/html"))
      for month in months:
        if f"{month}-28" < site.start:
          continue
        day = f"{month.replace('-', '')}{rng.integers(1, 28):02d}"
        if rng.random() < robots_p:
          text = state_at(site.robots, f"{month}-28")
          if text is None:
            archive.add(ArchivedCapture(day + "080000", robots_url, b"Not Found", "text/html", "404"))
          else:
            archive.add(ArchivedCapture(day + "080000", robots_url, text.encode(), "text/plain"))
            if rng.random() < 0.1:
              archive.add(ArchivedCapture(day + "200000", robots_url, text.encode(), "warc/revisit", "-"))
            if rng.random() < 0.1:
              archive.add(ArchivedCapture(f"{month.replace('-', '')}28230000", robots_url, text.encode()))
        if rng.random() < 0.05 + 0.25 * site.size:
          archive.add(ArchivedCapture(day + "100000", f"https://{site.name}",
                                      f"<html><body><h1>{host}</h1><p>News of {month}.</p></body></html>".encode(),
                                      "text/html"))
        for path, history in site.tos.items():
          if rng.random() < 0.2:
            flags = state_at(history, f"{month}-28")
            if flags is not None:
              archive.add(ArchivedCapture(day + "090000", f"https://{host}{path}", tos_html(host, flags).encode(),
                                          "text/html"))
    return archive

  def truth_robots_json(self) -> dict[str, dict[str, str]]:
    """Every site's robots.txt at every change (what a crawler seeing every month would record)."""
    return {s.key: {d: t for d, t in s.robots if t is not None} for s in self.sites}

  def truth_tos_labels(self) -> dict[str, dict[str, str]]:
    """Every site's merged ToS label at every change of any of its pages."""
    return toslib.domain_labels({s.key: {url: {d: true_codes(flags) for d, flags in history}
                                         for url, history in s.tos.items()} for s in self.sites if s.tos})

  def start_dates(self) -> dict[str, str]:
    return {s.key: s.start for s in self.sites}


def state_at(history, date: str):
  """The value of a dated history [(date, value), ...] on `date`."""
  current = None
  for when, value in history:
    if when <= date:
      current = value
  return current


def benchmark_robots(n: int, seed: int = 0) -> list[str]:
  """n robots.txt files the size and shape of a large site's (1-6 KB: several groups, stacked user agents,
  wildcards, queries, comments, sitemaps), for timing the parser."""
  rng = np.random.default_rng(seed)
  agents = ["*", "Googlebot", "Bingbot", "GPTBot", "CCBot", "ChatGPT-User", "anthropic-ai", "Google-Extended",
            "FacebookBot", "Amazonbot", "Baiduspider", "YandexBot", "AhrefsBot", "SemrushBot", "ia_archiver"]
  segments = ["admin", "search", "private", "cart", "account", "api", "tag", "print", "amp", "wp-admin", "cgi-bin",
              "login", "feeds", "archive", "preview", "static", "user", "comments", "share", "beta"]
  files = []
  for _ in range(n):
    lines = [f"# robots.txt generated {rng.integers(2016, 2025)}", ""]
    for _ in range(rng.integers(3, 9)):
      stack = rng.choice(agents, size=rng.integers(1, 4), replace=False)
      lines += [f"User-agent: {a}" for a in stack]
      for _ in range(rng.integers(5, 40)):
        path = "/" + "/".join(rng.choice(segments, size=rng.integers(1, 4)))
        shape = rng.integers(6)
        path = (path + "/" if shape == 0 else path + "?*" if shape == 1 else path + "/*.php$" if shape == 2 else
                "/*" + path if shape == 3 else path)
        lines.append(f"{'Allow' if rng.random() < 0.15 else 'Disallow'}: {path}")
      if rng.random() < 0.3:
        lines.append(f"Crawl-delay: {rng.integers(1, 20)}")
      if rng.random() < 0.2:
        lines.append("# " + " ".join(rng.choice(segments, size=6)))
      lines.append("")
    lines += [f"Sitemap: https://www.example.com/sitemap-{i}.xml" for i in range(rng.integers(0, 6))]
    files.append("\n".join(lines) + "\n")
  return files


def make_world(n_sites: int = 1500, seed: int = 0, top_tokens: int = 40_000, zipf: float = 0.85) -> World:
  rng = np.random.default_rng(seed)
  stems = list(CATEGORIES)
  rank = rng.permutation(n_sites)
  base = top_tokens * (rank + 1.0) ** -zipf
  sites = []
  for i in range(n_sites):
    category = stems[rng.integers(len(stems))]
    name = f"{category}{i}.{TLDS[rng.integers(len(TLDS))]}"
    tokens = {}
    for corpus, presence in zip(CORPORA, (0.97, 0.9, 0.85)):
      tokens[corpus] = int(base[i] * rng.lognormal(0, 0.35)) if rng.random() < presence else 0
    size = 1 - rank[i] / n_sites
    start = _date(rng, "2008-01", "2023-06")
    bonus = CATEGORIES[category]
    sites.append(Site(name, category, size, tokens, start, _robots_history(rng, name, start, size, bonus / 3),
                      _tos_history(rng, start, size, bonus / 3)))
  return World(sites, seed)
