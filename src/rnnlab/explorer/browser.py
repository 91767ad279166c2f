"""Drive the explorer page in headless Chromium, as a user would: type a sentence in each tab, press the
button, wait for the answer and read what the page drew. The browser test and the screenshot script use it.
Needs Debian's chromium and chromedriver (`make browser`)."""

from __future__ import annotations

import time
from pathlib import Path

from rnnlab.errors import RnnlabError


def _wait(driver, css: str, timeout: float, what: str, count: int = 1):
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in driver.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()]
        if len(found) >= count:
            return found
        time.sleep(0.2)
    raise RnnlabError(f"the explorer page never showed {what} ({css}) within {timeout:.0f} s")


def _until(read, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = read()
        if value:
            return value
        time.sleep(0.2)
    raise RnnlabError(f"the explorer page never showed {what} within {timeout:.0f} s")


def _type_and_run(driver, prefix: str, text: str) -> None:
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.CSS_SELECTOR, f"#{prefix}-input textarea, #{prefix}-input input")
    box.clear()
    box.send_keys(text)
    driver.find_element(By.CSS_SELECTOR, f"#{prefix}-run").click()


def _open_tab(driver, family: str, timeout: float) -> None:
    from selenium.webdriver.common.by import By

    _wait(driver, f"#tab-{family}-button", timeout, f"the {family} tab button")
    driver.find_element(By.CSS_SELECTOR, f"#tab-{family}-button").click()
    time.sleep(0.5)


def _shot(driver, folder: Path | None, name: str) -> Path | None:
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    time.sleep(0.5)
    driver.save_screenshot(str(folder / name))
    return folder / name


def check_page(url: str, classify_text: str, translate_text: str, bad_text: str = "   ",
               screenshots: Path | None = None, timeout: float = 60.0,
               size: tuple[int, int] = (1300, 1400)) -> dict:
    """Use every tab once and return what the page showed: {"classify": {...}, "translate": {...},
    "bad_input": message, "side_by_side": [...], "screenshots": [...]}."""
    from selenium.webdriver.common.by import By

    from rnnlab.tracking.dashboard import chromium

    facts: dict = {"screenshots": []}
    with chromium(size) as driver:
        driver.get(url)
        _wait(driver, "#classify-run, #tab-classify", timeout, "the page")
        # classification: the label's probabilities and the shaded words
        _open_tab(driver, "classify", timeout)
        _type_and_run(driver, "classify", classify_text)
        words = _wait(driver, "#classify-shading span.rnnlab-word", timeout, "the shaded words")
        facts["classify"] = {
            "label": driver.find_element(By.CSS_SELECTOR, "#classify-label").text,
            "words": [(w.text, float(w.get_attribute("data-weight"))) for w in words],
        }
        facts["screenshots"].append(_shot(driver, screenshots, "explorer-classify.png"))
        # a bad input: a message in the page, the server still answers afterwards
        _type_and_run(driver, "classify", bad_text)
        facts["bad_input"] = _wait(driver, "#classify-status .rnnlab-error", timeout, "the error message")[0].text
        # translation: outputs, the n-best table and the heatmap of the chosen output
        _open_tab(driver, "seq2seq", timeout)
        _type_and_run(driver, "translate", translate_text)
        heatmap = _wait(driver, "#translate-heatmap img", timeout, "the attention heatmap")[0]
        greedy = driver.find_element(By.CSS_SELECTOR, "#translate-greedy textarea, #translate-greedy input")
        _until(lambda: greedy.get_attribute("value"), timeout, "the greedy output")
        facts["translate"] = {
            "greedy": greedy.get_attribute("value"),
            "n_best": driver.find_element(By.CSS_SELECTOR, "#translate-nbest-table").text,
            "heatmap_size": heatmap.size,
            "marked": driver.find_element(By.CSS_SELECTOR, "#translate-marked").text,
        }
        facts["screenshots"].append(_shot(driver, screenshots, "explorer-translate.png"))
        # side by side: the same English sentence through two translation models, attention drawn for both
        _open_tab(driver, "side", timeout)
        driver.find_element(By.XPATH, "//*[@id='side-family']//label[normalize-space()='Translation']").click()
        time.sleep(1.0)
        _type_and_run(driver, "side", translate_text)
        outs = _wait(driver, "#side-out-a h4, #side-out-b h4", timeout, "both models' answers", count=2)
        facts["side_by_side"] = {"models": [o.text for o in outs],
                                 "heatmaps": len(driver.find_elements(By.CSS_SELECTOR, "#side-plot-a img, #side-plot-b img"))}
        facts["screenshots"].append(_shot(driver, screenshots, "explorer-side-by-side.png"))
        return facts
