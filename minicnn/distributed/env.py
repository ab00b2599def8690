"""Where rank and world size come from: the MPI launcher's environment, turned into torchrun's.

``mpiexec`` tells each process who it is through its own variables: MPICH's Hydra sets ``PMI_RANK``,
``PMI_SIZE``, ``MPI_LOCALRANKID`` and ``MPI_LOCALNRANKS``; Open MPI sets ``OMPI_COMM_WORLD_RANK``,
``..._SIZE``, ``..._LOCAL_RANK`` and ``..._LOCAL_SIZE``. Scripts written for ``torchrun`` read
``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``:
:func:`fill_torchrun_env` sets those from the launcher's, when ``minicnn`` is imported, so such a
script runs unchanged under ``mpiexec -n N python script.py``. Reading them needs no MPI call.
"""

from __future__ import annotations

import os

# (rank, size, local rank, local size) as each MPI launcher names them
_LAUNCHERS = (
    ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),  # MPICH (Hydra), Intel MPI
    (
        "OMPI_COMM_WORLD_RANK",
        "OMPI_COMM_WORLD_SIZE",
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "OMPI_COMM_WORLD_LOCAL_SIZE",
    ),  # Open MPI
    ("PMIX_RANK", "PMIX_SIZE", "PMIX_LOCAL_RANK", "PMIX_LOCAL_SIZE"),  # PMIx launchers (srun)
)

DEFAULT_MASTER_PORT = "29500"  # torchrun's default; MPI does the rendezvous, this is for scripts to read


def launched_by_mpi() -> dict | None:
    """``{"rank", "world_size", "local_rank", "local_world_size"}`` from the MPI launcher, or None
    for a plain ``python script.py``."""
    for rank, size, local_rank, local_size in _LAUNCHERS:
        if rank in os.environ and size in os.environ:
            r, n = int(os.environ[rank]), int(os.environ[size])
            lr = int(os.environ.get(local_rank, r))
            ln = int(os.environ.get(local_size, n))
            return {"rank": r, "world_size": n, "local_rank": lr, "local_world_size": ln}
    return None


def fill_torchrun_env() -> None:
    """Set torchrun's variables from the MPI launcher's (the launcher's are the truth under mpiexec).
    ``MASTER_ADDR``/``MASTER_PORT`` keep what the launcher or the user set; else 127.0.0.1:29500
    (``init_process_group`` replaces the address by rank 0's host name)."""
    info = launched_by_mpi()
    if info is None:
        return
    os.environ["RANK"] = str(info["rank"])
    os.environ["WORLD_SIZE"] = str(info["world_size"])
    os.environ["LOCAL_RANK"] = str(info["local_rank"])
    os.environ["LOCAL_WORLD_SIZE"] = str(info["local_world_size"])
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", DEFAULT_MASTER_PORT)


def launched_world_size() -> int:
    """The world size the launcher started (1 for a plain ``python script.py``)."""
    info = launched_by_mpi()
    return 1 if info is None else info["world_size"]
