"""minicnn/_memory.py: glibc keeps freed blocks, so a training step makes no page faults."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

CHILD = r"""
import resource, numpy as np, minicnn as mc, minicnn._memory as m
from minicnn import models, nn, optim
model = models.mnist_cnn()
opt = optim.Adam(model.parameters(), lr=1e-3)
x = mc.randn(32, 1, 28, 28)
y = mc.randint(0, 10, (32,))
def step():
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(m.tuned, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


def _run(env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    tuned, faults = out.stdout.split()
    return tuned == "True", float(faults)


@pytest.mark.skipif(not glibc, reason="the malloc settings apply to Linux with glibc only")
def test_a_training_step_makes_no_page_faults_and_the_setting_can_be_turned_off():
    tuned, faults = _run({})
    assert tuned and faults < 50  # 11,800 per step (batch 64) without the settings
    untuned, faults_system = _run({"MINICNN_MALLOC": "system"})
    assert not untuned and faults_system > 10 * max(faults, 1)
