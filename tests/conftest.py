"""Shared fixtures. Browser fixtures: a JupyterLab server and headless Debian chromium driven by playwright.

Browser tests are never skipped in CI: when CI=true and chromium or playwright is missing they fail. Outside
CI they are skipped with the reason, so a laptop without chromium can still run the rest.
"""
import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; never `playwright install` (downloads fail here)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NOTEBOOKS = Path(__file__).parent / "notebooks"


def _missing(reason: str):
    """Fail in CI (a browser test must never silently not run there), skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: browser tests must run)")
    pytest.skip(reason)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def browser():
    """Headless chromium for the whole session (starting it costs about a second)."""
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} not found: apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
    yield browser
    browser.close()
    playwright.stop()


@pytest.fixture(scope="session")
def lab(tmp_path_factory, browser):
    """A JupyterLab server on a free 127.0.0.1 port serving an empty temporary folder."""
    from gfpgan_debug.lab import start_lab

    root = tmp_path_factory.mktemp("lab-root")
    server = start_lab(root, state_dir=tmp_path_factory.mktemp("lab-state"))
    yield server
    server.stop()


@pytest.fixture
def page(browser, lab, request, tmp_path):
    """A fresh browser context and page; on failure a full-page screenshot, the page's console and the
    server's log are saved in the test's tmp_path (its path is printed in the report)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    console = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        try:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        except Exception as error:  # a crashed page cannot be photographed; keep the rest
            console.append(f"(screenshot failed: {error})")
        (tmp_path / "console.txt").write_text("\n".join(console))
        (tmp_path / "jupyterlab.log").write_text(lab.log())
        print(f"browser failure artefacts saved in {tmp_path}")
    context.close()


@pytest.fixture
def fresh_notebook(lab):
    """Copy a notebook from tests/notebooks into the lab root under a new name; returns that name.
    A fresh copy per run: JupyterLab never sees a notebook it has opened (and saved) before."""
    from uuid import uuid4

    def copy(name: str) -> str:
        target = f"{Path(name).stem}-{uuid4().hex[:8]}.ipynb"
        shutil.copy(NOTEBOOKS / name, lab.root / target)
        return target

    return copy
