import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Tests never touch a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def stub_server():
    from prolab.describe.stub_server import StubChatServer

    srv = StubChatServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def repo():
    return REPO


@pytest.fixture
def python():
    return sys.executable
