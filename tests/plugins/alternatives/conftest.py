import pytest


@pytest.fixture
def arch() -> str:
    """An x86-only patcher (it declares permalloc_applies for x86-64 kernels) read off the amd64
    workloads: its tests run on x86 whatever arch the tox env tests."""
    return "x86"
