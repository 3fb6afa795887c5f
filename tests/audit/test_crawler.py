"""The crawler against a local server that plays the CDX and replay endpoints, with faults and a kill."""

import hashlib
import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time
import urllib.parse

import pytest

from jaxlab.audit import crawl
from jaxlab.audit.temporal import month_range
from jaxlab.audit.wayback import RateLimiter, WaybackClient
from jaxlab.audit.wayback_server import Archive, ArchivedCapture, Fault, WaybackServer

ROOT = Path(__file__).resolve().parents[2]


def _body(domain: str, month: str) -> bytes:
  return f"User-agent: *\nDisallow: /{domain}/{month}\n".encode()


def _archive(domains=("a.com", "b.org"), months=month_range("2015-11", "2016-06")) -> Archive:
  """Monthly robots.txt captures; plus, per domain, ones the CDX query must drop or collapse."""
  archive = Archive()
  for domain in domains:
    url = f"http://{domain}/robots.txt"
    for month in months:
      archive.add(ArchivedCapture(month.replace("-", "") + "10120000", url, _body(domain, month)))
    archive.add(ArchivedCapture("20160320120000", url, b"second capture of March: collapsed away"))
    archive.add(ArchivedCapture("20160501000000", url, b"gone", "text/html", "404"))
    archive.add(ArchivedCapture("20160601000000", url, b"", "warc/revisit", "-"))
  return archive


def _client(server, **overrides) -> WaybackClient:
  settings = dict(rate=0, timeout=0.3, base_delay=0.01, max_retries=6)
  settings.update(overrides)
  return WaybackClient(server.cdx_url, server.replay_url, **settings)


def _stored(out: Path) -> dict[str, dict[str, bytes]]:
  """{url: {timestamp: body}} from the crawl folder, checking every capture's record against its body."""
  stored = {}
  for listing, folder in crawl.CrawlStore(out).targets():
    for meta in crawl.CrawlStore(out).records(folder):
      body = (folder / f"{meta['timestamp']}.body").read_bytes()
      assert meta["sha256"] == hashlib.sha256(body).hexdigest() and meta["bytes"] == len(body)
      stored.setdefault(listing["url"], {})[meta["timestamp"]] = body
  return stored


def _expected(domains=("a.com", "b.org")) -> dict[str, dict[str, bytes]]:
  return {f"http://{d}/robots.txt": {m.replace("-", "") + "10120000": _body(d, m) for m in month_range("2016-01",
                                                                                                      "2016-06")}
          for d in domains}


def test_the_cdx_query_is_the_papers_and_faults_are_retried(tmp_path):
  faults = [Fault("/cdx/", "429", times=2, retry_after="0.3"), Fault("/cdx/", "malformed"),
            Fault("id_/http://a.com", "503", times=2), Fault("201602", "truncate", times=2),
            Fault("201603", "slow", delay=0.6), Fault("201604", "redirect", times=2)]
  with WaybackServer(_archive(), faults) as server:
    summary = crawl.crawl(crawl.read_targets(_domains_csv(tmp_path, ["a.com", "b.org"]), ["robots"]),
                          tmp_path / "crawl", _client(server), workers=2, progress=False)
    log = list(server.requests)
  assert summary.failures == 0 and summary.fetched == 12 and summary.truncated == 0
  assert _stored(tmp_path / "crawl") == _expected()
  query = urllib.parse.parse_qs(urllib.parse.urlsplit(log[0].path).query)
  assert query["from"] == ["20160101"] and query["to"] == ["20240419"] and query["output"] == ["json"]
  assert sorted(query["filter"]) == ["!mimetype:warc/revisit", "!statuscode:404"]
  assert query["collapse"] == ["timestamp:6"] and query["fl"] == ["timestamp,original,mimetype,statuscode,digest"]
  # Retry-After: 0.3 s is honoured after each 429 (the backoff alone would wait ~0.01 s).
  for domain in ("a.com", "b.org"):
    cdx = [r for r in log if r.path.startswith("/cdx/") and domain in r.path]
    for before, after in zip(cdx, cdx[1:]):
      if before.status == 429:
        assert after.time - before.time >= 0.28
  assert [r.status for r in log].count(429) == 2 and [r.status for r in log].count(503) == 2
  redirected = [m for _, folder in crawl.CrawlStore(tmp_path / "crawl").targets()
                for m in crawl.CrawlStore(tmp_path / "crawl").records(folder) if m["timestamp"].startswith("201604")]
  assert any(m["fetched_url"].split("id_/")[1].startswith("https://") for m in redirected)


def _domains_csv(folder: Path, domains) -> Path:
  path = folder / "domains.csv"
  path.write_text("URL,Terms of Use Link 1\n" + "".join(f"{d},\n" for d in domains))
  return path


def test_truncated_and_non_text_bodies_are_recorded_as_such(tmp_path):
  archive = _archive(["a.com"])
  archive.add(ArchivedCapture("20160710000000", "http://a.com/robots.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00IHDR",
                              "image/png"))
  with WaybackServer(archive, [Fault("201605", "truncate", times=100)]) as server:
    summary = crawl.crawl(crawl.targets_for("a.com", ["robots"]), tmp_path, _client(server, max_retries=2),
                          progress=False)
  assert summary.truncated == 1 and summary.non_text == 1 and summary.failures == 0
  records = {m["timestamp"][:6]: m for _, f in crawl.CrawlStore(tmp_path).targets()
             for m in crawl.CrawlStore(tmp_path).records(f)}
  assert records["201605"]["body"] == "truncated" and 0 < records["201605"]["bytes"] < len(_body("a.com", "2016-05"))
  assert records["201607"]["body"] == "non_text"
  assert records["201601"]["body"] == "text"
  robots = json.loads(crawl.export(tmp_path)["robots"].read_text())["www.a.com"]
  assert "2016-05-10" not in robots and "2016-07-10" not in robots and len(robots) == 5
  assert robots["2016-01-10"] == _body("a.com", "2016-01").decode()


def test_failures_are_logged_per_domain_and_a_rerun_fetches_only_what_is_missing(tmp_path):
  domains = ["a.com", "b.org", "c.net"]
  archive = _archive(domains)
  faults = [Fault("id_/http://b.org", "503", times=10**6), Fault("c.net", "503", times=10**6)]
  targets = crawl.read_targets(_domains_csv(tmp_path, domains), ["robots"])
  with WaybackServer(archive, faults) as server:
    first = crawl.crawl(targets, tmp_path / "crawl", _client(server, max_retries=1), progress=False)
  assert first.fetched == 6 and first.failures == 7
  assert first.failures_by_domain == {"www.b.org": 6, "www.c.net": 1}
  log = crawl.CrawlStore(tmp_path / "crawl").failures()
  assert {(f["domain"], f["stage"]) for f in log} == {("www.b.org", "fetch"), ("www.c.net", "cdx")}
  assert all("HTTP 503" in f["error"] for f in log)
  with WaybackServer(archive) as server:
    second = crawl.crawl(targets, tmp_path / "crawl", _client(server), progress=False)
    paths = [r.path for r in server.requests]
  assert second.fetched == 12 and second.already_stored == 6 and second.failures == 0
  assert not any("a.com" in p for p in paths)  # neither listed nor fetched again
  assert sum(p.startswith("/cdx/") for p in paths) == 1  # only c.net's listing was missing
  assert _stored(tmp_path / "crawl") == _expected(domains)


def test_cdx_resume_keys_are_followed(tmp_path):
  with WaybackServer(_archive(["a.com"])) as server:
    captures = _client(server, page_size=2).captures("http://a.com/robots.txt")
    pages = [r for r in server.requests if r.path.startswith("/cdx/")]
  assert [c.timestamp[:6] for c in captures] == [m.replace("-", "") for m in month_range("2016-01", "2016-06")]
  assert len(pages) == 3


def test_rate_limit_spaces_requests():
  limiter = RateLimiter(20)
  start = time.monotonic()
  for _ in range(11):
    limiter.wait()
  assert time.monotonic() - start >= 0.45


def test_kill_mid_run_then_resume_loses_and_duplicates_nothing(tmp_path):
  domains = [f"site{i}.com" for i in range(4)]
  months = month_range("2016-01", "2019-12")
  archive = _archive(domains, months)
  out = tmp_path / "crawl"
  with WaybackServer(archive, latency=0.01) as server:
    command = [sys.executable, "-m", "jaxlab.cli", "audit", "crawl", "--domains",
               str(_domains_csv(tmp_path, domains)), "--out", str(out), "--kinds", "robots", "--rate", "0",
               "--workers", "2", "--timeout", "5", "--no-export", "--cdx-url", server.cdx_url, "--replay-url",
               server.replay_url]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 60
    while len(list(out.glob("robots/*/2*.json"))) < 40 and time.monotonic() < deadline:
      time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("robots/*/2*.json")}
  assert 40 <= len(done_before) < 4 * len(months), "the kill came too late to test a resume"
  with WaybackServer(archive) as server:
    summary = crawl.crawl(crawl.read_targets(tmp_path / "domains.csv", ["robots"]), out, _client(server),
                          progress=False)
    fetched = {r.path.split("/")[2][:14] + "|" + r.path.split("id_/")[1] for r in server.requests
               if "id_/" in r.path}
  assert summary.failures == 0 and summary.already_stored >= len(done_before)
  assert summary.fetched + summary.already_stored == 4 * len(months)
  for path, (inode, mtime) in done_before.items():
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (inode, mtime)  # untouched
    meta = json.loads(path.read_text())
    assert f"{meta['timestamp']}|{meta['original']}" not in fetched  # not fetched again
  expected = {f"http://{d}/robots.txt": {m.replace("-", "") + "10120000": _body(d, m) for m in months}
              for d in domains}
  assert _stored(out) == expected
  for folder in out.glob("robots/*"):
    assert not list(folder.glob(".*.tmp"))
    assert len(list(folder.glob("*.body"))) == len(list(folder.glob("2*.json"))) == len(months)


def test_targets_from_a_domain_sheet(tmp_path):
  sheet = tmp_path / "sheet.csv"
  sheet.write_text("URL,Terms of Use Link 1,Terms of Use Link 2\nnytimes.com,www.nytimes.com/terms,"
                   "https://help.nytimes.com/privacy?x=1\nwww.example.org,,\n")
  targets = crawl.read_targets(sheet)
  assert [(t.domain, t.kind, t.url) for t in targets] == [
      ("www.nytimes.com", "robots", "http://nytimes.com/robots.txt"),
      ("www.nytimes.com", "main", "https://nytimes.com"),
      ("www.nytimes.com", "tos", "https://www.nytimes.com/terms"),
      ("www.nytimes.com", "tos", "https://help.nytimes.com/privacy?x=1"),
      ("www.example.org", "robots", "http://www.example.org/robots.txt"),
      ("www.example.org", "main", "https://www.example.org")]
  assert crawl.sanitize_url("http://www.nytimes.com/robots.txt") == "www_nytimes_com_robots_txt"
  assert crawl.sanitize_url("https://a.com/t?x=1") != crawl.sanitize_url("https://a.com/t?x=2")


@pytest.mark.parametrize("content_type,body,is_text", [
    ("text/plain", b"User-agent: *", True), (None, b"User-agent: *", True), ("image/png", b"\x89PNG", False),
    ("application/octet-stream", b"User-agent: *\nDisallow: /", True),
    (None, b"GIF89a\x00\x01", False), ("text/html; charset=utf-8", "<p>é</p>".encode(), True)])
def test_text_detection(content_type, body, is_text):
  from jaxlab.audit import text
  assert text.is_text(body, content_type) is is_text


def test_shards_split_the_domains_reproducibly_and_merge_for_export(tmp_path):
  from jaxlab import cli
  domains = [f"site{i}.com" for i in range(8)]
  sheet = _domains_csv(tmp_path, domains)
  with WaybackServer(_archive(domains)) as server:
    for k in range(2):
      assert cli.main(["audit", "crawl", "--domains", str(sheet), "--out", str(tmp_path / f"shard{k}"), "--kinds",
                       "robots", "--rate", "0", "--shard", f"{k}/2", "--cdx-url", server.cdx_url, "--replay-url",
                       server.replay_url]) == 0
  shards = [set(_stored(tmp_path / f"shard{k}")) for k in range(2)]
  assert not shards[0] & shards[1] and shards[0] | shards[1] == set(_expected(domains)) and all(shards)
  assert shards[0] == {f"http://{d}/robots.txt" for d in domains if crawl.shard_of(f"www.{d}", 2) == 0}
  assert not (tmp_path / "shard0" / "robots.json").exists()  # a shard alone is not the crawl
  assert cli.main(["audit", "export", "--out", str(tmp_path / "shard0"), str(tmp_path / "shard1")]) == 0
  robots = json.loads((tmp_path / "shard0" / "robots.json").read_text())
  assert sorted(robots) == sorted(f"www.{d}" for d in domains) and all(len(v) == 6 for v in robots.values())
  assert cli.main(["audit", "crawl", "--domains", str(sheet), "--out", str(tmp_path / "x"), "--shard", "2/2"]) == 2


def test_a_crawl_removes_only_abandoned_temporary_files(tmp_path):
  """Crawls on several machines may share a folder: another live writer's temporary file stays."""
  folder = tmp_path / "crawl" / "robots" / "a_com_robots_txt"
  folder.mkdir(parents=True)
  finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
  names = {"live": f".x.json.{crawl.HOST}.{os.getpid()}.1.tmp",
           "dead": f".x.json.{crawl.HOST}.{finished.stdout.strip()}.1.tmp",
           "other_host": ".x.json.node7.12345.1.tmp", "other_host_old": ".y.json.node7.12345.1.tmp"}
  for name in names.values():
    (folder / name).write_bytes(b"partial")
  day_ago = time.time() - crawl.STALE_SECONDS - 60
  os.utime(folder / names["other_host_old"], (day_ago, day_ago))
  crawl.CrawlStore(tmp_path / "crawl")
  assert sorted(p.name for p in folder.iterdir()) == sorted([names["live"], names["other_host"]])
