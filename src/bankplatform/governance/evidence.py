"""Evidence notebooks: executed with papermill, converted to self-contained HTML,
hashed.

For each candidate the governance notebooks under ``notebooks/governance/`` are
executed with the version's parameters into
``data/08_reporting/governance/<model>/<version>/``, next to a self-contained
HTML copy that loads nothing from the network (images embedded, no MathJax or
require.js from a CDN). A failing cell is recorded with its error and the
partial notebook is still stored. The sha256 of every file goes into a manifest
that approval re-checks against the files on disk.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bankplatform.errors import BankplatformError

NOTEBOOK_FOLDER = Path("notebooks") / "governance"
_LOADER_URLS = (
    "mathjax_url",
    "require_js_url",
    "mermaid_js_url",
    "mermaid_layout_elk_js_url",
    "jquery_url",
    "widget_renderer_url",
    "jupyter_widgets_base_url",
)
_LOADS = re.compile(
    r"""(?:src=|import\(|<link[^>]*href=)["'](https?://[^"']+)["']""", re.IGNORECASE
)
EVIDENCE_FOLDER = Path("data") / "08_reporting" / "governance"
MANIFEST = "evidence_manifest.json"
GATE_REPORT = "gate_report.json"


class EvidenceError(BankplatformError):
    """Evidence cannot be produced as required (e.g. an HTML page that would load
    something from the network)."""


@dataclass(frozen=True)
class NotebookEvidence:
    """One executed notebook.

    Attributes:
        name: Notebook name without extension.
        notebook: The executed ``.ipynb`` (relative to the workspace).
        html: Its HTML copy (relative to the workspace).
        sha256: Hashes of both files, by relative path.
        error: The failing cell's error in one line, empty when it ran through.
        seconds: Execution plus conversion time.
    """

    name: str
    notebook: str
    html: str
    sha256: dict[str, str]
    error: str
    seconds: float


def evidence_folder(root: Path, model: str, version: int) -> Path:
    """``data/08_reporting/governance/<model>/<version>`` of a workspace."""
    return root / EVIDENCE_FOLDER / model / str(version)


def file_sha256(path: Path) -> str:
    """sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def execute_notebook(
    root: Path,
    name: str,
    folder: Path,
    parameters: dict[str, Any],
    timeout_s: int,
) -> NotebookEvidence:
    """Execute ``notebooks/governance/<name>.ipynb`` into ``folder`` and convert it.

    A failing cell does not raise: its error is returned and the partial
    notebook (with the error in its output) is stored and converted too.
    """
    import time  # noqa: PLC0415

    import papermill  # noqa: PLC0415
    from papermill.exceptions import PapermillExecutionError  # noqa: PLC0415

    folder.mkdir(parents=True, exist_ok=True)
    output = folder / f"{name}.ipynb"
    started = time.perf_counter()
    error = ""
    try:
        papermill.execute_notebook(
            root / NOTEBOOK_FOLDER / f"{name}.ipynb",
            output,
            parameters=parameters,
            cwd=str(root),
            kernel_name="python3",
            progress_bar=False,
            execution_timeout=timeout_s,
            # The kernel talks to us over Unix sockets, not TCP on loopback:
            # nothing on the network sees the evidence's data.
            kernel_manager_class=_ipc_kernel_manager(),
        )
    except PapermillExecutionError as failure:
        # In [n] as Jupyter numbers it (papermill's injected parameters count).
        error = f"In [{failure.exec_count}]: {failure.ename}: {failure.evalue}"[:500]
    html = folder / f"{name}.html"
    html.write_text(offline_html(output), encoding="utf-8")
    return NotebookEvidence(
        name=name,
        notebook=str(output.relative_to(root)),
        html=str(html.relative_to(root)),
        sha256={
            str(path.relative_to(root)): file_sha256(path) for path in (output, html)
        },
        error=error.splitlines()[0] if error else "",
        seconds=time.perf_counter() - started,
    )


def _ipc_kernel_manager() -> type:
    from jupyter_client.manager import KernelManager  # noqa: PLC0415

    class IpcKernelManager(KernelManager):
        """A kernel manager whose kernel listens on Unix sockets."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(transport="ipc", **kwargs)

    return IpcKernelManager


def offline_html(notebook: Path) -> str:
    """The notebook as the page a validator or an examiner reads: its verdict
    first, then the text, tables and figures, with no code and no parameters
    cell (which holds the machine's paths); one HTML file that makes no network
    request. The executed ``.ipynb`` beside it keeps the code.

    nbconvert's default template loads MathJax, require.js, mermaid, jQuery and
    the widget renderer from CDNs; every such URL is emptied (each is checked: a
    newer nbconvert with a new loader fails the evidence, see ``cdn_references``)
    and images are embedded.
    """
    import nbformat  # noqa: PLC0415
    from nbconvert import HTMLExporter  # noqa: PLC0415

    exporter = HTMLExporter(  # type: ignore[no-untyped-call]
        embed_images=True,
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    # Set on the instance: some of these traits (mermaid's) are not configurable.
    for trait in _LOADER_URLS:
        setattr(exporter, trait, "")
    notebook_node = nbformat.read(notebook, as_version=4)  # type: ignore[no-untyped-call]
    notebook_node.cells = reviewer_cells(notebook_node.cells)
    describe_figures(notebook_node)
    body, _ = exporter.from_notebook_node(notebook_node)
    found = cdn_references(str(body))
    if found:
        msg = f"{notebook.name}: the HTML still loads {found[0]} (and {len(found) - 1} more)"
        raise EvidenceError(msg)
    return str(body)


def reviewer_cells(cells: list[Any]) -> list[Any]:
    """The cells a reviewer's page shows, verdict first.

    The parameters cells (papermill's ``parameters`` and ``injected-parameters``:
    temporary folders, run ids) are dropped; the ``summary`` cell (the code
    cell printing the verdict as JSON) and its ``summary-heading`` are replaced by a
    ``Verdict`` table placed right after the notebook's title. A notebook that
    stopped before its summary says so in that place.
    """
    from nbformat.v4 import new_markdown_cell  # noqa: PLC0415

    hidden = {"parameters", "injected-parameters", "summary", "summary-heading"}
    verdict: dict[str, Any] | None = None
    shown = []
    for cell in cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if "summary" in tags and cell.cell_type == "code":
            verdict = _printed_json(cell)
        if not tags & hidden:
            shown.append(cell)
    if verdict is None:
        text = "## Verdict\n\nNo verdict: the notebook stopped before its summary (the error is shown below)."
    else:
        rows = "\n".join(
            f"| {key} | {_verdict_value(value)} |" for key, value in verdict.items()
        )
        text = f"## Verdict\n\n| | |\n| --- | --- |\n{rows}"
    title = 1 if shown and shown[0].cell_type == "markdown" else 0
    verdict_cell = new_markdown_cell(text)  # type: ignore[no-untyped-call]
    return [*shown[:title], verdict_cell, *shown[title:]]


def _printed_json(cell: Any) -> dict[str, Any] | None:
    """The JSON object a cell printed, if it printed one."""
    printed = "".join(
        o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream"
    )
    try:
        value = json.loads(printed)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _verdict_value(value: Any) -> str:
    text = (
        ", ".join(str(v) for v in value) or "none"
        if isinstance(value, list)
        else str(value)
    )
    return html.escape(text).replace("|", "&#124;")


def describe_figures(notebook: Any) -> int:
    """Give every figure a text alternative: the section heading above its cell.

    nbconvert's template writes a PNG output as an ``<img>`` with no ``alt``
    (and then warns about it); each becomes an ``<img>`` with
    ``alt="Figure: <heading>"``, so a reviewer's screen reader says what it shows.

    Returns:
        How many figures were described.
    """
    heading = "the notebook"
    described = 0
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            titles = [line.lstrip("#").strip() for line in cell.source.splitlines()]
            if cell.source.startswith("#") and titles[0]:
                heading = titles[0]
            continue
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png is None:
                continue
            alt = html.escape(f"Figure: {heading}", quote=True)
            output["data"] = {
                "text/html": f'<img alt="{alt}" src="data:image/png;base64,{png.strip()}"/>',
                "text/plain": f"Figure: {heading}",
            }
            described += 1
    return described


def cdn_references(page: str) -> list[str]:
    """Third-party URLs that a page would load (script or stylesheet sources and
    dynamic imports); links a reader may follow do not count."""
    return sorted(set(_LOADS.findall(page)))


def write_manifest(folder: Path, root: Path, records: list[NotebookEvidence]) -> Path:
    """Write the evidence manifest: every evidence file's sha256 (plus the other
    files already in ``folder``, like the gate report)."""
    hashes: dict[str, str] = {}
    for record in records:
        hashes.update(record.sha256)
    for path in sorted(folder.iterdir()):
        relative = str(path.relative_to(root))
        if path.is_file() and path.name != MANIFEST and relative not in hashes:
            hashes[relative] = file_sha256(path)
    manifest = folder / MANIFEST
    manifest.write_text(
        json.dumps(
            {"notebooks": [asdict(r) for r in records], "sha256": hashes}, indent=2
        )
    )
    return manifest


def changed_evidence(root: Path, recorded: dict[str, str]) -> list[str]:
    """Evidence files that are missing or whose content no longer matches.

    Args:
        root: The workspace.
        recorded: Relative path -> sha256, as recorded at evaluation.

    Returns:
        One line per mismatch (empty when everything matches).
    """
    problems = []
    for relative, expected in sorted(recorded.items()):
        path = root / relative
        if not path.is_file():
            problems.append(f"{relative} is missing")
        elif file_sha256(path) != expected:
            problems.append(f"{relative} was changed after evaluation")
    return problems
