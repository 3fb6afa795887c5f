"""google/robotstxt's test suite (robots_test.cc, the reference parser of RFC 9309), case by case on our API.

Each Google test becomes a table of (robots.txt, agent, URL, allowed). Where Google's parser goes beyond or
against RFC 9309 and ours follows the RFC, the case says what Google answers and why ours differs (see the
module docstring of jaxlab.audit.robots).
"""

import pytest

from jaxlab.audit import robots


def _allowed(text: str, agent: str, url: str) -> bool:
  return robots.parse(text).allowed(agent, url)


FOOBOT_DISALLOW_ALL = "user-agent: FooBot\ndisallow: /\n"

SYSTEM = [  # GoogleOnly_SystemTest
    ("", "FooBot", "", True),                   # empty robots.txt: everything allowed
    (FOOBOT_DISALLOW_ALL, "", "", True),        # empty user-agent: everything allowed
    (FOOBOT_DISALLOW_ALL, "FooBot", "", False),  # empty URL is "/"
    ("", "", "", True),
]

LINE_SYNTAX = [  # ID_LineSyntax_Line
    (FOOBOT_DISALLOW_ALL, "FooBot", "http://foo.bar/x/y", False),
    ("foo: FooBot\nbar: /\n", "FooBot", "http://foo.bar/x/y", True),
    ("user-agent FooBot\ndisallow /\n", "FooBot", "http://foo.bar/x/y", False),  # the colon is assumed
]

GROUPS_TEXT = ("allow: /foo/bar/\n\nuser-agent: FooBot\ndisallow: /\nallow: /x/\nuser-agent: BarBot\ndisallow: /\n"
               "allow: /y/\n\n\nallow: /w/\nuser-agent: BazBot\n\nuser-agent: FooBot\nallow: /z/\ndisallow: /\n")
GROUPS = [(GROUPS_TEXT, agent, f"http://foo.bar{path}", allowed) for agent, path, allowed in [  # ID_LineSyntax_Groups
    ("FooBot", "/x/b", True), ("FooBot", "/z/d", True), ("FooBot", "/y/c", False), ("BarBot", "/y/c", True),
    ("BarBot", "/w/a", True), ("BarBot", "/z/d", False), ("BazBot", "/z/d", True),
    # Rules outside groups are ignored.
    ("FooBot", "/foo/bar/", False), ("BarBot", "/foo/bar/", False), ("BazBot", "/foo/bar/", False)]]

OTHER_RULES = [  # ID_LineSyntax_Groups_OtherRules: lines outside the REP do not close a group
    (f"User-agent: BarBot\n{line}\nUser-agent: *\nDisallow: /\n", agent, "http://foo.bar/", False)
    for line in ("Sitemap: https://foo.bar/sitemap", "Invalid-Unknown-Line: unknown") for agent in ("FooBot", "BarBot")]

CASE_OF_KEYS = [  # ID_REPLineNamesCaseInsensitive
    (f"{ua}: FooBot\n{allow}: /x/\n{disallow}: /\n", "FooBot", url, allowed)
    for ua, allow, disallow in [("USER-AGENT", "ALLOW", "DISALLOW"), ("user-agent", "allow", "disallow"),
                                ("uSeR-aGeNt", "AlLoW", "dIsAlLoW")]
    for url, allowed in [("http://foo.bar/x/y", True), ("http://foo.bar/a/b", False)]]

CASE_OF_AGENTS = [  # ID_UserAgentValueCaseInsensitive
    (f"User-Agent: {name}\nAllow: /x/\nDisallow: /\n", agent, url, allowed)
    for name in ("FOO BAR", "foo bar", "FoO bAr") for agent in ("Foo", "foo")
    for url, allowed in [("http://foo.bar/x/y", True), ("http://foo.bar/a/b", False)]]

UP_TO_FIRST_SPACE_TEXT = "User-Agent: *\nDisallow: /\nUser-Agent: Foo Bar\nAllow: /x/\nDisallow: /\n"
UP_TO_FIRST_SPACE = [  # GoogleOnly_AcceptUserAgentUpToFirstSpace
    (UP_TO_FIRST_SPACE_TEXT, "Foo", "http://foo.bar/x/y", True),
    # Google: False (it matches the agent string "Foo Bar" as given, finds no group, obeys `*`). Ours reduces
    # the agent asked about to its product token `foo`, whose group allows /x/.
    (UP_TO_FIRST_SPACE_TEXT, "Foo Bar", "http://foo.bar/x/y", True),
]

GLOBAL = "user-agent: *\nallow: /\nuser-agent: FooBot\ndisallow: /\n"
ONLY_SPECIFIC = "user-agent: FooBot\nallow: /\nuser-agent: BarBot\ndisallow: /\nuser-agent: BazBot\ndisallow: /\n"
GLOBAL_GROUPS = [  # ID_GlobalGroups_Secondary
    ("", "FooBot", "http://foo.bar/x/y", True), (GLOBAL, "FooBot", "http://foo.bar/x/y", False),
    (GLOBAL, "BarBot", "http://foo.bar/x/y", True), (ONLY_SPECIFIC, "QuxBot", "http://foo.bar/x/y", True),
]

VALUE_CASE = [  # ID_AllowDisallow_Value_CaseSensitive
    ("user-agent: FooBot\ndisallow: /x/\n", "FooBot", "http://foo.bar/x/y", False),
    ("user-agent: FooBot\ndisallow: /X/\n", "FooBot", "http://foo.bar/x/y", True),
]

PAGE = "http://foo.bar/x/page.html"
LONGEST_MATCH = [(f"user-agent: FooBot\n{rules}", "FooBot", url, allowed) for rules, url, allowed in [  # ID_LongestMatch
    ("disallow: /x/page.html\nallow: /x/\n", PAGE, False),
    ("allow: /x/page.html\ndisallow: /x/\n", PAGE, True),
    ("allow: /x/page.html\ndisallow: /x/\n", "http://foo.bar/x/", False),
    ("disallow: \nallow: \n", PAGE, True),
    ("disallow: /\nallow: /\n", PAGE, True),  # equal patterns: allow
    ("disallow: /x\nallow: /x/\n", "http://foo.bar/x", False),
    ("disallow: /x\nallow: /x/\n", "http://foo.bar/x/", True),
    ("disallow: /x/page.html\nallow: /x/page.html\n", PAGE, True),
    ("allow: /page\ndisallow: /*.html\n", "http://foo.bar/page.html", False),
    ("allow: /page\ndisallow: /*.html\n", "http://foo.bar/page", True),
    ("allow: /x/page.\ndisallow: /*.html\n", PAGE, True),
    ("allow: /x/page.\ndisallow: /*.html\n", "http://foo.bar/x/y.html", False),
]] + [
    ("User-agent: *\nDisallow: /x/\nUser-agent: FooBot\nDisallow: /y/\n", "FooBot", "http://foo.bar/x/page", True),
    ("User-agent: *\nDisallow: /x/\nUser-agent: FooBot\nDisallow: /y/\n", "FooBot", "http://foo.bar/y/page", False),
]

ENCODING = [(f"User-agent: FooBot\nDisallow: /\nAllow: {rule}\n", "FooBot", url, allowed)
            for rule, url, allowed in [  # ID_Encoding
    ("/foo/bar?qux=taz&baz=http://foo.bar?tar&par", "http://foo.bar/foo/bar?qux=taz&baz=http://foo.bar?tar&par",
     True),
    ("/foo/bar/ツ", "http://foo.bar/foo/bar/%E3%83%84", True),
    # Google: False (it encodes the rule but not the URL, which it leaves to the caller). RFC 9309 2.2.2 has
    # both percent-encoded before comparing: ours encodes the URL too.
    ("/foo/bar/ツ", "http://foo.bar/foo/bar/ツ", True),
    ("/foo/bar/%E3%83%84", "http://foo.bar/foo/bar/%E3%83%84", True),
    ("/foo/bar/%E3%83%84", "http://foo.bar/foo/bar/ツ", True),  # Google: False, as above
    # Google: False (it compares the escapes as text; "it should not be relied on"). RFC 9309: %62%61%7A is
    # baz, percent-encoded unreserved characters compare as the characters.
    ("/foo/bar/%62%61%7A", "http://foo.bar/foo/bar/baz", True),
    ("/foo/bar/%62%61%7A", "http://foo.bar/foo/bar/%62%61%7A", True),
]]

SPECIAL_CHARACTERS = [(f"User-agent: FooBot\n{rules}", "FooBot", f"http://foo.bar{path}", allowed)
                      for rules, path, allowed in [  # ID_SpecialCharacters
    ("Disallow: /foo/bar/quz\nAllow: /foo/*/qux\n", "/foo/bar/quz", False),
    ("Disallow: /foo/bar/quz\nAllow: /foo/*/qux\n", "/foo/quz", True),
    ("Disallow: /foo/bar/quz\nAllow: /foo/*/qux\n", "/foo//quz", True),
    ("Disallow: /foo/bar/quz\nAllow: /foo/*/qux\n", "/foo/bax/quz", True),
    ("Disallow: /foo/bar$\nAllow: /foo/bar/qux\n", "/foo/bar", False),
    ("Disallow: /foo/bar$\nAllow: /foo/bar/qux\n", "/foo/bar/qux", True),
    ("Disallow: /foo/bar$\nAllow: /foo/bar/qux\n", "/foo/bar/", True),
    ("Disallow: /foo/bar$\nAllow: /foo/bar/qux\n", "/foo/bar/baz", True),
    ("# Disallow: /\nDisallow: /foo/quz#qux\nAllow: /\n", "/foo/bar", True),
    ("# Disallow: /\nDisallow: /foo/quz#qux\nAllow: /\n", "/foo/quz", False),
]]

INDEX_HTML_TEXT = "User-Agent: *\nAllow: /allowed-slash/index.html\nDisallow: /\n"
INDEX_HTML = [(INDEX_HTML_TEXT, "foobot", f"http://foo.com{path}", allowed) for path, allowed in [
    # GoogleOnly_IndexHTMLisDirectory. Google: True (its own extension); RFC 9309 has no such rule.
    ("/allowed-slash/", False),
    ("/allowed-slash/index.htm", False), ("/allowed-slash/index.html", True), ("/anyother-url", False)]]

_LONG = "/x/" + "a" * (2083 * 8 - len("/x/") - len("disallow: ") + 1)
_LONG_A, _LONG_B = ("/x/" + c * (2083 * 8 - len("/x/") - len("allow: ") + 1) for c in "ab")
_TWO_LONG_ALLOWS = f"user-agent: FooBot\ndisallow: /\nallow: {_LONG_A}/qux\nallow: {_LONG_B}/qux\n"
LINE_TOO_LONG = [  # GoogleOnly_LineTooLong (Google cuts lines at 16,664 bytes; RFC 9309 does not)
    (f"user-agent: FooBot\ndisallow: {_LONG}/qux\n", "FooBot", "http://foo.bar/fux", True),
    # Google: False (the rule, cut before "/qux", matches). Ours keeps the whole rule, which does not match.
    (f"user-agent: FooBot\ndisallow: {_LONG}/qux\n", "FooBot", f"http://foo.bar{_LONG}/fux", True),
    (_TWO_LONG_ALLOWS, "FooBot", "http://foo.bar/", False),
    (_TWO_LONG_ALLOWS, "FooBot", f"http://foo.bar{_LONG_A}/qux", True),
    # Google: True (the allow rule, cut, matches). Ours keeps the whole rule: only `disallow: /` matches.
    (_TWO_LONG_ALLOWS, "FooBot", f"http://foo.bar{_LONG_B}/fux", False),
]

_FISH = [  # GoogleOnly_DocumentationChecks, "URL matching based on path values"
    ("/fish", [("/bar", False), ("/fish", True), ("/fish.html", True), ("/fish/salmon.html", True),
               ("/fishheads", True), ("/fishheads/yummy.html", True), ("/fish.html?id=anything", True),
               ("/Fish.asp", False), ("/catfish", False), ("/?id=fish", False)]),
    ("/fish*", [("/bar", False), ("/fish", True), ("/fish.html", True), ("/fish/salmon.html", True),
                ("/fishheads", True), ("/fishheads/yummy.html", True), ("/fish.html?id=anything", True),
                ("/Fish.bar", False), ("/catfish", False), ("/?id=fish", False)]),
    ("/fish/", [("/bar", False), ("/fish/", True), ("/fish/salmon", True), ("/fish/?salmon", True),
                ("/fish/salmon.html", True), ("/fish/?id=anything", True), ("/fish", False), ("/fish.html", False),
                ("/Fish/Salmon.html", False)]),
    ("/*.php", [("/bar", False), ("/filename.php", True), ("/folder/filename.php", True),
                ("/folder/filename.php?parameters", True), ("//folder/any.php.file.html", True),
                ("/filename.php/", True), ("/index?f=filename.php/", True), ("/php/", False), ("/index?php", False),
                ("/windows.PHP", False)]),
    ("/*.php$", [("/bar", False), ("/filename.php", True), ("/folder/filename.php", True),
                 ("/filename.php?parameters", False), ("/filename.php/", False), ("/filename.php5", False),
                 ("/php/", False), ("/filename?php", False), ("/aaaphpaaa", False), ("//windows.PHP", False)]),
    ("/fish*.php", [("/bar", False), ("/fish.php", True), ("/fishheads/catfish.php?parameters", True),
                    ("/Fish.PHP", False)]),
]
DOCUMENTATION = [(f"user-agent: FooBot\ndisallow: /\nallow: {rule}\n", "FooBot", f"http://foo.bar{path}", allowed)
                 for rule, cases in _FISH for path, allowed in cases] + [
    # "Order of precedence for group-member records".
    ("user-agent: FooBot\nallow: /p\ndisallow: /\n", "FooBot", "http://example.com/page", True),
    ("user-agent: FooBot\nallow: /folder\ndisallow: /folder\n", "FooBot", "http://example.com/folder/page", True),
    ("user-agent: FooBot\nallow: /page\ndisallow: /*.htm\n", "FooBot", "http://example.com/page.htm", False),
    ("user-agent: FooBot\nallow: /$\ndisallow: /\n", "FooBot", "http://example.com/", True),
    ("user-agent: FooBot\nallow: /$\ndisallow: /\n", "FooBot", "http://example.com/page.html", False),
]


@pytest.mark.parametrize("text, agent, url, allowed", SYSTEM + LINE_SYNTAX + GROUPS + OTHER_RULES + CASE_OF_KEYS
                         + CASE_OF_AGENTS + UP_TO_FIRST_SPACE + GLOBAL_GROUPS + VALUE_CASE + LONGEST_MATCH + ENCODING
                         + SPECIAL_CHARACTERS + INDEX_HTML + LINE_TOO_LONG + DOCUMENTATION)
def test_google_case(text, agent, url, allowed):
  assert _allowed(text, agent, url) is allowed


def test_google_case_count():
  """Every EXPECT_* on `IsUserAgentAllowed` in robots_test.cc is one case above."""
  assert len(SYSTEM + LINE_SYNTAX + GROUPS + OTHER_RULES + CASE_OF_KEYS + CASE_OF_AGENTS + UP_TO_FIRST_SPACE
             + GLOBAL_GROUPS + VALUE_CASE + LONGEST_MATCH + ENCODING + SPECIAL_CHARACTERS + INDEX_HTML + LINE_TOO_LONG
             + DOCUMENTATION) == 145


def test_lines_without_colon_are_read_and_counted():
  parsed = robots.parse("user-agent FooBot\ndisallow /\nallow /x/ y\nfoo bar\n")
  assert parsed.colonless_lines == 2 and parsed.ignored_lines == 2  # three words; an unknown key
  assert not parsed.allowed("FooBot", "/x/")


@pytest.mark.parametrize("text", [  # ID_LinesNumbersAreCountedCorrectly: every line ending
    "User-Agent: foo\nAllow: /some/path\nUser-Agent: bar\n\n\nDisallow: /\n",
    "User-Agent: foo\r\nAllow: /some/path\r\nUser-Agent: bar\r\n\r\n\r\nDisallow: /\r\n",
    "User-Agent: foo\rAllow: /some/path\rUser-Agent: bar\r\r\rDisallow: /\r",
    "User-Agent: foo\nAllow: /some/path\nUser-Agent: bar\n\n\nDisallow: /",
    "User-Agent: foo\nAllow: /some/path\r\nUser-Agent: bar\n\r\n\nDisallow: /",
])
def test_line_endings(text):
  parsed = robots.parse(text)
  assert parsed.groups == {"foo": [robots.Rule(True, "/some/path")], "bar": [robots.Rule(False, "/")]}
  assert parsed.ignored_lines == 0


def test_byte_order_mark():  # ID_UTF8ByteOrderMarkIsSkipped (the partial marks are not text, so not ported)
  parsed = robots.parse("\ufeffUser-Agent: foo\nAllow: /AnyValue\n")
  assert parsed.groups == {"foo": [robots.Rule(True, "/AnyValue")]} and parsed.ignored_lines == 0
  parsed = robots.parse("User-Agent: foo\n\ufeffAllow: /AnyValue\n")  # only at the start of the file
  assert parsed.groups == {"foo": []} and parsed.ignored_lines == 1


@pytest.mark.parametrize("sitemap_first", [False, True])
def test_sitemap_anywhere(sitemap_first):  # ID_NonStandardLineExample_Sitemap
  body, sitemap = "User-Agent: foo\nAllow: /some/path\nUser-Agent: bar\n\n\n", "Sitemap: http://foo.bar/sitemap.xml\n"
  parsed = robots.parse(sitemap + body if sitemap_first else body + sitemap)
  assert parsed.sitemaps == ("http://foo.bar/sitemap.xml",)


@pytest.mark.parametrize("url, path", [  # TestGetPathParamsQuery
    ("", "/"), ("http://www.example.com", "/"), ("http://www.example.com/", "/"), ("http://www.example.com/a", "/a"),
    ("http://www.example.com/a/", "/a/"), ("http://www.example.com/a/b?c=http://d.e/", "/a/b?c=http://d.e/"),
    ("http://www.example.com/a/b?c=d&e=f#fragment", "/a/b?c=d&e=f"), ("example.com", "/"), ("example.com/", "/"),
    ("example.com/a", "/a"), ("example.com/a/", "/a/"), ("example.com/a/b?c=d&e=f#fragment", "/a/b?c=d&e=f"),
    ("a", "/"), ("a/", "/"), ("/a", "/a"), ("a/b", "/b"), ("example.com?a", "/?a"), ("example.com/a;b#c", "/a;b"),
    ("//a/b/c", "/b/c"),
    # The case: a path whose query holds a URL is a path.
    ("/login?next=http://x.com/y", "/login?next=http://x.com/y"),
])
def test_request_path(url, path):
  assert robots.request_path(url) == path


def test_a_path_with_a_url_in_its_query_is_matched_as_that_path():
  parsed = robots.parse("User-agent: *\nDisallow: /login\n")
  assert not parsed.allowed("bot", "/login?next=http://x.com/y")
  assert robots.parse("User-agent: *\nDisallow: /y\n").allowed("bot", "/login?next=http://x.com/y")


@pytest.mark.parametrize("pattern, escaped", [  # TestMaybeEscapePattern
    ("http://www.example.com", "http://www.example.com"), ("/a/b/c", "/a/b/c"), ("á", "%C3%A1"), ("%aa", "%AA"),
])
def test_escape(pattern, escaped):
  assert robots.normalise_path(pattern) == escaped
