"""Reverse-mode automatic differentiation: the ``Function`` base class and the backward engine.

How it works (the whole mechanism fits on one screen):

* An op is a subclass of :class:`Function` with ``forward`` and ``backward`` side by side.
  ``forward`` receives raw arrays (NumPy or CuPy) and returns one array; it may store on
  ``self`` whatever ``backward`` will need. ``backward`` receives dL/d(output) and returns
  one gradient per positional argument of ``forward`` (``None`` where there is none).
* ``Op.apply(*args)`` runs ``forward`` and, when grad mode is on and an input requires a
  gradient, records the op as the ``grad_fn`` of the output tensor. This is the
  define-by-run graph: it is built while the forward code executes.
* ``tensor.backward()`` sorts the recorded ops topologically (iteratively, so a graph of
  any depth works), then walks them from the output back to the leaves, summing the
  gradients that reach each tensor. Leaves accumulate into ``.grad`` like PyTorch.
  Unless ``retain_graph=True``, each op drops its saved buffers right after its backward.
"""

from __future__ import annotations

import functools
import itertools
import weakref
from time import perf_counter

import numpy as np

from minicnn.backend import device_of, gpu_guard

_grad_enabled = True

# Set by minicnn.kernels: run an op's compiled twin (Function.compiled) on NumPy arrays.
_kernels_enabled = False

# Set by minicnn.profiler while a profile is being recorded: an object with
# ``record(op_name, phase, seconds)`` and ``sync()`` (waits for the GPU). None = no profiling.
_op_timer = None


def is_grad_enabled() -> bool:
    return _grad_enabled


class set_grad_enabled:
    """Context manager (and decorator) that turns graph building on or off."""

    def __init__(self, mode: bool):
        self.mode = bool(mode)

    def __enter__(self):
        global _grad_enabled
        self.prev = _grad_enabled
        _grad_enabled = self.mode
        return self

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self.prev
        return False

    def __call__(self, func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with set_grad_enabled(self.mode):
                return func(*args, **kwargs)

        return wrapper


class no_grad(set_grad_enabled):
    """``with minicnn.no_grad():`` runs ops without recording a graph (evaluation, optimizer steps).

    Also a decorator, with or without parentheses: ``@minicnn.no_grad()`` or ``@minicnn.no_grad``.
    """

    def __new__(cls, func=None):
        if func is None:
            return super().__new__(cls)
        return cls()(func)  # used as a bare decorator: wrap func right away

    def __init__(self):
        super().__init__(False)


class enable_grad(set_grad_enabled):
    """Turns graph building back on inside a ``no_grad`` block (also a decorator, like ``no_grad``)."""

    def __new__(cls, func=None):
        if func is None:
            return super().__new__(cls)
        return cls()(func)

    def __init__(self):
        super().__init__(True)


class Function:
    """Base class of every differentiable op.

    Subclasses implement ``forward(self, *arrays, **params) -> array`` and
    ``backward(self, grad_output) -> gradient or tuple of gradients``.
    ``self.needs_input_grad[i]`` tells ``forward`` and ``backward`` whether argument ``i``
    needs a gradient, so work (and memory) for the others can be skipped.

    Three class attributes describe what ``backward`` reads, for the version check (an input
    changed in place between forward and backward raises instead of giving a wrong gradient):
    ``saved_inputs`` -- the positions of the inputs whose values backward uses (``None``: all of
    them, the safe default for a new op; ``()``: none, e.g. addition); ``saves_output`` -- True
    when backward uses the output's values (exp, sigmoid); ``is_view`` -- True when the output
    shares the input's memory (reshape, indexing), so the two share one version counter.
    """

    needs_input_grad: tuple = ()
    inputs: tuple | None = None
    input_fns: tuple = ()
    saved_inputs: tuple | None = None
    saves_output: bool = False
    is_view: bool = False
    # The kernels tier's twin of this op (a subclass whose forward/backward run compiled loops),
    # registered by minicnn/kernels; None for ops without one. See minicnn/kernels/__init__.py.
    compiled = None

    @classmethod
    def apply(cls, *args, **kwargs):
        from minicnn.tensor import Tensor

        tensors = [a for a in args if isinstance(a, Tensor)]
        if len(tensors) > 1:
            _check_same_device(cls.__name__, tensors)
        raw = [a.array if isinstance(a, Tensor) else a for a in args]
        # The one place that chooses the tier: the compiled twin for NumPy arrays when the kernels are on.
        on_cpu = all(type(t.array) is np.ndarray for t in tensors)
        fn = cls.compiled() if (cls.compiled is not None and _kernels_enabled and on_cpu) else cls()
        requires_grad = _grad_enabled and any(t.requires_grad for t in tensors)
        fn.needs_input_grad = tuple(requires_grad and isinstance(a, Tensor) and a.requires_grad for a in args)
        # GPU arrays on a GPU other than the current one (cuda:1): run with that GPU current, since
        # CuPy allocates and launches kernels on the current GPU. Never reached on the CPU.
        guard = None if on_cpu else gpu_guard(tensors[0].array)
        if guard is not None:
            with guard:
                out = _forward(fn, cls.__name__, raw, kwargs)
        elif _op_timer is None:
            out = fn.forward(*raw, **kwargs)
        else:
            out = _forward(fn, cls.__name__, raw, kwargs)
        if requires_grad and out.dtype.kind in "fc":  # integer results (casts) carry no gradient
            fn.inputs = tuple(a if isinstance(a, Tensor) else None for a in args)
            # The graph's edges: each input's grad_fn as it is NOW. An in-place op later gives the
            # tensor a new grad_fn; this op must still send its gradient to the old one.
            fn.input_fns = tuple(a.grad_fn if isinstance(a, Tensor) else None for a in args)
            result = Tensor._make(out, requires_grad=True, grad_fn=fn)
            saved = range(len(args)) if fn.saved_inputs is None else fn.saved_inputs
            fn.versions = tuple(
                (i, args[i]._vc, args[i]._vc[0]) for i in saved if isinstance(args[i], Tensor)
            )
            if fn.saves_output:
                fn.versions += (("output", result._vc, 0),)
        else:
            result = Tensor._make(out)
        if fn.is_view and tensors and _is_view_of(out, raw[0]):
            result._vc = args[0]._vc
        return result

    def forward(self, *args, **kwargs):  # pragma: no cover - every op overrides it
        raise NotImplementedError(f"{type(self).__name__} must implement forward")

    def backward(self, grad_output):  # pragma: no cover - every op overrides it
        raise NotImplementedError(f"{type(self).__name__} must implement backward")

    def release(self):
        """Drop saved buffers and graph edges once backward is done (``retain_graph=False``)."""
        self.__dict__.clear()
        self.inputs = None
        self.released = True

    def __repr__(self):
        return f"<{type(self).__name__}Backward>"


def _forward(fn, name, raw, kwargs):
    if _op_timer is None:
        return fn.forward(*raw, **kwargs)
    return _timed(_op_timer, name, "forward", fn.forward, raw, kwargs)


def _timed(timer, name, phase, func, args, kwargs=None):
    timer.sync()
    t0 = perf_counter()
    out = func(*args, **(kwargs or {}))
    timer.sync()
    timer.record(name, phase, perf_counter() - t0)
    return out


def _is_view_of(out, a):
    """True when ``out`` shares ``a``'s memory (NumPy/CuPy: the same owner of the data)."""
    owner = a if getattr(a, "base", None) is None else a.base
    return out is a or getattr(out, "base", None) is owner


def _check_versions(fn):
    """Raise if an array that ``fn.backward`` reads was changed in place since ``fn``'s forward."""
    for what, counter, version in getattr(fn, "versions", ()):
        if counter[0] != version:
            if what == "output":
                where = f"the output of {type(fn).__name__}Backward"
            else:
                t = fn.inputs[what]
                where = f"[{t.dtype} {list(t.shape)}], which is input {what} of {type(fn).__name__}Backward"
            raise RuntimeError(
                "one of the variables needed for gradient computation has been modified by an inplace "
                f"operation: {where}, is at version {counter[0]}; expected version {version} instead. "
                "Hint: the change happened between the forward pass and backward() (an in-place method "
                "such as add_/zero_, a write through .data or t[...] = ..., or optimizer.step() before "
                "a backward with retain_graph=True); make it after backward(), or use an out-of-place op."
            )


def _check_same_device(op_name, tensors):
    first = device_of(tensors[0].array)
    for t in tensors[1:]:
        other = device_of(t.array)
        if other != first:
            raise RuntimeError(
                f"{op_name}: expected all tensors on the same device, but found one on {first} "
                f"and one on {other}. Move them with tensor.to('{first}') or tensor.to('{other}')."
            )


def _parents(fn):
    if fn.inputs is None:
        raise RuntimeError(
            "Trying to backward through the graph a second time (its saved buffers were freed "
            "after the first backward). Call .backward(retain_graph=True) the first time if you "
            "need to backpropagate through it again."
        )
    return [f for f in fn.input_fns if f is not None]


def _topological_order(root_fn):
    """Ops reachable from ``root_fn``, each listed after every op that consumes its output.

    An explicit stack replaces recursion, so a chain of 10,000 ops is no problem.
    """
    post_order, visited = [], {root_fn}
    stack = [(root_fn, iter(_parents(root_fn)))]
    while stack:
        fn, parents = stack[-1]
        for p in parents:
            if p not in visited:
                visited.add(p)
                stack.append((p, iter(_parents(p))))
                break
        else:
            stack.pop()
            post_order.append(fn)
    post_order.reverse()
    return post_order


# Post-accumulate-grad hooks (Tensor.register_post_accumulate_grad_hook): id(leaf) -> {handle id: hook},
# the entry dropped when the leaf dies. Empty unless someone registered one (DistributedDataParallel
# does), so backward pays nothing otherwise.
_post_accumulate_grad_hooks = {}


class RemovableHandle:
    """What a ``register_*_hook`` returns (PyTorch's ``torch.utils.hooks.RemovableHandle``):
    ``handle.remove()`` unregisters the hook; also a context manager that removes it on exit."""

    _ids = itertools.count()

    def __init__(self, hooks: dict):
        self.hooks, self.id = hooks, next(RemovableHandle._ids)

    def remove(self):
        self.hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def register_post_accumulate_grad_hook(t, hook):
    """Call ``hook(t)`` each backward, once ``t.grad`` holds all of this backward's gradient for ``t``.

    PyTorch's semantics: only for leaves that require grad; the hook gets the tensor (read or change
    ``t.grad`` in place) and returns None. The engine counts the edges of the graph that lead to ``t``
    and runs the hook after the last one has delivered (a weight used twice fires once). Data-parallel
    training starts the all-reduce of a gradient here, while backward goes on with the earlier layers.
    """
    if not callable(hook):
        raise TypeError(f"register_post_accumulate_grad_hook: expected a callable, got {type(hook).__name__}")
    if t.grad_fn is not None:
        raise RuntimeError("post accumulate grad hooks cannot be registered on non-leaf tensors")
    if not t.requires_grad:
        raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
    hooks = _post_accumulate_grad_hooks.get(id(t))
    if hooks is None:
        hooks = _post_accumulate_grad_hooks[id(t)] = {}
        weakref.finalize(t, _post_accumulate_grad_hooks.pop, id(t), None)
    handle = RemovableHandle(hooks)
    hooks[handle.id] = hook
    return handle


def _run_post_accumulate_hooks(t):
    for hook in list(_post_accumulate_grad_hooks.get(id(t), {}).values()):
        if hook(t) is not None:
            raise RuntimeError("a post accumulate grad hook must return None (change t.grad in place)")


def _hooked_leaf_edges(order):
    """For the leaves with post-accumulate hooks: how many graph edges lead to each ({id: [t, count]})."""
    pending = {}
    for fn in order:
        for t, input_fn in zip(fn.inputs, fn.input_fns):
            hooked = t is not None and input_fn is None and id(t) in _post_accumulate_grad_hooks
            if hooked and t.requires_grad:
                entry = pending.setdefault(id(t), [t, 0, False])
                entry[1] += 1
    return pending


def _accumulate_leaf(t, g):
    """Leaves sum their gradients across backward calls, like PyTorch (call zero_grad to reset)."""
    from minicnn.tensor import Tensor

    if g.dtype != t.array.dtype:
        g = g.astype(t.array.dtype)
    if t.grad is None:
        # Own the array: ops may return views or the same array to several inputs.
        t.grad = Tensor._make(g.copy())
    else:
        t.grad.array += g


def backward(root, gradient=None, retain_graph=False):
    """Backpropagate from ``root``: fill ``.grad`` of every leaf that requires a gradient."""

    if not root.requires_grad:
        raise RuntimeError(
            "backward(): this tensor does not require grad and has no grad_fn. Create the inputs "
            "with requires_grad=True (and do not compute it under minicnn.no_grad())."
        )
    # A graph on cuda:1 is differentiated with cuda:1 current (see Function.apply); never on the CPU.
    guard = None if type(root.array) is np.ndarray else gpu_guard(root.array)
    if guard is None:
        _backward(root, gradient, retain_graph)
    else:
        with guard:
            _backward(root, gradient, retain_graph)


def _backward(root, gradient, retain_graph):
    from minicnn.tensor import Tensor

    xp = root._xp
    if gradient is None:
        if root.array.size != 1:
            raise RuntimeError(
                f"backward() on a tensor of shape {tuple(root.shape)} needs an explicit gradient: "
                "call loss.backward() on a scalar, or pass gradient=<tensor of the same shape>."
            )
        if root.array.dtype.kind == "c":
            raise RuntimeError(
                "grad can be implicitly created only for real scalar outputs: this loss is complex "
                f"({root.dtype}). Backpropagate a real number (e.g. loss.abs() or loss.real), or pass "
                "gradient= explicitly."
            )
        g = xp.ones_like(root.array)
    else:
        g = gradient.array if isinstance(gradient, Tensor) else xp.asarray(gradient, dtype=root.array.dtype)
        if tuple(g.shape) != tuple(root.shape):
            raise RuntimeError(
                f"backward(): the gradient has shape {tuple(g.shape)} but the tensor has shape "
                f"{tuple(root.shape)}; they must match."
            )
        if device_of(g) != device_of(root.array):
            raise RuntimeError(
                f"backward(): the gradient is on {device_of(g)} but the tensor is on {root.device}."
            )
        if g.dtype != root.array.dtype:
            g = g.astype(root.array.dtype)

    if root.grad_fn is None:
        _accumulate_leaf(root, g)
        if id(root) in _post_accumulate_grad_hooks:
            _run_post_accumulate_hooks(root)
        return

    grads = {root.grad_fn: g}
    order = _topological_order(root.grad_fn)
    # leaves with post-accumulate hooks: edges still to come, counted down as gradients arrive
    pending = _hooked_leaf_edges(order) if _post_accumulate_grad_hooks else None
    for fn in order:
        g = grads.pop(fn, None)
        if g is None:  # no gradient flowed into this op
            continue
        target = getattr(fn, "_retain_grad_of", None)
        if target is not None and target() is not None:
            _accumulate_leaf(target(), g)
        inputs = fn.inputs
        _check_versions(fn)
        # a gradient that arrives on another GPU (behind a .to("cuda:1")): that GPU current
        op_guard = None if type(g) is np.ndarray else gpu_guard(g)
        if op_guard is not None:
            with op_guard:
                in_grads = _op_backward(fn, g)
        elif _op_timer is None:
            in_grads = fn.backward(g)
        else:
            in_grads = _op_backward(fn, g)
        if not isinstance(in_grads, tuple):
            in_grads = (in_grads,)
        complete = [] if pending else ()  # hooked leaves whose last edge is this op's: fired below
        for t, input_fn, gi in zip(inputs, fn.input_fns, in_grads):
            if pending and input_fn is None and t is not None and id(t) in pending:
                _count_down(pending, t, gi is not None, complete)
            if t is None or gi is None or not t.requires_grad:
                continue
            if tuple(gi.shape) != tuple(t.shape):
                raise RuntimeError(
                    f"internal error in {type(fn).__name__}.backward: gradient of shape "
                    f"{tuple(gi.shape)} for an input of shape {tuple(t.shape)}"
                )
            in_guard = None if type(gi) is np.ndarray else gpu_guard(gi)  # .to() crosses GPUs
            if in_guard is None:
                _deliver(grads, t, input_fn, gi)
            else:
                with in_guard:
                    _deliver(grads, t, input_fn, gi)
        for t in complete:
            _fire_ready(pending, t)
        if not retain_graph:
            fn.release()
    if pending:  # leaves some of whose edges carried no gradient: fire for what did arrive
        for t, _, got in list(pending.values()):
            if got:
                _run_post_accumulate_hooks(t)
        pending.clear()


def _count_down(pending, t, delivered, complete):
    entry = pending[id(t)]
    entry[1] -= 1
    entry[2] = entry[2] or delivered
    if entry[1] == 0:
        complete.append(t)


def _fire_ready(pending, t):
    """Run ``t``'s hooks: its last edge has delivered (this backward's gradient is all in ``t.grad``)."""
    _, _, got = pending.pop(id(t))
    if got:
        _run_post_accumulate_hooks(t)


def _deliver(grads, t, input_fn, gi):
    """Send ``gi`` to input ``t``: into its ``.grad`` (a leaf) or summed into what flows to its op."""
    if input_fn is None:
        _accumulate_leaf(t, gi)
    else:
        if gi.dtype != t.array.dtype:  # as PyTorch: a gradient has its tensor's dtype
            gi = gi.astype(t.array.dtype)
        prev = grads.get(input_fn)
        grads[input_fn] = gi if prev is None else prev + gi


def _op_backward(fn, g):
    if _op_timer is None:
        return fn.backward(g)
    return _timed(_op_timer, type(fn).__name__, "backward", fn.backward, (g,))


def retain_grad(t):
    """Ask a non-leaf tensor to keep its gradient in ``.grad`` during backward."""
    if t.grad_fn is not None:
        t.grad_fn._retain_grad_of = weakref.ref(t)
