"""The code on docs/custom_op.md and docs/check.md runs, block after block, in one namespace.

Conventions of those pages: a ```python block runs; ```python raises=SomeError must raise an
exception of that class name; a ```text block right after a code block is the output that block
produced (the first line of what it printed, or of its exception's message, must equal the text's
first line, so the outputs pasted on the page stay true). Other blocks (bash) are not run.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

pytest.importorskip("torch")
DOCS = Path(__file__).resolve().parents[1] / "docs"
FENCE = re.compile(r"^```(\w*)([^\n]*)\n(.*?)^```\s*$", re.S | re.M)


def blocks(page):
    """(language, options, code) of every fenced block of a page, in order."""
    return [(m.group(1), m.group(2).strip(), m.group(3)) for m in FENCE.finditer((DOCS / page).read_text())]


@pytest.mark.parametrize("page", ["custom_op.md", "check.md"])
def test_page_code_runs_and_its_outputs_are_true(page):
    found = blocks(page)
    namespace = {"__name__": f"docs_{page.replace('.', '_')}"}
    ran = 0
    for i, (lang, options, code) in enumerate(found):
        if lang != "python":
            continue
        expected = re.fullmatch(r"raises=(\w+)", options).group(1) if options else None
        out, error = io.StringIO(), None
        with contextlib.redirect_stdout(out):
            try:
                exec(compile(code, f"{page} block {i}", "exec"), namespace)
            except Exception as err:  # noqa: BLE001 -- compared with the page's claim below
                error = err
        if expected is None and error is not None:
            raise error
        if expected is not None:
            assert type(error).__name__ == expected, f"{page} block {i}: expected {expected}, got {error!r}"
        ran += 1
        if i + 1 < len(found) and found[i + 1][0] == "text":
            produced = str(error) if error is not None else out.getvalue()
            claimed = found[i + 1][2].splitlines()[0]
            assert produced.splitlines()[0] == claimed, f"{page} block {i}: the page shows another output"
    assert ran >= 3
