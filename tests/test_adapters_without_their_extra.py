"""An agent developer who installs ``hitl-client`` alone and imports a framework adapter is told
which extra to install, as ``hitl_client.mcp`` tells it, rather than shown a bare
``ModuleNotFoundError: No module named 'agents'`` from inside the adapter (``agents`` does not
even say it is the OpenAI Agents SDK's)."""

import subprocess
import sys
from pathlib import Path

import pytest

CLIENT = Path(__file__).resolve().parent.parent / "clients" / "python"

# Imports the adapter with its framework's packages missing, as on an install without the extra.
WITHOUT = """
import sys

class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {missing}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

sys.meta_path.insert(0, Missing())
import {adapter}
"""


@pytest.mark.parametrize(
    ("adapter", "missing", "extra"),
    [
        ("hitl_client.langchain", {"langchain", "langchain_core", "langgraph"}, "langchain"),
        ("hitl_client.langchain", {"langgraph"}, "langchain"),
        ("hitl_client.openai_agents", {"agents"}, "openai-agents"),
        ("hitl_client.mcp", {"mcp"}, "mcp"),
    ],
)
def test_an_adapter_without_its_framework_names_the_extra_to_install(adapter, missing, extra):
    run = subprocess.run(
        [sys.executable, "-c", WITHOUT.format(adapter=adapter, missing=sorted(missing))],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(CLIENT), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert run.returncode != 0
    told = run.stderr.strip().splitlines()[-1]
    assert told == (
        f'ImportError: {adapter} needs the {extra} extra: pip install "hitl-client[{extra}]" '
        f'(from the repository: pip install "./clients/python[{extra}]").'
    ), run.stderr
