"""Drive the explorer page in headless Chromium, as a user would: type a sentence in each family's tab,
press its button, wait for the answer and read what the page drew (each tab's own `exercise`); an empty
input; the side-by-side tab. The browser test and the screenshot script use it. Needs Debian's chromium and
chromedriver (`make browser`)."""

from __future__ import annotations

import time
from pathlib import Path

from rnnlab.errors import RnnlabError


class Page:
    """The open page, with the few moves a tab's `exercise` needs."""

    def __init__(self, driver, timeout: float, screenshots: Path | None):
        self.driver, self.timeout, self.screenshots = driver, timeout, screenshots

    def find(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def wait(self, css: str, what: str, count: int = 1) -> list:
        from selenium.webdriver.common.by import By

        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            found = [e for e in self.driver.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()]
            if len(found) >= count:
                return found
            time.sleep(0.2)
        raise RnnlabError(f"the explorer page never showed {what} ({css}) within {self.timeout:.0f} s")

    def until(self, read, what: str):
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            value = read()
            if value:
                return value
            time.sleep(0.2)
        raise RnnlabError(f"the explorer page never showed {what} within {self.timeout:.0f} s")

    def type_and_run(self, prefix: str, text: str) -> None:
        """Type into the `<prefix>-input` box and press the `<prefix>-run` button."""
        box = self.find(f"#{prefix}-input textarea, #{prefix}-input input")
        box.clear()
        box.send_keys(text)
        self.find(f"#{prefix}-run").click()

    def value(self, css: str) -> str:
        return self.find(f"{css} textarea, {css} input").get_attribute("value")

    def open_tab(self, key: str) -> None:
        self.wait(f"#tab-{key}-button", f"the {key} tab button")[0].click()
        time.sleep(0.5)

    def shot(self, name: str) -> Path | None:
        if self.screenshots is None:
            return None
        self.screenshots.mkdir(parents=True, exist_ok=True)
        time.sleep(0.5)
        self.driver.save_screenshot(str(self.screenshots / name))
        return self.screenshots / name


def check_page(url: str, families: list[str], texts: dict[str, str] | None = None, bad_text: str = "   ",
               side_family: str | None = None, screenshots: Path | None = None, timeout: float = 60.0,
               size: tuple[int, int] = (1300, 1400)) -> dict:
    """Use each family's tab once (its example input unless `texts` gives one), send `bad_text` to the first,
    then run `side_family` (default: the last) side by side. Returns {family: what its tab showed,
    "bad_input": the message, "side_by_side": {...}, "screenshots": [...]}."""
    from selenium.webdriver.common.by import By

    from rnnlab.explorer.tab import tab_for
    from rnnlab.tracking.dashboard import chromium

    tabs = {family: tab_for(family) for family in families}
    texts = texts or {}
    facts: dict = {"screenshots": []}
    with chromium(size) as driver:
        page = Page(driver, timeout, screenshots)
        driver.get(url)
        page.wait(f"#tab-{families[0]}-button", "the page")
        for family, tab in tabs.items():
            page.open_tab(family)
            facts[family] = tab.exercise(page, texts.get(family, tab.example))
            facts["screenshots"].append(page.shot(f"explorer-{family}.png"))
        first = tabs[families[0]]
        page.open_tab(families[0])
        page.type_and_run(first.prefix, bad_text)  # a message in the page; the server answers on
        facts["bad_input"] = page.wait(f"#{first.prefix}-status .rnnlab-error", "the error message")[0].text
        side = tabs[side_family or families[-1]]
        page.open_tab("side")
        driver.find_element(By.XPATH, f"//*[@id='side-family']//label[normalize-space()='{side.title}']").click()
        time.sleep(1.0)
        page.type_and_run("side", texts.get(side.family, side.example))
        outs = page.wait("#side-out-a h4, #side-out-b h4", "both models' answers", count=2)
        facts["side_by_side"] = {"models": [o.text for o in outs],
                                 "heatmaps": len(driver.find_elements(By.CSS_SELECTOR, "#side-plot-a img, #side-plot-b img"))}
        facts["screenshots"].append(page.shot("explorer-side-by-side.png"))
    return facts
