"""The CLIP tokenizer against transformers' `CLIPTokenizer` built from the same vocabulary files."""

import json

import numpy as np
import pytest

from jaxlab.data.clip_tokenizer import CLIPTokenizer
from jaxlab.errors import UserError

transformers = pytest.importorskip("transformers")

AWKWARD = [
    "a photo of a cat",
    "Hello, World!!  café\tnaïve 東京",
    "don't STOP   it's  ok?! we'll they'd I'm",
    "emoji 🙂🚀 and ½ ü Ωmega straße",
    "“quotes” — dashes … «guillemets»",
    "3.14159 + 2e10 = ??? #hashtag @user http://x.org/a_b?c=d&e=f",
    "  leading and trailing  \n\n new lines ",
    "",
    "qzxv",
    "an image of a great white shark <|endoftext|> after the end",
    "AbCdEfGh " * 60,  # far past 77 tokens
    "supercalifragilisticexpialidocious" * 10,
]


@pytest.fixture(scope="module")
def ours():
  return CLIPTokenizer.default()


@pytest.fixture(scope="module")
def folder(ours, tmp_path_factory):
  return ours.save_folder(tmp_path_factory.mktemp("tokenizer"))


def test_vocabulary_layout(ours):
  assert len(ours.vocab) == 49408
  assert (ours.start_id, ours.end_id, ours.pad_id) == (49406, 49407, 49407)
  # Ids checked once against OpenAI's own `SimpleTokenizer` on the same file.
  assert ours("a photo of a cat")["input_ids"][0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_matches_transformers_on_awkward_strings(ours, folder):
  reference = transformers.CLIPTokenizer.from_pretrained(folder)
  expected = reference(AWKWARD, padding="max_length", max_length=77, truncation=True, return_tensors="np")
  got = ours(AWKWARD)
  assert got["input_ids"].shape == (len(AWKWARD), 77) and got["input_ids"].dtype == np.int32
  np.testing.assert_array_equal(got["input_ids"], expected["input_ids"])
  np.testing.assert_array_equal(got["attention_mask"], expected["attention_mask"])
  long = got["input_ids"][AWKWARD.index("AbCdEfGh " * 60)]
  assert long[0] == 49406 and long[-1] == 49407 and got["attention_mask"][-1].all()
  for text in AWKWARD[:4]:
    assert ours.encode(text) == reference.encode(text, add_special_tokens=False)


def test_folder_with_its_own_pad_token(ours, folder):
  """Stable Diffusion 2's tokenizer folder pads with `!` (id 0)."""
  (folder / "special_tokens_map.json").write_text(json.dumps({"pad_token": {"content": "!"}}))
  (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77, "pad_token": "!"}))
  loaded = CLIPTokenizer.load(folder)
  assert loaded.pad_id == 0
  reference = transformers.CLIPTokenizer.from_pretrained(folder)
  expected = reference(AWKWARD[:3], padding="max_length", max_length=77, truncation=True)["input_ids"]
  np.testing.assert_array_equal(loaded(AWKWARD[:3])["input_ids"], expected)
  assert loaded.decode(loaded("Hello, World!")["input_ids"][0]) == "hello , world !"


def test_refuses_long_text_without_truncation_and_missing_files(ours, tmp_path):
  with pytest.raises(UserError, match="tokens"):
    ours("word " * 100, truncate=False)
  with pytest.raises(UserError, match="vocab.json"):
    CLIPTokenizer.load(tmp_path)
