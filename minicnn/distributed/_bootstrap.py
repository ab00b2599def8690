"""Each process of ``python -m minicnn.distributed.run``: set torchrun's variables from MPI's,
make an uncaught exception end the whole job, then run the script as ``__main__``."""

from __future__ import annotations

import runpy
import sys


def main(argv):
    from minicnn.distributed import env, install_abort_hook

    env.fill_torchrun_env()
    install_abort_hook()
    if argv[:1] == ["-m"]:
        sys.argv = [argv[1]] + argv[2:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        return
    script = argv[0]
    sys.argv = list(argv)
    sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(script)))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
