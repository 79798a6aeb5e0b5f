"""The README's "Architecture" section matches the code: every module or folder it names
exists, and the modules it names in the request path are the ones that path runs through.

A path is any backticked name in the section that ends in ``.py`` or ``/``; it is looked
up under ``src/authstate/`` (the section's root), or from the repository root when it
starts with ``tests/`` or ``src/``. A bare name (``access.py``, ``routes/``) inside a bullet
that opens with a folder (``tokens/``) may be that folder's."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "authstate"
README = ROOT / "README.md"


def architecture_section() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Architecture\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert match is not None, "the README has no '## Architecture' section"
    return match.group(1)


def named_paths(section: str) -> set[Path]:
    """Every module or folder the section names, resolved to a path in the repository."""
    found: set[Path] = set()
    for paragraph in re.split(r"\n(?=- |\*\*|\n)", section):
        folder = re.match(r"- `([a-z_]+/)`", paragraph)
        for name in re.findall(r"`([A-Za-z0-9_./<>]+(?:\.py|/))`", paragraph):
            if "<" in name:  # a placeholder (`stores/<engine>.py`): its folder must exist
                name = name.rsplit("/", 1)[0] + "/"
            if name.startswith(("tests/", "src/")):
                found.add(ROOT / name)
                continue
            candidates = [PACKAGE / name]
            if folder is not None and "/" not in name.rstrip("/"):
                candidates.insert(0, PACKAGE / folder.group(1) / name)
            found.add(next((c for c in candidates if c.exists()), candidates[-1]))
    return found


def test_every_module_the_architecture_section_names_exists() -> None:
    paths = named_paths(architecture_section())
    assert len(paths) >= 30, sorted(map(str, paths))  # the parser found the map
    missing = sorted(str(p.relative_to(ROOT)) for p in paths if not p.exists())
    assert not missing, f"the README's architecture section names missing modules: {missing}"


def test_every_top_level_folder_of_the_package_is_on_the_map() -> None:
    """A new folder under src/authstate/ gets its line in the map."""
    section = architecture_section()
    folders = {p.name for p in PACKAGE.iterdir()
               if p.is_dir() and (p / "__init__.py").exists()}
    unmapped = sorted(f for f in folders if f"`{f}/`" not in section)
    assert not unmapped, f"folders missing from the README's architecture section: {unmapped}"


def test_the_request_path_is_the_one_the_middleware_runs() -> None:
    """The modules the "One request" paragraph names are the ones the middleware's
    import chain reaches: web/middleware.py -> authn.py -> tokens/access.py, sessions.py,
    revocation.py."""
    section = architecture_section()
    request = section[section.index("**One request.**"):section.index("**Adding a store**")]
    for module in ("web/middleware.py", "authn.py", "tokens/access.py", "sessions.py",
                   "revocation.py"):
        assert f"`{module}`" in request, module
    middleware = (PACKAGE / "web" / "middleware.py").read_text(encoding="utf-8")
    assert "from authstate.authn import" in middleware
    authn = (PACKAGE / "authn.py").read_text(encoding="utf-8")
    assert "from authstate.sessions import" in authn
    access = (PACKAGE / "tokens" / "access.py").read_text(encoding="utf-8")
    assert "revocation" in access


def test_the_parser_catches_a_path_that_does_not_exist() -> None:
    paths = named_paths("- `tokens/`: `access.py`, `nowhere.py`.\n- `web/gone.py`\n")
    assert PACKAGE / "tokens" / "access.py" in paths
    assert any(not p.exists() for p in paths)
    assert PACKAGE / "web" / "gone.py" in paths
