"""One process of ``minicnn.multiprocessing.spawn``: find ``fn`` (in its module, or by running the
main script as ``__mp_main__``), then call ``fn(rank, *args)``. Started by ``mpiexec``."""

from __future__ import annotations

import importlib
import pickle
import runpy
import sys
import types


def main(payload_path):
    from minicnn.distributed import env, install_abort_hook

    install_abort_hook()
    with open(payload_path, "rb") as f:
        payload = pickle.load(f)
    if payload["main"] is not None:
        sys.path.insert(0, payload["main"].rsplit("/", 1)[0] if "/" in payload["main"] else ".")
        namespace = runpy.run_path(payload["main"], run_name="__mp_main__")
        module = types.ModuleType("__mp_main__")
        module.__dict__.update(namespace)
        sys.modules["__mp_main__"] = sys.modules["__main__"] = module
    else:
        module = importlib.import_module(payload["module"])
    fn = module
    for part in payload["qualname"].split("."):
        fn = getattr(fn, part)
    args = pickle.loads(payload["args"])
    info = env.launched_by_mpi()
    fn(0 if info is None else info["rank"], *args)


if __name__ == "__main__":
    main(sys.argv[1])
