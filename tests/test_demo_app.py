"""The Gradio demo: its `/segment` API through gradio_client, and the page in headless Chromium (slow)."""

import os
import shutil
import socket
import time

import numpy as np
import pytest
from asda_checkpoint import synthetic_rows, trained_checkpoint  # noqa: F401 (fixture)
from PIL import Image

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from modeling_asda.tools.demo_app import build_demo, load_segmenter  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(trained_checkpoint, tmp_path_factory):  # noqa: F811
    # ASDA_DEMO_MODEL points the tests at another checkpoint (the README's screenshot uses the demo run's).
    folder = os.environ.get("ASDA_DEMO_MODEL") or str(trained_checkpoint[0])
    segmenter = load_segmenter(folder)
    demo = build_demo(segmenter, output_dir=str(tmp_path_factory.mktemp("demo")))
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/", segmenter
    demo.close()


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    row = synthetic_rows(1, "test", seed=7)[0]
    path = tmp_path_factory.mktemp("scene") / "scene.png"
    row["image"].convert("RGB").resize((390, 290)).save(path)  # a size the model never letterboxes to
    return path, row["sentence"]


def test_segment_api_returns_a_mask_at_the_image_size(app, scene):
    url, segmenter = app
    path, sentence = scene
    client = gradio_client.Client(url, verbose=False)
    overlay, mask_path, info = client.predict(gradio_client.handle_file(str(path)), sentence, api_name="/segment")
    mask = np.asarray(Image.open(mask_path))
    assert mask.shape == (290, 390) and set(np.unique(mask)) <= {0, 255}
    assert Image.open(overlay).size == (390, 290)
    assert info["image_size"] == {"width": 390, "height": 290} and info["latency_ms"] > 0
    [entry] = info["expressions"]
    # The same mask, score and layers as the pipeline gives for that file (an independent call).
    expected = segmenter(Image.open(path).convert("RGB"), text=sentence, mask_format="numpy")
    assert np.array_equal(mask > 0, expected["mask"])
    assert entry["score"] == pytest.approx(expected["score"], abs=1e-4)
    assert (entry["low_layer"], entry["mid_layer"]) == (expected["low_layer"], expected["mid_layer"])


def test_several_expressions_give_their_union_and_one_entry_each(app, scene):
    url, segmenter = app
    path, sentence = scene
    client = gradio_client.Client(url, verbose=False)
    texts = [sentence, "the big blue square"]
    _, mask_path, info = client.predict(gradio_client.handle_file(str(path)), "\n".join(texts), api_name="/segment")
    assert [e["text"] for e in info["expressions"]] == texts
    masks = [r["mask"] for r in segmenter(Image.open(path).convert("RGB"), text=texts, mask_format="numpy")]
    assert np.array_equal(np.asarray(Image.open(mask_path)) > 0, masks[0] | masks[1])


def test_unreadable_file_and_empty_text_give_readable_messages(app, scene, tmp_path):
    url, _ = app
    path, _ = scene
    client = gradio_client.Client(url, verbose=False)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not a PNG")
    with pytest.raises(Exception, match="Could not read broken.png: corrupt or unreadable image"):
        client.predict(gradio_client.handle_file(str(bad)), "the red circle", api_name="/segment")
    with pytest.raises(Exception, match="Type an expression"):
        client.predict(gradio_client.handle_file(str(path)), "  \n ", api_name="/segment")


def _chrome():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary:
        options.binary_location = binary
    driver_path = shutil.which("chromedriver")
    service = Service(executable_path=driver_path) if driver_path else Service()
    return webdriver.Chrome(options=options, service=service)


def drive_the_page(url: str, image_path: str, text: str, screenshot: str, timeout: float = 120.0) -> str:
    """Upload, type, press Segment, wait for the overlay; save a screenshot. Returns the overlay's src."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _chrome()
    try:
        driver.get(url)
        wait = WebDriverWait(driver, timeout)
        upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#input-image input[type=file]")))
        upload.send_keys(str(image_path))
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#input-image img")))
        box = driver.find_element(By.CSS_SELECTOR, "#expression textarea")
        box.clear()
        box.send_keys(text)
        driver.find_element(By.CSS_SELECTOR, "#segment-button").click()
        overlay = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#overlay img")))
        wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#summary table")))
        time.sleep(1.0)  # let the mask image and the table finish drawing before the screenshot
        driver.save_screenshot(str(screenshot))
        return overlay.get_attribute("src")
    finally:
        driver.quit()


@pytest.mark.slow
def test_the_page_in_headless_chromium(app, scene, tmp_path):
    pytest.importorskip("selenium")
    if not shutil.which("chromedriver"):
        pytest.skip("chromedriver not installed (Debian: apt-get install chromium chromium-driver; .ci/run does it)")
    url, _ = app
    path, sentence = scene
    screenshot = tmp_path / "demo_app.png"
    src = drive_the_page(url, str(path), sentence, screenshot)
    assert src and ("/file=" in src or src.startswith(("http", "data:")))
    image = Image.open(screenshot)
    assert image.size[0] >= 1000 and np.asarray(image.convert("L")).std() > 5  # a drawn page, not a blank one
    if os.environ.get("ASDA_DEMO_SCREENSHOT"):  # how the README's picture is made
        shutil.copy(screenshot, os.environ["ASDA_DEMO_SCREENSHOT"])


def test_the_space_folder_runs_unedited_in_a_fresh_process(trained_checkpoint, tmp_path):  # noqa: F811
    """space/ + the package + a checkpoint, laid out as the Space repository: app.py builds the app from there."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    space = tmp_path / "space"
    shutil.copytree(os.path.join(root, "space"), space)
    shutil.copytree(
        os.path.join(root, "modeling_asda"), space / "modeling_asda", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(trained_checkpoint[0], space / "model")
    code = (
        "import app, modeling_asda; "
        "print(modeling_asda.__file__); "
        "print([d.get('api_name') for d in app.demo.config['dependencies']])"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ASDA_MODEL")}
    done = subprocess.run([sys.executable, "-c", code], cwd=space, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-2].startswith(str(space / "modeling_asda"))  # the copy next to app.py, not an installed one
    assert "'segment'" in lines[-1]
