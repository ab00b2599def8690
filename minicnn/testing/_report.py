"""The one comparison rule of minicnn's checks, and the report it fills.

Rule (the parity suite's): an element of minicnn's result ``a`` matches PyTorch's ``e`` when

    |a - e| <= atol + rtol * |e|,    atol = rtol * max|e|   (the largest finite |e| of the tensor)

so values near zero are judged on the tensor's scale, not on their own. NaN must sit where
PyTorch has NaN, infinities must be equal, integer and boolean results must be equal exactly.
Default ``rtol``: 1e-10 in float64, 1e-4 in float32 (``RTOL``).

The "max rel err" of a report is ``max |a - e| / (atol / rtol + |e|)``: the error relative to the
reference, floored at the tensor's scale. It is exactly the quantity the rule bounds, so a row is
ok when its max rel err is at most its tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RTOL = {"float64": 1e-10, "float32": 1e-4}


def default_rtol(dtype) -> float:
    """The parity suite's relative tolerance for ``dtype`` (float64: 1e-10, float32: 1e-4)."""
    name = np.dtype(dtype).name
    if name not in RTOL:
        raise ValueError(
            f"there is no default tolerance for {name}: minicnn compares float64 and float32 results "
            "(pass rtol= to choose one)"
        )
    return RTOL[name]


@dataclass
class Row:
    """One compared tensor: the numbers a report prints, and where the worst element is."""

    name: str
    shape: tuple
    max_abs: float
    max_rel: float
    rtol: float
    atol: float | None  # None: the default rtol * max|reference|
    ok: bool
    kind: str = "output"  # output, grad, buffer, param, hyper: how minicnn.check groups the errors
    exact: bool = False  # integer / boolean results, compared exactly
    bad: int = 0  # elements out of tolerance
    size: int = 0
    worst: tuple | None = None  # index of the worst element
    mine: object = None  # minicnn's and PyTorch's values there
    theirs: object = None
    note: str = ""  # what else is wrong (a dtype, a missing gradient), or a remark

    @property
    def tolerance(self) -> str:
        if self.exact or (self.rtol == 0 and not self.atol):
            return "exact"
        text = _sci(self.rtol) if self.rtol else "0"
        return text if self.atol is None else f"{text}, atol {_sci(self.atol)}"

    def describe(self) -> str:
        """One line: what is off in this tensor, its worst element and both values."""
        parts = [self.name]
        if self.worst is not None and self.bad:
            index = "[" + ", ".join(str(int(i)) for i in self.worst) + "]"
            parts.append(
                f"worst element {index}: minicnn {_value(self.mine)}, PyTorch {_value(self.theirs)} "
                f"({self.bad} of {self.size} elements out of tolerance; max rel err "
                f"{_num(self.max_rel)} > {self.tolerance})"
            )
        if self.note:
            parts.append(self.note)
        return ": ".join(parts)


def _value(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    return str(v)


def _sci(v) -> str:
    """1e-10, 1e-4, 2.5e-3: a tolerance, short."""
    mantissa, exponent = f"{v:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _num(v) -> str:
    if v is None:
        return "-"
    if v == 0:
        return "0"
    if not np.isfinite(v):
        return str(v)
    return f"{v:.1e}"


def compare_arrays(actual, expected, *, rtol, atol=None, name="output", kind="output") -> Row:
    """Compare two host arrays with the rule above and return their row (nothing is raised)."""
    a, e = np.asarray(actual), np.asarray(expected)
    if a.shape != e.shape:
        return Row(
            name, tuple(e.shape), np.inf, np.inf, rtol, atol, False, kind, size=int(e.size),
            note=f"minicnn's shape {tuple(a.shape)} differs from PyTorch's {tuple(e.shape)}",
        )  # fmt: skip
    shape = tuple(e.shape)
    if e.dtype.kind in "biu" or a.dtype.kind in "biu":
        differ = a != e
        with np.errstate(over="ignore", invalid="ignore"):
            err = np.abs(a.astype(np.float64) - e.astype(np.float64))
        row = Row(name, shape, 0.0, 0.0, 0.0, None, True, kind, exact=True, size=int(e.size))
        if e.size:
            bad = int(np.count_nonzero(differ))
            row.bad, row.ok = bad, bad == 0
            row.max_abs = float(err.max())
            row.max_rel = float(np.inf if bad else 0.0)
            if bad:
                row.worst = np.unravel_index(int(np.argmax(differ)), shape)
                row.mine, row.theirs = a[row.worst].item(), e[row.worst].item()
        return row

    a64, e64 = a.astype(np.float64), e.astype(np.float64)
    finite = np.isfinite(e64)
    scale = float(np.max(np.abs(e64[finite]), initial=0.0))
    tol_abs = rtol * max(scale, 1e-300) if atol is None else float(atol)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(a64 - e64)
        same_nonfinite = (np.isnan(a64) & np.isnan(e64)) | (a64 == e64)
        # where PyTorch's value is finite, a NaN or inf of minicnn's is an infinite error
        err = np.where(finite, np.where(np.isnan(err), np.inf, err), np.where(same_nonfinite, 0.0, np.inf))
        allowed = tol_abs + rtol * np.where(finite, np.abs(e64), 0.0)
        bad_mask = err > allowed
        floor = tol_abs / rtol if rtol > 0 else 0.0
        denom = floor + np.abs(np.where(finite, e64, 0.0))
        rel = np.where(err == 0, 0.0, err / np.where(denom > 0, denom, 1e-300))
        score = np.where(err == 0, 0.0, err / np.where(allowed > 0, allowed, 1e-300))
    row = Row(name, shape, 0.0, 0.0, rtol, atol, True, kind, size=int(e.size))
    if e.size == 0:
        return row
    row.max_abs, row.max_rel = float(err.max()), float(rel.max())
    row.bad = int(np.count_nonzero(bad_mask))
    row.ok = row.bad == 0
    worst = np.unravel_index(int(np.argmax(score if row.bad else rel)), shape)
    row.worst, row.mine, row.theirs = worst, a[worst].item(), e[worst].item()
    return row


class ParityReport:
    """The rows of one comparison with PyTorch. ``str(report)`` is an aligned table; ``report.ok``
    is True when every row is within its tolerance."""

    def __init__(self, title: str = "", rows=None):
        self.title = title
        self.rows: list[Row] = list(rows or [])

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if not r.ok]

    def worst_failure(self) -> Row | None:
        """The failing row with the largest error relative to its tolerance (notes without numbers first)."""
        failures = self.failures
        if not failures:
            return None

        def badness(r):
            if not r.bad:
                return np.inf  # a missing gradient, a wrong dtype or shape
            return r.max_rel / r.rtol if r.rtol else np.inf

        return max(failures, key=badness)

    def max_error(self, *kinds) -> float | None:
        """The largest max rel err among the rows of these kinds (all rows without kinds); None if none."""
        values = [r.max_rel for r in self.rows if not kinds or r.kind in kinds]
        return max(values) if values else None

    def table(self) -> str:
        head = ("tensor", "shape", "max abs err", "max rel err", "tolerance", "ok")
        body = [
            (r.name, str(r.shape), _num(r.max_abs), _num(r.max_rel), r.tolerance, "yes" if r.ok else "NO")
            for r in self.rows
        ]
        widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]
        lines = []
        for line in [head, *body]:
            cells = [
                cell.ljust(w) if i in (0, 1, 4) else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(line, widths))
            ]
            lines.append("  ".join(cells).rstrip())
        notes = [f"  {r.name}: {r.note}" for r in self.rows if r.note]
        return "\n".join(lines + (["notes:"] + notes if notes else []))

    def __str__(self) -> str:
        return (self.title + "\n" if self.title else "") + self.table()

    def __repr__(self) -> str:
        state = "ok" if self.ok else f"{len(self.failures)} of {len(self.rows)} rows off"
        return f"<ParityReport {self.title!r}: {state}>"


class ParityError(AssertionError):
    """minicnn and PyTorch disagree. The first line names the worst tensor, its worst element and
    both values; the table of every compared tensor follows. ``.report`` holds the rows (None for
    a one-line error, e.g. outputs of different shapes)."""

    def __init__(self, message_or_report, report: ParityReport | None = None):
        if isinstance(message_or_report, ParityReport):
            report = message_or_report
            worst = report.worst_failure()
            head = worst.describe() if worst is not None else "a check failed"
            prefix = report.title.split("(")[0] or "parity"
            message = f"{prefix}: {head}\n{report}"
        else:
            message = str(message_or_report)
        super().__init__(message)
        self.report = report


def assert_close(actual, expected, rtol, name="output", atol=None) -> Row:
    """Raise ParityError unless ``actual`` matches ``expected`` under the rule above; return the row."""
    row = compare_arrays(_host(actual), _host(expected), rtol=rtol, atol=atol, name=name)
    if not row.ok:
        raise ParityError(ParityReport("assert_close", [row]))
    return row


def _host(x):
    """A NumPy array from a NumPy/CuPy array, a minicnn Tensor, a torch tensor or Python data."""
    if hasattr(x, "numpy") and callable(x.numpy):
        if type(x).__module__.startswith("torch"):
            return x.detach().cpu().numpy()
        return x.numpy()
    if hasattr(x, "get") and type(x).__module__.split(".")[0] == "cupy":
        return x.get()
    return np.asarray(x)
