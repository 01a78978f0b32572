"""A tiny OpenAI-compatible chat server for fault-injection tests only (never on the main path).

    python tests/fake_openai.py PORT MODE [N]
MODE: good (answers the first listed category), garbage, flaky (every other request is a 500),
slow (sleeps 30 s), queue (one answer at a time, N ms each: a busy server's queue), never_ready
(/health is 503), die_after (exits after N answers).
With FAKE_REQUESTS=path, every chat request body is appended there (one JSON line each); with
VLLM_API_KEY set, requests without that bearer key get 401, as from vLLM."""
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, MODE = int(sys.argv[1]), sys.argv[2]
N = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3].isdigit() else 0
KEY = os.environ.get("VLLM_API_KEY")  # as vLLM: only requests that carry this key are answered
state = {"answers": 0, "requests": 0}
lock, busy = threading.Lock(), threading.Lock()


class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def _send(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            self._send(503 if MODE == "never_ready" else 200, {})
        else:
            self._send(200, {"object": "list", "data": [{"id": "base", "object": "model"}]})

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if KEY and self.headers.get("authorization") != f"Bearer {KEY}":
            return self._send(401, {"error": {"message": "Unauthorized"}})
        with lock:
            if os.environ.get("FAKE_REQUESTS"):
                with open(os.environ["FAKE_REQUESTS"], "a") as f:
                    f.write(json.dumps(req) + "\n")
            state["requests"] += 1
            nreq = state["requests"]
        if MODE == "flaky" and nreq % 2 == 1:
            return self._send(500, {"error": {"message": "injected failure"}})
        if MODE == "slow":
            time.sleep(30)
        if MODE == "queue":
            with busy:
                time.sleep(N / 1000)
        system = req["messages"][0]["content"]
        first = re.findall(r'"([^"]+)"', system)[0]
        answer = "banana split" if MODE == "garbage" else f" {first.lower()}."
        with lock:
            state["answers"] += 1
            if MODE == "die_after" and state["answers"] > N:
                os._exit(1)
        self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": req["model"],
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                                      "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})


ThreadingHTTPServer(("127.0.0.1", PORT), H).serve_forever()
