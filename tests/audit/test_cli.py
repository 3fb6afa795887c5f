"""The `jaxlab audit` verbs end to end on a small synthetic web: tokens -> sample -> crawl -> label -> report."""

import csv
import json

import pandas as pd
import pytest

from jaxlab import cli
from jaxlab.audit import synthetic
from jaxlab.audit.crawl import TOS_COLUMNS
from jaxlab.audit.wayback_server import Fault, WaybackServer


@pytest.fixture(scope="module")
def world():
  return synthetic.make_world(n_sites=300, seed=1, top_tokens=3000)


def test_pipeline(world, tmp_path, capsys):
  shards = world.write_corpora(tmp_path / "corpora")
  assert cli.main(["audit", "tokens", "--c4", shards["c4"], "--rf", shards["rf"], "--dolma", shards["dolma"],
                   "--out", str(tmp_path / "tokens.csv")]) == 0
  with open(tmp_path / "sheet.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=["URL", *TOS_COLUMNS])
    writer.writeheader()
    writer.writerows(world.domain_rows(sorted(world.by_key)))
  assert cli.main(["audit", "sample", "--tokens", str(tmp_path / "tokens.csv"), "--head-k", "10", "--random-n", "20",
                   "--tos-links", str(tmp_path / "sheet.csv"), "--out", str(tmp_path / "sample")]) == 0
  sampled = pd.read_csv(tmp_path / "sample" / "domains.csv")
  random = (tmp_path / "sample" / "random.txt").read_text().split()
  assert len(random) == 20 and set(random) <= set(sampled["URL"])
  keys = [k for k in sampled["URL"] if k in world.by_key]

  with WaybackServer(world.archive(keys), [Fault("id_/", "503", times=3), Fault("/cdx/", "429", times=2)]) as server:
    assert cli.main(["audit", "crawl", "--domains", str(tmp_path / "sample" / "domains.csv"), "--out",
                     str(tmp_path / "crawl"), "--rate", "0", "--workers", "4", "--timeout", "5", "--backoff", "0.01",
                     "--cdx-url", server.cdx_url, "--replay-url", server.replay_url]) == 0
  robots_json = json.loads((tmp_path / "crawl" / "robots.json").read_text())
  assert set(robots_json) <= set(keys) and len(robots_json) >= 0.9 * len(keys)
  assert cli.main(["audit", "label", "--crawl", str(tmp_path / "crawl"), "--labeller", "keyword"]) == 0
  labels = json.loads((tmp_path / "crawl" / "tos_labels.json").read_text())
  assert labels["labeller"] == "keyword" and labels["labels"]

  capsys.readouterr()
  assert cli.main(["audit", "report", "--crawl", str(tmp_path / "crawl"), "--tokens", str(tmp_path / "tokens.csv"),
                   "--random", str(tmp_path / "sample" / "random.txt"), "--out", str(tmp_path / "report"),
                   "--head-k", "10", "--resamples", "50", "--start", "2021-01"]) == 0
  printed = capsys.readouterr().out
  assert "c4_full_restricted_2024-04:" in printed and "c4_full_forecast_2025-04:" in printed
  report = tmp_path / "report"
  for name in ("report.md", "fig1_robots_c4.png", "fig1_tos_c4.png", "fig1_organisations_c4.png",
               "fig2_restricted_tokens.png", "fig3_robots_vs_tos_c4.png", "agent_table.csv",
               "robots_rf_estimates.csv", "tos_dolma_estimates.csv", "robots_c4_head_status_forecast.csv"):
    assert (report / name).is_file(), name
  estimates = pd.read_csv(report / "robots_c4_estimates.csv")
  assert list(estimates.columns[:6]) == ["period", "Head", "Random", "Head Portion", "Rand Portion", "Full Corpus"]
  last = estimates.iloc[-1]
  assert last["Full Corpus lo"] <= last["Full Corpus"] <= last["Full Corpus hi"]
  matrix = pd.read_csv(report / "robots_vs_tos_c4.csv", index_col="robots")
  assert matrix["row sum"].sum() == pytest.approx(100)
  forecast = pd.read_csv(report / "robots_c4_head_status_forecast.csv", index_col="period")
  assert len(forecast) == 12 and forecast.sum(axis=1).to_numpy() == pytest.approx(1)

  assert cli.main(["audit", "robots", "--json", str(tmp_path / "crawl" / "robots.json"), "--show", "0"]) == 0
  assert "files/s" in capsys.readouterr().err


def test_robots_verb_and_user_errors(tmp_path, capsys):
  path = tmp_path / "robots.txt"
  path.write_text("User-agent: GPTBot\nUser-agent: CCBot\nDisallow: /\n")
  assert cli.main(["audit", "robots", str(path), "--agent", "GPTBot", "--path", "/x"]) == 0
  assert "GPTBot=all; GPTBot may not fetch /x" in capsys.readouterr().out
  assert cli.main(["audit", "robots", str(path), "--agent", "GPTBot", "--paper-compat"]) == 0
  assert "GPTBot=none" in capsys.readouterr().out
  assert cli.main(["audit", "report", "--crawl", str(tmp_path), "--tokens", str(tmp_path / "no.csv"), "--out",
                   str(tmp_path / "r")]) == 2
  assert "token table" in capsys.readouterr().err
