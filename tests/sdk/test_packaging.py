"""`pip install amem` installs the client alone: a fresh venv, the root distribution built from
this checkout, and `pip freeze` holds nothing of the services (no chromadb, grpcio, fastapi,
tantivy, torch, onnxruntime)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# httpx and pydantic, and what they pull in.
ALLOWED = {
    "amem",
    "annotated-types",
    "anyio",
    "certifi",
    "h11",
    "httpcore",
    "httpx",
    "idna",
    "pydantic",
    "pydantic-core",
    "sniffio",
    "typing-extensions",
    "typing-inspection",
}


def test_the_root_distribution_is_the_client_alone(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(REPO)],
        check=True,
        timeout=600,
    )
    frozen = subprocess.run(
        [python, "-m", "pip", "freeze", "--all", "--exclude", "pip", "--exclude", "setuptools"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    names = {
        re.split(r"[=@ ]", line, maxsplit=1)[0].strip().lower().replace("_", "-")
        for line in frozen.splitlines()
        if line.strip()
    }
    assert "amem" in names and {"httpx", "pydantic"} <= names
    assert names <= ALLOWED, sorted(names - ALLOWED)
    # The SDK imports, and a server command says what to install instead of a traceback.
    probe = "from amem import AsyncClient, Client, NotFound; print(Client.__module__)"
    assert subprocess.run([python, "-c", probe], capture_output=True, text=True).stdout.strip() == (
        "amem.client"
    )
    done = subprocess.run([str(venv / "bin" / "amem"), "doctor"], capture_output=True, text=True)
    assert done.returncode == 2 and "pip install 'amem[server]'" in done.stderr, done.stderr
