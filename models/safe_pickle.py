"""Read checkpoints that hold harmless Python objects (a Hydra config, Lightning's ``AttributeDict``) without
running any of them.

``torch.load(weights_only=True)`` refuses a checkpoint as soon as its pickle names a class outside torch's
allowlist, and Lightning stores the training config in ``hyper_parameters``, often as an OmegaConf
``DictConfig``. Every team we build for has such checkpoints, so :func:`load_with_placeholders` reads them
again with an unpickler that

- resolves the globals torch's weights-only unpickler allows (tensors, storages, dtypes, ``OrderedDict``) to
  the real objects, so the weights load as usual;
- turns every other global into an inert :class:`Placeholder` type: "calling" it (``REDUCE``, ``NEWOBJ``)
  records the arguments, ``BUILD``/``SETITEMS``/``APPENDS`` record the state and items. Nothing is imported,
  called or executed: a ``__reduce__`` that names ``os.system`` yields a placeholder that remembers
  ``"posix.system"`` and its argument string, and that is all;
- refuses ``BUILD`` (which can ``setattr`` on the object) on anything but placeholders and plain containers.

:func:`plain` then turns placeholders into plain dicts and lists (OmegaConf's node tree becomes the values it
holds), which is all the loader needs to find an architecture name or a class count.
"""

from __future__ import annotations

import collections
import io
import pickle
import types
from collections.abc import Callable
from typing import Any

# Objects BUILD may update: placeholders, and the containers torch's own checkpoints use it on
# (an OrderedDict state dict carries ``_metadata`` that way).
_BUILDABLE = (dict, collections.OrderedDict, list, set)


class Placeholder:
    """An object of a class we refused to import: its dotted name and what the pickle gave it, nothing more."""

    _ph_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Placeholder:
        obj = object.__new__(cls)
        obj.__dict__.update(_ph_args=args, _ph_kwargs=kwargs, _ph_state=None, _ph_items={}, _ph_list=[])
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # REDUCE calls cls(*args): already recorded
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_ph_state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self._ph_items[key] = value

    def append(self, value: Any) -> None:
        self._ph_list.append(value)

    def extend(self, values: Any) -> None:
        self._ph_list.extend(values)

    def add(self, value: Any) -> None:  # ADDITEMS on a set subclass
        self._ph_list.append(value)

    def __reduce__(self) -> Any:
        raise TypeError(f"a placeholder for {self._ph_name} cannot be pickled again")

    def __repr__(self) -> str:
        return f"<placeholder {self._ph_name}>"


def _placeholder_type(dotted: str) -> type[Placeholder]:
    return type(dotted.rsplit(".", 1)[-1], (Placeholder,), {"_ph_name": dotted, "__module__": __name__})


def _allowed_globals() -> dict[str, Any]:
    """The globals torch's weights-only unpickler resolves, plus any the user registered with torch."""
    import torch

    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        allowed = dict(_get_allowed_globals())
    except (ImportError, AttributeError):  # pragma: no cover - torch moved its private allowlist
        allowed = {"collections.OrderedDict": collections.OrderedDict, "torch.Size": torch.Size}
    for obj in torch.serialization.get_safe_globals():
        if isinstance(obj, tuple):  # (object, "module.name")
            allowed[obj[1]] = obj[0]
        else:
            allowed[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return allowed


def restricted_pickle_module(seen: set[str]) -> types.SimpleNamespace:
    """A stand-in for the ``pickle`` module, for ``torch.load(pickle_module=...)``; ``seen`` collects the
    dotted names read as placeholders."""
    allowed = _allowed_globals()
    types_by_name: dict[str, type[Placeholder]] = {}

    class RestrictedUnpickler(pickle._Unpickler):  # the pure-Python unpickler: its BUILD can be replaced
        dispatch = dict(pickle._Unpickler.dispatch)

        def find_class(self, module: str, name: str) -> Any:
            dotted = f"{module}.{name}"
            if dotted in allowed:
                return allowed[dotted]
            seen.add(dotted)
            if dotted not in types_by_name:
                types_by_name[dotted] = _placeholder_type(dotted)
            return types_by_name[dotted]

        def load_build(self) -> None:
            state = self.stack.pop()
            inst = self.stack[-1]
            if isinstance(inst, Placeholder):
                inst.__setstate__(state)
                return
            if type(inst) not in _BUILDABLE:
                raise pickle.UnpicklingError(f"refused to set the state of a {type(inst).__name__} while unpickling")
            slotstate = None
            if isinstance(state, tuple) and len(state) == 2:
                state, slotstate = state
            if state:
                inst.__dict__.update(state)
            if slotstate:
                raise pickle.UnpicklingError("refused to set attributes through slot state while unpickling")

        dispatch[pickle.BUILD[0]] = load_build

    def load(file: Any, **kwargs: Any) -> Any:
        return RestrictedUnpickler(file, **kwargs).load()

    def loads(data: bytes, **kwargs: Any) -> Any:
        return load(io.BytesIO(data), **kwargs)

    return types.SimpleNamespace(
        __name__="optbench_restricted_pickle",
        Unpickler=RestrictedUnpickler,
        load=load,
        loads=loads,
        UnpicklingError=pickle.UnpicklingError,
    )


def load_with_placeholders(path: Any, loader: Callable[..., Any] | None = None) -> tuple[Any, list[str]]:
    """``torch.load`` through the restricted unpickler; returns (object, sorted dotted names read as placeholders)."""
    import torch

    seen: set[str] = set()
    load = loader or torch.load
    obj = load(path, map_location="cpu", weights_only=False, pickle_module=restricted_pickle_module(seen))
    return obj, sorted(seen)


def plain(value: Any, depth: int = 0) -> Any:
    """Placeholders and containers as plain dicts, lists and scalars (tensors and other values unchanged).

    An OmegaConf container keeps its values under ``_content`` and each value node under ``_val``; a dict or list
    subclass keeps what ``SETITEMS``/``APPENDS`` gave it; any other object is its pickled state, else its arguments.
    """
    if depth > 50:
        return None
    if isinstance(value, Placeholder):
        if value._ph_items:
            return plain(value._ph_items, depth + 1)
        if value._ph_list:
            return plain(value._ph_list, depth + 1)
        state = value._ph_state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict | type(None)):
            state = state[0] or state[1]
        if isinstance(state, dict):
            if "_content" in state:
                return plain(state["_content"], depth + 1)
            if "_val" in state:
                return plain(state["_val"], depth + 1)
            return plain(state, depth + 1)
        if state is not None:
            return plain(state, depth + 1)
        if value._ph_kwargs:
            return plain(value._ph_kwargs, depth + 1)
        args = value._ph_args
        return plain(args[0], depth + 1) if len(args) == 1 else plain(list(args), depth + 1)
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, str | int) else k: plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v, depth + 1) for v in value]
    return value
