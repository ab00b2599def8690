"""``minicnn.profile``: where does the time of a training step go?

Usage::

    with minicnn.profile() as prof:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    print(prof.table())

While the block runs, every op's ``forward`` and ``backward`` is timed by the autograd engine
(it calls ``record(op_name, phase, seconds)`` on the object installed in
``minicnn.autograd._op_timer``). The wall-clock time of the whole block is measured too, so
the table also shows the time spent *outside* ops: the optimizer step, ``zero_grad``, building
the graph, Python overhead of the layers. On a GPU each op is bracketed by a device
synchronisation, otherwise the asynchronous CUDA launches would be timed instead of the kernels
(this makes a profiled GPU step slower than an unprofiled one).

The per-op timing costs about two ``perf_counter`` calls per op, so the numbers of a profiled
step are within a few percent of an unprofiled one on the CPU.
"""

from __future__ import annotations

from time import perf_counter

from minicnn import autograd, backend

_OUTSIDE = "(outside ops: optimizer, Python)"


class OpStats:
    """Accumulated time and call count of one op type in one phase."""

    __slots__ = ("seconds", "count")

    def __init__(self):
        self.seconds = 0.0
        self.count = 0


class profile:
    """Context manager that records the time of every op (forward and backward) run in its block.

    After the block: ``prof.table()`` (a text table), ``prof.rows()`` (the same as a list of
    dicts), ``prof.total_seconds`` (wall clock of the block), ``prof.op_seconds`` (time inside
    ops) and ``prof.stats`` (``{(op_name, phase): OpStats}``). Pass ``steps=k`` to ``table``
    when the block ran ``k`` training steps, to see per-step milliseconds.
    """

    def __init__(self):
        self.stats: dict[tuple[str, str], OpStats] = {}
        self.total_seconds = None
        self._t0 = None
        self._prev = None
        self._active = False

    # ------------------------------------------------------------ hook used by autograd
    def record(self, op_name: str, phase: str, seconds: float) -> None:
        """Called by the autograd engine after each op's ``forward`` or ``backward``."""
        key = (op_name, phase)
        s = self.stats.get(key)
        if s is None:
            s = self.stats[key] = OpStats()
        s.seconds += seconds
        s.count += 1

    def sync(self) -> None:
        """Wait for the GPU (so an op's time is its kernels' time); nothing to do on the CPU."""
        cp = backend._cupy  # set once CuPy has been imported and found a GPU
        if cp is not None:
            cp.cuda.Device().synchronize()

    # ------------------------------------------------------------ context manager
    def __enter__(self):
        if autograd._op_timer is not None:
            raise RuntimeError(
                "minicnn.profile: another profile is already recording; profiles cannot be nested."
            )
        self.stats.clear()
        self.total_seconds = None
        self._active = True
        autograd._op_timer = self
        self.sync()
        self._t0 = perf_counter()
        return self

    def __exit__(self, *exc):
        try:
            self.sync()
            self.total_seconds = perf_counter() - self._t0
        finally:
            autograd._op_timer = None  # always switch profiling off, even on an exception
            self._active = False
        return False

    # ------------------------------------------------------------ results
    @property
    def op_seconds(self) -> float:
        """Total time spent inside op forwards and backwards."""
        return sum(s.seconds for s in self.stats.values())

    def rows(self) -> list[dict]:
        """One dict per op type: name, forward/backward seconds and counts, total and % of the block.

        Sorted by total time, largest first. When the block has finished, a last row holds the
        time outside ops (block wall clock minus op time), so the ``percent`` column sums to 100.
        """
        if self._active:
            raise RuntimeError("minicnn.profile: the results are ready after the `with` block ends.")
        names = sorted({name for name, _ in self.stats})
        out = []
        for name in names:
            f = self.stats.get((name, "forward"), OpStats())
            b = self.stats.get((name, "backward"), OpStats())
            out.append(
                {
                    "op": name,
                    "forward_s": f.seconds,
                    "backward_s": b.seconds,
                    "forward_count": f.count,
                    "backward_count": b.count,
                    "total_s": f.seconds + b.seconds,
                }
            )
        out.sort(key=lambda r: r["total_s"], reverse=True)
        op_total = self.op_seconds
        # perf_counter noise can make the op sum exceed a tiny block's wall time by a hair.
        total = max(self.total_seconds or 0.0, op_total)
        outside = total - op_total
        out.append(
            {
                "op": _OUTSIDE,
                "forward_s": 0.0,
                "backward_s": 0.0,
                "forward_count": 0,
                "backward_count": 0,
                "total_s": outside,
            }
        )
        for r in out:
            r["percent"] = 100.0 * r["total_s"] / total if total > 0 else 0.0
        return out

    def table(self, steps: int = 1) -> str:
        """A text table of milliseconds per op type (divided by ``steps``), forward vs backward."""
        if steps < 1:
            raise ValueError(f"profile.table: steps must be >= 1, got {steps}")
        rows = self.rows()
        ms = 1e3 / steps
        width = max(len("op"), *(len(r["op"]) for r in rows))
        head = (
            f"{'op':<{width}}  {'fwd ms':>9}  {'bwd ms':>9}  {'total ms':>9}  {'%':>6}  "
            f"{'fwd n':>6}  {'bwd n':>6}"
        )
        lines = [head, "-" * len(head)]
        for r in rows:
            if r["op"] == _OUTSIDE:
                lines.append("-" * len(head))
                fwd = bwd = nf = nb = ""
            else:
                fwd, bwd = f"{r['forward_s'] * ms:9.3f}", f"{r['backward_s'] * ms:9.3f}"
                nf, nb = r["forward_count"] // steps, r["backward_count"] // steps
            lines.append(
                f"{r['op']:<{width}}  {fwd:>9}  {bwd:>9}  {r['total_s'] * ms:9.3f}  "
                f"{r['percent']:6.1f}  {nf:>6}  {nb:>6}"
            )
        total = max(self.total_seconds or 0.0, self.op_seconds)
        fwd_all = sum(r["forward_s"] for r in rows)
        bwd_all = sum(r["backward_s"] for r in rows)
        lines.append(
            f"{'total (wall clock of the block)':<{width}}  {fwd_all * ms:9.3f}  {bwd_all * ms:9.3f}  "
            f"{total * ms:9.3f}  {100.0:6.1f}"
        )
        if steps > 1:
            lines.append(f"(per step: the block ran {steps} steps; counts are per step)")
        return "\n".join(lines)

    def __repr__(self):
        state = "recording" if self._active else f"{len(self.stats)} entries"
        return f"<minicnn.profile {state}>"
