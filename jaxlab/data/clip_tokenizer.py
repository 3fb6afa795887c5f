"""CLIP's byte-level BPE tokenizer, offline, giving the same ids as transformers' `CLIPTokenizer`.

The vocabulary comes from either
  - OpenAI's `bpe_simple_vocab_16e6.txt.gz` (the merges; the 49,408 ids follow from them: 256 byte symbols,
    their 256 end-of-word variants, one id per merge, then `<|startoftext|>` and `<|endoftext|>`). The
    `open_clip_torch` package ships it, and `make venv` installs that package (without its dependencies), so
    `CLIPTokenizer.default()` needs no network; or
  - a transformers tokenizer folder (`vocab.json` + `merges.txt`, e.g. Stable Diffusion's `tokenizer/`).

Text is NFC-normalised, whitespace-collapsed and lowercased, split by CLIP's regex, byte-encoded and merged
(the pipeline of transformers' `CLIPTokenizer`; OpenAI's reference additionally runs `ftfy` and unescapes HTML
entities, which changes only mojibake and strings such as `&amp;`). A sequence is
`[<|startoftext|>] + tokens + [<|endoftext|>]`, padded to the context length (77).
"""

import gzip
import importlib.metadata
import json
from pathlib import Path

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

from jaxlab.errors import UserError

START, END = "<|startoftext|>", "<|endoftext|>"
END_OF_WORD = "</w>"
CONTEXT_LENGTH = 77
# OpenAI's vocabulary file holds more merges than CLIP uses: the vocabulary is 49,408 ids.
NUM_MERGES = 49152 - 256 - 2
_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
_VOCAB_PACKAGE, _VOCAB_FILE = "open_clip_torch", "open_clip/bpe_simple_vocab_16e6.txt.gz"


def byte_symbols() -> list[str]:
  """GPT-2's printable stand-in for each byte, in vocabulary order: printable bytes first, the rest shifted."""
  printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
  others = [b for b in range(256) if b not in printable]
  return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


def vocab_from_merges(merges: list[tuple[str, str]]) -> dict[str, int]:
  symbols = byte_symbols()
  tokens = symbols + [s + END_OF_WORD for s in symbols] + ["".join(m) for m in merges] + [START, END]
  return {token: i for i, token in enumerate(tokens)}


def read_bpe_file(path) -> list[tuple[str, str]]:
  """The merges of OpenAI's `bpe_simple_vocab_16e6.txt.gz` (first line: a version header)."""
  lines = gzip.open(path, "rt", encoding="utf-8").read().split("\n")
  return [tuple(line.split()) for line in lines[1:NUM_MERGES + 1]]


def default_vocab_file() -> Path:
  """OpenAI's vocabulary file as installed by `open_clip_torch` (found without importing that package)."""
  try:
    path = Path(importlib.metadata.distribution(_VOCAB_PACKAGE).locate_file(_VOCAB_FILE))
  except importlib.metadata.PackageNotFoundError:
    path = None
  if path is None or not path.is_file():
    raise UserError(
        f"CLIP's BPE vocabulary ({_VOCAB_FILE}) is not installed; run `make venv` (or "
        f"`pip install --no-deps {_VOCAB_PACKAGE}==3.3.0`), or pass a tokenizer folder with vocab.json and "
        "merges.txt")
  return path


def _special_token(value) -> str | None:
  """A special token as tokenizer configs spell it: a string or `{"content": ...}`."""
  return value.get("content") if isinstance(value, dict) else value


class CLIPTokenizer:
  """`tokenizer(texts) -> {'input_ids': int32 [B, 77], 'attention_mask': int32 [B, 77]}`.

  Args:
    vocab: token -> id.
    merges: the BPE merges, in priority order.
    context_length: the padded length (the text model's `max_position_embeddings`).
    pad_token: the padding token; `<|endoftext|>` like transformers' default (Stable Diffusion 2 uses `!`).
  """

  def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]], context_length: int = CONTEXT_LENGTH,
               pad_token: str = END):
    self.vocab, self.merges, self.context_length = vocab, merges, context_length
    self.start_id, self.end_id = vocab[START], vocab[END]
    if pad_token not in vocab:
      raise UserError(f"pad token {pad_token!r} is not in the vocabulary")
    self.pad_id = vocab[pad_token]
    bpe = models.BPE(vocab=vocab, merges=merges, end_of_word_suffix=END_OF_WORD, continuing_subword_prefix="",
                     unk_token=END, fuse_unk=False)
    self._tokenizer = Tokenizer(bpe)
    self._tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    self._tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_SPLIT), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    self._tokenizer.decoder = decoders.ByteLevel()
    # Like transformers, the pad token is matched whole in the text too: with Stable Diffusion 2's `!`, "!!"
    # becomes two pad ids rather than the merged "!!".
    self._tokenizer.add_special_tokens(sorted({START, END, pad_token}))

  @classmethod
  def default(cls, **kwargs) -> "CLIPTokenizer":
    """OpenAI's CLIP vocabulary from the installed `open_clip_torch` package."""
    return cls.from_bpe_file(default_vocab_file(), **kwargs)

  @classmethod
  def from_bpe_file(cls, path, **kwargs) -> "CLIPTokenizer":
    merges = read_bpe_file(path)
    return cls(vocab_from_merges(merges), merges, **kwargs)

  @classmethod
  def from_folder(cls, path, **kwargs) -> "CLIPTokenizer":
    """A transformers tokenizer folder: `vocab.json`, `merges.txt`, and optionally its configs' pad token."""
    path = Path(path)
    if not (path / "vocab.json").is_file() or not (path / "merges.txt").is_file():
      raise UserError(f"{path} needs vocab.json and merges.txt (a transformers CLIP tokenizer folder)")
    vocab = json.loads((path / "vocab.json").read_text(encoding="utf-8"))
    lines = (path / "merges.txt").read_text(encoding="utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines if line and not line.startswith("#version")]
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
      if (path / name).is_file():
        settings = json.loads((path / name).read_text())
        if _special_token(settings.get("pad_token")):
          kwargs.setdefault("pad_token", _special_token(settings["pad_token"]))
        if isinstance(settings.get("model_max_length"), int) and settings["model_max_length"] <= 4096:
          kwargs.setdefault("context_length", settings["model_max_length"])
    return cls(vocab, merges, **kwargs)

  @classmethod
  def load(cls, path=None, **kwargs) -> "CLIPTokenizer":
    """A folder, a `.txt.gz` vocabulary file, or (None) the installed default."""
    if path is None:
      return cls.default(**kwargs)
    path = Path(path)
    if path.is_dir():
      return cls.from_folder(path, **kwargs)
    if path.is_file():
      return cls.from_bpe_file(path, **kwargs)
    raise UserError(f"tokenizer {path} not found; pass a tokenizer folder or bpe_simple_vocab_16e6.txt.gz")

  def save_folder(self, path) -> Path:
    """Writes `vocab.json` + `merges.txt` in transformers' layout."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.json").write_text(json.dumps(self.vocab, ensure_ascii=False), encoding="utf-8")
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in self.merges) + "\n",
                                     encoding="utf-8")
    return path

  def encode(self, text: str) -> list[int]:
    """The BPE ids of `text`, without start/end tokens or padding."""
    return self._tokenizer.encode(text, add_special_tokens=False).ids

  def decode(self, ids) -> str:
    """The text of one sequence, up to its first end-of-text token."""
    ids = [int(i) for i in ids]
    ids = ids[:ids.index(self.end_id)] if self.end_id in ids else ids
    ids = [i for i in ids if i != self.start_id]
    return self._tokenizer.decode(ids, skip_special_tokens=False).replace(END_OF_WORD, " ").strip()

  def __call__(self, texts: str | list[str], truncate: bool = True) -> dict[str, np.ndarray]:
    """Start + tokens + end, padded to `context_length`; longer texts are cut (or refused if not `truncate`)."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    room = self.context_length - 2
    ids = np.full((len(texts), self.context_length), self.pad_id, np.int32)
    mask = np.zeros((len(texts), self.context_length), np.int32)
    for row, encoding in enumerate(self._tokenizer.encode_batch(texts, add_special_tokens=False)):
      tokens = encoding.ids
      if len(tokens) > room and not truncate:
        raise UserError(f"text {row} ({texts[row][:40]!r}...) has {len(tokens)} tokens; the context holds {room}")
      sequence = [self.start_id, *tokens[:room], self.end_id]
      ids[row, :len(sequence)] = sequence
      mask[row, :len(sequence)] = 1
    return {"input_ids": ids, "attention_mask": mask}
