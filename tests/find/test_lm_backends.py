"""The OpenAI-compatible backend against a local stub server: retries on 503 and on 429 with Retry-After."""

import math
import socket
import time

import pytest

from jaxlab.errors import UserError
from jaxlab.find import protocol, strings
from jaxlab.lm import OpenAIChat, make_lm

from tests.find.stub_server import StubServer, chat_reply


def test_chat_retries_transient_errors_and_honours_retry_after():
  stub = StubServer(lambda body: chat_reply("hello"), failures=[(503, {}), (429, {"Retry-After": "0.2"})])
  with stub.running():
    lm = OpenAIChat("tiny-model", stub.url, api_key="secret")
    start = time.monotonic()
    reply = lm.chat([{"role": "user", "content": "hi"}], temperature=0.5, max_tokens=7)
    elapsed = time.monotonic() - start
  assert reply == "hello"
  assert len(stub.requests) == 3
  assert elapsed >= 0.2   # the Retry-After wait
  request = stub.requests[-1]
  assert request["path"] == "/v1/chat/completions"
  assert request["body"] == {"model": "tiny-model", "messages": [{"role": "user", "content": "hi"}],
                             "temperature": 0.5, "max_tokens": 7}
  assert request["headers"]["Authorization"] == "Bearer secret"


def test_client_errors_are_not_retried():
  stub = StubServer(lambda body: chat_reply("never"), failures=[(400, {})])
  with stub.running():
    with pytest.raises(UserError, match="HTTP 400"):
      OpenAIChat("m", stub.url, api_key="").chat([{"role": "user", "content": "hi"}])
  assert len(stub.requests) == 1


def test_token_probs_from_logprobs():
  top = [{"token": "1", "logprob": math.log(0.6)}, {"token": "0", "logprob": math.log(0.2)},
         {"token": "yes", "logprob": math.log(0.2)}]
  stub = StubServer(lambda body: chat_reply("1", top))
  with stub.running():
    probs = make_lm(f"openai:tiny@{stub.url}").token_probs([{"role": "user", "content": "x"}], ["0", "1"])
  assert probs == pytest.approx({"0": 0.25, "1": 0.75})
  assert stub.requests[0]["body"]["logprobs"] is True and stub.requests[0]["body"]["max_tokens"] == 1


def _closed_port_url() -> str:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


@pytest.mark.parametrize("down", ["connection refused", "HTTP 503"])
def test_interpret_stops_at_the_first_function_when_the_endpoint_is_down(tmp_path, capsys, down):
  functions = strings.generate(3, seed=0)
  stub = StubServer(lambda body: chat_reply("never"), failures=[(503, {})] * 10)
  with stub.running():
    lm = OpenAIChat("m", _closed_port_url() if down == "connection refused" else stub.url, max_retries=1)
    start = time.monotonic()
    with pytest.raises(UserError, match=rf"openai:m@.* did not answer while interpreting {functions[0].name} "
                                        rf"\(.*{'Connection refused' if down != 'HTTP 503' else 'HTTP 503'}.*\), after "
                                        "its retries; start it or check --backend"):
      protocol.interpret(functions, lm, tmp_path)
  assert time.monotonic() - start < 10  # one function's retries, not every function's
  assert "retry 1 of 1 in" in capsys.readouterr().err  # each retry, with its reason, on screen
  assert not any((tmp_path / "strings").glob("*/description.txt"))
  assert len(stub.requests) == (2 if down == "HTTP 503" else 0)
