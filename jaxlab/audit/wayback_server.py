"""A local HTTP server that plays the Wayback Machine's CDX and replay endpoints, with injectable faults.

It holds an archive of captures per URL and answers the subset of the CDX API the crawler uses (`url`,
`from`, `to`, `filter`, `collapse=timestamp:N`, `fl`, `limit`, `showResumeKey`/`resumeKey`, JSON output) and
`/web/<timestamp>id_/<url>` replays (a capture with a 3xx status redirects to its target's capture). Faults
(429 bursts with Retry-After, 503s, slow replies, truncated bodies, malformed JSON, redirects) fire on
requests whose path contains a given string, a given number of times. Used by the tests and the demo, so
the crawler runs end to end without the network.
"""

import base64
import dataclasses
import hashlib
import http.server
import json
import re
import threading
import time
import typing
import urllib.parse


def url_key(url: str) -> str:
  """The CDX-style canonical form: no scheme, no `www.`, lower-case host, no trailing slash."""
  rest = url.split("://", 1)[-1]
  host, slash, path = rest.partition("/")
  host = host.lower().removeprefix("www.")
  path = path.rstrip("/")
  return host + (slash + path if path else "")


@dataclasses.dataclass
class ArchivedCapture:
  timestamp: str
  original: str
  body: bytes = b""
  mimetype: str = "text/plain"
  statuscode: str = "200"
  redirect_to: str | None = None  # for 3xx captures: the URL it pointed to

  @property
  def digest(self) -> str:
    return base64.b32encode(hashlib.sha1(self.body + (self.redirect_to or "").encode()).digest()).decode()


@dataclasses.dataclass
class Fault:
  match: str  # fires on requests whose path (with query) contains this
  kind: str  # '429' | '503' | 'slow' | 'truncate' | 'malformed' | 'redirect'
  times: int = 1
  retry_after: str | None = None
  delay: float = 0.0


class Request(typing.NamedTuple):
  path: str
  status: int
  time: float  # time.monotonic() when the reply was sent


class Archive:

  def __init__(self):
    self.captures: dict[str, list[ArchivedCapture]] = {}

  def add(self, capture: ArchivedCapture) -> None:
    rows = self.captures.setdefault(url_key(capture.original), [])
    rows.append(capture)
    rows.sort(key=lambda c: c.timestamp)

  def find(self, url: str, timestamp: str) -> ArchivedCapture | None:
    """The capture of `url` closest to `timestamp` (Wayback replays the nearest one)."""
    rows = self.captures.get(url_key(url))
    if not rows:
      return None
    return min(rows, key=lambda c: abs(int(c.timestamp) - int(timestamp.ljust(14, "0")[:14])))


def _cdx_rows(archive: Archive, params: dict[str, list[str]]) -> tuple[list[list[str]], str | None]:
  rows = archive.captures.get(url_key(params.get("url", [""])[0]), [])
  start = params.get("from", ["0"])[0]
  end = params.get("to", ["99999999999999"])[0].ljust(14, "9")
  fields = params.get("fl", ["urlkey,timestamp,original,mimetype,statuscode,digest,length"])[0].split(",")
  selected = [c for c in rows if start <= c.timestamp <= end]
  for spec in params.get("filter", []):
    negate = spec.startswith("!")
    field, _, pattern = spec.lstrip("!").partition(":")
    selected = [c for c in selected if bool(re.fullmatch(pattern, str(getattr(c, field, "")))) != negate]
  for spec in params.get("collapse", []):
    field, _, digits = spec.partition(":")
    width = int(digits) if digits else None
    collapsed, last = [], object()
    for c in selected:
      value = str(getattr(c, field, ""))[:width]
      if value != last:
        collapsed.append(c)
        last = value
    selected = collapsed
  offset = int(params.get("resumeKey", ["0"])[0])
  limit = int(params.get("limit", ["100000"])[0])
  page = selected[offset:offset + limit]
  more = offset + limit < len(selected) and params.get("showResumeKey", ["false"])[0] == "true"
  values = {"urlkey": lambda c: url_key(c.original), "length": lambda c: str(len(c.body))}
  out = [[values[f](c) if f in values else str(getattr(c, f)) for f in fields] for c in page]
  return [fields] + out, str(offset + limit) if more else None


class _Server(http.server.ThreadingHTTPServer):
  daemon_threads = True

  def handle_error(self, request, client_address):
    pass  # a client that timed out and hung up is part of the play (the `slow` fault)


class WaybackServer:
  """`with WaybackServer(archive, faults) as server:` serves on 127.0.0.1; `server.requests` logs requests."""

  def __init__(self, archive: Archive, faults: list[Fault] = (), latency: float = 0.0):
    self.archive = archive
    self.faults = list(faults)
    self.latency = latency
    self.requests: list[Request] = []  # every request, in the order answered
    self._lock = threading.Lock()
    self._httpd = None

  @property
  def cdx_url(self) -> str:
    return f"http://127.0.0.1:{self._httpd.server_port}/cdx/search/cdx"

  @property
  def replay_url(self) -> str:
    return f"http://127.0.0.1:{self._httpd.server_port}/web"

  def _take_fault(self, path: str) -> Fault | None:
    with self._lock:
      for fault in self.faults:
        if fault.times > 0 and fault.match in path:
          fault.times -= 1
          return fault
    return None

  def _log(self, path: str, status: int) -> None:
    with self._lock:
      self.requests.append(Request(path, status, time.monotonic()))

  def __enter__(self):
    server = self

    class Handler(http.server.BaseHTTPRequestHandler):
      protocol_version = "HTTP/1.1"

      def log_message(self, *args):
        pass

      def _send(self, status, body=b"", content_type="text/plain", headers=(), truncate=False):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers:
          self.send_header(key, value)
        if truncate:
          self.send_header("Connection", "close")
          self.close_connection = True
        server._log(self.path, status)  # before the reply, so a client never sees a reply not yet logged
        self.end_headers()
        self.wfile.write(body[:len(body) // 2] if truncate else body)

      def do_GET(self):
        if server.latency:
          time.sleep(server.latency)
        fault = server._take_fault(self.path)
        if fault and fault.kind in ("429", "503"):
          headers = [("Retry-After", fault.retry_after)] if fault.retry_after is not None else []
          return self._send(int(fault.kind), b"busy", headers=headers)
        if fault and fault.kind == "slow":
          time.sleep(fault.delay)
        parsed = urllib.parse.urlsplit(self.path)
        if parsed.path == "/cdx/search/cdx":
          rows, key = _cdx_rows(server.archive, urllib.parse.parse_qs(parsed.query))
          body = json.dumps(rows + ([[], [key]] if key else [])).encode()
          if fault and fault.kind == "malformed":
            body = body[:max(1, len(body) // 3)] + b"<html>"
          return self._send(200, body, "application/json", truncate=bool(fault and fault.kind == "truncate"))
        found = re.match(r"^/web/(\d{1,14})id_/(.+)$", self.path)
        if not found:
          return self._send(404, b"not found")
        timestamp, original = found.groups()
        if fault and fault.kind == "redirect":  # Wayback redirects to the canonical timestamp/URL form
          target = original.replace("http://", "https://", 1) if original.startswith("http://") else original
          return self._send(302, headers=[("Location", f"/web/{timestamp}id_/{target}")])
        capture = server.archive.find(original, timestamp)
        if capture is None:
          return self._send(404, b"not archived")
        if capture.redirect_to:
          return self._send(302, headers=[("Location", f"/web/{capture.timestamp}id_/{capture.redirect_to}")])
        self._send(200, capture.body, capture.mimetype,
                   truncate=bool(fault and fault.kind == "truncate"))

    self._httpd = _Server(("127.0.0.1", 0), Handler)
    self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._httpd.shutdown()
    self._httpd.server_close()
