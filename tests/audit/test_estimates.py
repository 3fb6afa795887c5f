"""Estimates on hand-computed cases: the restricted shares, F = H h + (1 - H) r, the bootstrap, the carry-forward
panel, organisation groups, the ToS merge, and the robots-vs-ToS matrix."""

import numpy as np
import pytest

from jaxlab.audit import agents, estimates, forecast, tos
from jaxlab.audit.robots import DETAILED_STATUSES
from jaxlab.audit.temporal import carry_forward, month_range, presence

MONTHS = ["2024-01", "2024-02", "2024-03"]
T, F = True, False
# HEAD: A (100 tokens), B (50), C (30; absent in January). RANDOM: D (10), E (20).
HEAD = (np.array([[F, T, T], [F, F, T], [T, T, T]]), np.array([[T, T, T], [T, T, T], [F, T, T]]),
        np.array([100, 50, 30]))
RANDOM = (np.array([[F, T, F], [F, F, T]]), np.ones((2, 3), bool), np.array([10, 20]))


def test_restricted_share_by_hand():
  assert estimates.restricted_share(*HEAD) == pytest.approx([0 / 150, 130 / 180, 180 / 180])
  assert estimates.restricted_share(*RANDOM) == pytest.approx([0, 10 / 30, 20 / 30])
  nobody = estimates.restricted_share(np.zeros((1, 3), bool), np.zeros((1, 3), bool), np.array([5]))
  assert np.isnan(nobody).all()


def test_full_corpus_estimate_by_hand():
  frame = estimates.corpus_series(MONTHS, HEAD, RANDOM, head_share=0.4, resamples=0)
  assert frame["Head"].tolist() == pytest.approx([0, 13 / 18, 1])
  assert frame["Random"].tolist() == pytest.approx([0, 1 / 3, 2 / 3])
  assert frame["Head Portion"].tolist() == pytest.approx([0, 0.4 * 13 / 18, 0.4])
  assert frame["Rand Portion"].tolist() == pytest.approx([0, 0.2, 0.4])
  assert frame["Full Corpus"].tolist() == pytest.approx([0, 0.4 * 13 / 18 + 0.2, 0.8])


def test_bootstrap_resamples_random_domains():
  # Two random domains: a resample is DD, DE or EE, so r in February is 1, 1/3 or 0 (chances 1/4, 1/2, 1/4).
  boot = estimates.bootstrap_shares(*RANDOM, resamples=4000, seed=0)
  values, counts = np.unique(np.round(boot[:, 1], 6), return_counts=True)
  assert values.tolist() == pytest.approx([0, 1 / 3, 1])
  assert counts / counts.sum() == pytest.approx([0.25, 0.5, 0.25], abs=0.03)
  frame = estimates.corpus_series(MONTHS, HEAD, RANDOM, head_share=0.4, resamples=200, seed=1)
  assert frame.loc[1, ["Random lo", "Random hi"]].tolist() == pytest.approx([0, 1])
  assert frame.loc[1, ["Full Corpus lo", "Full Corpus hi"]].tolist() == pytest.approx(
      [0.4 * 13 / 18, 0.4 * 13 / 18 + 0.6])
  again = estimates.corpus_series(MONTHS, HEAD, RANDOM, head_share=0.4, resamples=200, seed=1)
  assert again.equals(frame)  # reproducible by seed


def test_status_shares_and_matrix_by_hand():
  codes = np.array([[7, 7], [1, 4], [0, 0]])
  shares = estimates.status_shares(codes, np.ones((3, 2), bool), np.array([60, 30, 10]), DETAILED_STATUSES)
  assert shares["all"].tolist() == pytest.approx([0.6, 0.6])
  assert shares["none"].tolist() == pytest.approx([0.3, 0])
  assert shares["some_other"].tolist() == pytest.approx([0, 0.3])
  assert shares.sum(axis=1).tolist() == pytest.approx([1, 1])
  robots_latest = np.array([7, 4, 1, 5])  # all, some_other, none, some_disallow_important_dir
  tos_latest = np.array([tos.LABELS.index("No Scraping"), tos.LABELS.index("Unrestricted Use"), tos.NO_TERMS,
                         tos.LABELS.index("NC Only")])
  matrix = estimates.robots_tos_matrix(robots_latest, tos_latest, np.array([60, 30, 10, 10]), tos.LABELS)
  assert matrix.loc["Restricted", "No Scraping"] == pytest.approx(60)  # the third domain has no ToS: left out
  assert matrix.loc["Partial", "Unrestricted Use"] == pytest.approx(30)
  assert matrix.loc["Partial", "NC Only"] == pytest.approx(10)
  assert matrix.sum(axis=1).tolist() == pytest.approx([60, 40, 0])


def test_carry_forward_and_presence():
  months = month_range("2023-11", "2024-03")
  assert months == ["2023-11", "2023-12", "2024-01", "2024-02", "2024-03"]
  got = carry_forward(["2023-12-15", "2024-02-01", "2024-02-27"], np.array([1, 2, 3]), months, missing=0)
  assert got.tolist() == [0, 1, 1, 3, 3]  # latest snapshot on or before the month's end; none before the first
  present = presence(["a", "b", "c"], {"a": "2024-01-01", "b": "2024-01-02"}, months)
  assert present.tolist() == [[F, F, T, T, T], [F, F, F, T, T], [T] * 5]


def test_robots_panel_groups_and_combined():
  robots_json = {
      "www.x.com": {"2023-12-15": "User-agent: *\nDisallow:\n", "2024-02-10": "User-agent: GPTBot\nDisallow: /\n"},
      "www.y.com": {"2024-03-03": "User-agent: *\nDisallow: /private/\n"},
      "www.z.com": {"2024-01-05": "User-agent: CCBot\nDisallow: /\n\nUser-agent: Amazonbot\nDisallow: /\n"},
      "www.w.com": {"2024-01-05": "User-agent: ClaudeBot\nDisallow: /x\n"},
  }
  panel = agents.robots_panel(robots_json, {"www.y.com": "2024-02-05"}, MONTHS)
  code = agents.CODE
  x, y, z, w = (panel.domains.index(d) for d in ("www.x.com", "www.y.com", "www.z.com", "www.w.com"))
  assert panel.column("OpenAI")[x].tolist() == [code["none"], code["all"], code["all"]]
  assert panel.column("Google")[x].tolist() == [code["none"]] * 3
  assert panel.column("OpenAI")[y].tolist() == [code["no_robots"], code["no_robots"],
                                                code["some_disallow_important_dir"]]
  assert panel.present[y].tolist() == [F, F, T]
  # Anthropic is ClaudeBot and CCBot; Amazon is not among the tracked organisations of the Combined status.
  assert panel.column("Anthropic")[z].tolist() == [code["all"]] * 3
  assert panel.column("Amazon")[z].tolist() == [code["all"]] * 3
  assert panel.column("Anthropic")[w].tolist() == [code["some_other"]] * 3
  combined = agents.combined(panel)
  assert combined[x].tolist() == [code["none"], code["all"], code["all"]]
  assert combined[w].tolist() == [code["some_other"]] * 3
  only_amazon = agents.robots_panel({"www.a.com": {"2024-01-01": "User-agent: Amazonbot\nDisallow: /\n"}}, {},
                                    MONTHS)
  assert agents.combined(only_amazon)[0].tolist() == [code["none"]] * 3


def test_agent_table_counts():
  robots_json = {"www.x.com": {"2024-01-01": "User-agent: GPTBot\nDisallow: /\n",
                               "2024-02-01": "User-agent: *\nDisallow: /\nUser-agent: CCBot\nDisallow: /a\n"}}
  table = {row["agent"]: row for row in agents.agent_observations(robots_json)}
  assert table["gptbot"] == {"agent": "gptbot", "observed": 1, "all": 1, "some": 0, "none": 0}
  assert table["ccbot"]["observed"] == 1 and table["ccbot"]["some"] == 1
  # January: * none, GPTBot all, CCBot (inherits *) none -> some; February: *, GPTBot all, CCBot some -> some.
  assert table[agents.ALL_AGENTS] == {"agent": agents.ALL_AGENTS, "observed": 2, "all": 0, "some": 2, "none": 0}


@pytest.mark.parametrize("codes,label", [
    ((2, 1, 1), "No Scraping"), ((1, 3, 4), "No Scraping & AI"), ((3, 1, 2), "No AI"),
    ((4, 1, 1), "NC Only"), ((4, 3, 2), "No Re-Distribution"), ((5, 3, 3), "Non-Compete"),
    ((4, 2, 4), "Conditional Use"), ((5, 2, 4), "Unrestricted Use"), ((5, 3, 4), "Unrestricted Use"),
])
def test_tos_merge(codes, label):
  assert tos.merge(*codes) == label


def test_tos_domain_labels_carry_each_page_forward():
  verdicts = {"www.x.com": {
      "https://x.com/terms": {"2020-01-01": {"ai": 5, "license": 3, "compete": 4},
                              "2023-06-01": {"ai": 2, "license": 3, "compete": 4}},
      "https://x.com/legal": {"2021-06-01": {"ai": 5, "license": 1, "compete": None}},
  }}
  assert tos.domain_labels(verdicts) == {"www.x.com": {"2020-01-01": "Unrestricted Use", "2021-06-01": "NC Only",
                                                       "2023-06-01": "No Scraping"}}
  panel = tos.tos_panel(tos.domain_labels(verdicts), ["www.x.com", "www.none.com"], {}, month_range("2019-12",
                                                                                                   "2021-06"))
  got = [tos.LABELS[c] for c in panel.column("ToS")[0]]
  assert got[0] == "No Terms Pages" and got[1] == "Unrestricted Use" and got[-1] == "NC Only"
  assert (panel.column("ToS")[1] == tos.NO_TERMS).all()
  assert tos.is_restricted(panel.column("ToS")[0]).tolist() == [False] * 18 + [True]


def test_tos_samples_first_and_last_snapshot_of_each_year():
  dates = ["2019-01-05", "2019-05-01", "2019-12-30", "2020-03-01", "2021-02-01", "2021-09-09"]
  assert tos.sample_dates(dates) == ["2019-01-05", "2019-12-30", "2020-03-01", "2021-02-01", "2021-09-09"]
  assert tos.sample_dates(dates, per_year=0) == dates


def test_sarima_forecast_follows_a_trend():
  months = month_range("2016-01", "2024-04")
  rng = np.random.default_rng(0)
  values = np.linspace(0.0, 0.5, len(months)) + rng.normal(0, 0.002, len(months))
  values[:5] = np.nan  # months before any domain existed
  out = forecast.sarima(values, months, steps=12)
  assert out["period"].tolist()[0] == "2024-05" and out["period"].tolist()[-1] == "2025-04"
  slope = 0.5 / (len(months) - 1)
  assert out["forecast"].iloc[-1] == pytest.approx(0.5 + 12 * slope, abs=0.03)
  assert (out["lower"] <= out["forecast"]).all() and (out["forecast"] <= out["upper"]).all()
  shares = forecast.forecast_shares(
      __import__("pandas").DataFrame({"a": values, "b": 1 - values}).fillna(0.5), months, steps=3)
  assert shares.sum(axis=1).tolist() == pytest.approx([1, 1, 1]) and (shares >= 0).all().all()


def test_organisation_overlap_by_hand():
  codes = np.array([[7, 7, 1], [7, 1, 1], [1, 7, 7]])  # rows: domains; columns: organisations A, B, C
  assert agents.overlap(codes, ["A", "B", "C"]) == pytest.approx({"A": 1 / 2, "B": 2 / 3, "C": 1 / 3})
