"""gradcheck: minicnn's backward against central finite differences, in float64 (no PyTorch)."""

from __future__ import annotations

import numpy as np

from minicnn.testing._util import _raw, describe, output_list, stream


class GradcheckError(AssertionError):
    """minicnn's analytical gradient disagrees with the finite differences. The message names the
    tensor ("input 0", "parameter conv.weight"), its worst element, both values, and gives a hint
    when that element sits on a kink (ReLU at 0, tied maxima)."""


def _index(idx) -> str:
    return "[" + ", ".join(str(int(i)) for i in idx) + "]"


def _float64_only(name, dtype, how):
    if dtype.kind != "f":
        raise TypeError(f"gradcheck: {name} has dtype {dtype}; only floating-point tensors have gradients")
    if dtype != np.float64:
        raise TypeError(
            f"gradcheck needs double precision: {name} is {dtype}. Convert it with {how} (finite "
            f"differences in {dtype} keep only about half of its digits, so even a correct backward fails)"
        )


def _prepare(fn, inputs, device):
    """Private copies of the inputs (checked ones require a gradient) and the (name, tensor) to check."""
    import minicnn as mc
    from minicnn.nn import Module

    call_inputs, checked, skipped = [], [], []
    for i, x in enumerate(inputs):
        name = f"input {i}"
        if isinstance(x, mc.Tensor):
            if x.requires_grad:
                _float64_only(name, np.dtype(x.dtype), f"{name}.double()")
                x = mc.tensor(x.numpy(), dtype=x.dtype, device=x.device, requires_grad=True)
                checked.append((name, x))
            else:
                skipped.append((name, x))
        elif isinstance(x, np.ndarray):
            if x.dtype.kind == "f":
                _float64_only(name, x.dtype, "x.astype(numpy.float64)")
                x = mc.tensor(x, device=device, requires_grad=True)
                checked.append((name, x))
            else:
                skipped.append((name, x))
                x = mc.tensor(x, device=device)
        else:
            skipped.append((name, x))
        call_inputs.append(x)
    if isinstance(fn, Module):
        for pname, p in fn.named_parameters():
            if p.requires_grad:
                _float64_only(f"parameter {pname}", np.dtype(p.dtype), "module.double()")
                checked.append((f"parameter {pname}", p))
    if not checked:
        for name, x in skipped:
            if isinstance(x, (mc.Tensor, np.ndarray)) and np.dtype(x.dtype).kind != "f":
                raise TypeError(
                    f"gradcheck: {name} is {describe(x)}, which cannot have a gradient, and no other input "
                    "requires one; pass float64 tensors created with requires_grad=True"
                )
        got = ", ".join(f"{name} is {describe(x)}" for name, x in skipped) or "no inputs"
        raise ValueError(
            f"gradcheck: nothing requires a gradient ({got}); pass float64 tensors created with "
            "requires_grad=True, or a Module with parameters"
        )
    return call_inputs, checked


def gradcheck(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0, device="cpu") -> bool:
    """Check minicnn's gradients of ``fn(*inputs)`` against central finite differences in float64.

    ``fn`` is a function of tensors or a Module (its parameters that require a gradient are
    checked too). Checked: every input Tensor with ``requires_grad=True`` and every floating NumPy
    array (made a tensor on ``device``); they must be float64 (a float32 input raises TypeError
    with the advice to convert it with ``.double()``). Integer inputs (labels) and other values
    pass through. Inputs are copied, so yours are not changed; a Module's parameters are perturbed
    in place and restored, its buffers (running statistics) and gradients restored at the end.

    The scalar checked is ``sum(out * u)`` over the floating outputs, with ``u`` random (seeded by
    ``seed``), so every output element matters. Each element x of each checked tensor gets
    ``numerical = (f(x + eps) - f(x - eps)) / (2 eps)``; an element fails when
    ``|analytical - numerical| > atol + rtol * |numerical|`` (PyTorch's defaults). minicnn's random
    generator is reset before every evaluation, so dropout draws the same mask each time.

    Returns True, or raises GradcheckError naming the tensor, its worst element, the analytical
    and numerical values, and a hint when the point sits on a kink.
    """
    import minicnn as mc
    from minicnn.backend import to_device
    from minicnn.nn import Module

    if not callable(fn):
        raise TypeError(f"gradcheck: fn must be a function or a Module, got {describe(fn)}")
    call_inputs, checked = _prepare(fn, inputs, device)
    module = fn if isinstance(fn, Module) else None
    saved_buffers = [(b, b.numpy().copy()) for b in module.buffers()] if module is not None else []
    saved_grads = [(t, t.grad) for _, t in checked]
    rng_state = mc.get_rng_state()
    rng = stream(seed, "gradcheck")
    perturbed = None  # (array, index, original value) while an element is moved

    def run():
        mc.set_rng_state(rng_state)
        outs = output_list(fn(*call_inputs))
        for o in outs:
            if not isinstance(o, mc.Tensor):
                raise TypeError(f"gradcheck: fn returned {describe(o)}; expected minicnn Tensors")
        return outs

    try:
        for _, t in checked:
            t.grad = None
        outs = run()
        ups = [rng.standard_normal(tuple(o.shape)) for o in outs]  # one per output, float or not
        pairs = [(o, u) for o, u in zip(outs, ups) if np.dtype(o.dtype).kind == "f"]
        total = None
        for o, u in pairs:
            if o.requires_grad:
                term = (o * mc.tensor(u, device=o.device)).sum()
                total = term if total is None else total + term
        if total is not None:
            total.backward()
        analytic = {}
        for name, t in checked:
            g = t.grad
            analytic[name] = (None if g is None else np.array(g.numpy(), dtype=np.float64), g)

        def objective():
            with mc.no_grad():
                outs = run()
            return sum(
                float(np.sum(o.numpy().astype(np.float64) * u))
                for o, u in zip(outs, ups)
                if np.dtype(o.dtype).kind == "f"
            )

        f0 = objective()
        messages = []
        for name, t in checked:
            raw = _raw(t)
            shape = tuple(t.shape)
            plus, minus = np.empty(shape), np.empty(shape)
            for j in range(int(np.prod(shape))):
                idx = np.unravel_index(j, shape)
                orig = raw[idx].item()
                perturbed = (raw, idx, orig)
                raw[idx] = orig + eps
                plus[idx] = objective()
                raw[idx] = orig - eps
                minus[idx] = objective()
                raw[idx] = orig
                perturbed = None
            numeric = (plus - minus) / (2 * eps)
            message = _compare(name, analytic[name], numeric, plus, minus, f0, eps, atol, rtol, t)
            if message:
                messages.append(message)
    finally:
        if perturbed is not None:  # fn raised on a moved element: put the parameter back
            raw, idx, orig = perturbed
            raw[idx] = orig
        for t, g in saved_grads:
            t.grad = g
        for b, value in saved_buffers:
            _raw(b)[...] = to_device(value, b.device)
        mc.set_rng_state(rng_state)
    if messages:
        raise GradcheckError("\n".join(messages))
    return True


def _compare(name, analytic_pair, numeric, plus, minus, f0, eps, atol, rtol, t):
    """The message for one checked tensor, or '' when its gradient matches."""
    analytic, grad = analytic_pair
    shape = numeric.shape
    notes = []
    if analytic is None:
        analytic = np.zeros(shape)
        notes.append("minicnn computed no gradient for it (taken as zeros)")
    elif analytic.shape != shape:
        return (
            f"gradcheck: the gradient of {name} has shape {analytic.shape}, the tensor {shape}: "
            "backward must return one gradient of its input's shape per input"
        )
    wrong_dtype = grad is not None and grad.dtype != t.dtype
    if wrong_dtype:
        notes.append(f"its gradient is {grad.dtype}, the tensor {t.dtype}")
    with np.errstate(invalid="ignore"):
        diff = np.abs(analytic - numeric)
        diff = np.where(np.isnan(diff), np.inf, diff)
        allowed = atol + rtol * np.abs(numeric)
        bad = diff > allowed
    if not bad.any() and not wrong_dtype:
        return ""  # (no gradient at all is fine where the finite differences are zero too)
    score = diff / np.maximum(allowed, 1e-300)
    worst = np.unravel_index(int(np.argmax(score)), shape)
    a, n = float(analytic[worst]), float(numeric[worst])
    if not bad.any():
        return f"gradcheck: the gradient of {name} matches finite differences, but " + "; ".join(notes)
    lines = [
        f"gradcheck: the gradient of {name} does not match finite differences: worst element "
        f"{_index(worst)}: analytical {a:.6g}, numerical {n:.6g} (|difference| {diff[worst]:.3g} > "
        f"atol {atol:g} + rtol {rtol:g} * |numerical|); {int(bad.sum())} of {bad.size} elements differ"
        + "".join("; " + note for note in notes)
    ]
    right, left = (plus[worst] - f0) / eps, (f0 - minus[worst]) / eps
    jump = abs(right - left)
    if jump > 0.25 * diff[worst] and jump > 1e-3 * (1 + max(abs(right), abs(left))):
        side = ""
        if abs(a - right) <= atol + rtol * abs(right):
            side = " minicnn's value is the derivative from the right."
        elif abs(a - left) <= atol + rtol * abs(left):
            side = " minicnn's value is the derivative from the left."
        lines.append(
            f"  hint: {name} {_index(worst)} sits on a kink: the one-sided differences disagree "
            f"(from the left {left:.6g}, from the right {right:.6g}), as at ReLU's 0 or between tied "
            f"maxima of a max-pool window, where the gradient is a convention, not a derivative.{side} "
            "Check at points away from kinks (no exact zeros, no ties)."
        )
    return "\n".join(lines)
