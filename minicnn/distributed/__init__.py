"""``minicnn.distributed``: data-parallel training over processes, GPUs and machines (``torch.distributed``).

::

    import minicnn.distributed as dist
    from minicnn.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group()                # rank and world size from the MPI launcher
    model = DDP(model)                        # same weights on every rank; gradients averaged
    sampler = DistributedSampler(train_set)   # each rank its own part of every epoch

Run with ``python -m minicnn.distributed.run --nproc-per-node 2 train.py`` (it wraps ``mpiexec``
and sets torchrun's variables) or ``mpiexec -n 2 python train.py``. MPI (mpi4py) carries CPU
tensors, NCCL (CuPy) GPU tensors. docs/distributed.md explains the design and its costs;
docs/lessons/10-data-parallel.md why averaging gradients is one big batch.
"""

from minicnn.distributed import env
from minicnn.distributed.backends import ReduceOp, Work
from minicnn.distributed.process_group import (
    abort,
    all_gather,
    all_gather_into_tensor,
    all_gather_object,
    all_reduce,
    barrier,
    broadcast,
    broadcast_object_list,
    destroy_process_group,
    get_backend,
    get_rank,
    get_world_size,
    group,
    init_process_group,
    install_abort_hook,
    is_available,
    is_gloo_available,
    is_initialized,
    is_mpi_available,
    is_nccl_available,
    reduce_scatter_tensor,
)

env.fill_torchrun_env()  # RANK, LOCAL_RANK, WORLD_SIZE... for scripts started by mpiexec
if env.launched_world_size() > 1:
    install_abort_hook()  # an exception before init_process_group must end the job too
