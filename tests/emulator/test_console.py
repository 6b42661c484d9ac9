"""The emulator's console page (`GET /`) driven by headless Chromium through Playwright.

Chromium is Debian's (`apt-get install -y chromium`), not Playwright's download: the machine is offline.
A missing browser fails these tests on purpose; CI installs it. Set CHROMIUM_PATH to use another binary.
The screenshot of the finished job's page is written to tests/artifacts/console.png and its pixels checked, as are
those of the curves PNG that the emulator draws for the page (`GET /_emulator/v1/{job}/curves.png`).
"""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from emulator.server import RunningEmulator
from tests.conftest import LOCATION, PROJECT, REPO, SAMPLE_TRAIN, SAMPLE_VALIDATION, upload
from tests.emulator.helpers import wait_until_ended, wait_until_state
from tuning.curves import DPI, EVAL_COLOUR, HEIGHT_INCHES, TRAIN_COLOUR, WIDTH_INCHES

ARTIFACTS = REPO / "tests" / "artifacts"
VIEWPORT = {"width": 1280, "height": 900}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SIX_METRICS = ("/train_total_loss", "/train_fraction_of_correct_next_step_preds", "/train_num_predictions",
               "/eval_total_loss", "/eval_fraction_of_correct_next_step_preds", "/eval_num_predictions")
UI_TIMEOUT_MS = 15_000  # the page polls every 2 s; this leaves room for a loaded machine
CURVES_SIZE = (int(WIDTH_INCHES * DPI), int(HEIGHT_INCHES * DPI))  # 1200 x 650


def chromium_path() -> str:
    candidates = [os.environ.get("CHROMIUM_PATH"), "/usr/bin/chromium", shutil.which("chromium"),
                  shutil.which("chromium-browser")]
    for candidate in filter(None, candidates):
        if os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("Chromium is not installed: the console tests need Debian's browser "
                "(`apt-get update && apt-get install -y chromium`, or set CHROMIUM_PATH). "
                "Playwright's own browser download is not used: the machine is offline.", pytrace=False)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:  # pragma: no cover - the venv pins playwright
        pytest.fail(f"the playwright package is missing from the venv: {error}", pytrace=False)
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        except Exception as error:  # noqa: BLE001 - turn a broken browser into a clear failure
            pytest.fail(f"Chromium at {executable} did not start: {error}", pytrace=False)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser) -> Iterator[Any]:
    """A fresh tab; any uncaught script error on the page fails the test."""
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    tab = context.new_page()
    tab.set_default_timeout(UI_TIMEOUT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield tab
    finally:
        context.close()
    assert not errors, f"script errors on the console page: {errors}"


# --- helpers ---------------------------------------------------------------------------------------


def create_job(emulator: RunningEmulator, training_uri: str, validation_uri: str, display_name: str) -> dict:
    body = {
        "baseModel": "translation-llm-002",
        "tunedModelDisplayName": display_name,
        "labels": {"suite": "console"},
        "supervisedTuningSpec": {
            "trainingDatasetUri": training_uri, "validationDatasetUri": validation_uri,
            "hyperParameters": {"epochCount": 1, "adapterSize": "ADAPTER_SIZE_FOUR", "learningRateMultiplier": 1.0},
        },
    }
    response = requests.post(f"{emulator.url}/v1/projects/{PROJECT}/locations/{LOCATION}/tuningJobs", json=body,
                             timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def get_job(emulator: RunningEmulator, name: str) -> dict:
    response = requests.get(f"{emulator.url}/v1/{name}", timeout=30)
    response.raise_for_status()
    return response.json()


def get_metrics(emulator: RunningEmulator, name: str) -> dict:
    response = requests.get(f"{emulator.url}/_emulator/v1/{name}/metrics", timeout=30)
    response.raise_for_status()
    return response.json()


def row(page, name: str):
    return page.locator(f'#jobs-table tbody tr[data-job-name="{name}"]')


def curves_url(emulator: RunningEmulator, name: str) -> str:
    return f"{emulator.url}/_emulator/v1/{name}/curves.png"


def curves_loaded(page, points: int) -> None:
    """Wait until the page shows a curves image of at least `points` points, loaded at its full size."""
    page.wait_for_function("""([points, width, height]) => {
        const img = document.querySelector('#curves');
        return img && !img.hidden && Number(img.dataset.pointCount) >= points && img.complete
            && img.naturalWidth === width && img.naturalHeight === height;
    }""", arg=[points, *CURVES_SIZE])


def read_png(path: Path) -> tuple[int, int, int, bytes]:
    """(width, height, channels, pixels) of an 8-bit RGB/RGBA non-interlaced PNG, rows unfiltered."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    pos, header, idat = 8, None, []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in PNG chunk {kind!r}"
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    assert header is not None, "PNG without IHDR"
    width, height, depth, colour_type, _, _, interlace = header
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, f"unexpected PNG format {header}"
    bpp = 3 if colour_type == 2 else 4
    stride = width * bpp
    raw = zlib.decompress(b"".join(idat))
    assert len(raw) == (stride + 1) * height, "truncated PNG data"
    out = bytearray()
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if kind == 1:    # Sub
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:  # Up
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif kind == 3:  # Average
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind == 4:  # Paeth
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        else:
            assert kind == 0, f"unknown PNG filter {kind}"
        out += line
        prev = line
    return width, height, bpp, bytes(out)


def parse_rgb(colour: str) -> tuple[int, int, int]:
    """`#1a73e8` → (26, 115, 232)."""
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


# The page-coordinate box of the curves image.
CURVES_BOX_JS = """() => {
    const r = document.querySelector('#curves').getBoundingClientRect();
    return [r.left + scrollX, r.top + scrollY, r.right + scrollX, r.bottom + scrollY];
}"""


def panels(box: list[float]) -> list[dict]:
    """The six panels of a curves image at `box` (two rows of three: training in blue, evaluation in orange), each
    expected to hold its curve across the middle 60% of its width (`check_screenshot` allows 80% of that span)."""
    left, top, right, bottom = box
    width, height = (right - left) / 3, (bottom - top) / 2
    return [{"metric": metric, "stroke": TRAIN_COLOUR if i < 3 else EVAL_COLOUR,
             "box": [left + width * (i % 3), top + height * (i // 3), left + width * (i % 3 + 1),
                     top + height * (i // 3 + 1)],
             "line": [left + width * (i % 3 + 0.2), left + width * (i % 3 + 0.8)]}
            for i, metric in enumerate(SIX_METRICS)]


def curve_pixels(image: tuple[int, int, int, bytes], chart: dict) -> list[tuple[int, int]]:
    """(x, y) of the pixels of `image` (`read_png`) inside `chart`'s box in the stroke colour of `chart`."""
    width, height, bpp, pixels = image
    target = parse_rgb(chart["stroke"])
    left, top, right, bottom = (int(v) for v in chart["box"])
    return [(x, y) for y in range(max(top, 0), min(bottom, height)) for x in range(max(left, 0), min(right, width))
            if all(abs(pixels[(y * width + x) * bpp + i] - t) <= 24 for i, t in enumerate(target))]


def check_screenshot(path: Path, size: tuple[int, int], charts: list[dict]) -> None:
    """A real picture: `size`, not blank, each chart's curve drawn in its colour across its chart."""
    image = width, height, bpp, pixels = read_png(path)
    assert (width, height) == size, f"screenshot is {width}x{height}, expected {size[0]}x{size[1]}"

    def pixel(x: int, y: int) -> tuple[int, int, int]:
        at = (y * width + x) * bpp
        return pixels[at], pixels[at + 1], pixels[at + 2]

    sampled = [pixel(x, y) for y in range(0, height, 7) for x in range(0, width, 7)]
    non_white = sum(1 for p in sampled if min(p) < 235) / len(sampled)
    assert non_white > 0.02, f"screenshot looks blank ({non_white:.1%} non-white pixels)"
    assert len(set(sampled)) > 50, f"screenshot has almost no colours ({len(set(sampled))})"
    for chart in charts:
        left, top = (int(v) for v in chart["box"][:2])
        hits = [x for x, _ in curve_pixels(image, chart)]
        assert len(hits) >= 40, f"{chart['metric']}: stroke {chart['stroke']} barely visible ({len(hits)} px)"
        span, expected_span = max(hits) - min(hits), chart["line"][1] - chart["line"][0]
        assert span >= 0.8 * expected_span, f"{chart['metric']}: curve spans {span}px of {expected_span:.0f}px"
        corner = pixel(left + 2, top + 2)
        assert min(corner) >= 240, f"{chart['metric']}: chart background is not white: {corner}"


def write_png(path: Path, width: int, height: int, rgb: tuple[int, int, int]) -> None:
    """A flat-colour RGB PNG (for checking that `check_screenshot` rejects such images)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


# --- tests -----------------------------------------------------------------------------------------


def test_empty_state(emulator: RunningEmulator, page) -> None:
    page.goto(emulator.url + "/")
    empty = page.locator("#empty-state")
    empty.wait_for(state="visible")
    assert "No tuning jobs yet" in empty.inner_text()
    assert page.locator("#jobs-table tbody tr[data-job-name]").count() == 0
    assert page.locator("#job-details").is_hidden()
    assert page.title().startswith("Tune and Distill")


def test_succeeded_job_table_details_charts_and_screenshot(emulator: RunningEmulator, sample_uris, page) -> None:
    created = create_job(emulator, *sample_uris, display_name="console-en-es")
    name = created["name"]
    job_id = name.rsplit("/", 1)[1]
    job = wait_until_ended(lambda: get_job(emulator, name))
    assert job["state"] == "JOB_STATE_SUCCEEDED", job
    metrics = get_metrics(emulator, name)
    assert set(metrics["series"]) == set(SIX_METRICS)

    # The table: one row, the finished state, the job's columns; no Cancel on an ended job.
    page.goto(emulator.url + "/")
    the_row = row(page, name)
    page.locator(f'#jobs-table tbody tr[data-job-name="{name}"][data-state="JOB_STATE_SUCCEEDED"]').wait_for()
    assert page.locator("#jobs-table tbody tr[data-job-name]").count() == 1
    assert page.locator("#empty-state").is_hidden()
    text = the_row.inner_text()
    for expected in ("console-en-es", job_id, "translation-llm-002", "Succeeded"):
        assert expected in text, f"{expected!r} missing from the row {text!r}"
    assert the_row.locator(".state-badge").get_attribute("data-state") == "JOB_STATE_SUCCEEDED"
    assert the_row.locator("button[data-action=cancel]").count() == 0

    # Opening the row: details panel, the URL hash, every field the brief lists.
    the_row.click()
    details = page.locator("#job-details")
    page.locator(f'#job-details[data-job-name="{name}"][data-state="JOB_STATE_SUCCEEDED"]').wait_for()
    assert page.evaluate("location.hash") == f"#job={name}"
    info = details.inner_text()
    stats = job["tuningDataStats"]["supervisedTuningDataStats"]
    for expected in (name, "Succeeded", *sample_uris, job["tunedModel"]["model"], job["tunedModel"]["endpoint"],
                     f"{int(stats['tuningDatasetExampleCount']):,}", f"{int(stats['totalBillableTokenCount']):,}",
                     "suite: console", "Learning rate multiplier"):
        assert expected in info, f"{expected!r} missing from the details panel"
    assert page.locator("#cancel-button").is_hidden()

    # The curves: the emulator's image of all the job's points, loaded at its full size.
    points = sum(len(series) for series in metrics["series"].values())
    assert points >= 12  # at least two points per metric
    curves_loaded(page, points)
    assert page.locator("#curves").get_attribute("data-point-count") == str(points)
    assert page.locator("#curves").get_attribute("src") == f"/_emulator/v1/{name}/curves.png?points={points}"
    assert page.locator("#curves-empty").is_hidden()

    # That image itself: a 1200 x 650 PNG, each of its six panels holding a curve in its colour across the panel.
    response = requests.get(curves_url(emulator, name), timeout=60)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    curves = ARTIFACTS / "console-curves.png"
    curves.write_bytes(response.content)
    check_screenshot(curves, CURVES_SIZE, panels([0, 0, *CURVES_SIZE]))
    # The loss fell: its curve ends lower (bigger y) than it starts.
    loss = metrics["series"]["/train_total_loss"]
    drawn = curve_pixels(read_png(curves), panels([0, 0, *CURVES_SIZE])[0])
    first_x, last_x = min(x for x, _ in drawn), max(x for x, _ in drawn)
    start, end = ([y for x, y in drawn if abs(x - edge) <= 3] for edge in (first_x, last_x))
    if loss[-1]["value"] < loss[0]["value"]:
        assert sum(end) / len(end) > sum(start) / len(start), (start, end)

    # A link with the hash opens the job directly.
    other = page.context.new_page()
    other.goto(f"{emulator.url}/#job={name}")
    other.locator(f'#job-details[data-job-name="{name}"][data-state="JOB_STATE_SUCCEEDED"]').wait_for()
    curves_loaded(other, points)
    other.close()

    # Screenshot, then check its pixels: right size, not blank, each panel's curve colour inside each panel.
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "console.png"
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(shot), full_page=True, animations="disabled")
    page_height = page.evaluate("Math.max(document.documentElement.scrollHeight, innerHeight)")
    check_screenshot(shot, (VIEWPORT["width"], page_height), panels(page.evaluate(CURVES_BOX_JS)))


def test_curves_of_an_unknown_job_are_not_found(emulator: RunningEmulator) -> None:
    response = requests.get(curves_url(emulator, f"projects/{PROJECT}/locations/{LOCATION}/tuningJobs/123"), timeout=30)
    assert response.status_code == 404 and response.json()["error"]["status"] == "NOT_FOUND"


def test_screenshot_check_rejects_blank_images(tmp_path: Path) -> None:
    """The pixel check above is not vacuous: a white or a flat grey image of the same size fails it."""
    chart = {"metric": "/train_total_loss", "stroke": TRAIN_COLOUR, "box": [20, 20, 300, 200],
             "line": [60, 280]}
    blank = tmp_path / "blank.png"
    write_png(blank, 400, 300, (255, 255, 255))
    with pytest.raises(AssertionError, match="blank"):
        check_screenshot(blank, (400, 300), [chart])
    grey = tmp_path / "grey.png"
    write_png(grey, 400, 300, (120, 120, 120))
    with pytest.raises(AssertionError, match="colours"):
        check_screenshot(grey, (400, 300), [chart])


def test_cancel_running_job_from_the_console(slow_emulator: RunningEmulator, tmp_path: Path, page) -> None:
    training = upload(slow_emulator, "datasets", "train.jsonl", SAMPLE_TRAIN)
    validation = upload(slow_emulator, "datasets", "validation.jsonl", SAMPLE_VALIDATION)
    name = create_job(slow_emulator, training, validation, display_name="console-slow")["name"]
    wait_until_state(lambda: get_job(slow_emulator, name), "JOB_STATE_RUNNING", timeout=60)

    page.goto(f"{slow_emulator.url}/#job={name}")
    page.locator(f'#jobs-table tbody tr[data-job-name="{name}"][data-state="JOB_STATE_RUNNING"]').wait_for()
    assert row(page, name).locator(".state-badge").inner_text().strip() == "Running"
    cancel = page.locator("#cancel-button")
    cancel.wait_for(state="visible")
    assert cancel.is_enabled()

    # Live curves: without a reload, the page fetches the image again as the trainer reports more points.
    page.wait_for_function("() => Number(document.querySelector('#curves').dataset.pointCount) > 0", timeout=60_000)
    seen = int(page.locator("#curves").get_attribute("data-point-count"))
    page.wait_for_function("(seen) => Number(document.querySelector('#curves').dataset.pointCount) > seen", arg=seen)
    curves_loaded(page, seen + 1)

    cancel.click()
    job = wait_until_ended(lambda: get_job(slow_emulator, name), timeout=30)
    assert job["state"] == "JOB_STATE_CANCELLED", job
    page.locator(f'#jobs-table tbody tr[data-job-name="{name}"] .state-badge[data-state="JOB_STATE_CANCELLED"]').wait_for()
    assert row(page, name).locator(".state-badge").inner_text().strip() == "Cancelled"
    page.locator('#job-details[data-state="JOB_STATE_CANCELLED"]').wait_for()
    cancel.wait_for(state="hidden")
    assert "cancelled by the user" in page.locator("#details-error").inner_text()
    assert row(page, name).locator("button[data-action=cancel]").count() == 0


def test_a_failed_cancel_stays_on_screen_after_the_next_refresh(slow_emulator: RunningEmulator, page) -> None:
    training = upload(slow_emulator, "datasets", "train.jsonl", SAMPLE_TRAIN)
    validation = upload(slow_emulator, "datasets", "validation.jsonl", SAMPLE_VALIDATION)
    name = create_job(slow_emulator, training, validation, display_name="console-cancel-fails")["name"]
    wait_until_state(lambda: get_job(slow_emulator, name), "JOB_STATE_RUNNING", timeout=60)
    requests.post(f"{slow_emulator.url}/_emulator/faults", timeout=10,
                  json={"pathRegex": ":cancel$", "method": "POST", "status": 503, "times": 1}).raise_for_status()

    page.goto(f"{slow_emulator.url}/#job={name}")
    page.locator("#cancel-button").click()
    banner = page.locator("#error-banner")
    banner.wait_for(state="visible")
    page.wait_for_timeout(4500)  # two refresh ticks of the page
    assert banner.is_visible() and f"Could not cancel {name.rsplit('/', 1)[1]}" in banner.inner_text()
    assert get_job(slow_emulator, name)["state"] == "JOB_STATE_RUNNING"
    requests.post(f"{slow_emulator.url}/v1/{name}:cancel", json={}, timeout=10).raise_for_status()
