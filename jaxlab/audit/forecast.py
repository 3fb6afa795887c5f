"""SARIMA forecasts of the monthly series (spec section 5.3; statsmodels SARIMAX).

The paper fits order (2,1,2) with seasonal order (1,1,1,6) to each status's monthly token share and to each
organisation's restricted share, and (2,1,1) for C4's / (1,2,1) for the other corpora's full-corpus series,
12 months ahead. Status forecasts are clipped at 0 and renormalised to sum to 1.
"""

import warnings

import numpy as np
import pandas as pd

from jaxlab.audit.temporal import month_range

ORDER = (2, 1, 2)
SEASONAL_ORDER = (1, 1, 1, 6)
CORPUS_ORDERS = {"c4": (2, 1, 1), "rf": (1, 2, 1), "dolma": (1, 2, 1)}
HORIZON = 12


def next_months(last: str, steps: int) -> list[str]:
  year, month = map(int, last.split("-"))
  end_year, end_month = year + (month - 1 + steps) // 12, (month - 1 + steps) % 12 + 1
  return month_range(last, f"{end_year:04d}-{end_month:02d}")[1:]


def sarima(values, months: list[str], order=ORDER, seasonal_order=SEASONAL_ORDER, steps: int = HORIZON,
           level: float = 0.95, bounds: tuple[float, float] | None = (0.0, 1.0)) -> pd.DataFrame:
  """period, forecast, lower, upper for the `steps` months after `months` (NaN where the fit fails).

  Leading months without data are dropped; NaNs inside the series are treated as missing observations.
  Forecasts of shares are clipped to `bounds` (a twice-differenced model extrapolates a jump past 100%).
  The fitted coefficients (the paper's Table 9) are in `out.attrs["params"]`.
  """
  from statsmodels.tsa.statespace.sarimax import SARIMAX
  from threadpoolctl import threadpool_limits
  values = np.asarray(values, np.float64)
  future = next_months(months[-1], steps)
  finite = np.flatnonzero(np.isfinite(values))
  out = pd.DataFrame({"period": future, "forecast": np.nan, "lower": np.nan, "upper": np.nan})
  if len(finite) == 0:
    return out
  series = values[finite[0]:]
  if np.nanmax(series) == np.nanmin(series):  # a constant series forecasts itself
    out[["forecast", "lower", "upper"]] = series[np.isfinite(series)][-1]
    return out
  # The state-space matrices are tiny; BLAS threads only contend (a fit is ~10x slower on a busy machine).
  with warnings.catch_warnings(), threadpool_limits(1):
    warnings.simplefilter("ignore")
    try:
      fit = SARIMAX(series, order=order, seasonal_order=seasonal_order).fit(disp=False)
      out.attrs["params"] = dict(zip(fit.model.param_names, np.asarray(fit.params).tolist()))
      prediction = fit.get_forecast(steps=steps)
      interval = np.asarray(prediction.conf_int(alpha=1 - level))
      out["forecast"] = np.asarray(prediction.predicted_mean)
      out["lower"], out["upper"] = interval[:, 0], interval[:, 1]
    except (np.linalg.LinAlgError, ValueError, IndexError):
      pass
  if bounds is not None:
    out[["forecast", "lower", "upper"]] = out[["forecast", "lower", "upper"]].clip(*bounds)
  return out


def forecast_shares(shares: pd.DataFrame, months: list[str], steps: int = HORIZON, order=ORDER,
                    seasonal_order=SEASONAL_ORDER) -> pd.DataFrame:
  """Each status column forecast separately, clipped at 0, rows renormalised to 1 (index: future months)."""
  future = next_months(months[-1], steps)
  columns = {}
  for status in shares.columns:
    columns[status] = sarima(shares[status].to_numpy(), months, order, seasonal_order, steps,
                             bounds=(0.0, None))["forecast"].to_numpy()
  frame = pd.DataFrame(columns, index=future)
  total = frame.sum(axis=1).replace(0, np.nan)
  return frame.div(total, axis=0)
