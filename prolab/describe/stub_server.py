"""A scripted OpenAI-compatible chat server on 127.0.0.1, for tests and benchmarks of the retrieval engine.

It speaks the real wire protocol (``POST /v1/chat/completions``), so the real openai client, retries,
time-outs and concurrency are exercised end to end. It can add latency per call, inject failures (429 with
Retry-After, 500, a hang longer than the client's time-out) and script replies per class. It counts every
request, per class, and the peak number in flight. Its replies are labelled as stub output and are never
written into descriptor files of the kit.

Run standalone: ``python -m prolab.describe.stub_server --port 8011 --latency 0.5``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_PHRASES = [
    "seen outdoors in daylight", "has a rough uneven surface", "mostly grey or brown", "made of hard material",
    "often found near roads", "tall and narrow shape", "flat horizontal extent", "smooth shiny finish",
    "appears in groups", "casts a visible shadow", "has straight edges", "green and leafy",
    "blue tones dominate", "small compared to people", "large and heavy", "moves along the ground",
    "covered in fine texture", "reflects light", "has wheels", "rests on the floor",
    "soft fabric surface", "metal frame", "transparent parts", "bright painted colours",
]


def stub_reply(class_name: str, n: int = 8) -> str:
    """A deterministic, varied bullet list for a class (stub text, not a description of anything)."""
    h = int(hashlib.sha256(class_name.encode()).hexdigest(), 16)
    picks, used = [], set()
    while len(picks) < n:
        i = h % len(_PHRASES)
        h //= len(_PHRASES)
        if h == 0:
            h = int(hashlib.sha256((class_name + str(len(picks))).encode()).hexdigest(), 16)
        if i not in used:
            used.add(i)
            picks.append(_PHRASES[i])
    return "\n".join(f"- {class_name} {p}" for p in picks)


@dataclass
class StubScript:
    latency: float = 0.0                        # seconds added to every call
    faults: deque = field(default_factory=deque)  # global queue of "429", "500", "timeout", "401-echo", in order
    hang_seconds: float = 5.0                   # how long a "timeout" fault stalls before answering
    retry_after: float | None = None            # Retry-After header sent with 429s
    replies: dict = field(default_factory=dict)  # class -> list of scripted replies (str, or bytes sent raw)


class StubStats:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = 0
        self.completed = Counter()       # class -> successful replies sent
        self.faults_sent = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.times: list[float] = []     # arrival time of every request
        self.auth_headers: set[str] = set()

    def as_dict(self):
        with self.lock:
            return {"requests": self.requests, "completed": dict(self.completed),
                    "faults_sent": dict(self.faults_sent), "max_in_flight": self.max_in_flight}


_REASK_PREFIXES = ("That answer cannot be used", "Please describe")


def _class_of(messages: list[dict]) -> str:
    """The class named by the request: the last line of the last user turn that is not a re-ask note
    (the kit's prompts end with the class name, after any worked-example turns)."""
    users = [m["content"] for m in messages if m.get("role") == "user"
             and not m["content"].startswith(_REASK_PREFIXES)]
    lines = [l.strip() for l in (users[-1] if users else "").strip().splitlines() if l.strip()]
    last = lines[-1] if lines else ""
    if last.lower().startswith("describe "):
        last = last[len("describe "):].rstrip(".")
    return last


class StubChatServer:
    def __init__(self, script: StubScript | None = None, host: str = "127.0.0.1", port: int = 0):
        self.script = script or StubScript()
        self.stats = StubStats()
        self._fault_lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, code: int, body: dict, headers: dict | None = None, raw_content: bytes | None = None):
                data = json.dumps(body).encode()
                if raw_content is not None:  # splice bytes as they are (invalid UTF-8 included) into the JSON
                    esc = raw_content.replace(b"\\", b"\\\\").replace(b'"', b'\\"').replace(b"\n", b"\\n")
                    data = data.replace(b'"@@RAW@@"', b'"' + esc + b'"')
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    return self._send(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})
                if self.path == "/stats":
                    return self._send(200, server.stats.as_dict())
                self._send(404, {"error": {"message": "not found"}})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                st = server.stats
                with st.lock:
                    st.requests += 1
                    st.times.append(time.monotonic())
                    st.in_flight += 1
                    st.max_in_flight = max(st.max_in_flight, st.in_flight)
                    st.auth_headers.add(self.headers.get("Authorization", ""))
                try:
                    self._handle(body)
                finally:
                    with st.lock:
                        st.in_flight -= 1

            def _handle(self, body: dict):
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                sc, st = server.script, server.stats
                with server._fault_lock:
                    fault = sc.faults.popleft() if sc.faults else None
                if fault:
                    with st.lock:
                        st.faults_sent[fault] += 1
                if fault == "429":
                    hdr = {"Retry-After": str(sc.retry_after)} if sc.retry_after is not None else {}
                    return self._send(429, {"error": {"message": "rate limited", "type": "rate_limit"}}, hdr)
                if fault == "401-echo":  # a careless server that repeats the credentials it was sent
                    auth = self.headers.get("Authorization", "")
                    return self._send(401, {"error": {"message": f"Incorrect API key provided: {auth}",
                                                      "type": "invalid_request_error"}})
                if fault == "500":
                    return self._send(500, {"error": {"message": "internal error", "type": "server_error"}})
                if fault == "timeout":
                    time.sleep(sc.hang_seconds)
                if sc.latency:
                    time.sleep(sc.latency)
                cls = _class_of(body.get("messages", []))
                with server._fault_lock:
                    queue = sc.replies.get(cls)
                    content = queue.pop(0) if queue else stub_reply(cls)
                with st.lock:
                    st.completed[cls] += 1
                raw = content if isinstance(content, bytes) else None
                self._send(200, {
                    "id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", "stub"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": "@@RAW@@" if raw else content}}],
                    "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                }, raw_content=raw)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "StubChatServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8011)
    p.add_argument("--latency", type=float, default=0.0)
    a = p.parse_args(argv)
    srv = StubChatServer(StubScript(latency=a.latency), port=a.port)
    print(f"stub OpenAI-compatible server on {srv.base_url}", flush=True)
    try:
        srv.httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
