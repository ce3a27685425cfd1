"""Open a page in a headless Chromium and collect what its console reports.

Talks the Chrome DevTools Protocol over ``--remote-debugging-pipe`` (fds 3 and 4 of the browser,
NUL-separated JSON), so no websocket package is needed. Collects uncaught exceptions,
``console.error``/``console.assert`` calls and browser log entries of level error (failed loads,
blocked requests, decoding errors), and evaluates a few facts about the loaded page.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

BROWSERS = (
    "chromium",
    "chromium-browser",
    "chromium-headless-shell",
    "headless_shell",
    "google-chrome",
    "google-chrome-stable",
)

PAGE_FACTS = """JSON.stringify({
  sections: Array.from(document.querySelectorAll("section")).map(s => s.id),
  images: document.images.length,
  decoded: Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length,
  title: document.title,
})"""


def find_browser() -> str | None:
    """The first Chromium-family binary on ``PATH``, or ``None``."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


class _Pipe:
    def __init__(self, read_fd: int, write_fd: int, deadline: float) -> None:
        self.read_fd, self.write_fd, self.deadline = read_fd, write_fd, deadline
        self.buffer = b""
        self.events: list[dict[str, Any]] = []
        self.next_id = 0

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict:
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read()
            self.events.append(event)
            if event.get("method") == method:
                return event

    def drain(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if select.select([self.read_fd], [], [], max(0.0, end - time.monotonic()))[0]:
                self.events.append(self._read())

    def _read(self) -> dict:
        while b"\0" not in self.buffer:
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                raise TimeoutError("the browser did not answer in time")
            chunk = os.read(self.read_fd, 1 << 16)
            if not chunk:
                raise RuntimeError("the browser closed the DevTools pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)


def console_errors(browser: str, page: Path, *, timeout: float = 60.0) -> dict[str, Any]:
    """Load ``page`` in ``browser`` (headless) and report its console errors and page facts.

    Returns
    -------
    dict
        ``errors``: one line per exception, console error or error log entry; ``facts``: the
        result of :data:`PAGE_FACTS` evaluated after the load event.
    """
    to_browser_r, to_browser_w = os.pipe()
    from_browser_r, from_browser_w = os.pipe()
    # Lift the browser's ends above any fd number the shell redirections below touch.
    child_in = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 20)
    child_out = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 20)
    os.close(to_browser_r)
    os.close(from_browser_w)
    profile = tempfile.mkdtemp(prefix="trustml-chromium-")
    args = [
        "--headless",
        "--remote-debugging-pipe",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        f"--user-data-dir={profile}",
        "about:blank",
    ]
    proc = subprocess.Popen(
        ["bash", "-c", f'exec "$0" "$@" 3<&{child_in} 4>&{child_out}', browser, *args],
        pass_fds=(child_in, child_out),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(child_in)
    os.close(child_out)
    pipe = _Pipe(from_browser_r, to_browser_w, time.monotonic() + timeout)
    try:
        target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Runtime", "Log", "Page"):
            pipe.send(f"{domain}.enable", session=session)
        pipe.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        pipe.wait_for("Page.loadEventFired")
        pipe.drain(0.5)  # late console messages
        facts = pipe.send(
            "Runtime.evaluate", {"expression": PAGE_FACTS, "returnByValue": True}, session=session
        )["result"]["value"]
        try:
            pipe.send("Browser.close")
        except (RuntimeError, TimeoutError):
            pass
    finally:
        os.close(from_browser_r)
        os.close(to_browser_w)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
    errors = []
    for event in pipe.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text")
            errors.append(f"exception: {text}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            values = [a.get("value", a.get("description")) for a in params.get("args", [])]
            errors.append(f"console.{params['type']}: {values}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            errors.append(
                f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}"
            )
    return {"errors": errors, "facts": json.loads(facts)}
