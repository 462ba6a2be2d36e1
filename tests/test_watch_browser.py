"""The training page in a real browser (Debian's Chromium through /usr/bin/chromedriver, as
tests/test_browser.py): ``train.py --dataset sample --watch`` (the real sample that ships with
tinynet: no folder, no download), the page opened while it trains; the loss curve gains points,
conv1's filters and the grid of predictions appear, the browser's console has no errors; then
Ctrl-C stops the run (status ``stopped``). And
``tinynet watch``'s page comparing two finished runs.

The screenshot is saved to the test's tmp folder, and also to the path in the environment
variable TINYNET_SCREENSHOT when set: that is how docs/img/watch.png is made
(``TINYNET_SCREENSHOT=docs/img/watch.png python3 -m pytest tests/test_watch_browser.py``; then the
test waits for 12 epochs, for a page worth looking at). Skipped with the reason where Chromium,
chromedriver or Selenium is missing.
"""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from test_browser import browser

ROOT = Path(__file__).resolve().parents[1]


def test_watch_a_run_learn_in_chromium(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser(tmp_path)
    screenshot = os.environ.get("TINYNET_SCREENSHOT")
    process = subprocess.Popen(
        [sys.executable, "train.py", "--dataset", "sample",
         "--recipe", "strong", "--epochs", "30", "--batch-size", "32", "--runs-dir", str(tmp_path / "runs"),
         "--name", "sample-strong", "--watch", "--watch-port", "0", "--no-progress"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        url = re.fullmatch(r"watch this run at (http://127\.0\.0\.1:\d+/)\n", process.stdout.readline())[1]
        driver.get(url)
        wait = WebDriverWait(driver, 120, poll_frequency=0.2)

        def points(d):
            return int(d.find_element(By.ID, "loss-chart").get_attribute("data-points") or 0)
        first = wait.until(lambda d: points(d) or None)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#filters canvas")) == 20)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#grid figure")) == 48)
        wait.until(lambda d: points(d) > first)  # the curve gains points while the run goes on
        wait.until(lambda d: not d.find_element(By.ID, "snapshot-at").text.startswith("at step 0 "))
        assert process.poll() is None, "the run ended before the page saw it grow"
        assert driver.find_element(By.CSS_SELECTOR, "#runs tr.focus").get_attribute("data-run") == "sample-strong"
        assert "running" in driver.find_element(By.ID, "run-status").text
        if screenshot:  # a page worth showing: a dozen epochs in, validation points on the curves
            driver.set_window_size(1400, 2100)
            WebDriverWait(driver, 600, poll_frequency=0.5).until(
                lambda d: re.match(r"(1[2-9]|2\d)/30", d.find_element(By.ID, "stats").text.split("epoch ")[1]))
        driver.save_screenshot(str(tmp_path / "watch.png"))
        if screenshot:
            driver.save_screenshot(screenshot)
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
        process.send_signal(signal.SIGINT)  # Ctrl-C: the run stops, saved, status "stopped"
        assert process.wait(120) == 130
        status = json.loads((tmp_path / "runs" / "sample-strong" / "status.json").read_text())
        assert status["status"] == "stopped"
    finally:
        driver.quit()
        process.kill()
        process.wait()
    assert (tmp_path / "watch.png").stat().st_size > 10_000


def test_compare_two_finished_runs_in_chromium(tmp_path):
    """``tinynet watch``'s page over two finished runs (one trained without the recorder): tick
    the second, its curves join the legend and the configurations show the differing lr marked."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tinynet.training.runlog import Recorder
    from tinynet import TrainConfig, train
    from tinynet.web.watch import make_server, serve_in_background
    from tinynet.testing.datasets import write_toy_dataset

    driver = browser(tmp_path)
    data = write_toy_dataset(tmp_path / "data", n_train=200, n_test=40)
    quiet = dict(download=False, progress=False, log=lambda *a: None)
    for name, lr, callbacks in (("a-lr0.01", 0.01, [Recorder(every=2)]), ("b-lr0.05", 0.05, [])):
        train(TrainConfig(data_dir=str(data), dataset="tiny", epochs=2, batch_size=16, lr=lr),
              tmp_path / "runs" / name, callbacks=callbacks, **quiet)
    server = make_server(tmp_path / "runs", port=0)
    serve_in_background(server)
    try:
        driver.get(server.url + "?run=a-lr0.01")
        wait = WebDriverWait(driver, 60, poll_frequency=0.2)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#runs tbody tr")) == 2)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#filters canvas")) == 20)
        assert "finished" in driver.find_element(By.ID, "run-status").text
        driver.find_element(By.CSS_SELECTOR, '#runs tr[data-run="b-lr0.05"] input').click()
        wait.until(lambda d: "b-lr0.05: validation" in d.find_element(By.ID, "legend").text)
        differing = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "#config td.differs")]
        assert differing == ["0.01", "0.05"]
        # the run trained without --watch: curves per epoch, and the page says why no snapshot
        driver.find_element(By.CSS_SELECTOR, '#runs tr[data-run="b-lr0.05"] button').click()
        wait.until(lambda d: "without --watch" in d.find_element(By.ID, "snapshot-at").text)
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
    finally:
        driver.quit()
        server.shutdown()
        server.server_close()
