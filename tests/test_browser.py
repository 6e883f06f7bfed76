"""The report in a real browser, driven through the Chrome DevTools Protocol.

A small report (three-point and eight-schools, reference backend only, through
:func:`comparisons.api.report`) is written to a temporary folder; headless Chromium opens
``index.html`` and both case pages, and the tests check:

* no console error, uncaught exception or failed resource load while a page loads (the
  browser's own event stream, not a scrape of its log output);
* every ``<img>`` is a PNG data URI that decodes, both in Python (PNG signature and header size)
  and in the browser (``img.decode()`` resolves with a non-zero natural size), and every plot
  that applies to the case is there: densities, z-scores, forest, trace and rank,
  autocorrelation, regression lines, predictive variance, shrinkage, PPC, prior sensitivity,
  evidence (and no figure fell over);
* every link of the index leads to a page that exists, and the index holds the Bayes factors;
* the pages render to full-page PNG screenshots that are not blank.

Chromium is driven over ``--remote-debugging-pipe`` (commands on fd 3, replies on fd 4, each
message JSON ending in a NUL byte), so no WebDriver or extra Python package is needed. Without
``/usr/bin/chromium`` the tests are skipped with that reason.
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import queue
import re
import struct
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe"]
SEED = 20261121
WIDTH = 1200
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PAGES = ("index.html", "eight-schools/report.html", "three-point/report.html")
#: the figures each case page must show (alt text of the <img>)
COMMON = {"densities", "z-scores", "forest", "ppc", "prior sensitivity", "evidence"}
EXPECTED = {
    "eight-schools/report.html": COMMON | {"trace and rank", "autocorrelation", "shrinkage"},
    "three-point/report.html": COMMON | {"regression lines", "predictive variance",
                                         "evidence curve"},
}
#: how the report writes a figure that raised: "<p><em>NAME failed: ..."
FAILED = re.compile(r"<em>[^<]* failed:")

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent "
                                "(Debian packages chromium and chromium-driver)")


# ---------------------------------------------------------------------------------------------
# a minimal DevTools client
# ---------------------------------------------------------------------------------------------
class DevTools:
    """Chromium over ``--remote-debugging-pipe``: ``send`` a command, collect events."""

    def __init__(self, profile: Path, timeout: float = 60.0):
        self.timeout = timeout
        cmd_r, cmd_w = os.pipe()      # we write commands, Chromium reads them on fd 3
        out_r, out_w = os.pipe()      # Chromium writes replies on fd 4, we read them
        # move the child's ends above 10, so that placing them on 3 and 4 clobbers nothing;
        # bash does the placing (dash takes one-digit fds only), then execs Chromium
        child_in = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10)
        child_out = fcntl.fcntl(out_w, fcntl.F_DUPFD, 10)
        os.close(cmd_r)
        os.close(out_w)
        self.proc = subprocess.Popen(
            ["/bin/bash", "-c", f'exec "$0" "$@" 3<&{child_in} 4>&{child_out}', str(CHROMIUM),
             *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            pass_fds=(child_in, child_out))
        os.close(child_in)
        os.close(child_out)
        self._w = os.fdopen(cmd_w, "wb", buffering=0)
        self._r = os.fdopen(out_r, "rb", buffering=0)
        self._inbox: queue.Queue = queue.Queue()
        self.events: list[dict] = []
        self._id = 0
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # drain the log

    def _read(self):
        buf = b""
        while chunk := self._r.read(65536):
            buf += chunk
            *messages, buf = buf.split(b"\0")
            for m in messages:
                self._inbox.put(json.loads(m))
        self._inbox.put(None)

    def send(self, method: str, params: dict | None = None, session: str | None = None):
        """Send one command and wait for its reply; events that arrive meanwhile are kept."""
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session is not None:
            msg["sessionId"] = session
        self._w.write(json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._next()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, session: str):
        """Wait for the event ``method`` of ``session`` (earlier ones included)."""
        while True:
            for e in self.events:
                if e.get("method") == method and e.get("sessionId") == session:
                    return e
            self.events.append(self._next())

    def _next(self) -> dict:
        try:
            msg = self._inbox.get(timeout=self.timeout)
        except queue.Empty:
            raise TimeoutError(f"Chromium sent nothing for {self.timeout} s") from None
        if msg is None:
            raise RuntimeError(f"Chromium exited (code {self.proc.poll()})")
        return msg

    def close(self):
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for f in (self._w, self._r):
            try:
                f.close()
            except OSError:
                pass


IMAGES_JS = """Promise.all(Array.from(document.images).map(img => img.decode().then(
    () => ({alt: img.alt, ok: true, w: img.naturalWidth, h: img.naturalHeight}),
    err => ({alt: img.alt, ok: false, error: String(err)}))))"""


def load_page(browser: DevTools, url: str, screenshot: Path) -> dict:
    """Open ``url`` in a new tab; return its errors, images, links and a full-page screenshot."""
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
        "sessionId"]
    for domain in ("Page", "Runtime", "Log"):
        browser.send(f"{domain}.enable", session=session)
    browser.send("Emulation.setDeviceMetricsOverride", {"width": WIDTH, "height": 900,
                                                        "deviceScaleFactor": 1,
                                                        "mobile": False}, session)
    browser.send("Page.navigate", {"url": url}, session)
    browser.wait_for("Page.loadEventFired", session)
    images = browser.send("Runtime.evaluate", {"expression": IMAGES_JS, "awaitPromise": True,
                                               "returnByValue": True}, session)["result"]["value"]
    links = browser.send("Runtime.evaluate", {
        "expression": "Array.from(document.links).map(a => a.href)",
        "returnByValue": True}, session)["result"]["value"]
    title = browser.send("Runtime.evaluate", {"expression": "document.title",
                                              "returnByValue": True}, session)["result"]["value"]
    text = browser.send("Runtime.evaluate", {"expression": "document.body.innerText",
                                             "returnByValue": True}, session)["result"]["value"]
    size = browser.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
    shot = browser.send("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": WIDTH, "height": min(size["height"], 16000),
                 "scale": 1}}, session)
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    browser.send("Target.closeTarget", {"targetId": target})
    return {"errors": page_errors(browser.events, session), "images": images, "links": links,
            "title": title, "text": text, "height": size["height"]}


def page_errors(events: list[dict], session: str) -> list[str]:
    """Console errors, uncaught exceptions and browser log errors of one tab."""
    out = []
    for e in events:
        if e.get("sessionId") != session:
            continue
        p = e.get("params", {})
        if e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error",
                                                                                "assert"):
            out.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                               for a in p.get("args", [])))
        elif e.get("method") == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append("exception: " + str(d.get("exception", {}).get("description",
                                                                      d.get("text"))))
        elif e.get("method") == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
    return out


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; ValueError if ``data`` is not a PNG."""
    if not data.startswith(PNG_MAGIC) or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return struct.unpack(">II", data[16:24])


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A two-case report from the reference backend alone, through the public API (about
    15 s: the prior-sensitivity refits and the Bayes factors are computed, nothing cached)."""
    from comparisons import api

    out = tmp_path_factory.mktemp("report")
    api.report(out, cases=["three-point", "eight-schools"], backends=("reference",), draws=500,
               tune=500, chains=2, seed=SEED, cache=False)
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = DevTools(tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def pages(report, browser, tmp_path_factory):
    shots = tmp_path_factory.mktemp("screenshots")
    return {page: {**load_page(browser, (report / page).as_uri(),
                               shots / (page.replace("/", "_") + ".png")),
                   "screenshot": shots / (page.replace("/", "_") + ".png")}
            for page in PAGES}


# ---------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("page", PAGES)
def test_page_loads_without_console_errors(pages, page):
    assert pages[page]["errors"] == []


@pytest.mark.parametrize("page", list(EXPECTED))
def test_every_plot_is_there_and_decodes_in_the_browser_and_in_python(report, pages, page):
    images = pages[page]["images"]
    assert {i["alt"] for i in images} == EXPECTED[page]
    for img in images:
        assert img["ok"] and img["w"] > 100 and img["h"] > 50, img
    html = (report / page).read_text()
    uris = re.findall(r'<img[^>]*src="data:image/png;base64,([^"]+)"', html)
    assert len(uris) == len(images)
    for data in uris:
        w, h = png_size(base64.b64decode(data))
        assert w > 100 and h > 50
    assert not FAILED.search(html)  # no figure fell over
    assert "<h2>The model, three ways</h2>" in html and "Equivalence of the three models" in html


def test_index_links_lead_to_existing_case_pages_and_shows_bayes_factors(report, pages):
    from urllib.parse import unquote, urlparse

    links = [unquote(urlparse(u).path) for u in pages["index.html"]["links"]]
    cases = [p for p in links if p.endswith("/report.html")]
    assert {Path(p).parent.name for p in cases} == {"three-point", "eight-schools"}
    assert all(Path(p).exists() for p in cases)
    assert pages["eight-schools/report.html"]["title"] == "eight-schools"
    assert "Bayes factors" in pages["index.html"]["text"]


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_to_a_full_page_png_that_is_not_blank(pages, page):
    import matplotlib.image

    shot = pages[page]["screenshot"].read_bytes()
    w, h = png_size(shot)
    assert w == WIDTH and h == min(int(np.ceil(pages[page]["height"])), 16000)
    pixels = matplotlib.image.imread(io.BytesIO(shot))[..., :3]
    assert pixels.std() > 0.05                              # text and plots, not one colour
    assert (pixels.mean(axis=2) < 0.5).mean() > 0.002      # some dark ink (text, lines)
    if page != "index.html":
        assert h > 3000                                     # a long page: every section drew


def test_a_figure_that_raises_is_reported_and_caught():
    """The "no figure fell over" check can fail: a plot that raises leaves its note on the
    page (not a lost report), and the pattern finds it."""
    from comparisons.report import _figure

    def broken():
        raise RuntimeError("deliberate")

    note = _figure(broken, "z-scores")
    assert FAILED.search(note) and "deliberate" in note


def test_console_errors_and_broken_images_are_caught(browser, tmp_path):
    """The checks above can fail: a page with a console error, an exception, and a broken
    image yields all three complaints."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><p>broken</p>"
                   "<img alt='broken' src='data:image/png;base64,iVBORw0KGgoAAAA='>"
                   "<script>console.error('deliberate'); undefined_function();</script>"
                   "</body></html>")
    got = load_page(browser, bad.as_uri(), tmp_path / "bad.png")
    assert any("deliberate" in e for e in got["errors"]), got["errors"]
    assert any("undefined_function" in e for e in got["errors"]), got["errors"]
    (img,) = got["images"]
    assert not img["ok"]
    with pytest.raises(ValueError, match="not a PNG"):
        png_size(base64.b64decode("iVBORw0KGgoAAAA="))
