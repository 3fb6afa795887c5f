"""Consent in Crisis (Longpre et al., NeurIPS 2024): monthly Wayback snapshots of web domains' robots.txt,
home pages and Terms of Service, with their parsed fields, and the per-domain token table of C4, RefinedWeb
and Dolma.

Configs:
  snapshots  one example per (domain, kind, url, date): the text, and for robots.txt the status of every
             tracked agent (RFC 9309 parser and the paper-time parser), for ToS pages the keyword-baseline
             codes of the three taxonomies, plus the domain's start date and tokens.
  tokens     one example per domain: tokens in each corpus and whether it is in each corpus's HEAD.

  tfds build datasets/web_consent --manual_dir M [--config snapshots|tokens]

Snapshot entries whose text is not a string are counted and named in the log; the config field `on_bad`
('skip' or 'fail') decides whether the build goes on without them.
"""

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from jaxlab.audit import agents, robots, tos
from jaxlab.audit.tokens import CORPORA, TokenTable
from jaxlab.data.builder import DatasetBuilder
from jaxlab.errors import UserError

KINDS = ("robots", "main", "tos")
STATUSES = robots.STATUSES
# The agents whose status each robots.txt example carries, in this order.
AGENT_ORDER = tuple(dict.fromkeys(a for names in agents.organisations(newer=True).values() for a in names)) + ("*",)


@dataclasses.dataclass
class WebConsentConfig(tfds.core.BuilderConfig):
  head_k: int = 2000  # tokens config: HEAD = each corpus's top k domains
  on_bad: str = "skip"  # 'skip' bad entries (and list them) or 'fail' on the first


class Builder(DatasetBuilder):
  """Wayback snapshots of robots.txt, home pages and ToS pages, and the domain token table."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Snapshots with parsed robots.txt statuses and ToS keyword codes; token table."}
  BUILDER_CONFIGS = [
      WebConsentConfig(name="snapshots", description="one example per (domain, kind, url, date)"),
      WebConsentConfig(name="tokens", description="one example per domain: tokens per corpus, HEAD membership"),
  ]
  DEFAULT_CONFIG_NAME = "snapshots"
  CITATION = """@inproceedings{longpre2024consent,
  title={Consent in Crisis: The Rapid Decline of the {AI} Data Commons},
  author={Longpre, Shayne and Mahari, Robert and Lee, Ariel and others},
  booktitle={Advances in Neural Information Processing Systems, Datasets and Benchmarks Track},
  year={2024},
  note={arXiv:2407.14933}
}"""
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
The authors' data are on their Google Drive ("Organized Raw Data", linked from
https://github.com/Data-Provenance-Initiative/Data-Provenance-Collection, src/analysis/README.md); a fresh
crawl in the same schemas comes from `jaxlab audit crawl` (Wayback Machine CDX + raw replays). Put in the
manual folder:

  <manual_dir>/robots.json        {domain: {"YYYY-MM-DD": robots.txt text}}
  <manual_dir>/main.json          {domain: {"YYYY-MM-DD": home page text}}          (optional)
  <manual_dir>/tos.json           {domain: {tos_url: {"YYYY-MM-DD": ToS text}}}     (optional)
  <manual_dir>/start_dates.json   {domain: "YYYY-MM-DD"}                             (optional)
  <manual_dir>/tokens.csv         url,c4_tokens,rf_tokens,dolma_tokens  (`jaxlab audit tokens`; the paper's
                                  relevant_url_token_counts.csv has this schema)

A crawl folder made by `jaxlab audit crawl` already has the JSONs; copy tokens.csv beside them.
"""

  def _info(self) -> tfds.core.DatasetInfo:
    if self.builder_config.name == "tokens":
      features = {"url": tfds.features.Text(),
                  **{f"{c}_tokens": tfds.features.Scalar(np.int64) for c in CORPORA},
                  **{f"head_{c}": tfds.features.Scalar(np.bool_) for c in CORPORA}}
    else:
      n = len(AGENT_ORDER)
      features = {
          "domain": tfds.features.Text(),
          "kind": tfds.features.ClassLabel(names=KINDS),
          "url": tfds.features.Text(),
          "date": tfds.features.Text(),
          "text": tfds.features.Text(),
          "start_date": tfds.features.Text(),
          # Per agent of `AGENT_ORDER`: index into ('none', 'some', 'all'); -1 when the page is not a robots.txt.
          "robots_status": tfds.features.Tensor(shape=(n,), dtype=np.int32),
          "robots_status_paper": tfds.features.Tensor(shape=(n,), dtype=np.int32),
          # Per agent: index into the detailed taxonomy (`jaxlab.audit.robots.DETAILED_STATUSES`); -1 as above.
          "robots_detailed": tfds.features.Tensor(shape=(n,), dtype=np.int32),
          "sitemaps": tfds.features.Scalar(np.int32),
          # Keyword-baseline codes (crawling/AI, license, compete); 0 when the page is not a ToS page.
          "tos_keyword_codes": tfds.features.Tensor(shape=(3,), dtype=np.int32),
          "tos_keyword_label": tfds.features.ClassLabel(names=tos.LABELS),
          **{f"{c}_tokens": tfds.features.Scalar(np.int64) for c in CORPORA},
      }
    return self.dataset_info_from_configs(features=tfds.features.FeaturesDict(features),
                                          homepage="https://www.dataprovenance.org/consent-in-crisis-paper",
                                          citation=self.CITATION)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    folder = Path(dl_manager.manual_dir)
    if not (folder / "tokens.csv").is_file() or (
        self.builder_config.name == "snapshots" and not (folder / "robots.json").is_file()):
      raise UserError(f"{folder} lacks robots.json or tokens.csv; see MANUAL_DOWNLOAD_INSTRUCTIONS in "
                      "datasets/web_consent (a `jaxlab audit crawl` folder has the JSONs)")
    return {"train": self._generate_examples(folder)}

  def _generate_examples(self, folder: Path):
    table = TokenTable.load(folder / "tokens.csv")
    if self.builder_config.name == "tokens":
      heads = {c: set(table.head(c, self.builder_config.head_k)) for c in CORPORA}
      for i, domain in enumerate(table.domains):
        yield domain, {"url": domain, **{f"{c}_tokens": int(table.tokens[c][i]) for c in CORPORA},
                       **{f"head_{c}": domain in heads[c] for c in CORPORA}}
      return
    start_dates = _load(folder / "start_dates.json", {})
    bad = []
    for kind in KINDS:
      data = _load(folder / f"{kind}.json", {})
      for domain, entries in sorted(data.items()):
        pages = entries if kind == "tos" else {_page_url(kind, domain): entries}
        for url, dated in sorted(pages.items()):
          for date, text in sorted(dated.items()):
            key = f"{kind}|{domain}|{url}|{date}"
            if not isinstance(text, str):
              if self.builder_config.on_bad == "fail":
                raise UserError(f"{key}: text is {type(text).__name__}, not a string; build with on_bad='skip' "
                                "to leave such entries out")
              bad.append(key)
              continue
            yield key, self._example(kind, domain, url, date, text, start_dates.get(domain, ""), table)
    if bad:
      logging.warning("web_consent: %d bad entries skipped: %s", len(bad), ", ".join(bad[:50]))

  def _example(self, kind, domain, url, date, text, start_date, table) -> dict:
    none = np.full(len(AGENT_ORDER), -1, np.int32)
    example = {"domain": domain, "kind": kind, "url": url, "date": date, "text": text, "start_date": start_date,
               "robots_status": none, "robots_status_paper": none, "robots_detailed": none, "sitemaps": 0,
               "tos_keyword_codes": np.zeros(3, np.int32), "tos_keyword_label": tos.LABELS[tos.NO_TERMS],
               **{f"{c}_tokens": table.count(domain, c) for c in CORPORA}}
    if kind == "robots":
      parsed, paper = robots.parse(text), robots.parse(text, paper_compat=True)
      example["robots_status"] = np.array([STATUSES.index(parsed.classify(a)) for a in AGENT_ORDER], np.int32)
      example["robots_status_paper"] = np.array([STATUSES.index(paper.classify(a)) for a in AGENT_ORDER], np.int32)
      example["robots_detailed"] = np.array([robots.DETAILED_STATUSES.index(parsed.classify_detailed(a))
                                             for a in AGENT_ORDER], np.int32)
      example["sitemaps"] = len(parsed.sitemaps)
    elif kind == "tos":
      labeller = tos.KeywordLabeller()
      codes = [labeller.label(t, text).code for t in tos.TAXONOMIES]
      example["tos_keyword_codes"] = np.array(codes, np.int32)
      example["tos_keyword_label"] = tos.merge(*codes)
    return example


def _page_url(kind: str, domain: str) -> str:
  bare = domain.removeprefix("www.")
  return f"http://{bare}/robots.txt" if kind == "robots" else f"https://{bare}"


def _load(path: Path, default):
  return json.loads(path.read_text()) if path.is_file() else default
