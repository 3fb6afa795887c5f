"""Language models behind one interface, for the FIND interpreter/judge and the ToS labeller.

Backends:
  OpenAIChat      any OpenAI-compatible chat endpoint (vLLM, llama.cpp server, hosted APIs): base URL + model.
  TransformersLM  a local transformers causal LM read from a folder.
  ScriptedLM      canned replies, for tests and offline runs.

`make_lm('openai:MODEL@BASE_URL' | 'local:PATH' | 'scripted:FILE.json')` builds one from a CLI string.
"""

from collections.abc import Callable, Sequence
import json
import math
import os
from pathlib import Path
import random
import sys
import time
from typing import Protocol
import urllib.error
import urllib.request

from jaxlab.errors import UserError, read_json

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}


class LM(Protocol):
  name: str

  def chat(self, messages: Sequence[Message], *, temperature: float = 0.0, max_tokens: int | None = None) -> str:
    """The assistant's reply to `messages`."""

  def token_probs(self, messages: Sequence[Message], candidates: Sequence[str]) -> dict[str, float]:
    """The probability of each candidate being the reply's first token (renormalised over `candidates`)."""


class TransientError(Exception):
  """A failure worth retrying (rate limit, server error, timeout)."""

  def __init__(self, message: str, retry_after: float | None = None):
    super().__init__(message)
    self.retry_after = retry_after


def with_retries(call: Callable, *, max_retries: int = 6, base_delay: float = 1.0, max_delay: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep, log: Callable[[str], None] | None = None):
  """Calls `call()`, retrying `TransientError`s with exponential backoff and full jitter.

  A server's `Retry-After` overrides the backoff for that attempt. `log` hears of each retry and its reason.
  """
  for attempt in range(max_retries + 1):
    try:
      return call()
    except TransientError as e:
      if attempt == max_retries:
        raise
      delay = e.retry_after if e.retry_after is not None else random.uniform(0, min(max_delay, base_delay * 2**attempt))
      if log is not None:
        log(f"{e}; retry {attempt + 1} of {max_retries} in {delay:.1f} s")
      sleep(delay)


def retry_after_seconds(headers) -> float | None:
  """The delay a `Retry-After` header asks for (seconds or an HTTP date), or None."""
  value = headers.get("Retry-After") if headers else None
  if value is None:
    return None
  try:
    return max(0.0, float(value))
  except ValueError:
    from email.utils import parsedate_to_datetime
    try:
      return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
      return None


class OpenAIChat:
  """An OpenAI-compatible `/chat/completions` endpoint."""

  def __init__(self, model: str, base_url: str = "https://api.openai.com/v1", api_key: str | None = None,
               timeout: float = 120.0, max_retries: int = 6):
    self.model = model
    self.base_url = base_url.rstrip("/")
    self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
    self.timeout = timeout
    self.max_retries = max_retries
    self.name = f"openai:{model}@{self.base_url}"

  def _post(self, body: dict) -> dict:
    request = urllib.request.Request(
        f"{self.base_url}/chat/completions", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {self.api_key}"}
                                                          if self.api_key else {})})

    def call():
      try:
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
          return json.loads(response.read().decode())
      except urllib.error.HTTPError as e:
        if e.code == 429 or e.code >= 500:
          raise TransientError(f"HTTP {e.code}", retry_after_seconds(e.headers)) from e
        raise UserError(f"{self.name}: HTTP {e.code}: {e.read().decode(errors='replace')[:300]}") from None
      except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        raise TransientError(str(e)) from e
      except json.JSONDecodeError as e:
        raise TransientError(f"malformed JSON from {self.base_url}: {e}") from e

    return with_retries(call, max_retries=self.max_retries,
                        log=lambda line: print(f"{self.name}: {line}", file=sys.stderr, flush=True))

  def chat(self, messages, *, temperature=0.0, max_tokens=None) -> str:
    body = {"model": self.model, "messages": list(messages), "temperature": temperature}
    if max_tokens is not None:
      body["max_tokens"] = max_tokens
    reply = self._post(body)
    try:
      return reply["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError):
      raise UserError(f"{self.name}: unexpected reply {json.dumps(reply)[:300]}") from None

  def token_probs(self, messages, candidates) -> dict[str, float]:
    body = {"model": self.model, "messages": list(messages), "temperature": 0.0, "max_tokens": 1,
            "logprobs": True, "top_logprobs": 20}
    reply = self._post(body)
    try:
      top = reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    except (KeyError, IndexError, TypeError):
      raise UserError(f"{self.name}: the endpoint returned no logprobs; it must support `logprobs`") from None
    found = {c: 0.0 for c in candidates}
    for item in top:
      token = item["token"].strip()
      if token in found:
        found[token] += math.exp(item["logprob"])
    return _normalise(found)


class TransformersLM:
  """A local transformers causal LM (a folder with config.json, tokenizer and safetensors weights)."""

  def __init__(self, path: str, device: str = "cpu", dtype: str = "float32"):
    path = Path(path)
    if not (path / "config.json").is_file():
      raise UserError(f"{path} is not a transformers model folder (no config.json)")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    self._torch = torch
    self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    self.model = AutoModelForCausalLM.from_pretrained(
        path, local_files_only=True, torch_dtype=getattr(torch, dtype), use_safetensors=True).to(device).eval()
    self.device = device
    self.name = f"local:{path}"

  def _encode(self, messages):
    if getattr(self.tokenizer, "chat_template", None):
      return self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, return_tensors="pt")
    text = "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"
    return self.tokenizer(text, return_tensors="pt").input_ids

  def chat(self, messages, *, temperature=0.0, max_tokens=None) -> str:
    ids = self._encode(messages).to(self.device)
    with self._torch.no_grad():
      out = self.model.generate(ids, max_new_tokens=max_tokens or 512, do_sample=temperature > 0,
                                temperature=temperature if temperature > 0 else None,
                                pad_token_id=self.tokenizer.eos_token_id)
    return self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)

  def token_probs(self, messages, candidates) -> dict[str, float]:
    ids = self._encode(messages).to(self.device)
    with self._torch.no_grad():
      logits = self.model(ids).logits[0, -1].float()
    probs = self._torch.softmax(logits, -1)
    found = {}
    for c in candidates:
      token_ids = self.tokenizer.encode(c, add_special_tokens=False)
      found[c] = float(probs[token_ids[0]]) if token_ids else 0.0
    return _normalise(found)


class ScriptedLM:
  """Replies from a list (in order) or a function of the messages; `probs` answers `token_probs`."""

  def __init__(self, replies: Sequence[str] | Callable[[Sequence[Message]], str] = (),
               probs: Callable[[Sequence[Message], Sequence[str]], dict] | None = None, name: str = "scripted"):
    self._replies = replies if callable(replies) else list(replies)
    self._probs = probs
    self.calls: list[list[Message]] = []
    self.name = name

  def chat(self, messages, *, temperature=0.0, max_tokens=None) -> str:
    self.calls.append(list(messages))
    if callable(self._replies):
      return self._replies(messages)
    if not self._replies:
      raise UserError(f"{self.name}: no scripted replies left")
    return self._replies.pop(0)

  def token_probs(self, messages, candidates) -> dict[str, float]:
    if self._probs is None:
      reply = self.chat(messages).strip()
      return _normalise({c: float(reply.startswith(c)) for c in candidates})
    return _normalise(dict(self._probs(messages, candidates)))


def _normalise(probs: dict[str, float]) -> dict[str, float]:
  total = sum(probs.values())
  if total <= 0:
    return {c: 1.0 / len(probs) for c in probs}
  return {c: p / total for c, p in probs.items()}


def make_lm(spec: str) -> LM:
  """`openai:MODEL[@BASE_URL]`, `local:PATH`, or `scripted:FILE.json` (a JSON list of replies)."""
  kind, _, rest = spec.partition(":")
  if kind == "openai" and rest:
    model, _, base = rest.partition("@")
    return OpenAIChat(model, base or os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1"))
  if kind == "local" and rest:
    return TransformersLM(rest)
  if kind == "scripted" and rest:
    path = Path(rest)
    if not path.is_file():
      raise UserError(f"scripted replies file {path} not found")
    return ScriptedLM(read_json(path, "a JSON list of replies"), name=f"scripted:{path}")
  raise UserError(f"LM backend {spec!r} not understood; use openai:MODEL[@BASE_URL], local:PATH or "
                  "scripted:FILE.json")
