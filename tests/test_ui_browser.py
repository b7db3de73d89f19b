"""The web interface in a real browser: Debian's chromium driven by Playwright, against a
real ``ckptstore serve``. Without chromium (or Playwright) the test is skipped with its
reason, except under CI=true, where it fails.

Screenshots go to the test's temporary directory; with CKPTSTORE_UI_SCREENSHOTS set
to a directory, also there (that is how docs/screenshots/ was made)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from ckptstore.testing.live_server import live_server
from tests.conftest import unavailable

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
JOB = "job_resnet50"
BIN = Path(sys.executable).parent / "ckptstore"


def _missing(reason: str) -> None:
    unavailable(f"the browser tests need it: {reason}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[test]')")
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is missing (apt-get install chromium; make test does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


def _key(data_dir: Path, tenant: str) -> str:
    made = subprocess.run(
        [str(BIN), "keys", "create", "--tenant", tenant, "--data", str(data_dir), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    key: str = json.loads(made.stdout)["key"]
    return key


def _push(base: str, key: str, job: str, data: bytes, **fields: Any) -> str:
    headers = {"Authorization": f"Bearer {key}"}
    made = httpx.post(f"{base}/v2/training/jobs/{job}/checkpoints", headers=headers, json=fields)
    assert made.status_code == 201, made.text
    cid: str = made.json()["checkpointId"]
    url = f"{base}/v2/training/checkpoints/{cid}/data"
    sent = httpx.put(url, headers=headers, content=data, timeout=60)
    assert sent.status_code < 300, sent.text
    return cid


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data_dir = tmp_path_factory.mktemp("ui") / "data"
    acme, other = _key(data_dir, "acme"), _key(data_dir, "other")
    with live_server(data_dir) as base:
        payloads: dict[str, bytes] = {}
        weights = np.random.default_rng(7).standard_normal(1_000_000).astype(np.float32)
        for epoch in range(1, 7):
            # each epoch changes a twentieth of the weights, as fine-tuning a layer would
            weights[epoch * 50_000 : (epoch + 1) * 50_000] *= np.float32(0.9)
            data = weights.tobytes()
            loss = 2.0 / epoch + 0.05 * (epoch % 2)
            metrics = {
                "loss": loss + 0.1,
                "validationLoss": loss,
                "validationAccuracy": 0.5 + epoch / 20,
            }
            cid = _push(
                base,
                acme,
                JOB,
                data,
                type="automatic",
                epoch=epoch,
                step=500 * epoch,
                metrics=metrics,
            )
            payloads[cid] = data
        _push(
            base,
            acme,
            "job_bert_small",
            b"bert " * 30_000,
            type="final",
            epoch=3,
            metrics={"loss": 1.2},
        )
        theirs = _push(base, other, "job_other", b"x" * 5000, type="manual", epoch=0)
        yield {"base": base, "acme": acme, "other": other, "payloads": payloads, "theirs": theirs}


def _shot(page: Any, tmp_path: Path, name: str) -> None:
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    keep = os.environ.get("CKPTSTORE_UI_SCREENSHOTS")
    if keep:
        page.screenshot(path=str(Path(keep) / f"{name}.png"), full_page=False)


def _sign_in(page: Any, base: str, key: str) -> None:
    page.goto(f"{base}/")
    assert "/ui/login" in page.url
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/ui/jobs")


def test_a_person_manages_checkpoints_in_the_browser(
    browser: Any, site: dict[str, Any], tmp_path: Path
) -> None:
    base = site["base"]
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.goto(f"{base}/ui/login")
    page.get_by_label("API key").fill("ck_00000000_" + "a" * 43)
    page.get_by_role("button", name="Sign in").click()
    assert "not valid" in page.locator("[role=alert]").inner_text()
    _sign_in(page, base, site["acme"])
    assert page.get_by_role("link", name=JOB).is_visible()
    assert page.get_by_role("link", name="job_other").count() == 0
    _shot(page, tmp_path, "jobs")

    page.get_by_role("link", name=JOB).click()
    page.wait_for_url(f"{base}/ui/jobs/{JOB}")
    assert page.locator("svg.chart").count() == 3
    # sorting: the script re-submits the form as soon as the select changes
    page.select_option("#sortOrder", "asc")
    page.wait_for_url("**sortOrder=asc**")
    page.select_option("#sortBy", "validationLoss")
    page.wait_for_url("**sortBy=validationLoss**")
    rows = page.locator("#checkpoints tbody tr")
    ids = [rows.nth(i).get_attribute("data-checkpoint") for i in range(rows.count())]
    listed = httpx.get(
        f"{base}/v2/training/jobs/{JOB}/checkpoints",
        params={"sortBy": "validationLoss", "sortOrder": "asc"},
        headers={"Authorization": f"Bearer {site['acme']}"},
    ).json()
    assert ids == [c["checkpointId"] for c in listed["checkpoints"]]
    _shot(page, tmp_path, "job")

    page.get_by_label("Keep automatic checkpoints (empty: all)").fill("10")
    page.get_by_role("button", name="Save settings").click()
    assert page.get_by_role("status").inner_text() == "Settings saved."
    assert page.get_by_label("Keep automatic checkpoints (empty: all)").input_value() == "10"

    page.get_by_label("Name (optional)").fill("before lr drop")
    page.get_by_role("button", name="Request checkpoint").click()
    assert "Manual checkpoint requested" in page.get_by_role("status").inner_text()
    pending = page.locator("#checkpoints tbody tr", has_text="before lr drop")
    assert pending.locator(".badge.pending").count() == 1

    cid = next(iter(site["payloads"]))
    page.goto(f"{base}/ui/checkpoints/{cid}")
    with page.expect_download() as got:
        page.locator("#download").click()
    assert Path(got.value.path()).read_bytes() == site["payloads"][cid]
    _shot(page, tmp_path, "checkpoint")

    page.get_by_label("Endpoint name").fill("serving-a")
    page.get_by_role("button", name="Deploy").click()
    page.wait_for_url("**/ui/endpoints**")
    assert page.get_by_role("rowheader", name="serving-a").count() == 1
    page.get_by_role("button", name="Undeploy serving-a").click()
    assert page.get_by_role("status").inner_text() == "Endpoint removed."

    page.goto(f"{base}/ui/checkpoints/{cid}")
    page.get_by_role("link", name="Delete this checkpoint…").click()
    page.get_by_role("button", name="Delete permanently").click()
    page.wait_for_url(f"**/ui/jobs/{JOB}?notice=deleted")
    assert page.locator(f'tr[data-checkpoint="{cid}"]').count() == 0

    # another tenant's checkpoint answers as an unknown one does
    response = page.goto(f"{base}/ui/checkpoints/{site['theirs']}")
    assert response is not None and response.status == 404
    assert page.get_by_role("heading", name="Not found").is_visible()

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{base}/ui/login")
    page.goto(f"{base}/ui/jobs")
    assert "/ui/login" in page.url
    context.close()


def test_pages_fit_a_phone_and_docs_load_offline(
    browser: Any, site: dict[str, Any], tmp_path: Path
) -> None:
    base = site["base"]
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(base) else outside.append(r.url))
    _sign_in(page, base, site["acme"])
    page.goto(f"{base}/ui/jobs/{JOB}")
    # the page itself does not scroll sideways; wide tables scroll in their own box
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width
    _shot(page, tmp_path, "job-phone")
    page.goto(f"{base}/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=15_000)
    assert page.locator(".swagger-ui .authorize").count() == 1
    assert outside == []
    context.close()
