"""A Wayback Machine client: CDX listings with the paper's query, and raw (`id_`) replays of captures.

The CDX query is the paper's (section 2.2 of the spec): exact URL, 2016-01-01 to 2024-04-19, 404s and
revisit records filtered out, one capture per month (`collapse=timestamp:6`), captures deduplicated by
digest within a month. Unlike the original, it follows CDX resume keys, fetches the raw capture
(`/web/<timestamp>id_/<url>`, not the rewritten replay page), limits its request rate, and retries 429s,
5xx, timeouts, dropped connections, truncated bodies and malformed JSON with exponential backoff and full
jitter, honouring `Retry-After`.
"""

import dataclasses
import http.client
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from jaxlab.lm import TransientError, retry_after_seconds, with_retries

CDX_URL = "https://web.archive.org/cdx/search/cdx"
REPLAY_URL = "https://web.archive.org/web"
FIELDS = ("timestamp", "original", "mimetype", "statuscode", "digest")
DEFAULT_START, DEFAULT_END = "20160101", "20240419"
# The paper fetched robots.txt with a desktop browser's User-Agent; we say who we are.
USER_AGENT = "jaxlab-consent-audit/0.1 (research crawler; Wayback Machine CDX + replay)"


@dataclasses.dataclass(frozen=True)
class Capture:
  timestamp: str  # YYYYmmddHHMMSS
  original: str
  mimetype: str
  statuscode: str
  digest: str

  @property
  def date(self) -> str:
    return f"{self.timestamp[:4]}-{self.timestamp[4:6]}-{self.timestamp[6:8]}"


@dataclasses.dataclass
class Page:
  body: bytes
  content_type: str | None
  final_url: str
  truncated: bool = False


class Truncated(TransientError):
  """The connection closed before Content-Length bytes arrived; `partial` holds what did."""

  def __init__(self, message: str, partial: bytes):
    super().__init__(message)
    self.partial = partial


class FetchError(Exception):
  """A failure not worth retrying (a 404 from the replay, a malformed URL)."""


class RateLimiter:
  """At most `per_second` request starts per second across threads (no limit when <= 0)."""

  def __init__(self, per_second: float):
    self.interval = 1.0 / per_second if per_second > 0 else 0.0
    self._next = 0.0
    self._lock = threading.Lock()

  def wait(self) -> None:
    if not self.interval:
      return
    with self._lock:
      now = time.monotonic()
      start = max(now, self._next)
      self._next = start + self.interval
    if start > now:
      time.sleep(start - now)


class WaybackClient:

  def __init__(self, cdx_url: str = CDX_URL, replay_url: str = REPLAY_URL, *, rate: float = 2.0,
               timeout: float = 30.0, max_retries: int = 6, base_delay: float = 1.0, max_delay: float = 60.0,
               page_size: int = 1000, user_agent: str = USER_AGENT):
    self.cdx_url = cdx_url
    self.replay_url = replay_url.rstrip("/")
    self.limiter = RateLimiter(rate)
    self.timeout = timeout
    self.max_retries = max_retries
    self.base_delay = base_delay
    self.max_delay = max_delay
    self.page_size = page_size
    self.user_agent = user_agent

  def _get_once(self, url: str) -> Page:
    self.limiter.wait()
    request = urllib.request.Request(url, headers={"User-Agent": self.user_agent})
    try:
      with urllib.request.urlopen(request, timeout=self.timeout) as response:
        content_type = response.headers.get("Content-Type")
        final_url = response.geturl()
        try:
          body = response.read()
        except http.client.IncompleteRead as e:
          raise Truncated(f"truncated body from {url} ({len(e.partial)} bytes)", e.partial) from e
        return Page(body, content_type, final_url)
    except urllib.error.HTTPError as e:
      if e.code == 429 or e.code >= 500:
        raise TransientError(f"HTTP {e.code}", retry_after_seconds(e.headers)) from e
      raise FetchError(f"HTTP {e.code}") from None
    except urllib.error.URLError as e:
      if isinstance(e.reason, OSError):  # timeouts, refused or reset connections, DNS, TLS
        raise TransientError(f"{type(e.reason).__name__}: {e.reason}") from e
      raise FetchError(str(e.reason)) from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as e:
      raise TransientError(f"{type(e).__name__}: {e}") from e

  def _retrying(self, call):
    return with_retries(call, max_retries=self.max_retries, base_delay=self.base_delay, max_delay=self.max_delay)

  def captures(self, url: str, start: str = DEFAULT_START, end: str = DEFAULT_END) -> list[Capture]:
    """The monthly captures of `url` in [start, end], first of each month, deduplicated by digest."""
    params = [("url", url), ("output", "json"), ("from", start), ("to", end),
              ("filter", "!statuscode:404"), ("filter", "!mimetype:warc/revisit"),
              ("collapse", "timestamp:6"), ("fl", ",".join(FIELDS)),
              ("limit", str(self.page_size)), ("showResumeKey", "true")]
    found, resume_key = [], None
    while True:
      query = params + ([("resumeKey", resume_key)] if resume_key else [])
      rows, resume_key = self._retrying(lambda q=query: self._cdx_page(q))
      found += rows
      if not resume_key:
        break
    seen, unique = set(), []
    for capture in found:
      key = (capture.timestamp[:6], capture.digest)
      if key not in seen:
        seen.add(key)
        unique.append(capture)
    return unique

  def _cdx_page(self, query) -> tuple[list[Capture], str | None]:
    page = self._get_once(f"{self.cdx_url}?{urllib.parse.urlencode(query)}")
    if page.truncated:
      raise TransientError("truncated CDX reply")
    text = page.body.decode("utf-8", errors="replace").strip()
    if not text:
      return [], None
    try:
      rows = json.loads(text)
    except json.JSONDecodeError as e:
      raise TransientError(f"malformed CDX JSON: {e}") from e
    if not isinstance(rows, list) or (rows and rows[0] != list(FIELDS)):
      raise TransientError(f"unexpected CDX reply: {text[:120]!r}")
    resume_key = None
    if len(rows) >= 2 and rows[-2] == [] and len(rows[-1]) == 1:  # `showResumeKey`: [], [key] at the end
      resume_key, rows = rows[-1][0], rows[:-2]
    try:
      return [Capture(*map(str, row)) for row in rows[1:]], resume_key
    except TypeError as e:
      raise TransientError(f"malformed CDX row: {e}") from e

  def replay_url_of(self, capture: Capture) -> str:
    return f"{self.replay_url}/{capture.timestamp}id_/{capture.original}"

  def fetch(self, capture: Capture) -> Page:
    """The raw bytes of a capture. A body still truncated after the retries comes back `truncated`."""
    url = self.replay_url_of(capture)
    try:
      return self._retrying(lambda: self._get_once(url))
    except Truncated as e:
      return Page(e.partial, None, url, truncated=True)
