"""A local OpenAI-compatible `/chat/completions` server for tests: scripted status codes, then replies."""

import contextlib
import http.server
import json
import threading


class StubServer:
  """`failures`: (status, headers) answered first, in order; then `respond(body) -> reply dict`."""

  def __init__(self, respond, failures=()):
    self.respond, self.failures, self.requests = respond, list(failures), []
    stub = self

    class Handler(http.server.BaseHTTPRequestHandler):
      def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        stub.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
        if stub.failures:
          status, headers = stub.failures.pop(0)
          self.send_response(status)
          for key, value in headers.items():
            self.send_header(key, value)
          self.end_headers()
          self.wfile.write(b'{"error": "try later"}')
          return
        data = json.dumps(stub.respond(body)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

      def log_message(self, *args):
        pass

    self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

  @contextlib.contextmanager
  def running(self):
    thread = threading.Thread(target=self.server.serve_forever, daemon=True)
    thread.start()
    try:
      yield self
    finally:
      self.server.shutdown()
      self.server.server_close()


def chat_reply(content: str, top_logprobs=None) -> dict:
  choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
  if top_logprobs is not None:
    choice["logprobs"] = {"content": [{"token": content, "logprob": 0.0, "top_logprobs": top_logprobs}]}
  return {"id": "x", "object": "chat.completion", "choices": [choice]}
