#!/bin/sh
# Slim a virtualenv that an image ships (run in the build stage, after the last install):
# nothing here is read at run time.
#   - pip and setuptools (the image installs nothing);
#   - debugging symbols in compiled extensions and libraries (`strip --strip-unneeded`, when
#     binutils is there: 27 MB of the gateway's 243). A stripped copy replaces a file only if
#     it still loads: stripping a library that auditwheel's patchelf rewrote can break it
#     (numpy's OpenBLAS: "ELF load command address/offset not page-aligned");
#   - the test suites some packages ship inside themselves (numpy's, ChromaDB's client's);
#   - type stubs (.pyi) and C sources and headers (for type checkers and compilers only).
# Usage: scripts/slim-venv.sh /opt/venv
set -eu
venv="$1"
"$venv/bin/python" -m pip uninstall -q -y pip setuptools
site=$(echo "$venv"/lib/python3.*/site-packages)
if command -v strip >/dev/null 2>&1; then
  find "$site" -name '*.so*' -type f | while read -r lib; do
    # The copy beside the original: $ORIGIN-relative library paths resolve the same.
    if strip --strip-unneeded -o "$lib.stripped" "$lib" 2>/dev/null \
      && "$venv/bin/python" -c 'import ctypes, sys; ctypes.CDLL(sys.argv[1])' "$lib.stripped" \
        2>/dev/null; then
      mv "$lib.stripped" "$lib"
    else
      rm -f "$lib.stripped"
    fi
  done
fi
find "$site" -depth -type d \( -path "$site/numpy/*/tests" -o -path "$site/numpy/tests" \
  -o -path "$site/chromadb/test" \) -exec rm -rf {} +
find "$site" -type f \( -name '*.pyi' -o -name '*.h' -o -name '*.hpp' -o -name '*.c' \
  -o -name '*.pxd' -o -name '*.pyx' \) -delete
du -sm "$venv" >&2
