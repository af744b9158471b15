"""A directory of seed modules for benchmarks/fuzz.py, which takes a directory (--seed-dir):
one small module built with gcc at test time, as the ingestion tests build theirs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

# the kernel's module flags that matter (tests/plugins/module_loader/conftest.py has the why)
CFLAGS = ["-c", "-O2", "-mcmodel=kernel", "-fno-pic", "-fno-common", "-mno-red-zone",
          "-fno-asynchronous-unwind-tables", "-fcf-protection=none", "-fno-stack-protector"]

# symbols and relocations for the mutations to aim at, and a modinfo so that it ingests
SOURCE = r"""
extern int printk(const char *, ...);
int counter;
int seed_fn(int x) { counter += x; return printk("seed %d", counter); }
static const char __attribute__((section(".modinfo"), used)) modinfo[] =
    "name=seed\0depends=\0license=GPL\0vermagic=6.1.0-test SMP mod_unload";
"""


@pytest.fixture(scope="session")
def seed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not found (the seed module is built at test time)")
    directory = tmp_path_factory.mktemp("seeds")
    (directory / "seed.c").write_text(SOURCE)
    subprocess.run([gcc, *CFLAGS, "seed.c", "-o", "seed.ko"], cwd=directory, check=True)
    return directory
