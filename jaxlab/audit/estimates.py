"""Token-weighted restricted shares (spec section 3.5), bootstrap intervals, status shares, and the
robots-vs-ToS matrix.

For a month m, the head fraction h_m is the tokens of restricted HEAD domains over the tokens of all HEAD
domains present in m, r_m the same over the RANDOM sample, and the full-corpus estimate is
F_m = H h_m + (1 - H) r_m, H being the HEAD's share of the corpus's tokens. The HEAD is the corpus's top
domains (a census), so the intervals come from resampling the RANDOM domains, as in the paper.
"""

import warnings

import numpy as np
import pandas as pd

from jaxlab.audit.robots import DETAILED_STATUSES


def restricted_share(restricted: np.ndarray, present: np.ndarray, weights: np.ndarray) -> np.ndarray:
  """[M]: the token-weighted share of present domains that are restricted (NaN when none is present)."""
  weights = np.asarray(weights, np.float64)[:, None]
  den = (weights * present).sum(0)
  num = (weights * (restricted & present)).sum(0)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def bootstrap_shares(restricted: np.ndarray, present: np.ndarray, weights: np.ndarray, resamples: int,
                     seed: int) -> np.ndarray:
  """[resamples, M]: `restricted_share` over domains drawn with replacement."""
  n = len(weights)
  if n == 0 or resamples <= 0:
    return np.full((max(resamples, 0), restricted.shape[1]), np.nan)
  counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=resamples)
  drawn = counts * np.asarray(weights, np.float64)[None]  # [B, n]
  num = drawn @ (restricted & present).astype(np.float64)
  den = drawn @ present.astype(np.float64)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def corpus_series(months: list[str], head: tuple, random: tuple, head_share: float, *, resamples: int = 200,
                  seed: int = 0, level: float = 0.95) -> pd.DataFrame:
  """The paper's estimate table: period, Head, Random, Head Portion, Rand Portion, Full Corpus, plus
  bootstrap bounds on Random and Full Corpus. `head` and `random` are (restricted, present, weights)."""
  h = restricted_share(*head)
  r = restricted_share(*random)
  frame = pd.DataFrame({"period": months, "Head": h, "Random": r, "Head Portion": head_share * h,
                        "Rand Portion": (1 - head_share) * r})
  frame["Full Corpus"] = frame["Head Portion"] + frame["Rand Portion"]
  if resamples:
    r_boot = bootstrap_shares(*random, resamples, seed)
    tail = 100 * (1 - level) / 2
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", RuntimeWarning)  # months before any RANDOM domain exists: all NaN
      lo, hi = (np.nanpercentile(r_boot, q, axis=0) for q in (tail, 100 - tail))
    frame["Random lo"], frame["Random hi"] = lo, hi
    frame["Full Corpus lo"] = head_share * h + (1 - head_share) * lo
    frame["Full Corpus hi"] = head_share * h + (1 - head_share) * hi
  return frame


def status_shares(codes: np.ndarray, present: np.ndarray, weights: np.ndarray, names) -> pd.DataFrame:
  """[M x statuses]: each status's share of the tokens of the present domains (rows sum to 1)."""
  weights = np.asarray(weights, np.float64)[:, None]
  total = (weights * present).sum(0)
  columns = {name: (weights * ((codes == i) & present)).sum(0) for i, name in enumerate(names)}
  with np.errstate(invalid="ignore", divide="ignore"):
    return pd.DataFrame({name: np.where(total > 0, v / np.where(total > 0, total, 1), np.nan)
                         for name, v in columns.items()})


ROBOTS_ROWS = {"all": "Restricted", "some": "Partial", "none": "None"}


def robots_tos_matrix(robots_codes: np.ndarray, tos_codes: np.ndarray, weights: np.ndarray, tos_labels) -> pd.DataFrame:
  """% of tokens by latest robots status (rows: Restricted/Partial/None) and latest ToS label (columns).

  `robots_codes` are detailed codes (the strictest over the analysed organisations), `tos_codes` indices into
  `tos_labels`; domains without a robots.txt or without ToS pages are left out, as in the paper.
  """
  weights = np.asarray(weights, np.float64)
  rows = np.array([DETAILED_STATUSES[c].split("_")[0] for c in robots_codes])
  keep = (np.asarray(robots_codes) > 0) & (np.asarray(tos_codes) > 0)
  total = weights[keep].sum()
  matrix = pd.DataFrame(0.0, index=list(ROBOTS_ROWS.values()), columns=list(tos_labels[1:]))
  for status, row in ROBOTS_ROWS.items():
    for j, label in enumerate(tos_labels[1:], start=1):
      mask = keep & (rows == status) & (np.asarray(tos_codes) == j)
      matrix.loc[row, label] = 100 * weights[mask].sum() / total if total else np.nan
  return matrix
