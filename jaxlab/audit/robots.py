"""robots.txt: an RFC 9309 parser, and the paper's per-agent classification.

`parse(text)` reads a file the way RFC 9309 says: consecutive user-agent lines form one group and a
user-agent line after a rule starts the next; lines other than user-agent/allow/disallow (sitemap,
crawl-delay, garbage) neither open nor close a group; groups naming the same agent merge; keys and agent
tokens are case-insensitive; `#` starts a comment; only the first 500 KiB are read. `allowed(agent, path)`
picks the agent's group (else `*`, else no rules), and the longest matching pattern wins, Allow on a tie,
with `*` and a final `$`, comparing percent-encodings normalised. `path` may be a URL: only a scheme
before any `/`, `?` or `;` makes it one (`request_path`).

Checked against google/robotstxt's test suite (`robots_test.cc`, the reference parser of RFC 9309), ported
in tests/audit/test_robots_google.py. Like Google's parser it reads a directive without its colon
(`disallow /`, exactly two words; counted in `colonless_lines`) and a URL as Google's `GetPathParamsQuery`
does. Where Google's parser goes beyond or against the RFC, this one follows RFC 9309:
- percent-encoding (RFC 9309 2.2.2): patterns and paths are both normalised, so `%62%61%7A` in a rule matches
  `/baz` and a rule `/ツ` matches the unencoded path `/ツ`; Google encodes the rule only and leaves the
  caller to encode the URL, so neither matches there;
- the agent asked about is reduced to its product token (`Googlebot/2.1` -> `googlebot`, `Foo Bar` ->
  `foo`), as the RFC's matching on product tokens implies; Google compares the string as given;
- no Google-only extensions: `index.html` at the end of an Allow does not allow its directory, misspelt keys
  (`dissallow`, `useragent`) are not read, and long lines are not cut at 16,664 bytes (the file is, at 500 KiB).

`classify(agent)` is the paper's rule (Longpre et al. 2024, `parse_robots.interpret_agent`), applied to the
agent's merged rules: values containing `?` are dropped; `none` if no Disallow is left, if it is only
`Disallow:` (empty), or if the Allow list equals the Disallow list; `all` if some Disallow is exactly `/`
and there is no Allow; otherwise `some`. It is not the longest-match semantics (`Disallow: /*` is `some`).

`paper_compat=True` reproduces the parser the paper's figures were computed with (Data-Provenance-Collection
257a063): only lines starting exactly `User-agent:`, `Allow:`, `Disallow:` or `Crawl-delay:` count (case
matters), each user-agent line replaces the current group (so in a stack only the last agent gets the
rules), a blank or comment line ends the group, values keep trailing comments, agents match exactly and
case-sensitively, and there is no size limit.
"""

import functools
import re
import typing

MAX_BYTES = 500 * 1024
STATUSES = ("none", "some", "all")
# The paper's detailed taxonomy, least to most strict (App. B.1; figure order).
DETAILED_STATUSES = ("no_robots", "none", "none_sitemap", "none_crawl_delay", "some_other",
                     "some_disallow_important_dir", "some_pattern_restrictions", "all")

_DIRECTIVES = ("user-agent", "allow", "disallow", "sitemap", "crawl-delay")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_PRODUCT_TOKEN = re.compile(r"[A-Za-z_-]+")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

# The paper's sub-type tests run over the whole file (`compute_url_date_agent_status_detailed`).
_PAPER_SUBTYPES = (re.compile(r"Disallow:\s+/.*\?"), re.compile(r"Disallow:\s*/(?:admin|private|confidential)"),
                   re.compile(r"Crawl-delay:"), re.compile(r"Sitemap|sitemap"))
# Under RFC parsing keys have no case: the same tests, run on the lower-cased text.
_RFC_SUBTYPES = (re.compile(r"disallow:\s+/.*\?"), re.compile(r"disallow:\s*/(?:admin|private|confidential)"),
                 re.compile(r"crawl-delay:"), re.compile(r"sitemap"))


class Rule(typing.NamedTuple):
  allow: bool
  value: str  # the path pattern as written (comment and surrounding whitespace removed)


def agent_key(agent: str) -> str:
  """The product token RFC 9309 matches on: `Googlebot/2.1 (+http://...)` -> `googlebot`; `*` stays `*`."""
  agent = agent.strip()
  if agent.startswith("*"):
    return "*"
  token = _PRODUCT_TOKEN.match(agent)
  return token.group(0).lower() if token else agent.lower()


def normalise_path(path: str) -> str:
  """Percent-encodes non-ASCII octets, decodes escaped unreserved characters, upper-cases the other escapes.

  Applied to patterns and to paths alike, so `/foo/%62%61%7A` matches `/foo/baz` and `/ツ` matches
  `/%E3%83%84` (RFC 9309 section 2.2.2).
  """
  if path.isascii() and "%" not in path:
    return path
  encoded = "".join(c if c.isascii() else "".join(f"%{b:02X}" for b in c.encode("utf-8")) for c in path)

  def unescape(match):
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else f"%{match.group(1).upper()}"

  return _ESCAPE.sub(unescape, encoded)


@functools.lru_cache(maxsize=65536)
def _pattern(value: str) -> re.Pattern:
  anchored = value.endswith("$")
  body = value[:-1] if anchored else value
  regex = ".*".join(re.escape(part) for part in body.split("*"))
  return re.compile(regex + (r"\Z" if anchored else ""), re.DOTALL)


def request_path(url: str) -> str:
  """The path, params and query of a URL (or a path), as robots.txt rules see them; always starts with `/`.

  As google/robotstxt reads a URL: `://` marks a scheme only before any `/`, `?` or `;` (so
  `/login?next=http://x.com/y` is a path, and a URL in a query stays there); without a scheme, what comes
  before the first `/`, `?` or `;` is the host (`example.com/a` -> `/a`), except after a leading `//`; the
  fragment is dropped.
  """
  start = 2 if url.startswith("//") else 0
  early = _first_of(url, "/?;", start)
  scheme = url.find("://", start)
  after = scheme + 3 if scheme != -1 and scheme < early else start
  path_start = _first_of(url, "/?;", after)
  if path_start == len(url):
    return "/"
  fragment = url.find("#", start)
  if fragment != -1 and fragment < path_start:
    return "/"
  path = url[path_start:fragment if fragment != -1 else len(url)]
  return path if path.startswith("/") else "/" + path


def _first_of(text: str, chars: str, start: int) -> int:
  found = [i for i in (text.find(c, start) for c in chars) if i != -1]
  return min(found) if found else len(text)


def _interpret(rules: list[Rule]) -> str:
  disallow = [r.value for r in rules if not r.allow and "?" not in r.value]
  allow = [r.value for r in rules if r.allow and "?" not in r.value]
  if not disallow or disallow == [""] or allow == disallow:
    return "none"
  if not allow and any(value.strip() == "/" for value in disallow):
    return "all"
  return "some"


class RobotsTxt:
  """A parsed robots.txt: the rules of each agent (merged across its groups), sitemaps and crawl delays."""

  def __init__(self, groups: dict[str, list[Rule]], *, text: str = "", paper_compat: bool = False,
               sitemaps: tuple[str, ...] = (), crawl_delays: dict[str, str] | None = None, ignored_lines: int = 0,
               colonless_lines: int = 0, truncated: bool = False):
    self.groups = groups  # agent key -> rules in file order
    self.text = text
    self.paper_compat = paper_compat
    self.sitemaps = sitemaps
    self.crawl_delays = crawl_delays or {}
    self.ignored_lines = ignored_lines
    self.colonless_lines = colonless_lines  # directives written without their colon (`disallow /`), read anyway
    self.truncated = truncated

  def _key(self, agent: str) -> str:
    return agent if self.paper_compat else agent_key(agent)

  @property
  def agents(self) -> list[str]:
    """The agents the file names (agent keys, or the names as written under `paper_compat`)."""
    return list(self.groups)

  def rules_for(self, agent: str) -> list[Rule] | None:
    """The agent's own rules, else the `*` group's; None when neither exists (nothing applies)."""
    rules = self.groups.get(self._key(agent))
    return rules if rules is not None else self.groups.get("*")

  def allowed(self, agent: str, path: str) -> bool:
    """Whether `agent` may fetch `path` (a path with optional query, or a full URL) under RFC 9309."""
    path = normalise_path(request_path(path))
    if path == "/robots.txt":
      return True
    best_length, best_allow = -1, True
    for rule in self.rules_for(agent) or ():
      if not rule.value:
        continue  # an empty pattern matches nothing
      pattern = normalise_path(rule.value)
      if _pattern(pattern).match(path):
        length = len(pattern)
        if length > best_length or (length == best_length and rule.allow):
          best_length, best_allow = length, rule.allow
    return best_allow

  def classify(self, agent: str) -> str:
    """'none', 'some' or 'all' for `agent` (the paper's rule; an agent without a group inherits `*`)."""
    rules = self.rules_for(agent)
    return "none" if rules is None else _interpret(rules)

  def classify_detailed(self, agent: str) -> str:
    """The paper's detailed status (one of `DETAILED_STATUSES` other than `no_robots`).

    As in the paper, the sub-type comes from the whole file: a `some` becomes pattern-based if any Disallow
    holds a `?`, else private-directories if one starts with /admin, /private or /confidential; a `none`
    becomes crawl-delay or sitemap if the file has one. Under RFC parsing the keys are matched without case
    and comments are left out.
    """
    status = self.classify(agent)
    pattern_q, important_dir, crawl_delay, sitemap = self._subtypes
    if status == "some":
      return ("some_pattern_restrictions" if pattern_q else
              "some_disallow_important_dir" if important_dir else "some_other")
    if status == "none":
      return "none_crawl_delay" if crawl_delay else "none_sitemap" if sitemap else "none"
    return status

  @functools.cached_property
  def _subtypes(self) -> tuple[bool, bool, bool, bool]:
    """Whether the file has a `?` pattern, a private directory, a crawl delay, a sitemap (paper's regexes)."""
    patterns = _PAPER_SUBTYPES if self.paper_compat else _RFC_SUBTYPES
    text = self.text if self.paper_compat else _without_comments(self.text).lower()
    return tuple(bool(p.search(text)) for p in patterns)


def _without_comments(text: str) -> str:
  return "\n".join(line.split("#", 1)[0] for line in _LINE_BREAK.split(text)) if "#" in text else text


def _parse_rfc(text: str) -> RobotsTxt:
  data = text.encode("utf-8", errors="surrogatepass")
  truncated = len(data) > MAX_BYTES
  if truncated:  # read the first 500 KiB and drop the line cut in two
    text = data[:MAX_BYTES].decode("utf-8", errors="ignore")
    text = text[:max(text.rfind("\n"), text.rfind("\r"), 0)]
  text = text.lstrip("\ufeff")
  groups: dict[str, list[Rule]] = {}
  sitemaps, crawl_delays, ignored, colonless = [], {}, 0, 0
  current: list[str] = []  # agent keys of the open group
  group_has_rules = False
  for line in _LINE_BREAK.split(text):
    line = line.split("#", 1)[0]
    key, colon, value = line.partition(":")
    if not colon:
      # Google's parser reads a line of exactly two words as `key value` (`disallow /`); so do we.
      words = line.split()
      if len(words) != 2 or words[0].lower() not in _DIRECTIVES:
        ignored += bool(words)
        continue
      (key, value), colonless = words, colonless + 1
    key, value = key.strip().lower(), value.strip()
    if key == "user-agent":
      if group_has_rules:
        current, group_has_rules = [], False
      agent = agent_key(value)
      if agent not in current:
        current.append(agent)
      groups.setdefault(agent, [])
    elif key in ("allow", "disallow"):
      if not current:
        ignored += 1  # a rule before any user-agent line belongs to no group
        continue
      rule = Rule(key == "allow", value)
      for agent in current:
        groups[agent].append(rule)
      group_has_rules = True
    elif key == "sitemap":
      sitemaps.append(value)
    elif key == "crawl-delay":
      for agent in current:
        crawl_delays[agent] = value
    else:
      ignored += 1
  return RobotsTxt(groups, text=text, sitemaps=tuple(sitemaps), crawl_delays=crawl_delays, ignored_lines=ignored,
                   colonless_lines=colonless, truncated=truncated)


def _parse_paper(text: str) -> RobotsTxt:
  groups: dict[str, list[Rule]] = {}
  sitemaps, crawl_delays, ignored = [], {}, 0
  current = None
  for line in text.splitlines():
    line = line.strip()
    if line.startswith("User-agent:"):
      current = line.split(":", 1)[1].strip()
      groups.setdefault(current, [])
    elif line.startswith(("Allow:", "Disallow:", "Crawl-delay:")) and current is not None:
      key, value = line.split(":", 1)
      if key == "Crawl-delay":
        crawl_delays[current] = value.strip()
      else:
        groups[current].append(Rule(key == "Allow", value.strip()))
    elif line.lower().startswith("sitemap:"):
      sitemaps.append(line.split(":", 1)[1].strip())
    elif line == "" or line.startswith("#"):
      current = None
    else:
      ignored += 1
  return RobotsTxt(groups, text=text, paper_compat=True, sitemaps=tuple(sitemaps), crawl_delays=crawl_delays,
                   ignored_lines=ignored)


def parse(text: str, paper_compat: bool = False) -> RobotsTxt:
  """Parses robots.txt text (RFC 9309 unless `paper_compat`)."""
  return _parse_paper(text) if paper_compat else _parse_rfc(text)


def from_rules(agent_rules: dict[str, dict[str, list[str]]], paper_compat: bool = False) -> RobotsTxt:
  """A RobotsTxt from the original code's rule dict `{agent: {"Allow": [...], "Disallow": [...]}}`."""
  groups: dict[str, list[Rule]] = {}
  for agent, rules in agent_rules.items():
    key = agent if paper_compat else agent_key(agent)
    merged = groups.setdefault(key, [])
    merged += [Rule(False, v) for v in rules.get("Disallow", [])] + [Rule(True, v) for v in rules.get("Allow", [])]
  return RobotsTxt(groups, paper_compat=paper_compat)


def classify(text: str, agent: str, paper_compat: bool = False) -> str:
  """'none', 'some' or 'all': how much of the site robots.txt `text` closes to `agent`."""
  return parse(text, paper_compat).classify(agent)


def interpret(robots: RobotsTxt, agents) -> dict[str, str]:
  """`*` and each agent -> 'none'/'some'/'all' (the original's `interpret_robots`)."""
  return {"*": robots.classify("*"), **{agent: robots.classify(agent) for agent in agents}}
