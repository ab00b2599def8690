"""compare_optimizer_with_torch: an optimizer (and a learning-rate scheduler) against PyTorch's,
step by step on the same gradients."""

from __future__ import annotations

import numpy as np

from minicnn.testing._report import ParityError, ParityReport, compare_arrays, default_rtol
from minicnn.testing._util import describe, host_array, require_torch, stream

# group options a scheduler may change, compared after construction and after every step
_HYPER = ("lr", "initial_lr", "momentum", "betas")


class _Track:
    """The rows of one parameter over the steps: the worst one, and the first that fails."""

    def __init__(self):
        self.worst = self.first_bad = None
        self.bad_step = None

    def add(self, row, step):
        if self.worst is None or row.max_rel > self.worst.max_rel:
            self.worst = row
        if not row.ok and self.first_bad is None:
            self.first_bad, self.bad_step = row, step

    def row(self):
        if self.first_bad is None:
            return self.worst
        row = self.first_bad
        row.max_abs, row.max_rel = max(row.max_abs, self.worst.max_abs), max(row.max_rel, self.worst.max_rel)
        first = f"first off after step {self.bad_step} (the element shown is from that step)"
        row.note = (row.note + "; " if row.note else "") + first
        return row


def _hyper(optimizer, scheduler) -> dict:
    values = {}
    for g, group in enumerate(optimizer.param_groups):
        for key in _HYPER:
            if key in group:
                v = group[key]
                values[f"group {g} {key}"] = list(v) if isinstance(v, (tuple, list)) else [v]
    if scheduler is not None:
        values["get_last_lr()"] = list(scheduler.get_last_lr())
    return values


def _initial_values(params, rng):
    from minicnn.testing._parity import _is_shape

    out = []
    for i, p in enumerate(params):
        if _is_shape(p):
            out.append(np.asarray(rng.standard_normal(p)))
        elif hasattr(p, "shape") and hasattr(p, "dtype"):
            out.append(host_array(p))
        else:
            raise TypeError(
                f"compare_optimizer_with_torch: params[{i}] is {describe(p)}; "
                "expected a shape (tuple of ints) or an array of initial values"
            )
    return out


def compare_optimizer_with_torch(
    make_mine,
    make_theirs,
    params,
    *,
    steps=20,
    grads=None,
    scheduler=None,
    dtype="float64",
    device="cpu",
    rtol=None,
    atol=None,
    lr_rtol=1e-12,
    seed=0,
) -> ParityReport:
    """Run a minicnn optimizer and PyTorch's for ``steps`` steps on the same parameters and gradients.

    ``params``: shapes (random standard-normal starting values, seeded by ``seed``) or arrays of
    starting values. ``make_mine(list_of_minicnn_tensors)`` and ``make_theirs(list_of_torch_tensors)``
    build the two optimizers (parameter groups included, e.g. ``lambda ps: optim.SGD(ps, lr=0.1)``
    and ``lambda ps: torch.optim.SGD(ps, lr=0.1, foreach=False)``). ``scheduler``: None or a pair
    ``(make_mine_scheduler, make_theirs_scheduler)``, each called with its optimizer and stepped
    after every optimizer step. ``grads``: None (random standard-normal gradients, seeded) or one
    list per step with an array (or None: no gradient that step) per parameter.

    After every step the parameters are compared (``rtol``, ``atol``: as compare_with_torch; their
    dtype and device must not change), and so are the groups' ``lr``, ``initial_lr``, ``momentum`` and
    ``betas`` and the scheduler's ``get_last_lr()`` (relative tolerance ``lr_rtol``; 0 = exactly).
    Returns a ParityReport with one row per parameter and per option (the worst step; for an
    option the element index is the step, 0 being after construction); raises ParityError on
    any difference. ``report.optimizer``, ``report.params`` (and the torch_ twins) are the objects used.
    """
    torch = require_torch("compare_optimizer_with_torch")
    import minicnn as mc
    from minicnn.backend import Device
    from minicnn.optim import Optimizer

    dtype = np.dtype(dtype)
    device = str(Device(device))
    rtol = default_rtol(dtype) if rtol is None else float(rtol)
    rng = stream(seed, "inputs")
    init = _initial_values(list(params), rng)
    if grads is None:
        grads = [[rng.standard_normal(a.shape) for a in init] for _ in range(steps)]
    grads = list(grads)
    if len(grads) < steps or any(len(g) != len(init) for g in grads[:steps]):
        raise ValueError(
            f"compare_optimizer_with_torch: grads= needs {steps} lists (one per step) of {len(init)} "
            "arrays or None (one per parameter)"
        )
    mine_params = [mc.tensor(a.astype(dtype), device=device, requires_grad=True) for a in init]
    torch_params = [torch.from_numpy(a.astype(dtype)).requires_grad_() for a in init]
    opt, topt = make_mine(mine_params), make_theirs(torch_params)
    if not isinstance(opt, Optimizer):
        raise TypeError(
            f"compare_optimizer_with_torch: make_mine returned {describe(opt)}, not a minicnn Optimizer"
        )
    if not isinstance(topt, torch.optim.Optimizer):
        raise TypeError(
            f"compare_optimizer_with_torch: make_theirs returned {describe(topt)}, not a torch Optimizer"
        )
    if len(opt.param_groups) != len(topt.param_groups):
        raise ValueError(
            "compare_optimizer_with_torch: minicnn's optimizer has "
            f"{len(opt.param_groups)} parameter groups, PyTorch's {len(topt.param_groups)}"
        )
    sched = tsched = None
    if scheduler is not None:
        make_sched, make_tsched = scheduler
        sched, tsched = make_sched(opt), make_tsched(topt)

    tracks = [_Track() for _ in init]
    mine_hyper, theirs_hyper = [_hyper(opt, sched)], [_hyper(topt, tsched)]
    for step in range(steps):
        for p, t, g in zip(mine_params, torch_params, grads[step]):
            p.grad = None if g is None else mc.tensor(np.asarray(g).astype(dtype), device=device)
            t.grad = None if g is None else torch.from_numpy(np.asarray(g).astype(dtype))
        opt.step()
        topt.step()
        if sched is not None:
            sched.step()
            tsched.step()
        for i, (p, t) in enumerate(zip(mine_params, torch_params)):
            row = compare_arrays(
                p.numpy(), t.detach().numpy(), rtol=rtol, atol=atol, name=f"param {i}", kind="param"
            )
            problems = []
            if p.dtype != dtype:
                problems.append(f"its dtype changed to {p.dtype}")
            if p.device != mc.device(device):
                problems.append(f"it moved to {p.device}")
            if problems:
                row.ok, row.note = False, "; ".join(problems)
            tracks[i].add(row, step + 1)
        mine_hyper.append(_hyper(opt, sched))
        theirs_hyper.append(_hyper(topt, tsched))

    report = ParityReport(
        f"compare_optimizer_with_torch({type(opt).__name__}, {steps} steps, {dtype.name}, {device})"
    )
    for track in tracks:
        report.add(track.row())
    for key in theirs_hyper[0]:
        if key not in mine_hyper[0]:
            continue
        try:
            mine_values = np.array([h[key] for h in mine_hyper], dtype=np.float64)
            theirs_values = np.array([h[key] for h in theirs_hyper], dtype=np.float64)
        except (ValueError, KeyError):  # an option appears or disappears during the run
            continue
        if mine_values.shape[1] == 1:
            mine_values, theirs_values = mine_values[:, 0], theirs_values[:, 0]
        report.add(
            compare_arrays(mine_values, theirs_values, rtol=lr_rtol, name=f"{key} (by step)", kind="hyper")
        )
    report.params, report.torch_params = mine_params, torch_params
    report.optimizer, report.torch_optimizer = opt, topt
    report.scheduler, report.torch_scheduler = sched, tsched
    if not report.ok:
        raise ParityError(report)
    return report
