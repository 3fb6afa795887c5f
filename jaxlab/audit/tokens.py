"""Tokens per web domain in C4, RefinedWeb and Dolma, and the HEAD and RANDOM domain samples.

A token is one match of `\\w+` (a word count, as in the paper, chosen for speed), credited to the netloc of
the document's URL; `www.` is added where missing and the rows that then collide are summed. The counter is
an Apache Beam pipeline: the local runner here, Dataflow/Flink/Spark for the real corpora (pass their
pipeline options). Shards are JSON lines (optionally .gz/.bz2/.zst, as Beam reads them) or Parquet.
"""

from collections.abc import Iterable, Sequence
import contextlib
import csv
import io
import json
from pathlib import Path
import re
from unittest import mock
from urllib.parse import urlparse

import numpy as np

from jaxlab.errors import UserError

CORPORA = ("c4", "rf", "dolma")
COLUMNS = ("url",) + tuple(f"{c}_tokens" for c in CORPORA)
# Corpus totals of `\w+` tokens from the paper (Table 1; `robots_util.URLTokenLookup`), for token tables that
# cover only the sampled domains.
PAPER_TOTALS = {"c4": 170_005_451_386, "rf": 431_169_198_316, "dolma": 1_974_278_779_400}

_WORD = re.compile(r"\w+")


def count_words(text: str) -> int:
  return sum(1 for _ in _WORD.finditer(text or ""))


def normalise_domain(domain: str) -> str:
  domain = domain.strip().lower()
  return domain if domain.startswith("www.") else f"www.{domain}"


def document_domain(corpus: str, doc: dict) -> str:
  """The netloc a document's tokens are credited to (Dolma: source_domain, reddit, URL, else the source)."""
  if corpus == "dolma":
    meta = doc.get("metadata") or {}
    if meta.get("source_domain"):
      return meta["source_domain"]
    if meta.get("subreddit"):
      return "reddit.com"
    if meta.get("url"):
      return urlparse(meta["url"]).netloc
    return doc.get("source") or ""
  return urlparse(doc.get("url") or "").netloc


def document_text(corpus: str, doc: dict) -> str:
  return doc.get("content" if corpus == "rf" else "text") or ""


def _read_corpus(pipeline, corpus: str, pattern: str):
  import apache_beam as beam
  if pattern.endswith(".parquet"):
    return pipeline | f"read {corpus}" >> beam.io.ReadFromParquet(pattern)
  return (pipeline | f"read {corpus}" >> beam.io.ReadFromText(pattern)
          | f"json {corpus}" >> beam.Map(json.loads))


def _csv_row(joined) -> str:
  domain, by_corpus = joined
  buffer = io.StringIO()
  csv.writer(buffer, lineterminator="").writerow([domain] + [sum(by_corpus.get(c, ())) for c in CORPORA])
  return buffer.getvalue()


@contextlib.contextmanager
def _outside_ipython():
  """Beam switches to its notebook integration when IPython runs (Jupyter, Colab), which imports
  `apache_beam.dataframe`, and that fails with pandas 3: the pipeline runs as it would from a script."""
  try:
    import IPython
  except ImportError:
    yield
    return
  with mock.patch.object(IPython, "get_ipython", lambda: None):
    yield


def count_tokens(shards: dict[str, str], out_csv: str | Path, pipeline_args: Sequence[str] = (),
                 normalise_www: bool = True) -> None:
  """Runs the Beam pipeline: `{corpus: file pattern}` -> CSV `url,c4_tokens,rf_tokens,dolma_tokens`."""
  import glob
  unknown = set(shards) - set(CORPORA)
  if unknown:
    raise UserError(f"unknown corpus {sorted(unknown)}; use {', '.join(CORPORA)}")
  for corpus, pattern in shards.items():
    if "://" not in pattern and not glob.glob(pattern):  # remote patterns (gs://) are Beam's to resolve
      raise UserError(f"--{corpus} {pattern!r} matches no file; give a file pattern of the corpus's shards")
  import apache_beam as beam
  from apache_beam.options.pipeline_options import PipelineOptions
  key = normalise_domain if normalise_www else str.lower
  out_csv = str(out_csv)
  with _outside_ipython(), beam.Pipeline(options=PipelineOptions(list(pipeline_args) or ["--runner=DirectRunner"])) \
      as pipeline:
    counts = {}
    for corpus, pattern in shards.items():
      counts[corpus] = (
          _read_corpus(pipeline, corpus, pattern)
          | f"count {corpus}" >> beam.Map(
              lambda doc, c=corpus: (key(document_domain(c, doc)), count_words(document_text(c, doc))))
          | f"sum {corpus}" >> beam.CombinePerKey(sum))
    _ = (counts | "join" >> beam.CoGroupByKey() | "format" >> beam.Map(_csv_row)
         | "write" >> beam.io.WriteToText(out_csv, header=",".join(COLUMNS), num_shards=1, shard_name_template=""))


class TokenTable:
  """Tokens per domain and corpus (`www.`-normalised), with HEAD and RANDOM sample selection."""

  def __init__(self, tokens: dict[str, Sequence[int]] | None = None, domains: Sequence[str] = (),
               totals: dict[str, int] | None = None):
    order = sorted(range(len(domains)), key=domains.__getitem__)  # by name, so ranking ties break by name
    self.domains = [domains[i] for i in order]
    self.tokens = {c: np.asarray(tokens[c], dtype=np.int64)[order] if tokens else np.zeros(0, np.int64)
                   for c in CORPORA}
    self._index = {d: i for i, d in enumerate(self.domains)}
    self._totals = dict(totals or {})

  @classmethod
  def load(cls, path: str | Path, totals: dict[str, int] | None = None) -> "TokenTable":
    import pandas as pd
    path = Path(path)
    if not path.is_file():
      raise UserError(f"token table {path} not found; make one with `jaxlab audit tokens`")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = set(COLUMNS) - set(frame.columns)
    if missing:
      raise UserError(f"{path} lacks columns {sorted(missing)}; expected {','.join(COLUMNS)}")
    for column in COLUMNS[1:]:
      frame[column] = _counts(frame[column], path, column)
    frame["url"] = frame["url"].map(normalise_domain)
    frame = frame.groupby("url", sort=True)[list(COLUMNS[1:])].sum()
    return cls({c: frame[f"{c}_tokens"].to_numpy() for c in CORPORA}, frame.index.tolist(), totals)

  @classmethod
  def from_rows(cls, rows: Iterable[tuple[str, int, int, int]], totals=None) -> "TokenTable":
    merged: dict[str, np.ndarray] = {}
    for url, *counts in rows:
      merged.setdefault(normalise_domain(url), np.zeros(3, np.int64))[:] += counts
    domains = sorted(merged)
    return cls({c: [merged[d][i] for d in domains] for i, c in enumerate(CORPORA)}, domains, totals)

  def save(self, path: str | Path) -> None:
    with open(path, "w", newline="") as f:
      writer = csv.writer(f)
      writer.writerow(COLUMNS)
      for i, domain in enumerate(self.domains):
        writer.writerow([domain] + [int(self.tokens[c][i]) for c in CORPORA])

  def __len__(self) -> int:
    return len(self.domains)

  def count(self, domain: str, corpus: str) -> int:
    i = self._index.get(normalise_domain(domain))
    return 0 if i is None else int(self.tokens[corpus][i])

  def weights(self, domains: Sequence[str], corpus: str) -> np.ndarray:
    return np.array([self.count(d, corpus) for d in domains], dtype=np.float64)

  def total(self, corpus: str) -> int:
    """The corpus's total tokens: given totals (e.g. `PAPER_TOTALS`), else the table's sum."""
    return int(self._totals.get(corpus, self.tokens[corpus].sum()))

  def head(self, corpus: str, k: int) -> list[str]:
    """The k domains with the most tokens in `corpus` (ties broken by name, so the choice is reproducible)."""
    order = np.argsort(-self.tokens[corpus], kind="stable")
    return [self.domains[i] for i in order[:k] if self.tokens[corpus][i] > 0]

  def head_share(self, corpus: str, k: int) -> float:
    """H: the share of the corpus's tokens held by its top k domains."""
    return sum(self.count(d, corpus) for d in self.head(corpus, k)) / self.total(corpus)

  def random_sample(self, n: int | None, seed: int, k: int, require_all_corpora: bool = True) -> list[str]:
    """n domains drawn uniformly (by `seed`) from those outside every corpus's top k.

    With `require_all_corpora`, only domains present in all three corpora qualify (the paper's RANDOM10k is
    drawn from the intersection). n=None takes every qualifying domain (what the paper's code does with its
    token file of head plus random domains).
    """
    heads = set().union(*(self.head(c, k) for c in CORPORA))
    qualifies = np.ones(len(self), bool)
    if require_all_corpora:
      for c in CORPORA:
        qualifies &= self.tokens[c] > 0
    candidates = [d for d, ok in zip(self.domains, qualifies) if ok and d not in heads]
    if n is None or n >= len(candidates):
      return candidates
    chosen = np.random.default_rng(seed).choice(len(candidates), size=n, replace=False)
    return sorted(candidates[i] for i in chosen)


def _counts(column, path: Path, name: str):
  """A column of token counts as int64; a count that is not a whole number >= 0 is refused, its row named."""
  import pandas as pd
  values = pd.to_numeric(column.str.strip(), errors="coerce")
  bad = np.flatnonzero((values.isna() | (values < 0) | (values % 1 != 0)).to_numpy())
  if len(bad):
    rows = ", ".join(f"line {i + 2} ({column.iloc[i]!r})" for i in bad[:5])
    raise UserError(f"{path}: {name} must be a whole number >= 0 (0 for a domain the corpus lacks); {len(bad)} "
                    f"rows are not: {rows}{' ...' if len(bad) > 5 else ''}")
  return values.astype(np.int64)
