"""Make a ``kedro viz build`` site safe for an offline review room.

kedro-viz's build links Google Fonts from its pages, imports them again when a
diagram is exported as SVG, ships a Heap analytics page, and opens a product tour
over the graph. Review rooms in banks
are often offline and nothing we produce may call a third party, so this removes
those loaders (the pages fall back to the browser's sans-serif font), turns the
tour's "feature hints" setting off until a reviewer turns it on, and then
refuses the site if any third-party loader is left. Plotly's bundle still names
map-tile servers, fetched only when a geographic chart is drawn; our pipelines
have none.

Run it after ``kedro viz build`` (``make viz`` does): ``python -m
bankplatform.review.offline_site build``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from bankplatform.errors import BankplatformError

_FONT_LINK = re.compile(
    r"<link[^>]*href=\"https://fonts\.(?:googleapis|gstatic)\.com[^\"]*\"[^>]*/?>\s*",
    re.S,
)
_FONT_IMPORT = re.compile(r"@import url\(https://fonts\.googleapis\.com/[^)]*\);")
# Anything a browser would fetch on its own when the page loads.
_LOADER = re.compile(
    r"<script[^>]+src=\"https?://[^\"]+\"|<link[^>]+href=\"https?://[^\"]+\""
    r"|@import url\(https?://[^)]+\)|heapanalytics\.com"
)
_ANALYTICS_PAGE = "telemetry.html"
# kedro-viz's own "Show feature hints" setting (its localStorage state), off unless
# the reviewer turns it on: its product tour would cover the graph.
_HINTS_OFF = (
    "<script>/* bankplatform: kedro-viz feature hints off until a reviewer turns them on */"
    '(function(){try{var k="KedroViz",s=JSON.parse(localStorage.getItem(k)||"{}");'
    "if(s.showFeatureHints===undefined){s.showFeatureHints=false;"
    "localStorage.setItem(k,JSON.stringify(s));}}catch(e){}})();</script>"
)


def make_offline(site: Path) -> int:
    """Strip third-party loaders from a built kedro-viz site, in place.

    Args:
        site: The folder ``kedro viz build`` wrote.

    Returns:
        How many loaders were removed.

    Raises:
        BankplatformError: The folder is not a kedro-viz site, or a
            third-party loader remains that this function does not know.
    """
    if not (site / "index.html").is_file():
        msg = f"{site}: no index.html; run `kedro viz build` first"
        raise BankplatformError(msg)
    removed = 0
    analytics = site / _ANALYTICS_PAGE
    if analytics.exists():
        analytics.unlink()
        removed += 1
    for page in [
        *site.glob("*.html"),
        *site.glob("assets/*.js"),
        *site.glob("assets/*.css"),
    ]:
        text = page.read_text(encoding="utf-8")
        cleaned, links = _FONT_LINK.subn("", text)
        cleaned, imports = _FONT_IMPORT.subn("", cleaned)
        if links or imports:
            page.write_text(cleaned, encoding="utf-8")
            removed += links + imports
    index = site / "index.html"
    page_text = index.read_text(encoding="utf-8")
    if _HINTS_OFF not in page_text:
        index.write_text(
            page_text.replace("<head>", "<head>" + _HINTS_OFF, 1), encoding="utf-8"
        )
    remaining = third_party_loaders(site)
    if remaining:
        msg = f"{site}: third-party loader left in {remaining[0]}"
        raise BankplatformError(msg)
    return removed


def third_party_loaders(site: Path) -> list[str]:
    """Files of the site that would make a browser call a third party.

    Args:
        site: A built site.

    Returns:
        ``file: loader`` for each one found, empty when the site is offline-safe.
    """
    found = []
    for page in sorted(
        [*site.glob("*.html"), *site.glob("assets/*.js"), *site.glob("assets/*.css")]
    ):
        match = _LOADER.search(page.read_text(encoding="utf-8", errors="replace"))
        if match:
            found.append(f"{page.relative_to(site)}: {match.group(0)[:80]}")
    return found


def main(argv: list[str]) -> int:
    """``python -m bankplatform.review.offline_site SITE``: clean a site in place."""
    site = Path(argv[0] if argv else "build")
    try:
        removed = make_offline(site)
    except BankplatformError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    print(f"{site}: offline-safe ({removed} third-party loaders removed)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
