"""The web_consent TFDS builder: both configs build offline from a manual folder and read back without TF."""

import importlib
import json
from pathlib import Path

import pytest

from jaxlab.audit import robots, tos


def _builder_module():
  return importlib.import_module("jaxlab.datasets.web_consent.web_consent_dataset_builder")


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory) -> Path:
  folder = tmp_path_factory.mktemp("manual")
  (folder / "robots.json").write_text(json.dumps({
      "www.a.com": {"2024-01-01": "User-agent: GPTBot\nUser-agent: CCBot\nDisallow: /\n", "2024-02-01": None},
      "www.b.org": {"2023-05-05": "User-agent: *\nDisallow: /private/\nSitemap: https://b.org/s.xml\n"}}))
  (folder / "main.json").write_text(json.dumps({"www.a.com": {"2024-01-03": "# A\nWelcome"}}))
  (folder / "tos.json").write_text(json.dumps({"www.a.com": {"https://a.com/terms": {
      "2024-01-05": "You may not use any robot or scraper to access the site."}}}))
  (folder / "start_dates.json").write_text(json.dumps({"www.a.com": "2016-01-03"}))
  (folder / "tokens.csv").write_text("url,c4_tokens,rf_tokens,dolma_tokens\na.com,100,50,0\nwww.b.org,10,20,30\n"
                                     "c.net,1,1,1\n")
  return folder


def _build(manual_dir, data_dir, config):
  import tensorflow_datasets as tfds
  module = _builder_module()
  builder = module.Builder(config=config, data_dir=str(data_dir), file_format="array_record")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  source = tfds.data_source(f"web_consent/{builder.builder_config.name}", data_dir=str(data_dir))["train"]
  return module, [source[i] for i in range(len(source))]


def test_snapshots(manual_dir, tmp_path):
  module, examples = _build(manual_dir, tmp_path, "snapshots")
  assert len(examples) == 4  # the null robots.txt entry is skipped
  by_key = {(e["kind"], e["domain"].decode(), e["date"].decode()): e for e in examples}
  kinds = module.KINDS
  a = by_key[(kinds.index("robots"), "www.a.com", "2024-01-01")]
  order = module.AGENT_ORDER
  status = robots.STATUSES
  assert a["robots_status"][order.index("GPTBot")] == status.index("all")
  assert a["robots_status_paper"][order.index("GPTBot")] == status.index("none")  # the paper-time parser
  assert a["robots_status"][order.index("*")] == status.index("none")
  assert a["c4_tokens"] == 100 and a["dolma_tokens"] == 0 and a["start_date"] == b"2016-01-03"
  assert a["url"] == b"http://a.com/robots.txt"
  b = by_key[(kinds.index("robots"), "www.b.org", "2023-05-05")]
  assert b["robots_detailed"][order.index("GPTBot")] == robots.DETAILED_STATUSES.index("some_disallow_important_dir")
  assert b["sitemaps"] == 1 and b["start_date"] == b""
  terms = by_key[(kinds.index("tos"), "www.a.com", "2024-01-05")]
  assert terms["url"] == b"https://a.com/terms"
  assert terms["tos_keyword_codes"].tolist() == [2, 3, 4]
  assert tos.LABELS[terms["tos_keyword_label"]] == "No Scraping"
  assert (terms["robots_status"] == -1).all()
  home = by_key[(kinds.index("main"), "www.a.com", "2024-01-03")]
  assert home["text"] == b"# A\nWelcome"


def test_tokens(manual_dir, tmp_path):
  _, examples = _build(manual_dir, tmp_path, "tokens")
  rows = {e["url"].decode(): e for e in examples}
  assert set(rows) == {"www.a.com", "www.b.org", "www.c.net"}
  assert (rows["www.a.com"]["c4_tokens"], rows["www.a.com"]["rf_tokens"]) == (100, 50)
  assert bool(rows["www.a.com"]["head_c4"]) and not bool(rows["www.a.com"]["head_dolma"])


def test_bad_entries_fail_when_asked(manual_dir, tmp_path):
  module = _builder_module()
  import tensorflow_datasets as tfds
  builder = module.Builder(config=module.WebConsentConfig(name="snapshots_strict", on_bad="fail"), data_dir=str(tmp_path),
                           file_format="array_record")
  with pytest.raises(Exception, match="robots\\|www.a.com\\|.*2024-02-01: text is NoneType"):
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
