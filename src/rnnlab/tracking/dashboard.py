"""The MLflow dashboard as a person sees it: start `mlflow server` on 127.0.0.1 with the project's
backend, open an experiment's runs page in headless Chromium (Debian's `chromium` and
`chromedriver`, installed by `make browser`), expand a sweep's parent run and read or photograph
the page.

    python -m rnnlab.tracking.dashboard --experiment-name rnnlab-<family>-<dataset> \\
        --expand "sweep 10-12-00" --screenshot docs/dashboard.png
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from rnnlab.errors import RnnlabError

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Without these Chromium keeps trying to reach Google's services, which a closed network refuses.
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage")


def browser_missing() -> str | None:
    """None when Chromium and ChromeDriver are installed, else what to do about it."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        return f"{' and '.join(missing)} not found; install them with `make browser` (Debian packages " \
               "chromium and chromium-driver)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(backend_uri: str, artifact_root: str | None = None, port: int | None = None,
                  timeout: float = 90.0) -> Iterator[str]:
    """`mlflow server` on 127.0.0.1 (a free port by default) until the block ends; yields its base URL."""
    port = port or free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow) if mlflow.exists() else "mlflow", "server", "--backend-store-uri", backend_uri,
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    if artifact_root:
        cmd += ["--default-artifact-root", artifact_root]
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RnnlabError(f"mlflow server exited with code {proc.returncode}:\n"
                                  f"{log.read().decode(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RnnlabError(f"mlflow server did not answer on {url}/health within {timeout:.0f} s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _wait_for(driver, texts: list[str], timeout: float) -> str:
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    body = ""
    while time.monotonic() < deadline:
        body = driver.find_element(By.TAG_NAME, "body").text
        if all(t in body for t in texts):
            return body
        time.sleep(0.5)
    missing = [t for t in texts if t not in body]
    raise RnnlabError(f"the dashboard page never showed {missing} within {timeout:.0f} s")


@contextlib.contextmanager
def chromium(size: tuple[int, int] = (1500, 900)):
    """A headless Chromium (Selenium) with a throw-away profile; quit and removed on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    problem = browser_missing()
    if problem:
        raise RnnlabError(problem)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="rnnlab-chromium-")
    for flag in (*CHROMIUM_FLAGS, f"--window-size={size[0]},{size[1]}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def runs_page(base_url: str, experiment_id: str, expand: list[str], expect: list[str],
              screenshot: Path | None = None, timeout: float = 60.0, size: tuple[int, int] = (1500, 900),
              charts: bool = False) -> str:
    """Open the experiment's runs table (`charts`: its chart view, one chart per metric over the visible
    runs), close the assistant side panel, click the expander of each parent run named in `expand`, wait
    until every text in `expect` is on the page; optionally save a screenshot. Returns the visible text."""
    from selenium.webdriver.common.by import By

    with chromium(size) as driver:
        driver.get(f"{base_url}/#/experiments/{experiment_id}/runs" + ("?compareRunsMode=CHART" if charts else ""))
        _wait_for(driver, expand or expect, timeout)
        for button in driver.find_elements(By.XPATH, "//button[@aria-label='Close']"):
            button.click()  # the "MLflow Assistant" panel: room for the runs
        for name in expand:
            # the expander sits in the same run-name cell as the parent's link
            link = driver.find_element(By.XPATH, f"//a[normalize-space()='{name}']")
            cell = link.find_element(By.XPATH, "./ancestor::*[@role='gridcell' or contains(@class,'ag-cell')][1]")
            cell.find_element(By.CSS_SELECTOR, 'button[data-component-id*="runnamecellrenderer"]').click()
        body = _wait_for(driver, expect, timeout)
        if screenshot:
            time.sleep(3 if charts else 1)  # let charts finish drawing
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(screenshot))
        return body


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment-name", required=True)
    parser.add_argument("--tracking-uri", default="sqlite:///mlruns.db")
    parser.add_argument("--expand", action="append", default=[], help="parent run name to expand (repeatable)")
    parser.add_argument("--expect", action="append", default=[], help="text that must appear (repeatable)")
    parser.add_argument("--screenshot", type=Path)
    parser.add_argument("--charts", action="store_true", help="the chart view (one chart per metric)")
    parser.add_argument("--size", default="1500x900", help="window size WIDTHxHEIGHT")
    args = parser.parse_args(argv)
    from mlflow.tracking import MlflowClient

    try:
        experiment = MlflowClient(tracking_uri=args.tracking_uri).get_experiment_by_name(args.experiment_name)
        if experiment is None:
            raise RnnlabError(f"no MLflow experiment named {args.experiment_name!r} at {args.tracking_uri}")
        with mlflow_server(args.tracking_uri) as url:
            width, height = (int(x) for x in args.size.lower().split("x"))
            runs_page(url, experiment.experiment_id, args.expand, args.expect or args.expand, args.screenshot,
                      size=(width, height), charts=args.charts)
    except RnnlabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"dashboard: {args.experiment_name} rendered" + (f"; screenshot {args.screenshot}" if args.screenshot else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
