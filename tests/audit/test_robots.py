"""The robots.txt parser: the original's 82 cases as a spec, RFC 9309's own examples, and the paper-time mode."""

import pytest

from jaxlab.audit import robots

# Data-Provenance-Collection `src/web_analysis/test_robots.py` at ce6662d: 82 distinct cases (three names are
# defined twice there; the later definition is the one that ran). Input is the original's rule dict, or
# robots.txt text for the last seven. The original parser fails `group_separation_by_blank_line` and
# `groups_with_non_standard_directives`; their expectations are RFC 9309's, and ours meets them.
CASES = [
    ('complete_block_all_agents', {'*': {'Disallow': ['/']}}, ['GoogleBot', 'BingBot', 'CustomBot'], {'*': 'all', 'GoogleBot': 'all', 'BingBot': 'all', 'CustomBot': 'all'}),
    ('no_block_all_agents', {'*': {'Disallow': ['']}}, ['GoogleBot', 'BingBot', 'CustomBot'], {'*': 'none', 'GoogleBot': 'none', 'BingBot': 'none', 'CustomBot': 'none'}),
    ('partial_block_specific_directories', {'*': {'Disallow': ['/private', '/tmp', '/config']}}, ['GoogleBot', 'BingBot', 'CustomBot'], {'*': 'some', 'GoogleBot': 'some', 'BingBot': 'some', 'CustomBot': 'some'}),
    ('agent_specific_allowance', {'*': {'Disallow': ['/']}, 'GoogleBot': {'Allow': ['/public'], 'Disallow': ['/']}, 'BingBot': {'Allow': ['/public/data'], 'Disallow': ['/private']}}, ['GoogleBot', 'BingBot', 'YahooBot'], {'*': 'all', 'GoogleBot': 'some', 'BingBot': 'some', 'YahooBot': 'all'}),
    ('empty_and_missing_rules', {'*': {'Disallow': [], 'Allow': []}, 'BingBot': {}}, ['GoogleBot', 'BingBot', 'CustomBot'], {'*': 'none', 'GoogleBot': 'none', 'BingBot': 'none', 'CustomBot': 'none'}),
    ('malformed_rules_handling', {'*': {'Disallow': ['/*.php', '/?id=123']}, 'GoogleBot': {'Disallow': ['*.html', '/test/*/index']}}, ['GoogleBot', 'BingBot'], {'*': 'some', 'GoogleBot': 'some', 'BingBot': 'some'}),
    ('conflicting_rules', {'GoogleBot': {'Disallow': ['/private'], 'Allow': ['/private/stats']}}, ['GoogleBot'], {'*': 'none', 'GoogleBot': 'some'}),
    ('specific_vs_general_agent_rules', {'*': {'Disallow': ['/private']}, 'GoogleBot': {'Disallow': ['']}, 'CustomBot': {'Disallow': ['/']}}, ['GoogleBot', 'BingBot', 'CustomBot'], {'*': 'some', 'GoogleBot': 'none', 'BingBot': 'some', 'CustomBot': 'all'}),
    ('non_standard_paths', {'*': {'Disallow': ['/dev/*', '/staging/env']}}, ['GoogleBot', 'BingBot'], {'*': 'some', 'GoogleBot': 'some', 'BingBot': 'some'}),
    ('complete_access_vs_explicit_disallow', {'*': {'Disallow': ['/']}, 'GoogleBot': {'Disallow': []}}, ['GoogleBot', 'BingBot'], {'*': 'all', 'GoogleBot': 'none', 'BingBot': 'all'}),
    ('multiple_agents_with_varying_rules', {'*': {'Disallow': ['/private']}, 'GoogleBot': {'Disallow': ['/secret'], 'Allow': ['/secret/info']}, 'BingBot': {'Disallow': ['/private', '/confidential']}}, ['GoogleBot', 'BingBot', 'YahooBot'], {'*': 'some', 'GoogleBot': 'some', 'BingBot': 'some', 'YahooBot': 'some'}),
    ('complex_allow_disallow_combinations', {'*': {'Disallow': ['/'], 'Allow': ['/public', '/public_html']}, 'GoogleBot': {'Allow': ['/private/stats'], 'Disallow': ['/private']}}, ['GoogleBot', 'BingBot'], {'*': 'some', 'GoogleBot': 'some', 'BingBot': 'some'}),
    ('overlapping_agent_rules', {'*': {'Disallow': ['/tmp']}, 'GoogleBot': {'Disallow': ['/tmp', '/test'], 'Allow': ['/tmp/readme']}}, ['GoogleBot', 'BingBot'], {'*': 'some', 'GoogleBot': 'some', 'BingBot': 'some'}),
    ('disallow_empty_path', {'*': {'Disallow': ['']}, 'GoogleBot': {'Disallow': []}}, ['GoogleBot', 'BingBot'], {'*': 'none', 'GoogleBot': 'none', 'BingBot': 'none'}),
    ('invalid_and_nonexistent_agents', {'GoogleBot': {'Disallow': ['/api'], 'Allow': ['/api/read']}}, ['GoogleBot', 'NonExistentBot'], {'*': 'none', 'GoogleBot': 'some', 'NonExistentBot': 'none'}),
    ('edge_cases_with_special_characters', {'*': {'Disallow': ['/a*b', '/c?d', '/e(f)g']}}, ['GoogleBot', 'BingBot'], {'*': 'some', 'GoogleBot': 'some', 'BingBot': 'some'}),
    ('allow_all_except_one', {'*': {'Disallow': ['/private'], 'Allow': ['/']}}, ['GoogleBot', 'BingBot'], {'*': 'some', 'GoogleBot': 'some', 'BingBot': 'some'}),
    ('explicit_exception', {'*': {'Disallow': ['/'], 'Allow': ['/public', '/public/api']}, 'GoogleBot': {'Allow': ['/public/stats'], 'Disallow': ['/private', '/private/data']}}, ['GoogleBot', 'BingBot'], {'*': 'some', 'GoogleBot': 'some', 'BingBot': 'some'}),
    ('detailed_directory_structure', {'*': {'Disallow': ['/users', '/users/private/'], 'Allow': ['/users/public']}, 'GoogleBot': {'Disallow': ['/users/private/documents'], 'Allow': ['/users/public/images']}}, ['GoogleBot', 'BingBot'], {'*': 'some', 'GoogleBot': 'some', 'BingBot': 'some'}),
    ('partial_path_allowances', {'GoogleBot': {'Disallow': ['/data'], 'Allow': ['/data/public']}}, ['GoogleBot', 'BingBot'], {'*': 'none', 'GoogleBot': 'some', 'BingBot': 'none'}),
    ('multi_agent_specific_rules', {'*': {'Disallow': ['/confidential']}, 'GoogleBot': {'Allow': ['/confidential/reports']}, 'BingBot': {'Disallow': ['/confidential', '/confidential/reports']}}, ['GoogleBot', 'BingBot', 'YahooBot'], {'*': 'some', 'GoogleBot': 'none', 'BingBot': 'some', 'YahooBot': 'some'}),
    ('special_characters_in_paths', {'*': {'Disallow': ['/test path', '/data&info', '/special#char?']}}, ['GoogleBot', 'BingBot'], {'*': 'some', 'GoogleBot': 'some', 'BingBot': 'some'}),
    ('very_specific_rules', {'*': {'Disallow': ['/temp/*'], 'Allow': ['/temp/readme.txt']}, 'GoogleBot': {'Disallow': ['/temp/*'], 'Allow': ['/temp/readme.txt', '/temp/images']}}, ['GoogleBot', 'BingBot'], {'*': 'some', 'GoogleBot': 'some', 'BingBot': 'some'}),
    ('complete_block_except_certain_file_types', {'*': {'Disallow': ['/'], 'Allow': ['/images/', '/styles/']}}, ['GoogleBot', 'BingBot'], {'*': 'some', 'GoogleBot': 'some', 'BingBot': 'some'}),
    ('implicit_allow', {}, ['GoogleBot'], {'*': 'none', 'GoogleBot': 'none'}),
    ('path_depth_handling', {'*': {'Disallow': ['/dir/']}}, ['GoogleBot'], {'*': 'some', 'GoogleBot': 'some'}),
    ('case_sensitivity_of_paths', {'*': {'Disallow': ['/Dir/']}}, ['GoogleBot'], {'*': 'some', 'GoogleBot': 'some'}),
    ('complex_query_parameters', {'*': {'Disallow': ['/search', '/search?query=allowed']}}, ['GoogleBot'], {'*': 'some', 'GoogleBot': 'some'}),
    ('overlap_between_allow_and_disallow', {'*': {'Disallow': ['/directory/'], 'Allow': ['/directory/subdirectory/']}}, ['GoogleBot'], {'*': 'some', 'GoogleBot': 'some'}),
    ('rule_priority_across_different_user_agents', {'*': {'Disallow': ['/private/']}, 'GoogleBot': {'Allow': ['/private/stats']}}, ['GoogleBot', 'BingBot'], {'*': 'some', 'GoogleBot': 'none', 'BingBot': 'some'}),
    ('allow_specific_files_in_disallowed_directory', {'*': {'Disallow': ['/private/'], 'Allow': ['/private/index.html']}}, ['GoogleBot', 'BingBot'], {'*': 'some', 'GoogleBot': 'some', 'BingBot': 'some'}),
    ('disallow_specific_file_types', {'*': {'Allow': ['/downloads/'], 'Disallow': ['/downloads/*.exe']}}, ['GoogleBot', 'BingBot'], {'*': 'some', 'GoogleBot': 'some', 'BingBot': 'some'}),
    ('redirect_handling', {'*': {'Disallow': ['/redirect/']}}, ['GoogleBot', 'BingBot'], {'*': 'some', 'GoogleBot': 'some', 'BingBot': 'some'}),
    ('url_casing_impact', {'*': {'Disallow': ['/CaseSensitivePath/']}}, ['GoogleBot', 'BingBot'], {'*': 'some', 'GoogleBot': 'some', 'BingBot': 'some'}),
    ('disallow_with_wildcards', {'*': {'Disallow': ['/images/*.jpg']}}, ['GoogleBot', 'BingBot'], {'*': 'some', 'GoogleBot': 'some', 'BingBot': 'some'}),
    ('robots_txt_without_user_agent_specification', {'*': {'Disallow': ['/']}}, [], {'*': 'all'}),
    ('robots_txt_with_multiple_allow_and_disallow', {'GoogleBot': {'Allow': ['/folder/subfolder/'], 'Disallow': ['/folder/']}}, ['GoogleBot'], {'*': 'none', 'GoogleBot': 'some'}),
    ('no_robots_txt', {}, ['GoogleBot', 'BingBot'], {'*': 'none', 'GoogleBot': 'none', 'BingBot': 'none'}),
    ('rules_application_to_specific_user_agents_only', {'GoogleBot': {'Disallow': ['/private/']}, 'BingBot': {'Allow': ['/']}}, ['GoogleBot', 'BingBot', 'YahooBot'], {'*': 'none', 'GoogleBot': 'some', 'BingBot': 'none', 'YahooBot': 'none'}),
    ('allow_and_disallow_same_path', {'*': {'Allow': ['/path'], 'Disallow': ['/path']}}, ['GoogleBot', 'BingBot'], {'*': 'none', 'GoogleBot': 'none', 'BingBot': 'none'}),
    ('complex_wildcard_handling', {'*': {'Disallow': ['/images/*.jpg', '/docs/*202?/']}}, ['GoogleBot', 'BingBot'], {'*': 'some', 'GoogleBot': 'some', 'BingBot': 'some'}),
    ('case_sensitivity_in_paths', {'*': {'Disallow': ['/Data'], 'Allow': ['/data/public']}}, ['GoogleBot'], {'*': 'some', 'GoogleBot': 'some'}),
    ('absence_of_robots_txt', {}, ['GoogleBot'], {'*': 'none', 'GoogleBot': 'none'}),
    ('allow_disallow_same_path', {'*': {'Disallow': ['/folder'], 'Allow': ['/folder/subfolder']}}, ['GoogleBot'], {'*': 'some', 'GoogleBot': 'some'}),
    ('wildcard_handling', {'*': {'Disallow': ['/tmp/*']}}, ['GoogleBot'], {'*': 'some', 'GoogleBot': 'some'}),
    ('mixed_case_user_agents', {'Googlebot': {'Disallow': ['/private']}, 'googleBot': {'Allow': ['/private/stats']}}, ['Googlebot'], {'*': 'none', 'Googlebot': 'some'}),
    ('empty_robots_txt', {}, ['GoogleBot'], {'*': 'none', 'GoogleBot': 'none'}),
    ('precedence_of_directives', {'GoogleBot': {'Disallow': ['/'], 'Allow': ['/public']}}, ['GoogleBot'], {'*': 'none', 'GoogleBot': 'some'}),
    ('disallow_all_but_one', {'*': {'Disallow': ['/'], 'Allow': ['/index.html']}}, ['GoogleBot', 'BingBot'], {'*': 'some', 'GoogleBot': 'some', 'BingBot': 'some'}),
    ('case_insensitive_paths', {'*': {'Disallow': ['/Folder']}}, ['GoogleBot'], {'*': 'some', 'GoogleBot': 'some'}),
    ('query_parameters_in_paths', {'*': {'Disallow': ['/search?query=public']}}, ['GoogleBot'], {'*': 'none', 'GoogleBot': 'none'}),
    ('utf8_path_encodings', {'*': {'Disallow': ['/résumé']}}, ['GoogleBot'], {'*': 'some', 'GoogleBot': 'some'}),
    ('empty_user_agent_disallow', {'': {'Disallow': ['/private']}}, ['GoogleBot'], {'*': 'none', 'GoogleBot': 'none'}),
    ('multiple_allow_disallow_single_agent', {'GoogleBot': {'Disallow': ['/private', '/tmp'], 'Allow': ['/private/stats', '/tmp/images']}}, ['GoogleBot'], {'*': 'none', 'GoogleBot': 'some'}),
    ('inheritance_of_general_disallow', {'*': {'Disallow': ['/']}}, ['UnknownBot'], {'*': 'all', 'UnknownBot': 'all'}),
    ('specific_blocking_in_allowed_directory', {'*': {'Allow': ['/data'], 'Disallow': ['/data/private']}}, ['GoogleBot'], {'*': 'some', 'GoogleBot': 'some'}),
    ('wildcards_in_middle_of_path', {'*': {'Disallow': ['/data/*/private']}}, ['GoogleBot'], {'*': 'some', 'GoogleBot': 'some'}),
    ('specific_allow_over_general_disallow', {'*': {'Disallow': ['/data'], 'Allow': ['/data/public']}}, ['GoogleBot'], {'*': 'some', 'GoogleBot': 'some'}),
    ('file_type_exclusion', {'*': {'Disallow': ['/images/*.jpg']}}, ['GoogleBot'], {'*': 'some', 'GoogleBot': 'some'}),
    ('allow_overrides_disallow', {'*': {'Disallow': ['/folder'], 'Allow': ['/folder/subfolder']}}, ['GoogleBot'], {'*': 'some', 'GoogleBot': 'some'}),
    ('empty_user_agent_and_path', {'': {'Disallow': ['']}}, ['GoogleBot'], {'*': 'none', 'GoogleBot': 'none'}),
    ('unicode_path_handling', {'*': {'Disallow': ['/über']}}, ['GoogleBot'], {'*': 'some', 'GoogleBot': 'some'}),
    ('multiple_disallow_with_wildcards', {'GoogleBot': {'Disallow': ['/tmp/*', '/private/*/config']}}, ['GoogleBot'], {'*': 'none', 'GoogleBot': 'some'}),
    ('conflicting_allow_disallow_same_path', {'*': {'Disallow': ['/data'], 'Allow': ['/data']}}, ['GoogleBot'], {'*': 'none', 'GoogleBot': 'none'}),
    ('specific_vs_generic_user_agents', {'*': {'Disallow': ['/private']}, 'GoogleBot': {'Allow': ['/private/stats']}}, ['GoogleBot'], {'*': 'some', 'GoogleBot': 'none'}),
    ('improperly_formatted_paths', {'*': {'Disallow': ['/bad//path/', '/trailing ']}}, ['GoogleBot'], {'*': 'some', 'GoogleBot': 'some'}),
    ('allow_all_access', {'*': {'Allow': ['/']}}, ['GoogleBot'], {'*': 'none', 'GoogleBot': 'none'}),
    ('multiple_user_agents_with_overlap_rules', {'GoogleBot': {'Disallow': ['/private'], 'Allow': ['/private/stats']}, 'BingBot': {'Disallow': ['/private', '/public']}, '*': {'Allow': ['/public']}}, ['GoogleBot', 'BingBot'], {'*': 'none', 'GoogleBot': 'some', 'BingBot': 'some'}),
    ('deeply_nested_rules', {'*': {'Disallow': ['/data'], 'Allow': ['/data/public']}, 'GoogleBot': {'Allow': ['/data/private/stats'], 'Disallow': ['/data/private']}}, ['GoogleBot'], {'*': 'some', 'GoogleBot': 'some'}),
    ('robustness_against_malformed_entries', {'GoogleBot': {'Disallow': ['']}, '*': {'Disallow': ['/validpath'], 'Crawl-delay': ['10']}}, ['GoogleBot'], {'*': 'some', 'GoogleBot': 'none'}),
    ('performance_on_large_robots_txt', {'*': {'Disallow': ['/' + str(i) for i in range(1000)]}}, ['GoogleBot'], {'*': 'some', 'GoogleBot': 'some'}),
    ('conflicting_rules_across_agents', {'GoogleBot': {'Disallow': ['/content'], 'Allow': ['/content/public']}, 'BingBot': {'Disallow': ['/content/public']}, '*': {'Allow': ['/content']}}, ['GoogleBot', 'BingBot'], {'*': 'none', 'GoogleBot': 'some', 'BingBot': 'some'}),
    ('similar_paths_distinction', {'*': {'Disallow': ['/data/reports'], 'Allow': ['/data/reports/summary']}}, ['GoogleBot'], {'*': 'some', 'GoogleBot': 'some'}),
    ('query_parameters_handling', {'*': {'Disallow': ['/search?query=private']}}, ['GoogleBot'], {'*': 'none', 'GoogleBot': 'none'}),
    ('whitespace_in_paths_handling', {'*': {'Disallow': [' /admin', '/register ']}, 'GoogleBot': {'Disallow': ['']}}, ['GoogleBot'], {'*': 'some', 'GoogleBot': 'none'}),
    ('group_multiple_user_agents', '\nUser-agent: anthropic-ai\nUser-agent: Google-Extended\nUser-agent: GPTBot\nDisallow: /\n', ['anthropic-ai', 'Google-Extended', 'GPTBot'], {'*': 'none', 'anthropic-ai': 'all', 'Google-Extended': 'all', 'GPTBot': 'all'}),
    ('group_separation_by_blank_line', '\nUser-agent: GPTBot\nCrawl-delay: 5\n\nUser-agent: CCBot\nDisallow: /\n', ['GPTBot', 'CCBot'], {'*': 'none', 'GPTBot': 'all', 'CCBot': 'all'}),
    ('case_insensitive_directives', '\nuser-agent: GPTBot\nDisallow: /\n', ['GPTBot'], {'*': 'none', 'GPTBot': 'all'}),
    ('case_insensitive_agent_names', '\nUser-agent: Googlebot\nDisallow: /\n\nUser-agent: GoogleBot\nAllow: /stats\n', ['Googlebot'], {'*': 'none', 'Googlebot': 'some'}),
    ('comment_handling', '\nUser-agent: GPTBot\n# Block GPTBot\nDisallow: /\n', ['GPTBot'], {'*': 'none', 'GPTBot': 'all'}),
    ('merge_same_agent_groups', '\nuser-agent: googleBot-news\ndisallow: /fish\n\nuser-agent: *\ndisallow: /carrots\n\nuser-agent: googlebot-news\ndisallow: /shrimp\n', ['googlebot-news'], {'*': 'some', 'googlebot-news': 'some'}),
    ('groups_with_non_standard_directives', '\nuser-agent: a\nsitemap: https://example.com/sitemap.xml\n\nuser-agent: b\ndisallow: /\n', ['a', 'b'], {'*': 'none', 'a': 'all', 'b': 'all'}),
]

TEXT_CASES = {name for name, given, _, _ in CASES if isinstance(given, str)}


def _read(given, paper_compat=False):
  return robots.parse(given, paper_compat) if isinstance(given, str) else robots.from_rules(given, paper_compat)


def test_the_original_suite_has_82_cases():
  assert len(CASES) == 82 and len({name for name, *_ in CASES}) == 82
  assert len(TEXT_CASES) == 7


@pytest.mark.parametrize("name,given,agents,expected", CASES, ids=[c[0] for c in CASES])
def test_original_case(name, given, agents, expected):
  assert robots.interpret(_read(given), agents) == expected


def test_paper_compat_fails_exactly_the_text_cases_written_after_the_paper():
  failing = {name for name, given, agents, expected in CASES
             if robots.interpret(_read(given, paper_compat=True), agents) != expected}
  assert failing == TEXT_CASES


def test_paper_compat_stacked_agents_only_last_gets_rules():
  text = "User-agent: GPTBot\nUser-agent: CCBot\nDisallow: /\n"
  assert robots.classify(text, "GPTBot", paper_compat=True) == "none"
  assert robots.classify(text, "CCBot", paper_compat=True) == "all"
  assert robots.classify(text, "GPTBot") == "all"


def test_paper_compat_case_comments_and_blank_lines():
  # `User-Agent:` (capital A) is not a user-agent line for the paper-time parser.
  assert robots.classify("User-Agent: GPTBot\nDisallow: /\n", "GPTBot", paper_compat=True) == "none"
  assert robots.classify("User-Agent: GPTBot\nDisallow: /\n", "gptbot") == "all"
  # Agents match exactly there; RFC matching ignores case.
  assert robots.classify("User-agent: gptbot\nDisallow: /\n", "GPTBot", paper_compat=True) == "none"
  # A trailing comment stays in the value, so `/ # all` is not `/`.
  assert robots.classify("User-agent: *\nDisallow: / # all\n", "x", paper_compat=True) == "some"
  assert robots.classify("User-agent: *\nDisallow: / # all\n", "x") == "all"
  # A blank line ends the group there.
  assert robots.classify("User-agent: *\n\nDisallow: /\n", "x", paper_compat=True) == "none"
  assert robots.classify("User-agent: *\n\nDisallow: /\n", "x") == "all"


# RFC 9309 section 5.1.
RFC_SIMPLE = """\
User-Agent: *
Disallow: *.gif$
Disallow: /example/
Allow: /publications/

User-Agent: foobot
Disallow:/
Allow:/example/page.html
Allow:/example/allowed.gif

User-Agent: barbot
User-Agent: bazbot
Disallow: /example/page.html

User-Agent: quxbot

EOF
"""


@pytest.mark.parametrize("agent,path,allowed", [
    ("foobot", "/example/page.html", True),
    ("foobot", "/example/allowed.gif", True),
    ("foobot", "/", False),
    ("foobot", "/publications/x.html", False),  # a named group does not add the `*` rules
    ("barbot", "/example/page.html", False),
    ("bazbot", "/example/page.html", False),
    ("bazbot", "/example/other.html", True),
    ("quxbot", "/example/page.html", True),  # an empty group allows everything
    ("otherbot", "/pic.gif", False),
    ("otherbot", "/pic.gif?x=1", True),  # `$` anchors the end
    ("otherbot", "/example/x", False),
    ("otherbot", "/publications/x.gif", True),  # longer Allow beats `*.gif$`
    ("otherbot", "/other", True),
    ("FooBot/2.1 (+http://foo.example)", "/", False),  # the product token, without case
    ("otherbot", "/robots.txt", True),
])
def test_rfc_simple_example(agent, path, allowed):
  assert robots.parse(RFC_SIMPLE).allowed(agent, path) is allowed


def test_rfc_longest_match():
  parsed = robots.parse("User-Agent: foobot\nAllow: /example/page/\nDisallow: /example/page/disallowed.gif\n")
  assert parsed.allowed("foobot", "/example/page/")
  assert parsed.allowed("foobot", "/example/page/x.html")
  assert not parsed.allowed("foobot", "/example/page/disallowed.gif")


def test_allow_wins_a_tie_and_case_of_paths_matters():
  parsed = robots.parse("user-agent: *\ndisallow: /same\nallow: /same\nDISALLOW: /Dir/\n")
  assert parsed.allowed("a", "/same/x")
  assert not parsed.allowed("a", "/Dir/x")
  assert parsed.allowed("a", "/dir/x")


@pytest.mark.parametrize("rule,path,allowed", [
    ("/this/path/exactly$", "/this/path/exactly", False),
    ("/this/path/exactly$", "/this/path/exactly/not", True),
    ("/this/*/exactly", "/this/is/exactly", False),
    ("/this/*/exactly", "/this/is/not", True),
    ("/*.php$", "/a/b.php", False),
    ("/*.php$", "/a/b.php5", True),
    ("/path/file-with-a-%23.html", "/path/file-with-a-%23.html", False),
    ("/foo/bar/%E3%83%84", "/foo/bar/ツ", False),
    ("/foo/bar/ツ", "/foo/bar/%e3%83%84", False),
    ("/foo/bar/%62%61%7A", "/foo/bar/baz", False),
    ("/foo/bar?baz=quz", "/foo/bar?baz=quz", False),
    ("/foo/bar?baz=quz", "/foo/bar", True),
    ("", "/anything", True),  # empty Disallow
])
def test_rfc_special_characters_and_percent_encoding(rule, path, allowed):
  parsed = robots.parse(f"User-agent: *\nDisallow: {rule}  # comment\n")
  assert parsed.allowed("bot", path) is allowed


def test_full_urls_are_reduced_to_path_and_query():
  parsed = robots.parse("User-agent: *\nDisallow: /private\n")
  assert not parsed.allowed("bot", "https://example.com/private/a?b=1")
  assert parsed.allowed("bot", "https://example.com")


def test_garbage_lines_bom_and_line_endings():
  text = "\ufeffUser-agent: a\r\n<html>garbage</html>\rfoo bar baz\n: nothing\nDisallow: /\r\n"
  parsed = robots.parse(text)
  assert parsed.classify("a") == "all"
  assert parsed.ignored_lines == 3
  assert robots.parse("Disallow: /\nUser-agent: *\nAllow: /\n").classify("x") == "none"  # rule before any group


def test_500_kib_limit():
  filler = "# " + "x" * 1000 + "\n"
  head = "User-agent: *\nDisallow: /a\n"
  tail = "User-agent: late\nDisallow: /\n"
  text = head + filler * 600 + tail  # the tail starts after 500 KiB
  parsed = robots.parse(text)
  assert parsed.truncated and "late" not in parsed.agents and parsed.classify("late") == "some"
  assert robots.parse(head + filler * 10 + tail).classify("late") == "all"


def test_sitemaps_and_crawl_delay_do_not_end_a_group():
  parsed = robots.parse("User-agent: a\nCrawl-delay: 5\nSitemap: https://x/s.xml\nUser-agent: b\nDisallow: /\n"
                        "User-agent: c\nDisallow: /c\n")
  assert parsed.classify("a") == parsed.classify("b") == "all"
  assert parsed.classify("c") == "some"
  assert parsed.sitemaps == ("https://x/s.xml",) and parsed.crawl_delays == {"a": "5"}


@pytest.mark.parametrize("text,expected", [
    ("User-agent: *\nDisallow: /search?q=\nDisallow: /tmp\n", "some_pattern_restrictions"),
    ("User-agent: *\nDisallow: /admin/\n", "some_disallow_important_dir"),
    ("User-agent: *\nDisallow: /tmp\n", "some_other"),
    ("User-agent: *\nDisallow:\nCrawl-delay: 10\nSitemap: /s.xml\n", "none_crawl_delay"),
    ("User-agent: *\nDisallow:\nSitemap: /s.xml\n", "none_sitemap"),
    ("User-agent: *\nDisallow:\n", "none"),
    ("User-agent: *\nDisallow: /\n", "all"),
    ("", "none"),
])
def test_detailed_taxonomy(text, expected):
  assert robots.parse(text).classify_detailed("GPTBot") == expected
  assert robots.parse(text, paper_compat=True).classify_detailed("GPTBot") == expected


def test_detailed_taxonomy_keys_case_under_rfc_only():
  text = "User-agent: *\nDISALLOW: /private/\nDisallow: /tmp\n"
  assert robots.parse(text).classify_detailed("x") == "some_disallow_important_dir"
  assert robots.parse(text, paper_compat=True).classify_detailed("x") == "some_other"
