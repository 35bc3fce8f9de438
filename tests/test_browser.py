"""The rendered report in headless Chromium, opened from disk: every image loads, the console stays
clean, and a screenshot is kept in tests/artifacts/report.png. The report is the committed fixture's
(tests/data/run_a.jsonl): fast, and no framework runs.

Chromium is driven through its DevTools protocol over `--remote-debugging-pipe` (NUL-separated JSON
on file descriptors 3 and 4), so the test needs no Python package beyond the standard library.
"""

from __future__ import annotations

import base64
import fcntl
import itertools
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from bench import report
from tests.conftest import ROOT

ARTIFACTS = ROOT / "tests" / "artifacts"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
APT_PACKAGES = ("chromium", "fonts-liberation")  # a font, or a clean machine draws boxes
WINDOW = (1280, 1800)


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def install_browser() -> str:
    """Debian's chromium through apt-get, as CI does on a clean machine; skips only where it cannot."""
    if not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and this system has no apt-get to install it")
    if os.geteuid() != 0:
        pytest.skip("chromium is not installed; installing it needs root: apt-get install -y chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *APT_PACKAGES]
    done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:  # a clean machine has no package lists yet
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=300)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    browser = find_browser()
    if browser is None:
        pytest.skip(f"chromium could not be installed with {' '.join(install)}: {done.stderr[-500:]}")
    return browser


def _above_9(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class DevTools:
    """One Chromium, its DevTools protocol over a pipe, and the events that arrived so far."""

    def __init__(self, browser: str, profile: Path) -> None:
        # Chromium reads commands on fd 3 and writes replies to fd 4. The pipe ends are first moved
        # to fds >= 10, so that putting them at 3 and 4 in the child cannot overwrite one another.
        cmd_r, cmd_w = (_above_9(fd) for fd in os.pipe())
        reply_r, reply_w = (_above_9(fd) for fd in os.pipe())
        args = [
            "--headless",
            "--remote-debugging-pipe",
            "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            "about:blank",
        ]

        def at_3_and_4() -> None:
            os.dup2(cmd_r, 3)
            os.dup2(reply_w, 4)

        profile.mkdir(parents=True, exist_ok=True)
        self.log = profile / "chromium.log"  # a file: a full stderr pipe would stall Chromium
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [browser, *args],
                preexec_fn=at_3_and_4,
                close_fds=False,  # it would close 3 and 4 after preexec_fn; the rest is close-on-exec
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        os.close(cmd_r)
        os.close(reply_w)
        self.to_chrome, self.from_chrome = cmd_w, reply_r
        self.ids = itertools.count(1)
        self.buffer = b""
        self.events: list[dict[str, Any]] = []

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.from_chrome], [], [], max(left, 0))
            if not ready:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self.from_chrome, 1 << 20)
            if not chunk:
                err = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"chromium closed its DevTools pipe; its log ends:\n{err}")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, session: str | None = None, timeout_s: float = 30, **params: Any) -> Any:
        msg_id = next(self.ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        while True:
            reply = self._read(deadline)
            if reply.get("id") != msg_id:
                self.events.append(reply)
                continue
            if "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            return reply.get("result", {})

    def wait_for(self, method: str, since: int, timeout_s: float = 30) -> dict[str, Any]:
        """The first `method` event from self.events[since:] on, reading more until it comes."""
        deadline = time.monotonic() + timeout_s
        for event in self.events[since:]:
            if event.get("method") == method:
                return event
        while True:
            event = self._read(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout_s=5)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.to_chrome)
        os.close(self.from_chrome)


def console_errors(events: list[dict[str, Any]]) -> list[str]:
    """Errors the DevTools console would show: console.error/assert, uncaught exceptions, and the
    browser's own entries (failed loads, security refusals)."""
    found = []
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            found.append("console." + p["type"] + ": " + " ".join(str(a.get("value")) for a in p["args"]))
        elif method == "Runtime.exceptionThrown":
            found.append("exception: " + json.dumps(p.get("exceptionDetails", {}))[:500])
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            entry = p["entry"]
            found.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())
    return found


@pytest.fixture(scope="module")
def browser() -> str:
    return find_browser() or install_browser()


@pytest.fixture(scope="module")
def fixture_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed fixture's report, rendered once: its index.html."""
    return report.render(
        [ROOT / "tests" / "data" / "run_a.jsonl"], tmp_path_factory.mktemp("report") / "report"
    )


def test_report_opens_from_disk_with_every_image_and_no_console_error(browser, fixture_report, tmp_path):
    chrome = DevTools(browser, tmp_path / "profile")
    try:
        target = chrome.call("Target.createTarget", url="about:blank")["targetId"]
        session = chrome.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            chrome.call(f"{domain}.enable", session)
        chrome.call(
            "Emulation.setDeviceMetricsOverride",
            session,
            width=WINDOW[0],
            height=WINDOW[1],
            deviceScaleFactor=1,
            mobile=False,
        )
        before = len(chrome.events)
        nav = chrome.call("Page.navigate", session, url=fixture_report.as_uri())
        assert "errorText" not in nav, nav
        chrome.wait_for("Page.loadEventFired", since=before, timeout_s=30)
        images = chrome.call(
            "Runtime.evaluate",
            session,
            expression="[...document.images].map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])",
            returnByValue=True,
        )["result"]["value"]
        state = chrome.call(
            "Runtime.evaluate",
            session,
            expression="[location.protocol, document.title, !!document.getElementById('verdict'),"
            " document.querySelectorAll('.verdict').length, document.querySelectorAll('.answer').length,"
            " document.querySelectorAll('tr.wrong').length]",
            returnByValue=True,
        )["result"]["value"]
        shot = chrome.call("Page.captureScreenshot", session, format="png", timeout_s=60)["data"]
        # Messages logged during load can trail the load event by a moment.
        chrome.call("Runtime.evaluate", session, expression="1")
        errors = console_errors(chrome.events)
    finally:
        chrome.close()

    png = base64.b64decode(shot)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    (tmp_path / "report.png").write_bytes(png)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "report.png").write_bytes(png)

    assert state[0] == "file:" and state[1].startswith("normbench")
    assert state[2] and state[3] >= 1, "no verdict on the page"
    assert state[4] >= 1 and state[5] >= 1, "no answer, or no wrong row marked"
    broken = [src for src, complete, width in images if not complete or width <= 0]
    assert not broken, f"images that did not load from disk: {broken}"
    pngs_on_disk = {p.name for p in fixture_report.parent.glob("*.png")}
    assert len(images) >= 6 and {src for src, _, _ in images} == pngs_on_disk
    assert not errors, "console errors:\n" + "\n".join(errors)
