"""ToS text extraction and labelling: the LM labeller (through jaxlab.lm, cached by content hash) and the
keyword baseline."""

import json

import pytest

from jaxlab.audit import text, tos
from jaxlab.lm import ScriptedLM

PAGE = ("<html><head><title>Terms</title><script>var x = 'scrape';</script><style>p{}</style></head><body>"
        "<h1>Terms of Use</h1><h2>Access</h2><p>You may not use any robot, spider or scraper to access the site."
        "</p><p>Line one<br>line two</p><div>Use   for personal, non-commercial use only.</div></body></html>")


def test_html_to_text():
  assert text.html_to_text(PAGE) == (
      "Terms\n# Terms of Use\n## Access\nYou may not use any robot, spider or scraper to access the site.\n"
      "Line one\nline two\nUse for personal, non-commercial use only.")
  assert text.page_text(PAGE.encode("utf-8"), "text/html").startswith("Terms\n# Terms of Use")


def test_charset_detection():
  body = "<meta charset='iso-8859-1'><p>café</p>".encode("latin-1")
  assert text.charset(body) == "iso-8859-1" and "café" in text.decode(body)
  assert text.decode("café".encode("utf-8")) == "café"
  assert text.decode("café".encode("cp1252")) == "café"  # not UTF-8: windows-1252
  assert text.decode(b"\xef\xbb\xbfUser-agent: *") == "User-agent: *"


@pytest.mark.parametrize("sentence,codes", [
    ("You may not use any robot, spider or scraper to access the site.", (2, 3, 4)),
    ("You may not use our content to train artificial intelligence or machine learning models.", (3, 3, 4)),
    ("Do not scrape the site. You must not use the content to train AI models.", (1, 3, 4)),
    ("Automated access is permitted only through our API and subject to its terms.", (4, 3, 4)),
    ("Content is provided for your personal, non-commercial use only.", (5, 1, 4)),
    ("Commercial use of the content requires a written license agreement.", (5, 2, 4)),
    ("You may not use the service to build a competing product.", (5, 3, 1)),
    ("You may not redistribute or resell any content.", (5, 3, 2)),
    ("You may not build a competing service, nor republish our content.", (5, 3, 3)),
    ("Welcome to our site. We hope you enjoy it.", (5, 3, 4)),
])
def test_keyword_labeller(sentence, codes):
  labeller = tos.KeywordLabeller()
  assert tuple(labeller.label(t, sentence).code for t in tos.TAXONOMIES) == codes


def test_parse_reply_tolerates_fences_and_rejects_bad_codes():
  assert tos.parse_reply('```json\n{"verdict": 2, "evidence": "No robots."}\n```', "ai") == tos.Verdict(2, "No robots.")
  assert tos.parse_reply('{"verdict": "3", "evidence": ""}', "license").code == 3
  assert tos.parse_reply('{"verdict": 5}', "license").code is None  # license codes are 1..3
  assert tos.parse_reply("I think it is restrictive.", "ai").code is None


def test_lm_labeller_dialogue_and_cache(tmp_path):
  replies = {"(a) scraping": '{"verdict": 2, "evidence": "robot, spider or scraper"}',
             "report the license": '{"verdict": 1, "evidence": "personal, non-commercial use only"}',
             "to compete with": '{"verdict": 4, "evidence": "N/A"}'}

  def reply(messages):  # answers by which of the three prompt files is the system message
    return next(answer for phrase, answer in replies.items() if phrase in " ".join(messages[0]["content"].split()))

  lm = ScriptedLM(reply, name="scripted-test")
  cache = tmp_path / "cache.jsonl"
  labeller = tos.LMLabeller(lm, cache)
  document = text.html_to_text(PAGE)
  verdicts = {t: labeller.label(t, document) for t in tos.TAXONOMIES}
  assert {t: v.code for t, v in verdicts.items()} == {"ai": 2, "license": 1, "compete": 4}
  first = lm.calls[0]
  assert [m["role"] for m in first] == ["system", "user", "assistant", "user"]
  assert first[1]["content"] == "Are you clear about your role?"
  assert first[3]["content"].endswith(" ".join(document.split()))
  assert len(lm.calls) == 3
  # The same text (whitespace aside), in another month or another run: no new call.
  labeller.label("ai", document.replace("\n", "  "))
  again = tos.LMLabeller(lm, cache)
  assert again.label("license", document) == verdicts["license"]
  assert len(lm.calls) == 3 and len(cache.read_text().splitlines()) == 3
  assert tos.merge(*(v.code for v in verdicts.values())) == "No Scraping"


def test_label_pages_samples_and_merges():
  tos_json = {"www.x.com": {"https://x.com/terms": {
      "2019-01-01": "Welcome.", "2019-06-01": "Welcome.", "2019-12-01": "You may not scrape this site.",
      "2020-05-01": "You may not scrape this site. Do not use it to train AI models."}}}
  verdicts = tos.label_pages(tos_json, tos.KeywordLabeller(), per_year=2)
  assert sorted(verdicts["www.x.com"]["https://x.com/terms"]) == ["2019-01-01", "2019-12-01", "2020-05-01"]
  assert tos.domain_labels(verdicts) == {"www.x.com": {"2019-01-01": "Unrestricted Use",
                                                       "2019-12-01": "No Scraping", "2020-05-01": "No Scraping & AI"}}
  json.dumps(verdicts)  # the label file is JSON
