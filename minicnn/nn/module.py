"""``nn.Module``: the base class of every layer and model, with PyTorch's registration rules.

Assigning an attribute registers it: a :class:`Parameter` goes to ``_parameters``, a ``Module``
to ``_modules``, and a tensor whose name was declared with ``register_buffer`` to ``_buffers``.
Everything else (``named_parameters``, ``state_dict``, ``to``, ``train``...) walks those three
dictionaries recursively, so the key names match PyTorch's exactly: ``features.0.weight``,
``bn1.running_var``, ``bn1.num_batches_tracked``.

``state_dict()`` returns detached tensors that SHARE memory with the parameters and buffers (as
PyTorch does): it is a cheap view of the model, not a snapshot. To keep a snapshot while training
goes on, copy it: ``{k: v.clone() for k, v in model.state_dict().items()}``.
``load_state_dict`` checks every key and shape first and only then copies the values into the
existing parameters (so a failed load leaves the model untouched); the parameters keep their
identity, device and dtype.
"""

from __future__ import annotations

from collections import OrderedDict, namedtuple

import numpy as np

from minicnn.autograd import RemovableHandle
from minicnn.backend import (
    Device,
    device_of,
    from_foreign_gpu_array,
    is_cupy_array,
    is_foreign_gpu_array,
    to_device,
)
from minicnn.nn.parameter import Parameter
from minicnn.tensor import Tensor


class IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """What ``load_state_dict(..., strict=False)`` returns: the keys it could not match."""

    __slots__ = ()

    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()


def _addindent(text, spaces):
    """Indent every line but the first (how PyTorch nests child reprs)."""
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return lines[0] + "\n" + "\n".join(" " * spaces + line for line in lines[1:])


def _raw_array(value, key):
    """The array inside a state-dict value: a minicnn Tensor, a NumPy/CuPy array or a torch tensor."""
    if isinstance(value, Tensor):
        return value.array
    if isinstance(value, np.ndarray) or is_cupy_array(value):
        return value
    if is_foreign_gpu_array(value):  # a PyTorch CUDA tensor, a Numba device array: through CuPy, no host trip
        return from_foreign_gpu_array(value)
    if type(value).__module__.startswith("torch"):
        return value.detach().cpu().numpy()
    raise TypeError(
        f"load_state_dict: the value for {key!r} is a {type(value).__name__}; expected a minicnn Tensor, "
        "a NumPy or CuPy array, a torch tensor or another GPU array (__cuda_array_interface__)"
    )


def _parse_to_args(args, kwargs):
    """``to("cuda")``, ``to(minicnn.float64)``, ``to("cpu", minicnn.float32)``, ``to(tensor)``."""
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    if kwargs:
        raise TypeError(f"Module.to() got unexpected keyword arguments {sorted(kwargs)}")
    for a in args:
        if isinstance(a, (str, Device)):
            device = a
        elif isinstance(a, Tensor):
            device, dtype = a.device, a.dtype
        else:
            dtype = a
    if dtype is not None:
        dtype = np.dtype(dtype)
        if dtype.kind not in "fc":
            raise TypeError(
                f"Module.to() only accepts floating point dtypes (it would also convert the weights), "
                f"got {dtype}"
            )
    return (Device(device) if device is not None else None), dtype


class Module:
    """Base class of all layers and models: subclass it, create layers in ``__init__``, write ``forward``.

    ::

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(1, 8, 3)
                self.fc = nn.Linear(8 * 26 * 26, 10)

            def forward(self, x):
                return self.fc(F.relu(self.conv(x)).flatten(1))
    """

    training: bool

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())

    def forward(self, *args, **kwargs):
        raise NotImplementedError(
            f'Module [{type(self).__name__}] is missing the required "forward" function'
        )

    def __call__(self, *args, **kwargs):
        for hook in tuple(self._forward_pre_hooks.values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        output = self.forward(*args, **kwargs)
        for hook in tuple(self._forward_hooks.values()):
            result = hook(self, args, output)
            if result is not None:
                output = result
        return output

    def register_forward_hook(self, hook) -> RemovableHandle:
        """Call ``hook(module, args, output)`` after every forward; a non-None return replaces the output."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    def register_forward_pre_hook(self, hook) -> RemovableHandle:
        """Call ``hook(module, args)`` before every forward; a non-None return replaces the inputs."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    # ------------------------------------------------------------------ registration
    def _check_initialised(self, what):
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"cannot assign {what} before Module.__init__() call: start "
                f"{type(self).__name__}.__init__ with super().__init__()"
            )

    def _check_name(self, name, kind):
        if not isinstance(name, str):
            raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
        if name == "" or "." in name:
            raise KeyError(f'{kind} name can\'t be empty or contain ".", got {name!r}')
        if hasattr(self, name) and name not in getattr(self, f"_{kind}s", {}):
            raise KeyError(f"attribute '{name}' already exists")

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        self._check_initialised("parameters")
        self._check_name(name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"cannot assign '{type(param).__name__}' object to parameter '{name}' "
                "(nn.Parameter or None required)"
            )
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """A tensor that belongs to the module's state but is not learned (e.g. BatchNorm's ``running_mean``).

        Persistent buffers appear in ``state_dict()``; all buffers move with ``to()``.
        """
        self._check_initialised("buffers")
        self._check_name(name, "buffer")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(
                f"cannot assign '{type(tensor).__name__}' object to buffer '{name}' (Tensor or None required)"
            )
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        self._check_initialised("child modules")
        self._check_name(name, "module")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._modules[name] = module

    register_module = add_module

    def __setattr__(self, name, value):
        d = self.__dict__

        def remove_from(*dicts):
            for dct in dicts:
                dct.pop(name, None)
            d.pop(name, None)

        if isinstance(value, Parameter):
            self._check_initialised("parameters")
            remove_from(d["_buffers"], d["_modules"])
            self.register_parameter(name, value)
        elif "_parameters" in d and name in d["_parameters"]:
            if value is not None:
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                    "(nn.Parameter or None expected)"
                )
            d["_parameters"][name] = None
        elif isinstance(value, Module):
            self._check_initialised("child modules")
            remove_from(d["_parameters"], d["_buffers"])
            d["_modules"][name] = value
        elif "_modules" in d and name in d["_modules"]:
            if value is not None:
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as child module '{name}' "
                    "(Module or None expected)"
                )
            d["_modules"][name] = None
        elif "_buffers" in d and name in d["_buffers"]:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as buffer '{name}' (Tensor or None expected)"
                )
            d["_buffers"][name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # Only called when normal lookup fails: look in the registries.
        d = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            if registry in d and name in d[registry]:
                return d[registry][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        return sorted(
            set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules)
        )

    # ------------------------------------------------------------------ iteration
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        """``(name, module)`` for this module (name ``''``) and every descendant, depth first."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if self in memo:
                return
            memo.add(self)
        yield prefix, self
        for name, module in self._modules.items():
            if module is None:
                continue
            sub = prefix + ("." if prefix else "") + name
            yield from module.named_modules(memo, sub, remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, module in self._modules.items():
            if module is not None and module not in seen:
                seen.add(module)
                yield name, module

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named_members(self, registry, prefix, recurse, remove_duplicate=True):
        seen = set()
        modules = (
            self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
            if recurse
            else [(prefix, self)]
        )
        for module_prefix, module in modules:
            for name, value in getattr(module, registry).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield module_prefix + ("." if module_prefix else "") + name, value

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """``(name, parameter)`` pairs, in registration order, each shared parameter listed once."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # ------------------------------------------------------------------ modes and grads
    def train(self, mode: bool = True):
        """Set training mode (dropout active, BatchNorm uses batch statistics) here and in every child."""
        if not isinstance(mode, bool):
            raise ValueError(f"training mode is expected to be boolean, got {mode!r}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        """Evaluation mode: ``train(False)``. It does not turn off gradients; use ``minicnn.no_grad()``."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients: ``None`` (default, like PyTorch), or zeros in place."""
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.array[...] = 0
                p.grad.bump_version()

    # ------------------------------------------------------------------ dtype and device
    def _apply(self, convert):
        """Replace the array of every parameter, gradient and buffer by ``convert(array)``, in place."""
        for m in self.modules():
            for p in m._parameters.values():
                if p is None:
                    continue
                p.array = convert(p.array)
                if p.grad is not None:
                    p.grad.array = convert(p.grad.array)
            for b in m._buffers.values():
                if b is not None:
                    b.array = convert(b.array)
        return self

    def to(self, *args, **kwargs):
        """Move/convert parameters and buffers in place and return ``self``.

        ``model.to("cuda")``, ``model.to(minicnn.float64)``, ``model.to("cpu", minicnn.float32)``.
        Only floating-point tensors change dtype (``num_batches_tracked`` stays int64).
        """
        device, dtype = _parse_to_args(args, kwargs)

        def convert(a):
            if dtype is not None and a.dtype.kind in "fc" and a.dtype != dtype:
                a = a.astype(dtype)
            if device is not None and device_of(a) != device:
                a = to_device(a, device)
            return a

        return self._apply(convert)

    def cuda(self, device=None):
        return self.to(
            "cuda" if device is None else (f"cuda:{device}" if isinstance(device, int) else device)
        )

    def cpu(self):
        return self.to("cpu")

    def double(self):
        return self.to(np.float64)

    def float(self):
        return self.to(np.float32)

    def half(self):
        return self.to(np.float16)

    def apply(self, fn):
        """Call ``fn(module)`` on every child (recursively) and then on ``self``; e.g. custom init."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ state dict
    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """An ordered ``{name: tensor}`` of every parameter and persistent buffer, PyTorch's key names.

        Values are detached tensors sharing memory with the model (``keep_vars=True``: the
        parameters themselves). Clone them for a snapshot.
        """
        if destination is None:
            destination = OrderedDict()
        for module_prefix, m in self.named_modules(prefix=prefix.rstrip("."), remove_duplicate=False):
            head = module_prefix + ("." if module_prefix else "")
            for name, p in m._parameters.items():
                if p is not None:
                    destination[head + name] = p if keep_vars else p.detach()
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent_buffers:
                    destination[head + name] = b if keep_vars else b.detach()
        return destination

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy ``state_dict``'s values (minicnn Tensors, NumPy arrays or torch tensors) into this model.

        All problems -- missing keys, unexpected keys, shape mismatches -- are collected and reported
        in one RuntimeError before anything is copied. With ``strict=False`` missing and unexpected
        keys are allowed and returned as ``(missing_keys, unexpected_keys)``; shape mismatches still
        raise. Values are converted to each parameter's dtype and device; identities are kept.
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"load_state_dict: expected a dict of tensors, got {type(state_dict).__name__}")
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors, pending = [], []
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = _raw_array(state_dict[key], key)
            if tuple(value.shape) != tuple(target.shape):
                errors.append(
                    f"size mismatch for {key}: copying a param with shape {tuple(value.shape)} "
                    "from checkpoint, "
                    f"the shape in current model is {tuple(target.shape)}."
                )
                continue
            pending.append((target, value))
        if strict:
            if unexpected:
                errors.insert(
                    0, "Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + "."
                )
            if missing:
                errors.insert(
                    0, "Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + "."
                )
        if errors:
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n\t" + "\n\t".join(errors)
            )
        for target, value in pending:
            value = to_device(value, target.device)  # NumPy <-> CuPy as needed
            target.array[...] = value.astype(target.array.dtype, copy=False)
            target.bump_version()
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ printing
    def extra_repr(self) -> str:
        """The text inside the parentheses of this module's repr (layers override it)."""
        return ""

    def _get_name(self):
        return type(self).__name__

    def __repr__(self):
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({name}): " + _addindent(repr(m), 2) for name, m in self._modules.items()]
        lines = extra_lines + child_lines
        body = ""
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                body = extra_lines[0]
            else:
                body = "\n  " + "\n  ".join(lines) + "\n"
        return self._get_name() + "(" + body + ")"
