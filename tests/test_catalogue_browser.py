"""The catalogue in a real browser: headless Chromium (Debian's ``chromium``) loads the pages
from ``file://``, and the DOM it dumps after the load event says whether every image loaded and
which rows the ``#filter=`` fragment left visible. A screenshot of each page is kept as an
artifact in ``$CATALOGUE_ARTIFACTS`` (or the test's temporary directory, printed).

Without a browser the tests skip, unless ``CI=true`` or ``CRAWLER_REQUIRE_BROWSER=1``: then they
fail and say how to install one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler.cli import main
from tests.test_catalogue_build import CONNECTIVITY, ISH, make_mirror

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
TIMEOUT = 60


def browser() -> str:
    """The browser's executable, or skip (fail where a browser is required)."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    required = os.environ.get("CI") == "true" or os.environ.get("CRAWLER_REQUIRE_BROWSER") == "1"
    message = (
        "no headless browser found (looked for chromium, chromium-browser, google-chrome): "
        "install Debian's chromium (apt-get install -y chromium)"
    )
    if required:
        pytest.fail(message + "; CI=true or CRAWLER_REQUIRE_BROWSER=1 requires it")
    pytest.skip(message)


def chromium(*args: str, home: Path) -> str:
    """Run headless Chromium once and return its stdout."""
    command = [browser(), "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars"]
    command += ["--no-first-run", f"--user-data-dir={home / 'profile'}", *args]
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env={**os.environ, "HOME": str(home)},
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout


def dump(url: str, home: Path) -> str:
    """The DOM after load, in a window tall enough that every lazy image is in view."""
    return chromium("--window-size=1400,12000", "--dump-dom", url, home=home)


def body_attribute(dom: str, name: str) -> int:
    match = re.search(rf'<body[^>]*\s{name}="(\d+)"', dom)
    assert match, f"no {name} on <body>: did the page's script run?"
    return int(match.group(1))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    browser()  # skip (or fail) before building anything
    out = tmp_path_factory.mktemp("browser") / "m"
    make_mirror(out)
    assert main(["catalogue", "--out", str(out)]) == 0
    yield out / "catalogue"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("CATALOGUE_ARTIFACTS")
    path = Path(where) if where else tmp_path_factory.mktemp("catalogue-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    print(f"catalogue screenshots in {path}")
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    "page", ["index.html", f"{CONNECTIVITY}.html", "atlas_1.html", "history.html"]
)
def test_every_image_loads(site: Path, page: str, tmp_path: Path) -> None:
    dom = dump((site / page).as_uri(), tmp_path)
    images = len(re.findall(r"<img\s", dom))
    assert body_attribute(dom, "data-images-broken") == 0
    assert body_attribute(dom, "data-images-loaded") == images
    if page != "history.html":
        assert images > 0
    else:
        assert dom.count("<svg") >= 4


@pytest.mark.slow
def test_a_missing_thumbnail_is_reported_broken(site: Path, tmp_path: Path) -> None:
    """The check above can fail: a page whose thumbnail is gone counts it as broken."""
    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    page = (copy / f"{ISH}.html").read_text()
    first = re.search(r'<img src="(thumbs/[^"]+)"', page)
    assert first
    (copy / first.group(1)).unlink()
    dom = dump((copy / f"{ISH}.html").as_uri(), tmp_path)
    assert body_attribute(dom, "data-images-broken") == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fragment", "shown"),
    [
        ("", {str(CONNECTIVITY), str(ISH), "atlas_1"}),
        ("#filter=coronal", {str(CONNECTIVITY)}),
        ("#filter=connectivity%20mop", {str(CONNECTIVITY)}),
        ("?filter=sagittal", {str(ISH)}),
        ("#filter=nothing-matches-this", set()),
    ],
)
def test_the_filter_in_the_url_shows_only_matching_rows(
    site: Path, fragment: str, shown: set[str], tmp_path: Path
) -> None:
    dom = dump((site / "index.html").as_uri() + fragment, tmp_path)
    rows = re.findall(r"<tr data-text=[^>]*?(hidden=\"\")?>.*?<a href=\"([^\"]+)\.html\"", dom)
    assert len(rows) == 3
    assert {name for hidden, name in rows if not hidden} == shown
    assert body_attribute(dom, "data-shown") == len(shown)


@pytest.mark.slow
def test_screenshots_are_kept(site: Path, artifacts: Path, tmp_path: Path) -> None:
    for page in ("index.html", f"{CONNECTIVITY}.html", "history.html"):
        target = artifacts / page.replace(".html", ".png")
        target.unlink(missing_ok=True)
        chromium(
            f"--screenshot={target}",
            "--window-size=1280,900",
            (site / page).as_uri(),
            home=tmp_path,
        )
        assert target.stat().st_size > 10_000, "a blank page is a few kB"
