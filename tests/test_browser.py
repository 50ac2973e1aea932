"""The report and the explorer in a real browser: Debian's headless Chromium driven by Selenium.

The explorer test moves a slider, clicks the latent plane and presses "sample", and each time
checks that the image on the page changed and equals, pixel for pixel, E[x|z] decoded by the
model in Python for the z the page sent. The report test opens the HTML file offline and checks
that every figure is embedded and shows.

Screenshots for the README: `AEVB_SCREENSHOTS=docs/figures python -m pytest tests/test_browser.py`
writes report.png and explorer.png there, from these same pages.
Locally, a missing Chromium / chromedriver / selenium skips these tests; under CI=true it fails them.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import aevb
from aevb.report import DEFAULT_K, write_report
from aevb.serve import Explorer, create_app, listen, make_server

pytestmark = pytest.mark.browser  # the quick subset (`-m "not slow and not browser"`) leaves these out

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Without these, Chromium in a container refuses connections or tries to reach the network.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
]
WAIT = 30  # seconds: the longest any page state is waited for


def require(ok: bool, message: str) -> None:
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        require(False, "selenium is not installed (pip install -e '.[test]')")
    for path in (CHROMIUM, CHROMEDRIVER):
        require(shutil.which(path) is not None, f"{path} is missing (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("browser") / "digits"
    # a longer run when screenshots are asked for, so that they show a model worth looking at
    epochs, hidden = (300, 200) if os.environ.get("AEVB_SCREENSHOTS") else (20, 64)
    aevb.train(
        aevb.ModelConfig(latent_dim=2, hidden=(hidden,)), aevb.TrainConfig(dataset="digits", epochs=epochs), path
    )
    return path


@pytest.fixture(scope="module")
def explorer(run) -> Explorer:
    return Explorer(run, k=20)


@pytest.fixture(scope="module")
def url(explorer):
    """The explorer served on loopback from a thread; shut down (bounded) after the module."""
    server = make_server(create_app(explorer), listen("127.0.0.1", 0))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def screenshot(driver, name: str, height: int | None = None) -> None:
    """Save the page as $AEVB_SCREENSHOTS/<name>.png when that variable is set."""
    folder = os.environ.get("AEVB_SCREENSHOTS")
    if not folder:
        return
    if height:
        driver.set_window_size(1280, height)
    driver.execute_script("window.scrollTo(0, 0)")
    Path(folder).mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(Path(folder) / f"{name}.png"))
    driver.set_window_size(1280, 1000)


def wait_for(driver, script: str, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(lambda d: d.execute_script(script), what)


def decodes(driver) -> int:
    return int(driver.execute_script("return document.body.dataset.decodes"))


def shown(driver, after: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z, E[x|z] from the API, the grey levels drawn on the page) once decode number > `after` is on
    show and no request is waiting."""
    wait_for(
        driver,
        f"return Number(document.body.dataset.decodes) > {after} && !state.inFlight && !state.queued",
        "a decoded image",
    )
    raw = driver.execute_script(
        "const c = document.getElementById('decoded-raw');"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "return [c.dataset.z, c.dataset.x, Array.from(d).filter((_, i) => i % 4 === 0), c.width, c.height];"
    )
    z, x, grey, w, h = raw
    assert (h, w) == (8, 8)
    return np.array(json.loads(z)), np.array(json.loads(x)), np.array(grey, dtype=float)


def check_matches_python(model, z: np.ndarray, x: np.ndarray, grey: np.ndarray) -> None:
    """The API's E[x|z] equals the model's in Python, and the page drew exactly those grey levels."""
    with torch.no_grad():
        want = model.decode(torch.tensor(z, dtype=torch.float32)[None]).mean[0].numpy()
    np.testing.assert_allclose(x, want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(grey, np.round(255 * np.clip(want, 0, 1)), rtol=0, atol=1)


def test_explorer_decodes_what_python_decodes(browser, url, explorer):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    model = explorer.model
    browser.get(url)
    wait_for(browser, "return document.body.dataset.ready === 'true'", "the page to load")
    assert browser.find_element(By.ID, "error").get_attribute("hidden") is not None

    z0, x0, g0 = shown(browser, 0)  # the start: z = 0
    np.testing.assert_array_equal(z0, [0.0, 0.0])
    check_matches_python(model, z0, x0, g0)

    # move the first slider 60 steps of 0.01 to the right with the keyboard
    n = decodes(browser)
    slider = browser.find_element(By.ID, "slider-0")
    slider.send_keys(Keys.ARROW_RIGHT * 60)
    wait_for(browser, "return JSON.parse(document.getElementById('decoded-raw').dataset.z)[0] > 0.595", "z1 = 0.6")
    z1, x1, g1 = shown(browser, n)
    np.testing.assert_allclose(z1, [0.6, 0.0], atol=1e-6)
    assert float(slider.get_attribute("value")) == pytest.approx(0.6)
    check_matches_python(model, z1, x1, g1)
    assert np.abs(g1 - g0).max() >= 5, "moving the slider did not change the image"

    # click the plane 80 px right of and 50 px above its centre: z = (u, v) scaled by the plane's range
    n = decodes(browser)
    plane = browser.find_element(By.ID, "plane")
    ActionChains(browser).move_to_element_with_offset(plane, 80, -50).click().perform()
    z2, x2, g2 = shown(browser, n)
    rect = browser.execute_script("return document.getElementById('plane').getBoundingClientRect().toJSON()")
    r = float(plane.get_attribute("data-range"))
    px = 2 * r / rect["width"]  # latent units per CSS pixel
    np.testing.assert_allclose(z2, [80 * px, 50 * px], atol=1.5 * px)
    sliders = [float(browser.find_element(By.ID, f"slider-{i}").get_attribute("value")) for i in range(2)]
    np.testing.assert_allclose(sliders, z2, atol=0.006)  # the sliders follow the plane
    check_matches_python(model, z2, x2, g2)
    assert np.abs(g2 - g1).max() >= 5, "clicking the plane did not change the image"

    # "sample" draws z ~ p(z) on the server with seed 0, 1, ...
    n = decodes(browser)
    browser.find_element(By.ID, "sample").click()
    z3, x3, g3 = shown(browser, n)
    np.testing.assert_allclose(z3, torch.randn(1, 2, generator=torch.Generator().manual_seed(0))[0], atol=1e-6)
    check_matches_python(model, z3, x3, g3)

    # interpolation strip and the likelihood table
    browser.find_element(By.ID, "interpolate").click()
    wait_for(browser, "return document.querySelectorAll('#interp-strip canvas').length === 8", "8 interpolants")
    wait_for(browser, "return document.querySelectorAll('#most tbody tr td canvas').length === 8", "thumbnails")
    first = browser.find_element(By.CSS_SELECTOR, "#most tbody tr")
    assert int(first.get_attribute("data-index")) == int(torch.argmax(explorer.log_px))
    n = decodes(browser)
    first.click()  # decodes that item's posterior mean
    z4, x4, g4 = shown(browser, n)
    np.testing.assert_allclose(z4, explorer.mu[int(torch.argmax(explorer.log_px))].numpy(), atol=1e-6)
    check_matches_python(model, z4, x4, g4)
    assert browser.find_element(By.ID, "error").get_attribute("hidden") is not None
    screenshot(browser, "explorer", 1000)


def test_report_opens_offline_with_every_figure(browser, run, explorer):
    from selenium.webdriver.common.by import By

    path = write_report(run, k=DEFAULT_K)
    browser.get(path.resolve().as_uri())
    wait_for(browser, "return document.readyState === 'complete'", "the report to load")
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.src.slice(0, 21), i.complete, i.naturalWidth])"
    )
    alts = [i[0] for i in images]
    for figure in ("Training and validation curves", "samples", "reconstructions", "latent space"):
        assert figure in alts, alts
    assert "The learned 2-D manifold" in alts
    for alt, src, complete, width in images:
        assert src == "data:image/png;base64" and complete and width > 100, (alt, src, width)
    # nothing was fetched: every resource is embedded
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert [u for u in fetched if not u.startswith("data:")] == []
    text = browser.find_element(By.ID, "evaluation").text
    summary = json.loads(browser.find_element(By.ID, "aevb-summary").get_attribute("textContent"))
    assert f"k = {DEFAULT_K}" in text and "binarised once" in text
    assert f"{summary['log_likelihood']:.3f}" in text and f"{summary['elbo']:.3f}" in text
    screenshot(browser, "report", 1500)


@pytest.fixture(scope="module")
def conditional_url(tmp_path_factory):
    """A conditional (--condition-on labels) digits run, served on loopback like `url`."""
    path = tmp_path_factory.mktemp("browser") / "cvae"
    cfg = aevb.ModelConfig(latent_dim=2, hidden=(64,), condition_on="labels")
    aevb.train(cfg, aevb.TrainConfig(dataset="digits", epochs=20), path)
    ex = Explorer(path, k=20)
    server = make_server(create_app(ex), listen("127.0.0.1", 0))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}/", ex
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_conditional_run_decodes_the_class_picked_on_the_page(browser, conditional_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url, ex = conditional_url
    browser.get(url)
    wait_for(browser, "return document.body.dataset.ready === 'true'", "the page to load")
    assert browser.find_element(By.ID, "class-row").is_displayed()
    picker = Select(browser.find_element(By.ID, "class"))
    assert [o.text for o in picker.options] == [str(c) for c in range(10)]
    grey = {}
    for label in (7, 2):
        n = decodes(browser)
        picker.select_by_value(str(label))
        wait_for(browser, f"return document.getElementById('decoded-raw').dataset.label === '{label}'", "the class")
        z, x, grey[label] = shown(browser, n)
        with torch.no_grad():
            want = ex.model.decode(torch.tensor(z, dtype=torch.float32)[None], torch.tensor([label])).mean[0].numpy()
        np.testing.assert_allclose(x, want, rtol=0, atol=1e-6)
        np.testing.assert_allclose(grey[label], np.round(255 * np.clip(want, 0, 1)), rtol=0, atol=1)
    assert np.abs(grey[7] - grey[2]).max() >= 30, "the class did not change the image"
    assert browser.find_element(By.ID, "error").get_attribute("hidden") is not None
