"""`jaxlab audit crawl`: monthly Wayback snapshots of each domain's robots.txt, home page and ToS pages.

Layout of a crawl folder:

  <kind>/<sanitized url>/cdx.json            the URL's capture list (its domain, kind and URL too); ToS
                                              folders end in `__<domain>`
  <kind>/<sanitized url>/<timestamp>.body     the raw bytes of one capture
  <kind>/<sanitized url>/<timestamp>.json     what is known of it: CDX fields, content type, size, sha256, and
                                              `body`: 'text', 'non_text' or 'truncated'
  failures.jsonl                              one line per failure: domain, kind, url, stage, error

Every file is written to a temporary name and renamed, and a capture's `.json` is written after its body,
so a crawl killed at any point resumes (run it again) without losing, duplicating or refetching what is
stored. Temporary names carry the host and process, so crawls on several machines may share one folder: a
crawl removes only the temporary files of dead processes of its own host, and day-old ones.

At scale, `--shard K/N` (K = 0 .. N-1) crawls the domains whose name hashes to K, the same split on every
machine whatever the order of the domain list; `export` then merges the shard folders (or one shared folder). `export` turns a crawl into the spec's JSONs: robots.json and main.json `{domain: {date: text}}`,
tos.json `{domain: {tos_url: {date: text}}}`, and start_dates.json `{domain: date of its first capture}`.
The paper dated a domain by its first home-page capture only; we take its first capture of any kind in the
window, since a site whose robots.txt was archived in a month existed in it.
"""

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
import csv
import dataclasses
import datetime
import hashlib
import json
import os
from pathlib import Path
import re
import socket
import threading
import time
from urllib.parse import urlparse

from jaxlab.audit import text as textlib
from jaxlab.audit.tokens import normalise_domain
from jaxlab.audit.wayback import DEFAULT_END, DEFAULT_START, Capture, FetchError, WaybackClient
from jaxlab.errors import UserError
from jaxlab.lm import TransientError

KINDS = ("robots", "main", "tos")
TOS_COLUMNS = tuple(f"Terms of Use Link {i}" for i in range(1, 6))


@dataclasses.dataclass(frozen=True)
class Target:
  domain: str  # www.-normalised, the key the analysis uses
  kind: str
  url: str


def _bare(domain: str) -> str:
  domain = domain.strip()
  return urlparse(domain).netloc if "://" in domain else domain.split("/")[0]


def targets_for(domain: str, kinds: Iterable[str], tos_links: Iterable[str] = ()) -> list[Target]:
  """The URLs the paper crawls for a domain: http://<d>/robots.txt, https://<d>, and each ToS link."""
  bare, key = _bare(domain), normalise_domain(_bare(domain))
  found = []
  for kind in kinds:
    if kind == "robots":
      found.append(Target(key, kind, f"http://{bare}/robots.txt"))
    elif kind == "main":
      found.append(Target(key, kind, f"https://{bare}"))
    elif kind == "tos":
      found += [Target(key, kind, link if "://" in link else f"https://{link}") for link in tos_links if link]
    else:
      raise UserError(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
  return found


def read_targets(path: str | Path, kinds: Iterable[str] = KINDS) -> list[Target]:
  """Targets from a CSV with a `URL` (or `domain`) column and optional `Terms of Use Link 1..5` columns, or
  from a text file of one domain per line."""
  path = Path(path)
  if not path.is_file():
    raise UserError(f"domain list {path} not found")
  kinds = list(kinds)
  with open(path, newline="") as f:
    first = f.readline()
    f.seek(0)
    if "," in first or first.strip().lower() in ("url", "domain"):
      rows = list(csv.DictReader(f))
      column = next((c for c in ("URL", "url", "domain", "Domain") if rows and c in rows[0]), None)
      if column is None:
        raise UserError(f"{path} has no URL or domain column")
      found = []
      for row in rows:
        found += targets_for(row[column], kinds, [row.get(c) or "" for c in TOS_COLUMNS])
      return found
    return [t for line in f if line.strip() and not line.startswith("#") for t in targets_for(line, kinds)]


def sanitize_url(url: str) -> str:
  """The folder name of a URL (the original's: netloc and path with dots and slashes as `_`), plus a hash of
  the query when there is one, so two ToS pages differing only in their query do not collide."""
  parsed = urlparse(url if "://" in url else f"//{url}")
  path = "_".join(part for part in re.split(r"/+", parsed.path.strip("/")) if part)
  name = f"{parsed.netloc.replace('.', '_')}_{path}".replace(".", "_")
  name = re.sub(r"[^A-Za-z0-9_\-~%]", "_", name)
  if parsed.query:
    name += "_q" + hashlib.sha1(parsed.query.encode()).hexdigest()[:8]
  return name


HOST = socket.gethostname().replace(".", "-")
STALE_SECONDS = 24 * 3600


def shard_of(domain: str, count: int) -> int:
  """The shard (0 .. count - 1) of a domain: a hash of its name, so that the split is reproducible and every
  URL of a domain lands in the same shard."""
  return int(hashlib.sha1(domain.encode()).hexdigest(), 16) % count


def parse_shard(text: str) -> tuple[int, int]:
  """`K/N` -> (K, N), with 0 <= K < N."""
  index, _, count = text.partition("/")
  if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
    raise UserError(f"--shard {text!r}: give K/N with 0 <= K < N, e.g. 0/4 .. 3/4 for four machines")
  return int(index), int(count)


def write_atomic(path: Path, data: bytes) -> None:
  tmp = path.with_name(f".{path.name}.{HOST}.{os.getpid()}.{threading.get_ident()}.tmp")
  with open(tmp, "wb") as f:
    f.write(data)
  os.replace(tmp, path)


def _abandoned(tmp: Path) -> bool:
  """A temporary file no live writer will rename: its process (of this host) is gone, or it is a day old."""
  try:
    _, host, pid, _, _ = tmp.name.rsplit(".", 4)
    if host == HOST:
      os.kill(int(pid), 0)
  except ProcessLookupError:
    return True
  except (ValueError, PermissionError):
    pass  # another format, or a live process of another user
  try:
    return time.time() - tmp.stat().st_mtime > STALE_SECONDS
  except FileNotFoundError:
    return False  # renamed meanwhile


class CrawlStore:
  """The crawl folder: listings, captures and the failure log."""

  def __init__(self, root: str | Path):
    self.root = Path(root)
    self.root.mkdir(parents=True, exist_ok=True)
    self._log_lock = threading.Lock()
    for tmp in self.root.glob("*/*/.*.tmp"):  # left by a run that was killed mid-write, or being written
      if _abandoned(tmp):
        tmp.unlink(missing_ok=True)

  def folder(self, target: Target) -> Path:
    name = sanitize_url(target.url)
    if target.kind == "tos":  # sites of one owner may share a ToS page; each domain keeps its own copy
      name += "__" + target.domain.replace(".", "_")
    return self.root / target.kind / name

  def listing(self, target: Target) -> list[Capture] | None:
    path = self.folder(target) / "cdx.json"
    if not path.is_file():
      return None
    return [Capture(*row) for row in json.loads(path.read_text())["captures"]]

  def save_listing(self, target: Target, captures: list[Capture]) -> None:
    folder = self.folder(target)
    folder.mkdir(parents=True, exist_ok=True)
    record = {"domain": target.domain, "kind": target.kind, "url": target.url,
              "captures": [dataclasses.astuple(c) for c in captures]}
    write_atomic(folder / "cdx.json", json.dumps(record).encode())

  def has(self, target: Target, capture: Capture) -> bool:
    return (self.folder(target) / f"{capture.timestamp}.json").is_file()

  def save(self, target: Target, capture: Capture, body: bytes, *, content_type: str | None, fetched_url: str,
           truncated: bool) -> dict:
    status = "truncated" if truncated else "text" if textlib.is_text(body, content_type) else "non_text"
    meta = {"domain": target.domain, "kind": target.kind, "url": target.url, "date": capture.date,
            **dataclasses.asdict(capture), "fetched_url": fetched_url, "content_type": content_type,
            "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest(), "body": status}
    folder = self.folder(target)
    write_atomic(folder / f"{capture.timestamp}.body", body)
    write_atomic(folder / f"{capture.timestamp}.json", json.dumps(meta).encode())
    return meta

  def log_failure(self, target: Target, stage: str, error: str, capture: Capture | None = None) -> None:
    line = json.dumps({"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                       "domain": target.domain, "kind": target.kind, "url": target.url, "stage": stage,
                       "timestamp": capture.timestamp if capture else None, "error": error})
    with self._log_lock, open(self.root / "failures.jsonl", "a") as f:
      f.write(line + "\n")

  def failures(self) -> list[dict]:
    path = self.root / "failures.jsonl"
    if not path.is_file():
      return []
    found = []
    for line in path.read_text().splitlines():
      try:
        found.append(json.loads(line))
      except json.JSONDecodeError:
        continue  # a line cut by a kill
    return found

  def targets(self, kind: str | None = None) -> Iterable[tuple[dict, Path]]:
    """(listing record, folder) of every URL with a stored capture list."""
    for path in sorted(self.root.glob(f"{kind or '*'}/*/cdx.json")):
      yield json.loads(path.read_text()), path.parent

  def records(self, folder: Path) -> list[dict]:
    """The stored captures of one URL folder, oldest first."""
    return [json.loads(p.read_text()) for p in sorted(folder.glob("[0-9]*.json"))]


@dataclasses.dataclass
class CrawlSummary:
  targets: int = 0
  listed: int = 0  # captures in the listings
  fetched: int = 0  # captures fetched by this run
  already_stored: int = 0
  truncated: int = 0
  non_text: int = 0
  failures: int = 0
  failures_by_domain: dict = dataclasses.field(default_factory=dict)


def crawl(targets: list[Target], out: str | Path, client: WaybackClient, *, start: str = DEFAULT_START,
          end: str = DEFAULT_END, workers: int = 4, progress: bool = True) -> CrawlSummary:
  """Lists and fetches every target's monthly captures into `out`, skipping what is already stored."""
  store = CrawlStore(out)
  targets = list(dict.fromkeys(targets))  # a URL listed twice is crawled once
  summary = CrawlSummary(targets=len(targets))
  lock = threading.Lock()

  def failed(target, stage, error, capture=None):
    store.log_failure(target, stage, error, capture)
    with lock:
      summary.failures += 1
      summary.failures_by_domain[target.domain] = summary.failures_by_domain.get(target.domain, 0) + 1

  def one(target: Target) -> None:
    captures = store.listing(target)
    if captures is None:
      try:
        captures = client.captures(target.url, start, end)
      except (TransientError, FetchError) as e:
        return failed(target, "cdx", f"{type(e).__name__}: {e}")
      store.save_listing(target, captures)
    with lock:
      summary.listed += len(captures)
    for capture in captures:
      if store.has(target, capture):
        with lock:
          summary.already_stored += 1
        continue
      try:
        page = client.fetch(capture)
      except (TransientError, FetchError) as e:
        failed(target, "fetch", f"{type(e).__name__}: {e}", capture)
        continue
      meta = store.save(target, capture, page.body, content_type=page.content_type, fetched_url=page.final_url,
                        truncated=page.truncated)
      with lock:
        summary.fetched += 1
        summary.truncated += meta["body"] == "truncated"
        summary.non_text += meta["body"] == "non_text"

  from tqdm import tqdm
  with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
    for _ in tqdm(pool.map(one, targets), total=len(targets), disable=not progress, desc="crawl", unit="url"):
      pass
  return summary


def export(out: str | Path, shards: Iterable[str | Path] = ()) -> dict[str, Path]:
  """Writes robots.json, main.json, tos.json and start_dates.json (the spec's schemas) into the crawl folder
  `out`, from it and the other `shards` folders (the crawls of `--shard K/N` into folders of their own).

  Only whole text bodies go in; truncated and non-text captures stay recorded in their `.json` only.
  """
  store = CrawlStore(out)
  listings = (target for folder in [out, *shards] for target in CrawlStore(folder).targets())
  robots, main, tos, start_dates = {}, {}, {}, {}
  for listing, folder in listings:
    domain, kind = listing["domain"], listing["kind"]
    if listing["captures"]:
      first = min(row[0] for row in listing["captures"])
      date = f"{first[:4]}-{first[4:6]}-{first[6:8]}"
      start_dates[domain] = min(date, start_dates.get(domain, date))
    for meta in store.records(folder):
      if meta["body"] != "text":
        continue
      body = (folder / f"{meta['timestamp']}.body").read_bytes()
      if kind == "robots":
        robots.setdefault(domain, {})[meta["date"]] = textlib.decode(body, meta["content_type"])
      elif kind == "main":
        main.setdefault(domain, {})[meta["date"]] = textlib.page_text(body, meta["content_type"])
      else:
        tos.setdefault(domain, {}).setdefault(listing["url"], {})[meta["date"]] = textlib.page_text(
            body, meta["content_type"])
  paths = {}
  for name, data in (("robots", robots), ("main", main), ("tos", tos), ("start_dates", start_dates)):
    paths[name] = store.root / f"{name}.json"
    write_atomic(paths[name], json.dumps(data, sort_keys=True, ensure_ascii=False).encode())
  return paths
