"""The paper's figures as PNGs (matplotlib): status areas with forecasts (Fig. 1), restricted tokens per
corpus (Fig. 2), and the robots-vs-ToS matrix (Fig. 3)."""

from pathlib import Path

import numpy as np
import pandas as pd

# The paper's colours (robots_analysis.ipynb), least to most restrictive.
ROBOTS_COLOURS = {"no_robots": "#d9d9d9", "none": "#5891bf", "none_sitemap": "#9dc4db", "none_crawl_delay": "#d5e4ef",
                  "some_other": "#f7f7f7", "some_disallow_important_dir": "#f7dcca",
                  "some_pattern_restrictions": "#c76753", "all": "#a32a31"}
ROBOTS_NAMES = {"no_robots": "No Robots.txt", "none": "No restrictions or sitemap", "none_sitemap": "Sitemap provided",
                "none_crawl_delay": "Crawl delay specified", "some_other": "Other restrictions",
                "some_disallow_important_dir": "Disallow private directories",
                "some_pattern_restrictions": "Pattern-based restrictions", "all": "Full restrictions"}
TOS_COLOURS = {"No Terms Pages": "#d9d9d9", "Unrestricted Use": "#5891bf", "Conditional Use": "#d5e4ef",
               "No Re-Distribution": "#f7dcca", "Non-Compete": "#efc6a8", "NC Only": "#e8b48f", "No AI": "#e0a070",
               "No Scraping": "#c76753", "No Scraping & AI": "#a32a31"}


def _plt():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def _dates(months) -> pd.DatetimeIndex:
  return pd.to_datetime([f"{m}-01" for m in months])


def status_area(shares: pd.DataFrame, months: list[str], forecast: pd.DataFrame | None, colours: dict,
                names: dict | None, title: str, path: Path) -> Path:
  """Stacked token shares per status over time; the forecast months are hatched."""
  plt = _plt()
  frame = shares.copy()
  index = list(months)
  if forecast is not None and len(forecast):
    frame = pd.concat([frame, forecast[shares.columns].reset_index(drop=True)], ignore_index=True)
    index += list(forecast.index)
  x = _dates(index)
  values = np.nan_to_num(frame.to_numpy().T * 100)
  fig, ax = plt.subplots(figsize=(11, 3.6))
  ax.stackplot(x, values, colors=[colours.get(c, "#888888") for c in frame.columns],
               labels=[(names or {}).get(c, c) for c in frame.columns], linewidth=0)
  if forecast is not None and len(forecast):
    ax.axvspan(_dates([forecast.index[0]])[0], x[-1], facecolor="none", hatch="//", edgecolor="white", linewidth=0)
    ax.axvline(_dates([forecast.index[0]])[0], color="black", linestyle="--", linewidth=0.8)
  ax.set_ylim(0, 100)
  ax.set_ylabel("% of tokens")
  ax.set_title(title)
  ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def organisation_lines(series: dict[str, np.ndarray], months: list[str], forecasts: dict[str, pd.DataFrame],
                       title: str, path: Path) -> Path:
  """Restricted % per organisation (log scale), with dashed forecasts."""
  plt = _plt()
  fig, ax = plt.subplots(figsize=(11, 3.6))
  for i, (org, values) in enumerate(series.items()):
    colour = plt.cm.tab10(i % 10)
    ax.plot(_dates(months), np.asarray(values) * 100, label=org, color=colour, linewidth=1.4)
    future = forecasts.get(org)
    if future is not None and future["forecast"].notna().any():
      ax.plot(_dates(future["period"]), np.clip(future["forecast"].to_numpy(), 0, 1) * 100, color=colour,
              linestyle="--", linewidth=1.2)
  ax.set_yscale("symlog", linthresh=1.0)
  ax.set_ylabel("% of tokens fully restricted")
  ax.set_title(title)
  ax.legend(loc="upper left", fontsize=8, ncol=3, frameon=False)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def corpus_lines(estimates: dict[str, pd.DataFrame], forecasts: dict[str, pd.DataFrame], title: str,
                 path: Path) -> Path:
  """Per corpus: Head, Random and Full Corpus restricted shares (with the bootstrap band) and forecast."""
  plt = _plt()
  fig, axes = plt.subplots(1, len(estimates), figsize=(5 * len(estimates), 3.4), sharey=True, squeeze=False)
  for ax, (corpus, frame) in zip(axes[0], estimates.items()):
    x = _dates(frame["period"])
    for column, colour in (("Head", "#a32a31"), ("Random", "#5891bf"), ("Full Corpus", "black")):
      ax.plot(x, frame[column] * 100, label=column, color=colour, linewidth=1.3)
    if "Full Corpus lo" in frame:
      ax.fill_between(x, frame["Full Corpus lo"] * 100, frame["Full Corpus hi"] * 100, color="grey", alpha=0.3,
                      linewidth=0)
    future = forecasts.get(corpus)
    if future is not None and future["forecast"].notna().any():
      ax.plot(_dates(future["period"]), future["forecast"] * 100, color="black", linestyle="--", linewidth=1.1,
              label="Full Corpus forecast")
    ax.set_title(f"{corpus.upper()}")
    ax.set_ylabel("% of tokens restricted")
  axes[0][0].legend(fontsize=8, frameon=False)
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def matrix(frame: pd.DataFrame, title: str, path: Path) -> Path:
  plt = _plt()
  fig, ax = plt.subplots(figsize=(1.1 * len(frame.columns) + 2, 3.2))
  values = frame.to_numpy(dtype=float)
  ax.imshow(np.nan_to_num(values), cmap="Reds", aspect="auto")
  ax.set_xticks(range(len(frame.columns)), frame.columns, rotation=30, ha="right", fontsize=8)
  ax.set_yticks(range(len(frame.index)), frame.index)
  dark = np.nanmax(values) / 2 if np.isfinite(values).any() else np.inf
  for i in range(values.shape[0]):
    for j in range(values.shape[1]):
      ax.text(j, i, f"{values[i, j]:.1f}", ha="center", va="center", fontsize=8,
              color="white" if values[i, j] > dark else "black")
  ax.set_xlabel("Terms of Service")
  ax.set_ylabel("robots.txt")
  ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path
