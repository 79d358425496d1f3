"""PEP 517 build backend of haul_client.

setuptools (before 70.1) builds wheels only with the `wheel` package, which
an offline machine may lack, and Python 3.12 and later come without
setuptools. When setuptools and `wheel` can be imported this delegates the
wheel to setuptools.build_meta; otherwise it writes the wheel (and the
editable wheel) of this pure-Python package itself with zipfile. The sdist
is setuptools', which needs no `wheel`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import zipfile
from typing import Dict, List, Optional, Tuple

try:  # pragma: no cover - depends on the machine
    import setuptools  # noqa: F401
    import wheel  # noqa: F401

    _HAVE_WHEEL = True
except ImportError:
    _HAVE_WHEEL = False


def _st():  # type: ignore[no-untyped-def]
    """setuptools' backend, imported only when used: a Python without
    setuptools (3.12 and later need not have it) still builds the wheel."""
    from setuptools import build_meta

    return build_meta

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")
PACKAGE = "haul_client"


def _project() -> Dict[str, str]:
    """The string fields of pyproject.toml's [project] table."""
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("[project]", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'^([A-Za-z-]+)\s*=\s*"([^"]*)"\s*$', section, re.M))


def _names() -> Tuple[str, str, str]:
    p = _project()
    dist = re.sub(r"[-_.]+", "_", p["name"])
    return p["name"], dist, p["version"]


def _metadata() -> str:
    p = _project()
    lines = [
        "Metadata-Version: 2.1",
        "Name: " + p["name"],
        "Version: " + p["version"],
        "Summary: " + p.get("description", ""),
        "Requires-Python: " + p.get("requires-python", ">=3.8"),
    ]
    readme = os.path.join(ROOT, p.get("readme", "README.md"))
    body = ""
    if os.path.exists(readme):
        lines.append("Description-Content-Type: text/markdown")
        with open(readme, encoding="utf-8") as f:
            body = f.read()
    return "\n".join(lines) + "\n\n" + body


WHEEL_FILE = "Wheel-Version: 1.0\nGenerator: haul_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (name, digest, len(data))


def _write_wheel(directory: str, files: List[Tuple[str, bytes]]) -> str:
    _, dist, version = _names()
    info = "%s-%s.dist-info" % (dist, version)
    filename = "%s-%s-py3-none-any.whl" % (dist, version)
    files = files + [
        (info + "/METADATA", _metadata().encode()),
        (info + "/WHEEL", WHEEL_FILE.encode()),
        (info + "/top_level.txt", (PACKAGE + "\n").encode()),
    ]
    record = [_record_line(n, d) for n, d in files] + [info + "/RECORD,,"]
    files.append((info + "/RECORD", ("\n".join(record) + "\n").encode()))
    with zipfile.ZipFile(os.path.join(directory, filename), "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files:
            z.writestr(name, data)
    return filename


def _package_files() -> List[Tuple[str, bytes]]:
    out = []
    pkg = os.path.join(SRC, PACKAGE)
    for dirpath, dirnames, filenames in os.walk(pkg):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for fn in sorted(filenames):
            if fn.endswith((".py", ".typed")):
                path = os.path.join(dirpath, fn)
                with open(path, "rb") as f:
                    out.append((os.path.relpath(path, SRC).replace(os.sep, "/"), f.read()))
    return out


def get_requires_for_build_wheel(config_settings: Optional[dict] = None) -> List[str]:
    return []


def get_requires_for_build_editable(config_settings: Optional[dict] = None) -> List[str]:
    return []


def get_requires_for_build_sdist(config_settings: Optional[dict] = None) -> List[str]:
    return []


def build_wheel(
    wheel_directory: str, config_settings: Optional[dict] = None, metadata_directory: Optional[str] = None
) -> str:
    if _HAVE_WHEEL:
        return _st().build_wheel(wheel_directory, config_settings, metadata_directory)
    return _write_wheel(wheel_directory, _package_files())


def build_editable(
    wheel_directory: str, config_settings: Optional[dict] = None, metadata_directory: Optional[str] = None
) -> str:
    # A .pth file that puts src/ on sys.path.
    return _write_wheel(wheel_directory, [("__editable__.haul_client.pth", (SRC + "\n").encode())])


def build_sdist(sdist_directory: str, config_settings: Optional[dict] = None) -> str:
    return _st().build_sdist(sdist_directory, config_settings)
