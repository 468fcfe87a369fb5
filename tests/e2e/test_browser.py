"""A website instrumented with Segment's browser library (analytics.js, the official npm
package) sends to Qualify after one setting changes: its `apiHost`. A real Chromium loads a
page from another origin on loopback, the page sends the seeds' worked example through the
library, one message a request and then in batches, and the lead qualifies.

Needs Debian's `chromium` (`.ci/run` installs it and sets `QUALIFY_TEST_CHROMIUM`) and `npm`
to fetch the library; without them the test is skipped and says why.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tarfile
import threading
import uuid
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from serving import Service, start_service, stop_service

ANALYTICS_NEXT = "@segment/analytics-next@1.84.3"


@pytest.fixture(scope="module")
def chromium() -> str:
    required = os.environ.get("QUALIFY_TEST_CHROMIUM")
    found = required or shutil.which("chromium")
    if found is None:
        pytest.skip("no Chromium: install Debian's chromium to run the browser tests")
    assert Path(found).exists(), f"QUALIFY_TEST_CHROMIUM={required} does not exist"
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with analytics.js's browser build, as a website would host it."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("no npm: it fetches Segment's browser library for the browser tests")
    folder = tmp_path_factory.mktemp("site")
    packed = subprocess.run(
        [npm, "pack", ANALYTICS_NEXT, "--pack-destination", str(folder), "--silent"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    with tarfile.open(folder / packed.stdout.strip().splitlines()[-1]) as archive:
        archive.extractall(folder, filter="data")
    for script in (folder / "package" / "dist" / "umd").glob("*.js"):
        shutil.copy(script, folder / script.name)  # the build and the chunks it loads
    return folder


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    running = start_service(f"sqlite:///{tmp_path_factory.mktemp('browser') / 'q.db'}")
    yield running
    stop_service(running)


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def website(site: Path) -> Iterator[str]:
    """The page's origin: another port than the service's, so every send is cross-origin."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=site))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


PAGE = """<!doctype html><html><head><script src="index.js"></script></head><body><script>
window.sent = (async () => {
  const [analytics] = await AnalyticsNext.AnalyticsBrowser.load(
    { writeKey: KEY, cdnSettings: { integrations: { "Segment.io": SETTINGS } } },
    { disableClientPersistence: true });
  await analytics.identify(USER, { industry: "Financial Services", company_size: 800 });
  await analytics.track("Content Downloaded", { content_type: "whitepaper",
                                               topic: "EU compliance" });
  await analytics.track("Webinar Attended");
  await analytics.page("Pricing", { path: "/pricing" });
  await analytics.page("Enterprise pricing", { path: "/pricing/enterprise" });
  return analytics.user().id();
})();
</script></body></html>"""


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["standard", "batching"])
def test_segments_browser_library_sends_and_the_lead_qualifies(
    chromium: str, site: Path, website: str, service: Service, strategy: str
) -> None:
    from playwright.sync_api import sync_playwright

    user = f"web-{strategy}-{uuid.uuid4().hex[:6]}"
    settings = {"apiKey": service.keys["write"], "apiHost": f"{service.base[7:]}/v1"}
    settings["protocol"] = "http"
    if strategy == "batching":  # all five in one `/v1/b` request, sent when full
        settings["deliveryStrategy"] = {"strategy": "batching", "config": {"size": 5}}
    page_file = f"{user}.html"
    (site / page_file).write_text(
        PAGE.replace("KEY", orjson.dumps(service.keys["write"]).decode())
        .replace("SETTINGS", orjson.dumps(settings).decode())
        .replace("USER", orjson.dumps(user).decode())
    )
    answers: list[tuple[str, int]] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on(
                "requestfinished",
                lambda r: answers.append((r.url.rsplit("/", 1)[-1], r.response().status)),
            )
            page.on("requestfailed", lambda r: answers.append((r.url, -1)))  # CORS refusals
            page.goto(f"{website}/{page_file}")
            assert page.evaluate("window.sent") == user
            page.wait_for_timeout(300)  # let the last answer be read
        finally:
            browser.close()
    sends = [(path, status) for path, status in answers if not path.endswith((".js", ".html"))]
    expected = [("b", 200)] if strategy == "batching" else [(p, 200) for p in "ittpp"]
    assert sends == expected  # each answered 200 and read by the page: nothing to retry
    with service.client("read") as api:
        lead = api.get(f"/api/leads/{user}").raise_for_status().json()
    assert (lead["score"], lead["mql"], lead["lead"]["stage"]) == (105, True, "mql")
    assert len(lead["recent_events"]) == 5
    library = {e["payload"]["context"]["library"]["name"] for e in lead["recent_events"]}
    assert library == {"analytics.js"}


@pytest.mark.slow
def test_the_api_reference_renders_without_internet_access(chromium: str, service: Service) -> None:
    """/docs (Swagger UI) and /redoc load their scripts from the service itself, not from
    a CDN: a self-hosted server often has no internet access, and CI has none."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            elsewhere: list[str] = []
            page.on(  # what the pages need to work; ReDoc's "powered by" logo may fail
                "request",
                lambda r: (
                    elsewhere.append(r.url)
                    if r.resource_type in ("script", "stylesheet", "fetch", "xhr")
                    and not r.url.startswith((service.base, "blob:"))
                    else None
                ),
            )
            page.goto(f"{service.base}/docs")
            page.wait_for_selector(
                '.opblock-summary-path[data-path="/v1/batch"]', timeout=15_000
            )  # an operation, rendered
            page.goto(f"{service.base}/redoc")
            heading = page.locator("h2", has_text="Send a batch of Segment messages")
            heading.wait_for(timeout=15_000)  # the operation's section, rendered
        finally:
            browser.close()
    assert elsewhere == []
