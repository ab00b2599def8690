"""Rerun the NaN/inf parity tests (pytest marker ``nonfinite``) under every SIMD path PyTorch can take
on this CPU: ``python -m parity_tests.capabilities [extra pytest arguments]``.

PyTorch picks its CPU kernels at import from ``ATEN_CPU_CAPABILITY`` (``default``, ``avx2``,
``avx512``; the best the CPU has when unset), and a result at a NaN or inf input can differ between
them (docs/check.md, "NaN and inf"). A capability the CPU lacks is skipped: PyTorch then falls back
to a lower one, which reports itself through ``torch.backends.cpu.get_cpu_capability()``. Prints one
line per capability (ran or skipped, and why) and exits non-zero if any run failed or none ran.
"""

from __future__ import annotations

import os
import subprocess
import sys

CAPABILITIES = ("default", "avx2", "avx512")


def capability_in_effect(requested: str) -> str:
    """The capability PyTorch runs with when ``ATEN_CPU_CAPABILITY=requested`` (lower case)."""
    env = dict(os.environ, ATEN_CPU_CAPABILITY=requested)
    probe = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip().lower()


def main(argv: list[str]) -> int:
    ran, failed = [], []
    for cap in CAPABILITIES:
        effective = capability_in_effect(cap)
        if effective != cap:
            print(f"nonfinite tests, ATEN_CPU_CAPABILITY={cap}: skipped, this CPU runs {effective!r} instead")
            continue
        env = dict(os.environ, ATEN_CPU_CAPABILITY=cap)
        cmd = [sys.executable, "-m", "pytest", "-q", "-m", "nonfinite", "-p", "no:cacheprovider", *argv]
        code = subprocess.run(cmd, env=env).returncode
        verdict = "passed" if code == 0 else f"FAILED (exit {code})"
        print(f"nonfinite tests, ATEN_CPU_CAPABILITY={cap}: {verdict}")
        ran.append(cap)
        if code != 0:
            failed.append(cap)
    failures = f"; failed: {', '.join(failed)}" if failed else ""
    print(f"nonfinite tests ran under: {', '.join(ran) or 'none'}{failures}")
    return 1 if failed or not ran else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
