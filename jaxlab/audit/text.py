"""Bytes of a captured page -> text: charset detection, a text/binary test, and HTML -> readable text.

The HTML extraction follows the paper's `extract_and_format_text`: script and style are dropped, h1/h2/h3
become `#`/`##`/`###` lines, paragraphs and line breaks end lines, and the non-empty stripped lines are
kept.
"""

from html.parser import HTMLParser
import re

_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", re.IGNORECASE)
# Types that are never text; anything else (servers send robots.txt as application/octet-stream too) is
# sniffed.
_BINARY_TYPES = ("image/", "audio/", "video/", "font/", "application/pdf", "application/zip", "application/gzip",
                 "application/x-gzip", "application/vnd.", "application/msword", "application/x-shockwave-flash")
_BLOCKS = frozenset("address article aside blockquote dd div dl dt footer form header hr li main nav ol pre "
                    "section table td th tr ul title".split())
_HEADINGS = {"h1": "# ", "h2": "## ", "h3": "### "}
_SKIP = frozenset(("script", "style"))


def _valid_codec(name: str) -> bool:
  import codecs
  try:
    codecs.lookup(name)
    return True
  except LookupError:
    return False


def charset(body: bytes, content_type: str | None = None) -> str:
  """The body's character set: BOM, then the Content-Type header, then a <meta> tag, then UTF-8 if it
  decodes, else windows-1252 (which decodes anything)."""
  if body.startswith(b"\xef\xbb\xbf"):
    return "utf-8-sig"
  if body.startswith((b"\xff\xfe", b"\xfe\xff")):
    return "utf-16"
  for found in (_HEADER_CHARSET.search(content_type or ""), _CHARSET.search(body[:4096])):
    if found:
      name = found.group(1).decode("ascii", "ignore") if isinstance(found.group(1), bytes) else found.group(1)
      if _valid_codec(name):
        return name
  try:
    body.decode("utf-8")
    return "utf-8"
  except UnicodeDecodeError:
    return "windows-1252"


def decode(body: bytes, content_type: str | None = None) -> str:
  return body.decode(charset(body, content_type), errors="replace")


def is_text(body: bytes, content_type: str | None = None) -> bool:
  """Whether a body is text: not a binary Content-Type, and no NUL bytes in its first 8 KiB (UTF-16 aside)."""
  if (content_type or "").split(";")[0].strip().lower().startswith(_BINARY_TYPES):
    return False
  head = body[:8192]
  return b"\x00" not in head or head.startswith((b"\xff\xfe", b"\xfe\xff"))


def is_html(text: str) -> bool:
  return bool(re.search(r"<(html|body|p|div|head|!doctype)\b", text[:4096], re.IGNORECASE))


class _Extractor(HTMLParser):

  def __init__(self):
    super().__init__(convert_charrefs=True)
    self.parts: list[str] = []
    self._skip = 0

  def handle_starttag(self, tag, attrs):
    if tag in _SKIP:
      self._skip += 1
    elif tag in _HEADINGS:
      self.parts.append("\n" + _HEADINGS[tag])
    elif tag == "br":
      self.parts.append("\n")
    elif tag == "p" or tag in _BLOCKS:
      self.parts.append("\n\n" if tag == "p" else "\n")

  def handle_endtag(self, tag):
    if tag in _SKIP:
      self._skip = max(0, self._skip - 1)
    elif tag in _HEADINGS or tag == "p" or tag in _BLOCKS:
      self.parts.append("\n")

  def handle_data(self, data):
    if not self._skip:
      self.parts.append(data)


def html_to_text(html: str) -> str:
  extractor = _Extractor()
  extractor.feed(html)
  extractor.close()
  lines = (re.sub(r"[ \t\f\v\xa0]+", " ", line).strip() for line in "".join(extractor.parts).splitlines())
  return "\n".join(line for line in lines if line)


def page_text(body: bytes, content_type: str | None = None) -> str:
  """The readable text of a captured page (HTML extracted; plain text as is)."""
  text = decode(body, content_type)
  return html_to_text(text) if is_html(text) or "html" in (content_type or "").lower() else text
