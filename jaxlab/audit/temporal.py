"""The monthly time axis and the carry-forward of snapshots (spec section 2.4).

Month P takes the latest snapshot dated on or before P's last day; before the first snapshot the status is
the "missing" one (`no_robots`, `No Terms Pages`). There is no interpolation. A domain counts in month P
only if P starts on or after its start date (its first home-page capture); a domain without one counts from
the start, as in the paper's code.
"""

import bisect
import dataclasses

import numpy as np

START_MONTH, END_MONTH = "2016-01", "2024-04"


def month_range(start: str = START_MONTH, end: str = END_MONTH) -> list[str]:
  """'YYYY-MM' from start to end inclusive."""
  year, month = map(int, start.split("-"))
  months = []
  while f"{year:04d}-{month:02d}" <= end:
    months.append(f"{year:04d}-{month:02d}")
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
  return months


def carry_forward(dates: list[str], values: np.ndarray, months: list[str], missing) -> np.ndarray:
  """values[i] belongs to dates[i] ('YYYY-MM-DD', ascending); returns one value per month (axis 0)."""
  values = np.asarray(values)
  out = np.full((len(months),) + values.shape[1:], missing, dtype=values.dtype)
  date_months = [d[:7] for d in dates]
  for m, month in enumerate(months):
    i = bisect.bisect_right(date_months, month) - 1
    if i >= 0:
      out[m] = values[i]
  return out


def presence(domains: list[str], start_dates: dict[str, str], months: list[str]) -> np.ndarray:
  """[domains, months] bool: the month starts on or after the domain's start date."""
  firsts = np.array([f"{m}-01" for m in months])
  return np.stack([firsts >= start_dates[d] if d in start_dates else np.ones(len(months), bool)
                   for d in domains]) if domains else np.zeros((0, len(months)), bool)


@dataclasses.dataclass
class Panel:
  """Per domain and month: status codes [D, M, K] (K status columns, e.g. organisations) and presence [D, M]."""
  domains: list[str]
  months: list[str]
  columns: list[str]
  codes: np.ndarray
  present: np.ndarray

  def rows(self, domains) -> "Panel":
    """The panel restricted to `domains` (in that order; domains it lacks are left out)."""
    index = {d: i for i, d in enumerate(self.domains)}
    keep = [index[d] for d in domains if d in index]
    return Panel([self.domains[i] for i in keep], self.months, self.columns, self.codes[keep], self.present[keep])

  def column(self, name: str) -> np.ndarray:
    return self.codes[:, :, self.columns.index(name)]
