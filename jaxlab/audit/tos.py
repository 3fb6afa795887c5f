"""Terms of Service: the paper's three taxonomies, an LM labeller and a keyword baseline, and the merge into
one label per domain and month (spec section 4).

Each ToS page snapshot gets a code in each taxonomy (a lower code is more restrictive). For a domain and date,
every page contributes its latest labelled snapshot on or before that date, the most restrictive code per
taxonomy wins, and the three names merge: a "No ..." crawling/AI label stands; else an NC-only license; else
a non-compete or no-redistribution term; else the crawling/AI label (so a conditional license alone counts
for nothing). A domain without labelled pages is `No Terms Pages`.
"""

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
import dataclasses
import hashlib
import json
from pathlib import Path
import re
import threading

import numpy as np

from jaxlab.audit.temporal import Panel, carry_forward, presence

TAXONOMIES: dict[str, dict[int, str]] = {
    "ai": {1: "No Scraping & AI", 2: "No Scraping", 3: "No AI", 4: "Conditional Use", 5: "Unrestricted Use"},
    "license": {1: "NC Only", 2: "Conditional Use", 3: "Unrestricted Use"},
    "compete": {1: "Non-Compete", 2: "No Re-Distribution", 3: "Non-Compete", 4: "Unrestricted Use"},
}
# The code a page gets in a taxonomy when its verdict is missing or unreadable (the paper's defaults for
# license and compete; "no restriction" for crawling/AI).
MISSING_CODE = {"ai": 5, "license": 3, "compete": 4}
# Least to most restrictive (the paper's plot order).
LABELS = ("No Terms Pages", "Unrestricted Use", "Conditional Use", "No Re-Distribution", "Non-Compete", "NC Only",
          "No AI", "No Scraping", "No Scraping & AI")
NO_TERMS = 0
UNRESTRICTED = 1
# The paper's names for the figures (Fig. 3 uses "No Crawling" for "No Scraping").
FIGURE_NAMES = {"No Scraping": "No Crawling", "No Scraping & AI": "No Crawling & AI", "NC Only": "Non-Commercial",
                "Unrestricted Use": "None"}
PROMPTS = Path(__file__).parent / "prompts"
PROMPT_FILES = {"ai": "tos_ai_scraping.txt", "license": "tos_license.txt", "compete": "tos_compete.txt"}


def is_restricted(code) -> np.ndarray:
  """The code's broad ToS restriction (anything but `Unrestricted Use` and `No Terms Pages`)."""
  return np.asarray(code) > UNRESTRICTED


def merge(ai: int, license: int, compete: int) -> str:
  ai_label, license_label, compete_label = (TAXONOMIES["ai"][ai], TAXONOMIES["license"][license],
                                            TAXONOMIES["compete"][compete])
  if ai_label.startswith("No"):
    return ai_label
  if license_label == "NC Only":
    return license_label
  if compete_label in ("Non-Compete", "No Re-Distribution"):
    return compete_label
  return ai_label


@dataclasses.dataclass(frozen=True)
class Verdict:
  code: int | None  # None: no readable verdict
  evidence: str = ""


def parse_reply(reply: str, taxonomy: str) -> Verdict:
  """`{"verdict": <code>, "evidence": "..."}`, tolerating code fences and text around it."""
  found = re.search(r"\{.*\}", reply or "", re.DOTALL)
  try:
    data = json.loads(found.group(0)) if found else None
    code = int(str(data["verdict"]).strip())
  except (json.JSONDecodeError, KeyError, TypeError, ValueError):
    return Verdict(None, f"unreadable reply: {(reply or '')[:200]}")
  if code not in TAXONOMIES[taxonomy]:
    return Verdict(None, f"code {code} outside the {taxonomy} taxonomy")
  return Verdict(code, str(data.get("evidence", "")))


class LMLabeller:
  """Labels documents through `jaxlab.lm` (the paper's dialogue), caching verdicts by content hash.

  The cache key covers the prompt, the model and the whitespace-collapsed document, so an unchanged ToS
  page costs one call however many months it appears in.
  """

  waits = True  # on the LM server: `label_pages` runs its calls in threads

  def __init__(self, lm, cache_path: str | Path | None = None, prompts: Path = PROMPTS, temperature: float = 0.2,
               max_chars: int = 120_000):
    self.lm = lm
    self.name = lm.name
    self.prompts = {t: (prompts / f).read_text() for t, f in PROMPT_FILES.items()}
    self.conversation = json.loads((prompts / "conversation.json").read_text())
    self.temperature = temperature
    self.max_chars = max_chars
    self.cache_path = Path(cache_path) if cache_path else None
    self.cache: dict[str, dict] = {}
    self.calls = 0
    self._lock = threading.Lock()
    if self.cache_path and self.cache_path.is_file():
      for line in self.cache_path.read_text().splitlines():
        try:
          entry = json.loads(line)
          self.cache[entry["key"]] = entry
        except (json.JSONDecodeError, KeyError):
          continue

  def key(self, taxonomy: str, text: str) -> str:
    document = " ".join(text.split())[:self.max_chars]
    return hashlib.sha256(json.dumps([taxonomy, self.prompts[taxonomy], self.name, document]).encode()).hexdigest()

  def label(self, taxonomy: str, text: str) -> Verdict:
    key = self.key(taxonomy, text)
    if key in self.cache:
      entry = self.cache[key]
      return Verdict(entry["verdict"], entry["evidence"])
    document = " ".join(text.split())[:self.max_chars]
    messages = [{"role": "system", "content": self.prompts[taxonomy]},
                {"role": "user", "content": self.conversation["role_question"]},
                {"role": "assistant", "content": self.conversation["role_answer"]},
                {"role": "user", "content": self.conversation["document"].format(text=document)}]
    reply = self.lm.chat(messages, temperature=self.temperature)
    verdict = parse_reply(reply, taxonomy)
    entry = {"key": key, "taxonomy": taxonomy, "verdict": verdict.code, "evidence": verdict.evidence}
    with self._lock:
      self.calls += 1
      self.cache[key] = entry
      if self.cache_path and verdict.code is not None:  # unreadable replies are asked again next time
        with open(self.cache_path, "a") as f:
          f.write(json.dumps(entry) + "\n")
    return verdict


_PROHIBIT = (r"\b(not|no|never|nor|prohibit\w*|forbid\w*|restrict\w*|disallow\w*|refrain|agree not|"
             r"without (?:our |the )?(?:prior |express )*(?:written )?(?:consent|permission|authori[sz]ation))\b")
_CONDITION = r"\b(unless|except|provided that|subject to|in accordance with|only (?:if|with|through|via))\b"
_SCRAPING = (r"\b(scrap\w*|crawl\w*|spider\w*|robots?\b|bots?\b|data[- ]mining|text and data mining|harvest\w*|"
             r"automated (?:means|access|systems?|tools?|queries|collection|software|programs?|devices?))")
_AI = (r"\b(artificial intelligence|machine learning|(?:ai|ml) (?:models?|systems?|tools?|training)|train\w* "
       r"(?:\w+ ){0,3}(?:models?|algorithms?|systems?|ai)|large language models?|llms?|generative ai|neural net\w*)")
_NON_COMMERCIAL = (r"\b((?:personal|private),? (?:and |or )?non-?commercial|non-?commercial|personal|"
                   r"educational|research) (?:use|purposes?)(?: only)?\b")
_ONLY = r"\b(only|solely|exclusively|limited to)\b"
_COMMERCIAL_CONDITION = r"\bcommercial (?:use|purposes?)\b.*\b(licen[cs]e|permission|consent|agreement|fee)\b"
_COMPETE = r"\bcompet\w*\b.*\b(products?|services?|business|offerings?|applications?|platforms?)\b"
_REDISTRIBUTE = r"\b(re-?distribut\w*|resell\w*|re-?sell\w*|re-?publish\w*|sub-?licen[sc]\w*|re-?transmit\w*)\b"


def _sentences(text: str) -> list[str]:
  return [s.lower() for s in re.split(r"(?<=[.!?;])\s+|\n+", text) if s.strip()]


def _any(sentences, *patterns) -> bool:
  return any(all(re.search(p, s) for p in patterns) for s in sentences)


class KeywordLabeller:
  """A baseline that needs no LM: sentence-level keyword rules for each taxonomy."""

  name = "keyword"
  waits = False  # pure Python: threads would only contend for the GIL

  def label(self, taxonomy: str, text: str) -> Verdict:
    sentences = _sentences(text)
    if taxonomy == "ai":
      scraping, ai = _any(sentences, _SCRAPING, _PROHIBIT), _any(sentences, _AI, _PROHIBIT)
      if scraping or ai:
        return Verdict(1 if scraping and ai else 2 if scraping else 3, "keyword")
      return Verdict(4 if _any(sentences, f"{_SCRAPING}|{_AI}", _CONDITION) else 5, "keyword")
    if taxonomy == "license":
      if _any(sentences, _NON_COMMERCIAL, _ONLY):
        return Verdict(1, "keyword")
      return Verdict(2 if _any(sentences, _COMMERCIAL_CONDITION) else 3, "keyword")
    if taxonomy == "compete":
      compete, redistribute = _any(sentences, _COMPETE, _PROHIBIT), _any(sentences, _REDISTRIBUTE, _PROHIBIT)
      return Verdict(3 if compete and redistribute else 1 if compete else 2 if redistribute else 4, "keyword")
    raise ValueError(f"unknown taxonomy {taxonomy!r}")


def sample_dates(dates: Iterable[str], per_year: int = 2) -> list[str]:
  """The snapshots to label: per year, the first and the last (the two farthest apart), as in the paper.
  per_year=0 keeps every snapshot."""
  dates = sorted(dates)
  if per_year <= 0:
    return dates
  by_year: dict[str, list[str]] = {}
  for date in dates:
    by_year.setdefault(date[:4], []).append(date)
  chosen = []
  for year_dates in by_year.values():
    if per_year == 1 or len(year_dates) == 1:
      chosen.append(year_dates[0])
    else:
      picks = np.linspace(0, len(year_dates) - 1, min(per_year, len(year_dates))).round().astype(int)
      chosen += [year_dates[i] for i in sorted(set(picks))]
  return chosen


def label_pages(tos_json: dict[str, dict[str, dict[str, str]]], labeller, per_year: int = 2, workers: int = 1,
                progress: Callable[[int, int], None] | None = None) -> dict:
  """{domain: {url: {date: {taxonomy: code}}}} for the sampled snapshots of every ToS page.

  `workers` threads serve labellers that wait on a server (`LMLabeller`); the keyword labeller runs in this
  thread, since threads would only make it slower.
  """
  jobs = [(domain, url, date, taxonomy)
          for domain, pages in sorted(tos_json.items()) for url, snapshots in sorted(pages.items())
          for date in sample_dates(snapshots, per_year) for taxonomy in TAXONOMIES]
  def run(job):
    domain, url, date, taxonomy = job
    return labeller.label(taxonomy, tos_json[domain][url][date])
  if workers > 1 and getattr(labeller, "waits", True):
    with ThreadPoolExecutor(max_workers=workers) as pool:
      verdicts = list(pool.map(run, jobs))
  else:
    verdicts = list(map(run, jobs))
  out: dict = {}
  for (domain, url, date, taxonomy), verdict in zip(jobs, verdicts):
    out.setdefault(domain, {}).setdefault(url, {}).setdefault(date, {})[taxonomy] = verdict.code
  return out


def domain_labels(page_verdicts: dict) -> dict[str, dict[str, str]]:
  """{domain: {date: merged label}} from `label_pages` output, carrying each page forward to every date."""
  labels = {}
  for domain, pages in page_verdicts.items():
    dates = sorted({date for snapshots in pages.values() for date in snapshots})
    per_date = {}
    for date in dates:
      codes = {t: [] for t in TAXONOMIES}
      for snapshots in pages.values():
        earlier = [d for d in snapshots if d <= date]
        if earlier:
          verdict = snapshots[max(earlier)]
          for t in TAXONOMIES:
            codes[t].append(verdict.get(t) if verdict.get(t) is not None else MISSING_CODE[t])
      per_date[date] = merge(*(min(codes[t]) for t in TAXONOMIES))
    labels[domain] = per_date
  return labels


def tos_panel(labels: dict[str, dict[str, str]], domains: list[str], start_dates: dict[str, str],
              months: list[str]) -> Panel:
  """Per domain and month, the index of its label in `LABELS` (carried forward; `No Terms Pages` before)."""
  codes = np.zeros((len(domains), len(months), 1), np.int8)
  for d, domain in enumerate(domains):
    dated = labels.get(domain, {})
    dates = sorted(dated)
    if dates:
      codes[d, :, 0] = carry_forward(dates, np.array([LABELS.index(dated[x]) for x in dates], np.int8), months,
                                     NO_TERMS)
  return Panel(list(domains), months, ["ToS"], codes, presence(list(domains), start_dates, months))
