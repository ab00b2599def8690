"""minicnn.distributed: the process group, collectives, DistributedDataParallel, SyncBatchNorm,
DistributedSampler, the launcher and the faults, checked against single-process references.

Two kinds of tests:

* in this process (no MPI started here): errors, the sampler against torch's, the post-accumulate
  hook against torch's, world size 1, the launcher's command line;
* through ``mpiexec -n 2`` and ``-n 3`` (oversubscribed on a 2-core machine: fine for correctness):
  tests/test_distributed_worker.py runs a scenario in every rank and prints its numbers; each run
  has a timeout, so a hang fails the test instead of the suite.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import minicnn as mc
import minicnn.distributed as dist
from minicnn import nn, optim
from minicnn.distributed import backends, process_group
from minicnn.nn import functional as F
from minicnn.nn.parallel import DistributedDataParallel as DDP
from minicnn.utils.data import DistributedSampler

ROOT = Path(__file__).resolve().parents[1]
WORKER = str(ROOT / "tests" / "test_distributed_worker.py")
MPIEXEC = Path(sys.executable).parent / "mpiexec"
needs_mpi = pytest.mark.skipif(
    not (dist.is_available() and MPIEXEC.exists()),
    reason='mpi4py/mpiexec not installed: pip install -e ".[distributed]"',
)


def clean_env():
    """The environment for a child job: no MPI variables of an enclosing job, one thread per rank."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "MPI_", "OMPI_", "PMIX_"))}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    env.update(OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env["PYTHONPATH"] = str(ROOT)
    return env


def mpirun(n, *args, timeout=90, check=True):
    cmd = [str(MPIEXEC), "-n", str(n), sys.executable, WORKER, *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=clean_env(), cwd=ROOT)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def results(proc):
    return [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]


@pytest.fixture
def local_world(monkeypatch):
    """A world of one process without MPI (as without mpi4py), destroyed afterwards."""

    def no_mpi():
        raise ImportError("pretend mpi4py is missing")

    monkeypatch.setattr(process_group, "MPIBackend", no_mpi)
    for k in ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK"):
        monkeypatch.delenv(k, raising=False)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


# ============================================================================ errors, as PyTorch's
def test_collective_before_init_is_pytorchs_error():
    import torch.distributed as tdist

    assert not dist.is_initialized()
    with pytest.raises(ValueError) as ours:
        dist.all_reduce(mc.ones(2))
    with pytest.raises(ValueError) as theirs:
        tdist.get_rank()
    assert str(ours.value) == str(theirs.value)
    for call in (dist.get_rank, dist.get_world_size, dist.barrier, lambda: dist.broadcast(mc.ones(1), 0)):
        with pytest.raises(ValueError, match="has not been initialized"):
            call()
    with pytest.raises(ValueError, match="init_process_group"):
        DDP(nn.Linear(2, 2))


def test_init_twice_is_pytorchs_error(local_world):
    dist.init_process_group()
    with pytest.raises(ValueError, match="^trying to initialize the default process group twice!$"):
        dist.init_process_group()


def test_world_size_one_without_mpi4py(local_world):
    """No launcher, no mpi4py: a world of one; collectives are identities, DDP trains as the bare model."""
    dist.init_process_group(backend="gloo")
    assert (dist.get_rank(), dist.get_world_size(), dist.get_backend()) == (0, 1, "local")
    t = mc.tensor([1.0, -2.0])
    dist.all_reduce(t, dist.ReduceOp.AVG)
    out = mc.zeros(2)
    dist.all_gather_into_tensor(out, t)
    np.testing.assert_array_equal(out.numpy(), [1.0, -2.0])
    mc.manual_seed(0)
    plain = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    mc.manual_seed(0)
    model = DDP(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double())
    assert list(model.state_dict()) == ["module." + k for k in plain.state_dict()]
    x, y = mc.randn(5, 3, dtype=mc.float64), mc.tensor([0, 1, 1, 0, 1])
    for m in (plain, model):
        opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(m(x), y).backward()
            opt.step()
    for a, b in zip(plain.parameters(), model.module.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_missing_mpi4py_under_a_launcher_says_what_to_install(local_world, monkeypatch):
    def missing():
        raise ImportError(
            'minicnn.distributed needs mpi4py and an MPI library for more than one process: pip install '
            '"minicnn[distributed]" (or: pip install mpi4py mpich). (No module named mpi4py)'
        )

    monkeypatch.setattr(process_group, "MPIBackend", missing)
    monkeypatch.setenv("PMI_RANK", "0")
    monkeypatch.setenv("PMI_SIZE", "2")
    with pytest.raises(ImportError, match=r'pip install "minicnn\[distributed\]"') as e:
        dist.init_process_group()
    assert "\n" not in str(e.value)
    assert not dist.is_initialized()


def test_import_mpi_error_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import fails
    with pytest.raises(ImportError, match=r"minicnn\[distributed\]") as e:
        backends.import_mpi()
    assert "\n" not in str(e.value)


# ============================================================================ DistributedSampler
@pytest.mark.parametrize("n", [0, 1, 7, 10, 12])
@pytest.mark.parametrize("replicas", [1, 2, 3, 5])
@pytest.mark.parametrize("drop_last", [False, True])
def test_sampler_without_shuffle_is_torchs(n, replicas, drop_last):
    from torch.utils.data import DistributedSampler as TorchSampler

    data = list(range(n))
    for rank in range(replicas):
        ours = DistributedSampler(data, replicas, rank, shuffle=False, drop_last=drop_last)
        theirs = TorchSampler(data, replicas, rank, shuffle=False, drop_last=drop_last)
        if n == 0 and not drop_last:
            assert len(ours) == len(theirs) == 0
            continue
        assert list(ours) == list(theirs) and len(ours) == len(theirs)


@pytest.mark.parametrize("n, replicas, drop_last", [(10, 3, False), (10, 3, True), (12, 4, False)])
def test_sampler_with_shuffle_partitions_each_epoch(n, replicas, drop_last):
    data = list(range(n))

    def epoch(e, seed=0):
        parts = []
        for r in range(replicas):
            s = DistributedSampler(data, replicas, r, shuffle=True, seed=seed, drop_last=drop_last)
            s.set_epoch(e)
            parts.append(list(s))
        return parts

    first = epoch(0)
    assert first == epoch(0)  # every rank computes the same permutation
    assert len({len(p) for p in first}) == 1  # equal shares: every rank runs the same number of steps
    flat = [i for p in first for i in p]
    if drop_last:
        assert len(set(flat)) == len(flat) == n - n % replicas  # disjoint
    else:
        assert set(flat) == set(data) and len(flat) == -(-n // replicas) * replicas  # all, padded
    assert epoch(1) != first and epoch(0, seed=1) != first  # set_epoch and seed change the order


def test_sampler_bad_rank_is_torchs_error():
    from torch.utils.data import DistributedSampler as TorchSampler

    for rank in (2, 3, -1):
        with pytest.raises(ValueError) as ours:
            DistributedSampler(list(range(4)), num_replicas=2, rank=rank)
        with pytest.raises(ValueError) as theirs:
            TorchSampler(list(range(4)), num_replicas=2, rank=rank)
        assert str(ours.value) == str(theirs.value)
    with pytest.raises(ValueError, match="has not been initialized"):
        DistributedSampler(list(range(4)))


def test_sampler_in_a_dataloader():
    x = mc.arange(10, dtype=mc.float32).reshape(10, 1)
    ds = mc.utils.data.TensorDataset(x, mc.arange(10))
    got = []
    for rank in range(2):
        loader = mc.utils.data.DataLoader(ds, batch_size=2, sampler=DistributedSampler(ds, 2, rank, False))
        got.append([b[1].numpy().tolist() for b in loader])
    assert got == [[[0, 2], [4, 6], [8]], [[1, 3], [5, 7], [9]]]


# ============================================================================ the hook, as torch's
def test_post_accumulate_grad_hook_matches_torch():
    import torch

    x_np, w_np = np.random.default_rng(0).standard_normal((2, 3, 4))
    logs = {}
    for lib, make in (("torch", lambda a: torch.tensor(a, requires_grad=True)),
                      ("minicnn", lambda a: mc.tensor(a, requires_grad=True))):  # fmt: skip
        w, x = make(w_np), make(x_np)
        log = logs[lib] = []
        for name, leaf in (("w", w), ("x", x)):
            leaf.register_post_accumulate_grad_hook(
                lambda t, name=name, log=log: log.append((name, t.grad.numpy().copy()))
            )
        for _ in range(2):  # grads accumulate across backward calls; the hook sees the sum
            (w * x + w * w).sum().backward()
    assert [k for k, _ in logs["minicnn"]] == [k for k, _ in logs["torch"]]
    assert len(logs["minicnn"]) == 4  # once per leaf per backward, though w is used three times
    for (_, a), (_, b) in zip(logs["minicnn"], logs["torch"]):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_post_accumulate_grad_hook_errors_and_remove():
    w = mc.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="non-leaf"):
        (w * 2).register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        mc.randn(3).register_post_accumulate_grad_hook(lambda t: None)
    calls = []
    handle = w.register_post_accumulate_grad_hook(lambda t: calls.append(1))
    w.sum().backward()  # the root is the leaf's only consumer
    handle.remove()
    (w * 3).sum().backward()
    assert calls == [1]
    np.testing.assert_allclose(w.grad.numpy(), np.full(3, 4.0))


# ============================================================================ SyncBatchNorm in one process
def test_sync_batchnorm_without_a_group_is_batchnorm_and_convert_shares_weights():
    mc.manual_seed(0)
    from minicnn.models import resnet

    model = resnet(8, width=4)
    plain_bn = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    sync_bn = [m for m in converted.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert len(sync_bn) == len(plain_bn) > 0
    assert not any(type(m) is nn.BatchNorm2d for m in converted.modules())
    assert all(s.weight is b.weight and s.running_mean is b.running_mean for s, b in zip(sync_bn, plain_bn))
    x = mc.randn(4, 3, 8, 8)
    bn, sbn = nn.BatchNorm2d(3), nn.SyncBatchNorm(3)
    np.testing.assert_array_equal(bn(x).numpy(), sbn(x).numpy())
    np.testing.assert_array_equal(bn.running_var.numpy(), sbn.running_var.numpy())


# ============================================================================ the launcher
def test_launcher_command_and_environment(tmp_path):
    from minicnn.distributed import run

    hosts = tmp_path / "hosts"
    hosts.write_text("# the machines\nnode-a:4\nnode-b:4\n")
    args = run.parse_args(["--nproc-per-node", "4", "--nnodes", "2", "--hostfile", str(hosts), "train.py",
                           "--epochs", "3"])  # fmt: skip
    cmd, env = run.build_command(args, mpiexec=str(MPIEXEC))
    assert cmd[:3] == [str(MPIEXEC), "-n", "8"] and ["-f", str(hosts), "-ppn", "4"] == cmd[3:7]
    assert cmd[-4:] == ["minicnn.distributed._bootstrap", "train.py", "--epochs", "3"]
    assert (env["MASTER_ADDR"], env["WORLD_SIZE"], env["LOCAL_WORLD_SIZE"]) == ("node-a", "8", "4")
    with pytest.raises(SystemExit):
        run.parse_args(["--nnodes", "2", "train.py"])  # several machines need a host file


# ============================================================================ through mpiexec
@needs_mpi
@pytest.mark.parametrize("n, split, cap", [(2, "4,4", 1e-4), (3, "3,3,3", 25), (2, "5,3", 1e-4)])
def test_ddp_equals_one_big_batch(n, split, cap):
    """p ranks x b samples = 1 process x p*b samples: 5 SGD-momentum steps, float64, weights to 1e-12.
    Uneven split: PyTorch's rule, the plain average of the ranks' mean gradients (not the big batch)."""
    (r,) = results(mpirun(n, "ddp_big_batch", split, cap))
    assert r["ranks_agree"] == 0.0
    assert r["vs_pytorch_rule"] < 1e-12
    sizes = [int(s) for s in split.split(",")]
    if len(set(sizes)) == 1:
        assert r["vs_big_batch"] < 1e-12
    else:
        assert r["vs_big_batch"] > 1e-4  # weighting ranks equally differs from the big batch
    assert r["buckets"] == (1 if cap == 25 else 3)


@needs_mpi
@pytest.mark.parametrize("n, per_rank, shape", [(2, 3, "3,4,5"), (3, 2, "2,3,3")])
def test_sync_batchnorm_equals_batchnorm_on_the_whole_batch(n, per_rank, shape):
    (r,) = results(mpirun(n, "syncbn", per_rank, shape))
    assert r.pop("type") == "SyncBatchNorm"
    for name, diff in r.items():
        assert diff < 1e-12, (name, diff)


@needs_mpi
def test_first_bucket_starts_before_backward_ends():
    (r,) = results(mpirun(2, "overlap"))
    assert r["buckets"] == 3
    assert r["first_start"] < r["last_ready"]  # bucket 0 all-reduced while later gradients were pending
    assert [e[0] for e in r["log"]].count("start") == 3 and r["log"][-1] == ["done", 3]


@needs_mpi
def test_no_sync_accumulation_equals_one_step_on_the_union():
    (r,) = results(mpirun(2, "no_sync", 3))
    assert r["diff"] < 1e-12
    assert r["reduces_under_no_sync"] == 0 and r["reduces_total"] == 1  # one bucket, one all-reduce


@needs_mpi
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_ddp_with_sync_batchnorm_equals_batchnorm_on_one_big_batch(device):
    """DDP + SyncBatchNorm, 3 steps on 2 ranks = BatchNorm on the whole batch in one process.
    "cuda": the NCCL backend on the CuPy stand-in with a fake NCCL communicator (tests/
    test_distributed_worker.py): the same weights, and no host synchronisation in any step."""
    (r,) = results(mpirun(2, "ddp_sync_bn", device, 3))
    assert r["diff"] < 1e-12
    if device == "cuda":
        assert r["backend"] == "nccl" and r["nccl_calls"] == ["allReduce", "bcast"]
        assert r["syncs"] == [0, 0, 0]  # DDP's buckets, SyncBatchNorm's sums, the buffers' broadcast
        assert r["transfers"] == [0, 0, 0]
    else:
        assert r["backend"] == "mpi" and r["n_nccl"] == 0


@needs_mpi
def test_plain_batchnorm_under_ddp_is_not_the_big_batch():
    """Where the identity breaks (lesson 10): without SyncBatchNorm each rank normalises its own 3
    images, a different function from BatchNorm on all 6."""
    (r,) = results(mpirun(2, "ddp_sync_bn", "cpu", 3, "plain"))
    assert r["diff"] > 1e-3


@needs_mpi
def test_nccl_collectives_on_the_standin_equal_mpis():
    (r,) = results(mpirun(2, "nccl_collectives"))
    assert r["cuda"] == r["cpu"] == [[1.5, -2.5], [0.0, 0.0, 1.0, 2.0], [1.0, 2.0], [1.0, 1.0]]
    assert r["nccl_calls"] == ["allGather", "allReduce", "bcast", "reduceScatter"]
    assert r["backend"] == "cpu:mpi,cuda:nccl"


@needs_mpi
def test_find_unused_parameters():
    (r,) = results(mpirun(2, "unused"))
    assert r["unused_grad_max"] == 0.0 and r["body_grads_agree"] == 0.0  # averaged: equal on both ranks
    assert r["error"].startswith("DistributedDataParallel: expected to have finished reduction")
    assert "find_unused_parameters=True" in r["error"]


@needs_mpi
def test_different_models_fail_on_every_rank_with_one_line():
    (r,) = results(mpirun(2, "mismatch", timeout=60))
    assert len(r["messages"]) == 2
    for message in r["messages"]:
        assert message == (
            "DistributedDataParallel: rank 1's model differs from rank 0's: parameter '0.weight' has shape "
            "(8, 4) on rank 0 but (9, 4) on rank 1 (every rank must build the same model)"
        )


@needs_mpi
def test_collectives_on_three_ranks():
    (r,) = results(mpirun(3, "collectives"))
    ranks = r["ranks"]
    for q, got in enumerate(ranks):
        assert got["SUM"] == [6.0, 3.0] and got["AVG"] == [2.0, 1.0] and got["PRODUCT"] == [6.0, -3.0]
        assert got["MIN"] == [1.0, -1.0] and got["MAX"] == [3.0, 3.0]
        assert got["noncontiguous"] == (np.arange(6).reshape(2, 3) * 6.0).tolist()
        assert got["broadcast"] == [2.0] * 3
        assert got["all_gather"] == [[0, 0], [1, 10], [2, 20]]
        assert got["all_gather_into_tensor"] == [0.0, 0.0, 1.0, -1.0, 2.0, -2.0]
        assert got["reduce_scatter"] == [3.0 * 2 * q + 3, 3.0 * (2 * q + 1) + 3]
        assert got["env"]["RANK"] == str(q) and got["env"]["WORLD_SIZE"] == "3"
        assert got["env"]["LOCAL_RANK"] == str(q) and got["env"]["MASTER_PORT"] == "29500"
        assert got["backend"] == "mpi"


@needs_mpi
def test_launcher_gives_torchruns_environment():
    cmd = [sys.executable, "-m", "minicnn.distributed.run", "--nproc-per-node", "2", "--master-port", "1234",
           WORKER, "collectives"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=clean_env(), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (r,) = results(proc)
    envs = [q["env"] for q in r["ranks"]]
    assert [e["RANK"] for e in envs] == ["0", "1"] and {e["WORLD_SIZE"] for e in envs} == {"2"}
    assert {e["LOCAL_WORLD_SIZE"] for e in envs} == {"2"} and {e["MASTER_PORT"] for e in envs} == {"1234"}
    assert {e["MASTER_ADDR"] for e in envs} == {"127.0.0.1"}


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (already ended, not yet reaped by its parent) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


@needs_mpi
def test_a_rank_that_raises_ends_the_job(tmp_path):
    start = time.perf_counter()
    proc = mpirun(2, "raise_mid_training", tmp_path, timeout=60, check=False)
    elapsed = time.perf_counter() - start
    assert proc.returncode != 0 and elapsed < 30
    assert "[rank 1] uncaught exception" in proc.stderr
    assert "ValueError: rank 1 failed on purpose at step 3" in proc.stderr
    pids = [int(p.read_text()) for p in tmp_path.glob("rank*.pid")]
    assert len(pids) == 2
    time.sleep(0.5)
    assert not any(_alive(pid) for pid in pids)


@needs_mpi
def test_a_rank_killed_with_sigkill_ends_the_job(tmp_path):
    start = time.perf_counter()
    proc = mpirun(2, "kill_mid_training", tmp_path, timeout=60, check=False)
    assert proc.returncode != 0 and time.perf_counter() - start < 60
    pids = [int(p.read_text()) for p in tmp_path.glob("rank*.pid")]
    assert len(pids) == 2
    time.sleep(0.5)
    assert not any(_alive(pid) for pid in pids)




# ============================================================================ the examples, distributed
def _example(script, *args, timeout=120, launcher=True):
    cmd = [sys.executable, "-m", "minicnn.distributed.run", "--nproc-per-node", "2"] if launcher else []
    cmd = cmd + [str(ROOT / "examples" / script), "--device", "cpu", "--no-progress", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=clean_env(), cwd=ROOT)


@needs_mpi
def test_cifar_example_with_sync_bn_on_its_own_under_mpiexec(tmp_path):
    """Started by plain mpiexec (no --distributed): data-parallel because the world size is 2."""
    from tests.test_data import write_npz

    write_npz(tmp_path / "cifar.npz")
    cmd = [str(MPIEXEC), "-n", "2", sys.executable, str(ROOT / "examples" / "cifar10_cnn.py"), "--device",
           "cpu", "--no-progress", "--data-dir", str(tmp_path / "cifar.npz"), "--batch-size", "4", "--epochs",
           "1", "--out", str(tmp_path / "out"), "--sync-bn"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=clean_env(), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "global batch 4" in proc.stdout and ", SyncBatchNorm" in proc.stdout
    assert proc.stdout.count("SyncBatchNorm(") >= 3 and proc.stdout.count("test accuracy:") == 1


def _rank_pid(marker, rank):
    """The pid of the process whose command line holds ``marker`` and whose MPI rank is ``rank``."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = (d / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in cmdline and "_bootstrap" in cmdline and f"PMI_RANK={rank}".encode() in environ:
            return int(d.name)
    return None


@needs_mpi
def test_sigkill_of_a_rank_ends_the_job_and_resume_continues(tmp_path):
    """The MNIST example under the launcher: SIGKILL rank 1 after the first checkpoint; rank 0 ends
    within 60 s, its last checkpoint loads, and --resume continues from it, with rank 0 alone
    printing and writing the report."""
    from minicnn.serialization import load_training_state
    from tests.test_data import write_mnist_raw

    write_mnist_raw(tmp_path / "data")
    out = tmp_path / "out"
    args = ["--data-dir", tmp_path / "data", "--batch-size", "4", "--out", out, "--distributed"]
    cmd = [sys.executable, "-m", "minicnn.distributed.run", "--nproc-per-node", "2",
           str(ROOT / "examples" / "mnist_cnn.py"), "--device", "cpu", "--no-progress", *map(str, args),
           "--epochs", "400"]  # fmt: skip
    job = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
                           cwd=ROOT, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while not (out / "checkpoint.safetensors").exists() and time.monotonic() < deadline:
            assert job.poll() is None, job.communicate()[1][-3000:]  # ended before its first checkpoint
            time.sleep(0.05)
        victim = _rank_pid(str(out), 1)
        assert victim is not None and job.poll() is None
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        _, stderr = job.communicate(timeout=60)
        assert time.monotonic() - killed < 60 and job.returncode != 0
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    from minicnn.models import mnist_cnn

    ddp_like = nn.Module()  # the checkpoint holds DistributedDataParallel's keys: module.<name>
    ddp_like.module = mnist_cnn()
    state = load_training_state(out / "checkpoint.safetensors", ddp_like)  # intact: it loads
    done = int(state["epoch"])
    assert 1 <= done < 400
    proc = _example("mnist_cnn.py", *args, "--epochs", done + 2, "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    assert f"after epoch {done}" in text and text.count(f"epoch {done + 2}/{done + 2}: train loss") == 1
    assert f"epoch {done}/" not in text  # the epochs before the checkpoint are not trained again
    assert "distributed: 2 processes x 2 images = global batch 4, learning rate 0.001" in text
    assert text.count("test accuracy:") == 1  # rank 0 alone prints and writes the report
    history = json.loads((out / "history.json").read_text())
    assert history["epoch"] == list(range(1, done + 3))
    n_images = np.round(np.array(history["images_per_s"]) * history["epoch_time_s"])
    assert (n_images == 12).all()  # the statistics of both ranks together: all 12 training images
    assert (out / "model.safetensors").is_file() and (out / "curves.png").is_file()


@needs_mpi
def test_multiprocessing_spawn_runs_a_torch_style_script(tmp_path):
    """``mp.spawn(fn, args, nprocs)`` with fn in the script and init_process_group("gloo", rank, world_size),
    as PyTorch's DDP tutorial writes it."""
    script = tmp_path / "spawned.py"
    script.write_text(
        "import os, sys\n"
        "import minicnn as mc\n"
        "import minicnn.distributed as dist\n"
        "import minicnn.multiprocessing as mp\n"
        "def work(rank, world_size, out):\n"
        "    dist.init_process_group('gloo', rank=rank, world_size=world_size)\n"
        "    t = mc.tensor([float(rank + 1)])\n"
        "    dist.all_reduce(t)\n"
        "    open(os.path.join(out, f'rank{rank}'), 'w').write(f\"{t.item()} {os.environ['RANK']}\")\n"
        "    dist.destroy_process_group()\n"
        "if __name__ == '__main__':\n"
        "    mp.spawn(work, args=(2, sys.argv[1]), nprocs=2, join=True)\n"
        "    print('joined')\n"
    )
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                          timeout=90, env=clean_env(), cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "joined"
    assert [(tmp_path / f"rank{r}").read_text() for r in (0, 1)] == ["3.0 0", "3.0 1"]
