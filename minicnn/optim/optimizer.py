"""``Optimizer``: the base class every optimizer shares (parameter groups, state, checkpoints).

An optimizer holds *parameter groups*: dicts with a ``"params"`` list plus the options
(``lr``, ``momentum``, ...) that apply to those parameters. ``step()`` walks every parameter
that has a gradient and calls the subclass's ``_update(p, grad, group)``, which changes
``p.array`` in place with raw NumPy/CuPy arithmetic (no graph is recorded).
Per-parameter buffers (momentum, running averages) live in ``self.state[p]``.

``state_dict()`` / ``load_state_dict()`` follow PyTorch's layout: parameters are replaced by
integer indices counted across all groups, so a checkpoint can be loaded into a fresh
optimizer built over the same parameters in the same order, and training resumes exactly.
"""

from __future__ import annotations

import contextlib
import copy
import numbers
from collections import defaultdict

from minicnn.autograd import enable_grad, no_grad
from minicnn.backend import device_of, gpu_guard, to_device
from minicnn.tensor import Tensor


class _RequiredParameter:
    """Marks a default that every parameter group must give (like ``torch.optim.optimizer.required``)."""

    def __repr__(self):
        return "<required parameter>"


required = _RequiredParameter()


def _is_array(value) -> bool:
    return hasattr(value, "dtype") and hasattr(value, "shape") and not isinstance(value, Tensor)


class Optimizer:
    """Base class of the optimizers: ``params`` is an iterable of Tensors, or of dicts (parameter groups).

    ``defaults`` holds the options a group gets when it does not set them itself, e.g.
    ``SGD([{"params": backbone, "lr": 1e-3}, {"params": head}], lr=1e-2, momentum=0.9)``.
    """

    def __init__(self, params, defaults: dict):
        name = type(self).__name__
        if isinstance(params, Tensor):
            raise TypeError(
                f"{name}: params should be an iterable of Tensors or of dicts (parameter groups), "
                f"but got a single Tensor of shape {tuple(params.shape)}. Pass [tensor] or "
                f"model.parameters()."
            )
        if isinstance(params, (set, dict)):
            raise TypeError(
                f"{name}: params must be an ordered collection (list, tuple, generator), got a "
                f"{type(params).__name__}; the order of a set changes between runs, which breaks checkpoints."
            )
        self.defaults = dict(defaults)
        self.state: defaultdict = defaultdict(dict)
        self.param_groups: list[dict] = []
        groups = list(params)
        if len(groups) == 0:
            raise ValueError(f"{name} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group: dict) -> None:
        """Add a group (a dict with ``"params"`` and optional per-group options), e.g. to unfreeze layers."""
        name = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(f"{name}.add_param_group: param_group must be a dict, got {type(param_group)}")
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError(
                f"{name}: the parameters of a group must be an ordered collection, not a set "
                "(a set's order changes between runs). Use a list."
            )
        params = list(params)
        if params and all(isinstance(p, tuple) and len(p) == 2 for p in params):  # named_parameters()
            group["param_names"] = [p[0] for p in params]
            params = [p[1] for p in params]
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(
                    f"{name} can only optimize Tensors, but one of the params is {type(p).__name__}"
                )
            if not p.is_leaf:
                raise ValueError(
                    f"{name} can't optimize a non-leaf Tensor (shape {tuple(p.shape)}, made by "
                    f"{p.grad_fn!r}); "
                    "optimize the leaf tensors it was computed from."
                )
        group["params"] = params

        for key, default in self.defaults.items():
            if default is required and key not in group:
                raise ValueError(f"{name}: parameter group didn't specify a value of required option {key!r}")
            group.setdefault(key, default)

        ids = [id(p) for p in params]
        if len(ids) != len(set(ids)):
            raise ValueError(f"{name}: a parameter group contains the same parameter more than once")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if seen.intersection(ids):
            raise ValueError(f"{name}: some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    # ------------------------------------------------------------------ gradients
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients: ``grad = None`` (default), or fill the grad arrays with zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_()
                    p.grad.array.fill(0)
                    p.grad.bump_version()

    # ------------------------------------------------------------------ the step
    def step(self, closure=None):
        """One update of every parameter that has a gradient; ``closure`` re-evaluates the loss (optional)."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        self._opt_called = True  # lets a learning-rate scheduler warn when it is stepped first
        some_array = self._check_same_device()
        # the parameters' GPU must be current for the raw CuPy updates (cuda:1...): backend.gpu_guard
        with no_grad(), (gpu_guard(some_array) or contextlib.nullcontext()):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        self._update(p, p.grad.array, group)
                        p.bump_version()  # backward through a graph that saved p now raises
        return loss

    def _update(self, p: Tensor, grad, group: dict) -> None:  # pragma: no cover - subclasses override it
        """Change ``p.array`` in place from ``grad`` (never modify ``grad``); options come from ``group``."""
        raise NotImplementedError(f"{type(self).__name__} must implement _update")

    def _check_same_device(self):
        """Refuse parameters on several devices; return the array of one parameter that has a
        gradient (None if none has)."""
        shapes_by_device: dict = {}
        some_array = None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    some_array = p.array
                    shapes_by_device.setdefault(str(device_of(p.array)), []).append(tuple(p.array.shape))
        if len(shapes_by_device) > 1:
            found = "; ".join(
                f"{dev}: shapes {', '.join(map(str, shapes))}" for dev, shapes in shapes_by_device.items()
            )
            raise RuntimeError(
                f"{type(self).__name__}.step(): the parameters are on different devices ({found}). "
                "All parameters must live on one device: call model.to(device) before creating the optimizer."
            )
        return some_array

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """``{"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]}``, arrays deep-copied."""
        index_of: dict = {}
        param_groups = []
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            for p in group["params"]:
                index_of.setdefault(id(p), len(index_of))
            packed["params"] = [index_of[id(p)] for p in group["params"]]
            param_groups.append(packed)
        state = {index_of[id(p)]: _copy_state(s) for p, s in self.state.items() if id(p) in index_of}
        return {"state": state, "param_groups": param_groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a ``state_dict()``: options are restored, buffers go onto each parameter's device/dtype."""
        name = type(self).__name__
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= set(state_dict):
            raise ValueError(
                f"{name}.load_state_dict: expected an optimizer state_dict, a dict with 'state' and "
                f"'param_groups', got {_describe(state_dict)}"
            )
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"{name}.load_state_dict: the checkpoint has {len(saved_groups)} parameter group(s), "
                f"this optimizer has {len(self.param_groups)}"
            )
        for i, (g, sg) in enumerate(zip(self.param_groups, saved_groups)):
            if len(g["params"]) != len(sg["params"]):
                raise ValueError(
                    f"{name}.load_state_dict: parameter group {i} has {len(g['params'])} parameters "
                    f"here but {len(sg['params'])} in the checkpoint"
                )
        for i, sg in enumerate(saved_groups):
            # A missing on/off flag takes its default (an older checkpoint); a missing number means
            # the checkpoint belongs to another optimizer (SGD's into Adam: no betas, no eps).
            missing = [k for k, v in self.defaults.items() if k not in sg and not isinstance(v, bool)]
            if missing:
                options = sorted(k for k in sg if k not in ("params", "param_names"))
                raise ValueError(
                    f"{name}.load_state_dict: parameter group {i} of the checkpoint lacks {name}'s "
                    f"option(s) {', '.join(missing)}: it was saved by another optimizer (its options: "
                    f"{', '.join(options)})"
                )
        param_of = {
            saved: p
            for g, sg in zip(self.param_groups, saved_groups)
            for saved, p in zip(sg["params"], g["params"])
        }
        for key, saved_state in state_dict["state"].items():
            if key in param_of:
                self._check_saved_state(key, saved_state, param_of[key])
        self.state = defaultdict(dict)
        for key, saved_state in state_dict["state"].items():
            if key in param_of:
                p = param_of[key]
                self.state[p] = {
                    k: _restore_step(v) if k == "step" else _restore_value(v, p)
                    for k, v in saved_state.items()
                }
        new_groups = []
        for g, sg in zip(self.param_groups, saved_groups):
            new_group = {k: copy.deepcopy(v) for k, v in sg.items() if k != "params"}
            new_group["params"] = g["params"]
            for key, default in self.defaults.items():
                new_group.setdefault(key, default)
            if "param_names" in g and "param_names" not in new_group:
                new_group["param_names"] = g["param_names"]
            new_groups.append(new_group)
        self.param_groups = new_groups

    def _check_saved_state(self, index, saved_state, p: Tensor) -> None:
        """Refuse, at load time, buffers that the update would choke on (shaped for other parameters)."""
        name = type(self).__name__
        if not isinstance(saved_state, dict):
            raise ValueError(
                f"{name}.load_state_dict: the state of parameter {index} should be a dict, got "
                f"{_describe(saved_state)}"
            )
        for key, value in saved_state.items():
            if _is_array(value) and value.ndim > 0 and tuple(value.shape) != tuple(p.shape):
                raise ValueError(
                    f"{name}.load_state_dict: state[{index}][{key!r}] has shape {tuple(value.shape)}, but "
                    f"parameter {index} has shape {tuple(p.shape)}: the checkpoint was saved for other "
                    "parameters (another model, or the parameters in another order)"
                )

    # ------------------------------------------------------------------ printing
    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k not in ("params", "param_names")):
                lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


def _describe(value) -> str:
    if _is_array(value) or isinstance(value, Tensor):
        return f"an array of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def _copy_state(value):
    if _is_array(value):
        return value.copy()
    if isinstance(value, dict):
        return {k: _copy_state(v) for k, v in value.items()}
    return copy.deepcopy(value)


def _restore_step(value):
    """The step count as a Python int: PyTorch saves it as a 0-d tensor (float32)."""
    if isinstance(value, Tensor) or _is_array(value):
        value = float(value.item())
    return int(value) if float(value).is_integer() else value


def _restore_value(value, p: Tensor):
    """A fresh copy of a saved buffer (an array, or a Tensor as minicnn.load returns from a PyTorch
    file), on the parameter's device, floating buffers in its dtype."""
    if isinstance(value, dict):
        return {k: _restore_value(v, p) for k, v in value.items()}
    if isinstance(value, Tensor):
        value = value.array
    if not _is_array(value):
        return copy.deepcopy(value)
    if value.dtype.kind == "f" and p.array.dtype.kind == "f":
        value = value.astype(p.array.dtype)  # astype copies
    else:
        value = value.copy()
    return to_device(value, device_of(p.array))


def _is_number(value) -> bool:
    """A real number: int, float, NumPy scalar, or a one-element Tensor (PyTorch accepts a Tensor lr)."""
    if isinstance(value, Tensor):
        return value.numel() == 1 and value.dtype.kind in "biuf"
    return isinstance(value, numbers.Real)


def _check_number(optimizer: str, what: str, value) -> None:
    """A one-line TypeError naming the option when ``value`` is not a number (say the string "0.1")."""
    if not _is_number(value):
        raise TypeError(f"{optimizer}: {what} must be a number, got {type(value).__name__} {value!r}")


def _check_at_least(optimizer: str, what: str, value, low: float) -> None:
    """Argument validation shared by the optimizers (PyTorch raises ValueError for the same cases)."""
    _check_number(optimizer, what, value)
    if not value >= low:
        raise ValueError(f"{optimizer}: invalid {what}: {value} (it must be >= {low})")


def _check_flags(optimizer: str, foreach=None, fused=None, capturable=False, differentiable=False) -> None:
    """PyTorch's implementation switches. minicnn has one implementation (PyTorch's single-tensor
    arithmetic), so ``foreach``, ``fused`` and ``capturable`` change nothing; ``differentiable=True``
    (a step that autograd can differentiate through) is not supported."""
    for what, value in (("foreach", foreach), ("fused", fused)):
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"{optimizer}: {what} must be None, True or False, got {value!r}")
    if differentiable:
        raise NotImplementedError(
            f"{optimizer}: differentiable=True is not supported: minicnn's optimizer steps update "
            "p.array in place, outside autograd"
        )


def _lerp_(start, end, weight: float) -> None:
    """``start += weight * (end - start)`` in place, with PyTorch's two-sided formula for ``lerp_``.

    Far from ``start`` (weight >= 0.5) PyTorch computes ``end - (end - start) * (1 - weight)``,
    which is more accurate there; doing the same keeps float64 results bit-close to PyTorch.
    """
    if abs(weight) < 0.5:
        start += weight * (end - start)
    else:
        start[...] = end - (end - start) * (1 - weight)
