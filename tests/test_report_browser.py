"""The report in a real browser: headless Chromium renders the index and a case page.

Checks: the pages load without console errors, every plot is an image that decodes, and both
pages render to PNG screenshots. Skipped, with the reason, where Chromium is not installed
(``make test`` installs Debian's chromium where it can).
"""

import base64
import io
import re
import shutil
import subprocess

import pytest

from comparisons import api

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed "
                                "(Debian packages chromium and chromium-driver)")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    api.report(out, cases=["three-point", "eight-schools"], backends=("reference",),
               cache=False)
    return out


def _chromium(tmp_path, *args, timeout=90):
    profile = tmp_path / "profile"
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("page", ["index.html", "eight-schools/report.html"])
def test_page_renders_without_console_errors(report, tmp_path, page):
    url = (report / page).as_uri()
    shot = tmp_path / "shot.png"
    run = _chromium(tmp_path, "--window-size=1200,2400", f"--screenshot={shot}", url)
    assert shot.exists() and shot.stat().st_size > 10_000, run.stderr[-2000:]
    console = [ln for ln in run.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1200, 2400)
        # not a blank page: the screenshot has real content
        assert len(set(im.convert("L").resize((60, 120)).getdata())) > 10


def test_every_plot_is_a_decodable_image(report, tmp_path):
    from PIL import Image

    run = _chromium(tmp_path, "--dump-dom", (report / "eight-schools" / "report.html").as_uri())
    dom = run.stdout
    assert "<h1>eight-schools" in dom
    images = re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]+)"', dom)
    titles = {alt for alt, _ in images}
    assert len(images) >= 8, titles
    assert {"densities", "z-scores"} <= titles
    assert any("shrinkage" in t for t in titles) and any("ppc" in t for t in titles)
    for alt, data in images:
        with Image.open(io.BytesIO(base64.b64decode(data))) as im:
            assert im.width > 100 and im.height > 50, alt
    # no figure fell over (a figure failure is written as "<p><em>NAME failed: ...")
    assert not re.search(r"<em>\w+ failed:", dom)


def test_index_links_every_case(report, tmp_path):
    run = _chromium(tmp_path, "--dump-dom", (report / "index.html").as_uri())
    for case in ("three-point", "eight-schools"):
        assert f'href="{case}/report.html"' in run.stdout
    assert "Bayes factors" in run.stdout
