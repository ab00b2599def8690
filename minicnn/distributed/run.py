"""The launcher: ``python -m minicnn.distributed.run --nproc-per-node N [--hostfile F] script.py args...``

What ``torchrun`` is to PyTorch, on top of ``mpiexec`` (which starts the processes, on this machine
or on the hosts of a host file, and connects them). It runs::

    mpiexec -n N*nnodes [-ppn N -f hostfile] python -m minicnn.distributed._bootstrap script.py args...

and every process gets torchrun's variables (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) before the script starts, so a script
written for torchrun reads them unchanged. An uncaught exception on any rank ends the whole job
(``MPI_Abort``) with that rank's traceback; the launcher exits with ``mpiexec``'s status.
``mpiexec -n N python script.py`` works as well: ``import minicnn`` sets the same variables.
With several processes per machine, ``OMP_NUM_THREADS`` and ``NUMBA_NUM_THREADS`` default to the
machine's cores divided by the processes (torchrun sets OMP_NUM_THREADS=1), so that the processes
do not fight over the cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys


def find_mpiexec() -> str:
    """The ``mpiexec`` next to this Python (the mpich wheel installs it there), else the one on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.path.isfile(here) and os.access(here, os.X_OK):
        return here
    found = shutil.which("mpiexec")
    if found is None:
        raise SystemExit(
            'error: mpiexec not found: pip install "minicnn[distributed]" (mpi4py and mpich), '
            "or install an MPI library that provides mpiexec"
        )
    return found


def _first_host(hostfile):
    with open(hostfile) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                return line.split(":", 1)[0].split()[0]
    raise SystemExit(f"error: the host file {hostfile} names no host")


def _is_open_mpi(mpiexec) -> bool:
    try:
        out = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "Open MPI" in out or "OpenRTE" in out


def build_command(args, mpiexec=None):
    """The ``mpiexec`` command line and the environment for ``args`` (parsed options)."""
    mpiexec = mpiexec or find_mpiexec()
    nproc, nnodes = args.nproc_per_node, args.nnodes
    master = args.master_addr or (_first_host(args.hostfile) if args.hostfile else "127.0.0.1")
    variables = {
        "MASTER_ADDR": master,
        "MASTER_PORT": str(args.master_port),
        "WORLD_SIZE": str(nproc * nnodes),
        "LOCAL_WORLD_SIZE": str(nproc),
        "MINICNN_LAUNCHER": "minicnn.distributed.run",
    }
    if nproc > 1:  # as torchrun: one share of the cores per process, unless the user chose
        threads = str(max(1, (os.cpu_count() or 1) // nproc))
        for name in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
            if name not in os.environ:
                variables[name] = threads
    open_mpi = _is_open_mpi(mpiexec)
    cmd = [mpiexec, "-n", str(nproc * nnodes)]
    if args.hostfile:
        cmd += (["--hostfile", args.hostfile, "--map-by", f"ppr:{nproc}:node"] if open_mpi
                else ["-f", args.hostfile, "-ppn", str(nproc)])  # fmt: skip
    for name, value in variables.items():
        cmd += ["-x", f"{name}={value}"] if open_mpi else ["-genv", name, value]
    cmd += list(args.mpiexec_arg or [])
    cmd += [sys.executable, "-u", "-m", "minicnn.distributed._bootstrap"]
    cmd += (
        ["-m", args.training_script] if args.module else [args.training_script]
    ) + args.training_script_args
    environ = dict(os.environ, **variables)
    return cmd, environ


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m minicnn.distributed.run",
        description="Start N processes of a training script with mpiexec, with torchrun's environment.",
    )
    p.add_argument("--nproc-per-node", "--nproc_per_node", type=int, default=1, help="processes per machine")
    p.add_argument("--nnodes", type=int, default=1, help="machines (with --hostfile)")
    p.add_argument(
        "--hostfile", default=None, help="MPI host file: one machine per line (multi-machine jobs)"
    )
    p.add_argument("--master-addr", "--master_addr", default=None, help="for scripts that read MASTER_ADDR")
    p.add_argument("--master-port", "--master_port", type=int, default=29500)
    p.add_argument("--mpiexec-arg", action="append", help="one more argument for mpiexec (repeatable)")
    p.add_argument("-m", "--module", action="store_true", help="the script is a module name (python -m)")
    p.add_argument("--standalone", action="store_true", help="accepted for torchrun compatibility")
    p.add_argument("training_script")
    p.add_argument("training_script_args", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    if args.nproc_per_node < 1 or args.nnodes < 1:
        p.error("--nproc-per-node and --nnodes must be at least 1")
    if args.nnodes > 1 and not args.hostfile:
        p.error("--nnodes > 1 needs --hostfile (the machines to start the processes on)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    cmd, environ = build_command(args)
    proc = subprocess.Popen(cmd, env=environ)
    try:
        return proc.wait()
    except KeyboardInterrupt:  # Ctrl-C: mpiexec forwards it to the ranks; wait for them to end
        proc.send_signal(2)
        return proc.wait()


if __name__ == "__main__":
    sys.exit(main())
