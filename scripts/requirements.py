"""Print the requirements of amem's extras (self-references like "amem[service]" expanded), one
per line: image builds install these first, in a layer that only pyproject.toml invalidates,
and the code after it with --no-deps.

    python scripts/requirements.py [--chromadb-client] gateway [more extras...]

--chromadb-client: ChromaDB's client-only distribution of the pinned version in place of the
full package (a service talks to a ChromaDB server and needs no server code: hundreds of MB
less in its image). The two install the same `chromadb` module, so the extras name the full
package, which works everywhere, and the images swap it here.
"""

import re
import sys
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
extras = project["optional-dependencies"]


def expand(names: list[str], seen: set[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        if name in seen:
            continue
        seen.add(name)
        for requirement in extras[name]:
            own = re.fullmatch(r"amem\[([^\]]+)\]", requirement.replace(" ", ""))
            out += expand(own.group(1).split(","), seen) if own else [requirement]
    return out


args = sys.argv[1:]
client_only = "--chromadb-client" in args
names = [a for a in args if not a.startswith("--")]
requirements = [*project["dependencies"], *expand(names, set())]
if client_only:
    requirements = [re.sub(r"^chromadb(?=[=<>~!])", "chromadb-client", r) for r in requirements]
print("\n".join(dict.fromkeys(requirements)))
