"""The reviewers' site loses every third-party loader kedro-viz ships."""

from __future__ import annotations

from pathlib import Path

import pytest

from bankplatform.errors import BankplatformError
from bankplatform.review.offline_site import make_offline, third_party_loaders

pytestmark = pytest.mark.unit

PAGE = """<html><head>
<link rel="preconnect" href="https://fonts.googleapis.com" />
<link rel="preconnect" href="https://fonts.gstatic.com" crossorigin />
<link
  href="https://fonts.googleapis.com/css2?family=Inter:wght@400;600&display=swap"
  rel="stylesheet"
/>
<script type="module" crossorigin src="./assets/index.js"></script>
</head><body><div id="root"></div></body></html>"""


def _site(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text(PAGE)
    (tmp_path / "telemetry.html").write_text(
        '<script src="https://cdn.heapanalytics.com/js/heap-1.js"></script>'
    )
    (tmp_path / "assets" / "index.js").write_text(
        'h.innerHTML="@import url(https://fonts.googleapis.com/css?family=Inter:400);";'
    )
    return tmp_path


def test_fonts_and_analytics_are_removed_and_local_assets_kept(tmp_path: Path) -> None:
    site = _site(tmp_path)
    assert len(third_party_loaders(site)) == 3
    assert make_offline(site) == 5
    assert third_party_loaders(site) == []
    page = (site / "index.html").read_text()
    assert 'src="./assets/index.js"' in page
    assert "googleapis" not in page
    assert not (site / "telemetry.html").exists()
    assert (site / "assets" / "index.js").read_text() == 'h.innerHTML="";'


def test_an_unknown_loader_refuses_the_site(tmp_path: Path) -> None:
    site = _site(tmp_path)
    (site / "404.html").write_text(
        '<script src="https://cdn.example.com/tracker.js"></script>'
    )
    with pytest.raises(
        BankplatformError,
        match=r"third-party loader left in 404.html: <script src=\"https://cdn.example.com",
    ):
        make_offline(site)


def test_a_folder_without_a_site_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        BankplatformError, match="no index.html; run `kedro viz build` first"
    ):
        make_offline(tmp_path)
