"""compare_with_torch: run a minicnn function or Module and its PyTorch twin on the same inputs,
back-propagate the same upstream gradient through both, and compare everything."""

from __future__ import annotations

import numpy as np

from minicnn.backend import is_cupy_array
from minicnn.testing._report import ParityError, ParityReport, Row, compare_arrays, default_rtol
from minicnn.testing._util import describe, host_array, is_torch_tensor, output_list, require_torch, stream


def _is_shape(x) -> bool:
    return isinstance(x, tuple) and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in x
    )


def _name(fn) -> str:
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, type):  # a classmethod such as MyOp.apply
        return f"{owner.__name__}.{fn.__name__}"
    return getattr(fn, "__name__", None) or type(fn).__name__


def _to_arrays(inputs, rng):
    """Each input as a host NumPy array (shapes drawn from ``rng``), or None for a value passed as is."""
    from minicnn.tensor import Tensor

    arrays = []
    for x in inputs:
        if _is_shape(x):
            arrays.append(np.asarray(rng.standard_normal(x)))
        elif isinstance(x, (Tensor, np.ndarray)) or is_torch_tensor(x) or is_cupy_array(x):
            arrays.append(host_array(x))
        else:
            arrays.append(None)  # Python numbers, None, strings...: passed unchanged to both
    return arrays


def _resolve_dtype(dtype, arrays):
    if dtype is None:
        floats = [a.dtype for a in arrays if a is not None and a.dtype.kind == "f"]
        dtype = floats[0] if floats else np.float64
    return np.dtype(dtype)


def _grad_flags(grad, arrays, inputs):
    if grad is None:
        return [a is not None and a.dtype.kind == "f" for a in arrays]
    grad = list(grad)
    if len(grad) != len(arrays):
        raise ValueError(f"compare_with_torch: grad= has {len(grad)} flags for {len(arrays)} inputs")
    for i, (g, a) in enumerate(zip(grad, arrays)):
        if g and (a is None or a.dtype.kind != "f"):
            raise TypeError(
                f"compare_with_torch: grad= asks for the gradient of input {i}, which is "
                f"{describe(inputs[i])}; only floating-point inputs have gradients"
            )
    return [bool(g) for g in grad]


def _copy_state(mine, theirs, source, torch):
    """Copy parameters and buffers across by state-dict key (one-line errors if the keys or shapes differ)."""
    msd, tsd = mine.state_dict(), theirs.state_dict()
    only_mine = [k for k in msd if k not in tsd]
    only_theirs = [k for k in tsd if k not in msd]
    if only_mine or only_theirs:
        raise ValueError(
            f"compare_with_torch: the state-dict keys differ: only in minicnn {only_mine}, "
            f"only in PyTorch {only_theirs}; build the same layers in both (same names, same order)"
        )
    shapes = [
        f"{k!r} is {tuple(msd[k].shape)} in minicnn but {tuple(tsd[k].shape)} in PyTorch"
        for k in msd
        if tuple(msd[k].shape) != tuple(tsd[k].shape)
    ]
    if shapes:
        raise ValueError("compare_with_torch: state-dict shapes differ: " + "; ".join(shapes))
    if source == "theirs":
        mine.load_state_dict({k: v.detach().cpu().numpy() for k, v in tsd.items()})
    else:
        theirs.load_state_dict({k: torch.from_numpy(host_array(v)).to(tsd[k].dtype) for k, v in msd.items()})


def _grad_row(name, mine_t, their_t, rtol, atol):
    """The row of one gradient: minicnn's ``.grad`` of ``mine_t`` against PyTorch's of ``their_t``."""
    theirs_g, mine_g = their_t.grad, mine_t.grad
    shape = tuple(their_t.shape)
    if theirs_g is None:
        if mine_g is None:
            return Row(name, shape, 0.0, 0.0, rtol, atol, True, "grad", size=int(np.prod(shape)))
        row = compare_arrays(mine_g.numpy(), np.zeros(shape), rtol=0.0, atol=0.0, name=name, kind="grad")
        if not row.ok:
            row.note = "PyTorch computes no gradient here (it is zero), minicnn's is not zero"
        return row
    expected = theirs_g.detach().cpu().numpy()
    if mine_g is None:
        largest = float(np.abs(expected).max(initial=0))
        note = f"minicnn computed no gradient (PyTorch's largest is {largest:.3g})"
        return Row(name, shape, np.inf, np.inf, rtol, atol, False, "grad", size=int(expected.size), note=note)
    row = compare_arrays(mine_g.numpy(), expected, rtol=rtol, atol=atol, name=name, kind="grad")
    if mine_g.dtype != mine_t.dtype:
        row.ok, row.note = False, f"the gradient is {mine_g.dtype}, the tensor {mine_t.dtype}"
    return row


def compare_with_torch(
    mine,
    theirs,
    *inputs,
    dtype=None,
    device="cpu",
    rtol=None,
    atol=None,
    grad=None,
    upstream=None,
    seed=0,
    check_grads=True,
    train=None,
    source="theirs",
    copy_state=True,
) -> ParityReport:
    """Run ``mine`` (a minicnn function or Module) and ``theirs`` (its PyTorch twin) on the same
    inputs and compare the outputs, every input gradient, every parameter gradient and every buffer.

    Inputs are NumPy arrays, minicnn Tensors, torch tensors, or shapes (tuples of ints: standard
    normal values from a generator seeded with ``seed``); anything else (numbers, None) is passed
    unchanged to both. Floating inputs are converted to ``dtype`` (default: the first floating
    input's, float64 when there is none) and get a gradient unless ``grad`` (one flag per input)
    says otherwise; integer inputs (class labels) pass through without one.

    For Modules, the state dict is copied from ``source`` ("theirs", PyTorch's initialisation, or
    "mine") into the other by key, both are converted to ``dtype`` (mine also moved to ``device``)
    in place, their gradients reset, and the training mode set to ``train`` (when given; otherwise
    both must already agree). ``copy_state=False`` keeps the state as it is (e.g. running statistics
    after earlier calls).

    Both outputs are back-propagated with the same random upstream gradient (``upstream``: one
    array per output that requires a gradient, to choose it; ``report.upstream`` holds those used).
    minicnn runs on ``device``; PyTorch runs on the CPU; all comparisons happen on the host with
    ``rtol`` (default: 1e-10 in float64, 1e-4 in float32) and ``atol`` (default: rtol times the
    largest |PyTorch value| of each tensor).

    Returns a ParityReport (``print(report)`` shows the table); raises ParityError carrying it when
    anything differs. ``report.mine_outputs`` and ``report.torch_outputs`` hold the outputs as
    NumPy arrays.
    """
    torch = require_torch("compare_with_torch")
    import minicnn as mc
    from minicnn.backend import Device
    from minicnn.nn import Module

    mine_module, theirs_module = isinstance(mine, Module), isinstance(theirs, torch.nn.Module)
    if mine_module != theirs_module:
        what = lambda m: "a Module" if isinstance(m, (Module, torch.nn.Module)) else _name(m)  # noqa: E731
        raise TypeError(
            f"compare_with_torch: mine is {what(mine)} but theirs is {what(theirs)}; compare a minicnn "
            "Module with a torch.nn.Module, or a function with a function"
        )
    for side, fn in (("mine", mine), ("theirs", theirs)):
        if not callable(fn):
            raise TypeError(f"compare_with_torch: {side} must be a function or a Module, got {describe(fn)}")
    if source not in ("theirs", "mine"):
        raise ValueError(f"compare_with_torch: source must be 'theirs' or 'mine', got {source!r}")
    device = str(Device(device))
    arrays = _to_arrays(inputs, stream(seed, "inputs"))
    dtype = _resolve_dtype(dtype, arrays)
    rtol = default_rtol(dtype) if rtol is None else float(rtol)
    flags = _grad_flags(grad, arrays, inputs)
    tdtype = getattr(torch, dtype.name)

    mc_in, th_in = [], []
    for x, a, g in zip(inputs, arrays, flags):
        if a is None:
            mc_in.append(x)
            th_in.append(x)
        elif a.dtype.kind == "f":
            mc_in.append(mc.tensor(a.astype(dtype), device=device, requires_grad=g))
            th_in.append(torch.from_numpy(a.astype(dtype)).requires_grad_(g))
        else:
            mc_in.append(mc.tensor(a, device=device))
            th_in.append(torch.from_numpy(np.array(a)))

    mine_params, theirs_params = {}, {}
    if mine_module:
        theirs.to(device="cpu", dtype=tdtype)
        mine.to(device=device, dtype=dtype)
        if train is not None:
            mine.train(bool(train))
            theirs.train(bool(train))
        elif mine.training != theirs.training:
            raise ValueError(
                f"compare_with_torch: mine is in {'training' if mine.training else 'eval'} mode, theirs in "
                f"{'training' if theirs.training else 'eval'} mode; pass train=True or train=False"
            )
        if copy_state:
            _copy_state(mine, theirs, source, torch)
        mine_params = dict(mine.named_parameters())
        theirs_params = dict(theirs.named_parameters())
        for p in mine_params.values():
            p.grad = None
        theirs.zero_grad(set_to_none=True)

    report = ParityReport(f"compare_with_torch({_name(mine)}, {dtype.name}, {device})")
    report.dtype, report.device = dtype.name, device
    mc_out, th_out = output_list(mine(*mc_in)), output_list(theirs(*th_in))
    if len(mc_out) != len(th_out):
        raise ParityError(
            f"compare_with_torch: minicnn returned {len(mc_out)} outputs, PyTorch {len(th_out)}"
        )
    names = ["output"] if len(mc_out) == 1 else [f"output {i}" for i in range(len(mc_out))]
    for name, m, t in zip(names, mc_out, th_out):
        if not isinstance(m, mc.Tensor):
            raise TypeError(
                f"compare_with_torch: mine returned {describe(m)} as {name}; expected a minicnn Tensor"
            )
        if not is_torch_tensor(t):
            raise TypeError(
                f"compare_with_torch: theirs returned {describe(t)} as {name}; expected a torch tensor"
            )
        if tuple(m.shape) != tuple(t.shape):
            raise ParityError(
                f"compare_with_torch: {name}: minicnn's shape {tuple(m.shape)} differs from "
                f"PyTorch's {tuple(t.shape)}"
            )
        row = report.add(compare_arrays(m.numpy(), t.detach().cpu().numpy(), rtol=rtol, atol=atol, name=name))
        problems = []
        if str(m.dtype) != str(t.dtype).replace("torch.", "minicnn."):
            problems.append(f"dtype {m.dtype}, PyTorch's {t.dtype}")
        if m.device != mc.device(device):
            problems.append(f"on {m.device}, expected {device}")
        if problems:
            row.ok, row.note = False, "; ".join(problems)
    report.mine_outputs = [host_array(m) for m in mc_out]
    report.torch_outputs = [host_array(t) for t in th_out]

    wants_grads = any(flags) or any(p.requires_grad for p in theirs_params.values())
    report.upstream = []
    if check_grads and wants_grads:
        rng = stream(seed, "upstream")
        mc_total, th_total = None, None
        chosen = iter(upstream or [])
        for name, m, t in zip(names, mc_out, th_out):
            if not t.requires_grad:
                continue
            if upstream:
                try:
                    u = np.asarray(next(chosen)).astype(dtype)
                except StopIteration:
                    raise ValueError(
                        "compare_with_torch: upstream= needs one array per output that requires a gradient"
                    ) from None
            else:
                u = rng.standard_normal(tuple(t.shape)).astype(dtype)
            report.upstream.append(u)
            if not m.requires_grad:
                note = "PyTorch's output requires a gradient, minicnn's does not (no graph was recorded)"
                report.add(
                    Row(f"{name} graph", tuple(m.shape), np.inf, np.inf, rtol, atol, False, "grad", note=note)
                )
                continue
            mc_term = (m * mc.tensor(u, device=device)).sum()
            th_term = (t * torch.from_numpy(u)).sum()
            mc_total = mc_term if mc_total is None else mc_total + mc_term
            th_total = th_term if th_total is None else th_total + th_term
        if th_total is None and not report.failures:
            raise ValueError(
                "compare_with_torch: no output of PyTorch's requires a gradient, so there is nothing to "
                "back-propagate; pass check_grads=False (or grad= with the inputs that matter)"
            )
        if mc_total is not None:
            mc_total.backward()
        if th_total is not None:
            th_total.backward()
        for i, (m, t, g) in enumerate(zip(mc_in, th_in, flags)):
            if g:
                report.add(_grad_row(f"input {i} grad", m, t, rtol, atol))
        for name, tp in theirs_params.items():
            if tp.requires_grad and name in mine_params:
                report.add(_grad_row(f"{name} grad", mine_params[name], tp, rtol, atol))

    if mine_module:
        msd, tsd = mine.state_dict(), theirs.state_dict()
        for key in msd:
            if key in mine_params or key not in tsd:
                continue
            report.add(
                compare_arrays(msd[key].numpy(), tsd[key].detach().cpu().numpy(), rtol=rtol, atol=atol,
                               name=key, kind="buffer")
            )  # fmt: skip
    if not report.ok:
        raise ParityError(report)
    return report
