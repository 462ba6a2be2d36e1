"""The drawing page in a real browser: Debian's Chromium driven by Selenium through
/usr/bin/chromedriver (never a downloaded driver). It opens the page, draws a character with
pointer events, and checks that the top 5 and the 28x28 preview appear and that the browser's
console has no errors (and, for networks other than the LeNet, that it shows them as they are); it saves a screenshot (to the test's tmp folder, and also to the path in
the environment variable TINYNET_SCREENSHOT when set: that is how docs/serve.png is made,
``TINYNET_SCREENSHOT=docs/serve.png python3 -m pytest tests/test_browser.py``).

Skipped with the reason where Chromium, chromedriver or Selenium is missing; ``.ci/run``
installs them.
"""

import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from tinynet.files.checkpoint import load_checkpoint
from tinynet.nn.model import build_model
from tinynet.predict.predictor import BUNDLED_MODEL
from tinynet.web.draw import make_server

CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM = shutil.which("chromium")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1500")


def browser(tmp_path):
    """A headless Chromium (Selenium WebDriver) with a fresh profile; skips when unavailable."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="Selenium is not installed "
                                    "(pip install selenium; in the [test] extra)")
    if CHROMIUM is None or not CHROMEDRIVER.is_file():
        pytest.skip("Chromium or /usr/bin/chromedriver not found (apt-get install chromium "
                    "chromium-driver; .ci/run does this)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + (f"--user-data-dir={tmp_path / 'profile'}",):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(str(CHROMEDRIVER)))


@pytest.fixture
def page_url():
    model, meta, _, _ = load_checkpoint(BUNDLED_MODEL)
    server = make_server(model, meta["classes"], BUNDLED_MODEL, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.url
    server.shutdown()
    server.server_close()


def stroke(driver, pad, points):
    """One stroke through ``points`` (in the 280x280 pad's own pixels) with pointer events: press,
    moves, release (Selenium's W3C actions, which Chromium delivers as pointer events)."""
    from selenium.webdriver.common.action_chains import ActionChains
    size = pad.size["width"] / 280
    centre = [v / 2 for v in (pad.size["width"], pad.size["height"])]
    at = [(x * size - centre[0], y * size - centre[1]) for x, y in points]
    actions = ActionChains(driver, duration=20).move_to_element_with_offset(pad, *map(int, at[0]))
    actions.click_and_hold()
    for (x0, y0), (x1, y1) in zip(at, at[1:]):
        for t in (0.25, 0.5, 0.75, 1.0):  # several moves per segment, as a hand makes them
            actions.move_to_element_with_offset(pad, int(x0 + (x1 - x0) * t), int(y0 + (y1 - y0) * t))
    actions.release().perform()


def test_draw_a_character_and_see_what_the_network_sees(tmp_path, page_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser(tmp_path)
    try:
        driver.get(page_url)
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#filters canvas")) == 20)
        pad = driver.find_element(By.ID, "pad")
        stroke(driver, pad, [(90, 50), (90, 230)])  # a T: its stem, then its bar
        stroke(driver, pad, [(40, 50), (140, 50)])
        rows = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#top5 li") or None)
        assert len(rows) == 5
        chars = [r.find_element(By.CLASS_NAME, "char").text for r in rows]
        assert all(len(c) == 1 for c in chars)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, '.maps[data-conv="conv2"] canvas')) == 50)
        # the 28x28 preview holds the preprocessed drawing: light ink somewhere on black
        ink = driver.execute_script(
            "const c = document.getElementById('input');"
            "const d = c.getContext('2d').getImageData(0, 0, 28, 28).data;"
            "let lit = 0; for (let i = 0; i < d.length; i += 4) lit += d[i] > 128;"
            "return [c.width, c.height, lit, d[0]];")
        assert ink[:2] == [28, 28] and 20 < ink[2] < 600 and ink[3] == 0
        assert "reads" in driver.find_element(By.ID, "status").text
        driver.save_screenshot(str(tmp_path / "serve.png"))
        if os.environ.get("TINYNET_SCREENSHOT"):
            driver.save_screenshot(os.environ["TINYNET_SCREENSHOT"])
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
    finally:
        driver.quit()
    assert (tmp_path / "serve.png").stat().st_size > 10_000


STRIDED_20x24 = {"input": [1, 20, 24], "layers": [
    {"kind": "Conv2D", "name": "conv1", "out_channels": 8, "kernel_size": 3, "stride": 2, "padding": 1},
    {"kind": "ReLU", "name": "relu1"},
    {"kind": "Conv2D", "name": "conv2", "out_channels": 12, "kernel_size": 3, "stride": 2, "padding": 1},
    {"kind": "ReLU", "name": "relu2"}, {"kind": "Flatten", "name": "flatten"},
    {"kind": "Dense", "name": "fc", "out_features": 47}]}


@pytest.mark.parametrize("architecture, cards", [({"name": "mlp", "num_classes": 47}, 0), (STRIDED_20x24, 2)],
                         ids=["mlp", "strided-20x24"])
def test_the_page_shows_any_network(tmp_path, architecture, cards):
    """For a network without a convolution the page says so where the filters and maps would be;
    for one with two strided convolutions on 20x24 images it shows a card for each (the second's
    filters as one picture of filters by input channels), and draws its 20x24 input."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    model = build_model(architecture, np.random.default_rng(0))
    classes = load_checkpoint(BUNDLED_MODEL)[1]["classes"]
    server = make_server(model, classes, tmp_path / "net.npz", port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    driver = browser(tmp_path)
    try:
        driver.get(server.url)
        wait = WebDriverWait(driver, 30)
        rows = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#network tr") or None)
        assert len(rows) == len(model.layers) + 2  # a header, the layers, the total
        assert len(driver.find_elements(By.CSS_SELECTOR, "#inside .conv")) == cards
        assert bool(driver.find_elements(By.ID, "no-convolution")) == (cards == 0)
        stroke(driver, driver.find_element(By.ID, "pad"), [(90, 50), (90, 230)])
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#top5 li") or None)
        size = driver.execute_script("const c = document.getElementById('input'); return [c.width, c.height];")
        assert size == architecture.get("input", [1, 28, 28])[:0:-1]
        if cards:
            assert len(driver.find_elements(By.CSS_SELECTOR, "#filters canvas")) == 8
            assert len(driver.find_elements(By.CSS_SELECTOR, ".filters.slices canvas")) == 1
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, '.maps[data-conv="conv2"] canvas')) == 12)
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
    finally:
        driver.quit()
        server.shutdown()
        server.server_close()
