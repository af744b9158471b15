import pytest


@pytest.fixture
def arch() -> str:
    """This patcher's numbers are x86's (text_poke_queue batches, text_poke_bp sync rounds):
    its tests run on x86 whatever arch the tox env tests."""
    return "x86"
