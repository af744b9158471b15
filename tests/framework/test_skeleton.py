"""permalloc new-plugin: each kind of package installs and passes its own tests as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from permalloc.cli import main
from permalloc.skeleton import KINDS


def _installed(package: Path, site: Path) -> dict[str, str]:
    """The environment of a subprocess that sees ``package`` as if pip had installed it: its
    folder on PYTHONPATH and a dist-info with the entry points of its pyproject.toml."""
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    dist = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    points = project["entry-points"]["permalloc"]
    (dist / "entry_points.txt").write_text("[permalloc]\n" + "".join(f"{n} = {v}\n" for n, v in points.items()))
    path = os.pathsep.join(p for p in (str(site), str(package), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_of_package_registers_and_passes_its_own_tests(kind, tmp_path, capsys):
    name = f"sample-{kind}"
    package = tmp_path / name
    assert main(["new-plugin", name, "--kind", kind, "-o", str(package)]) == 0
    assert f"wrote {package}/ ({kind} plugin package)" in capsys.readouterr().out
    env = _installed(package, tmp_path / "site")
    listed = subprocess.run([sys.executable, "-m", "permalloc.cli", "plugins", "--json"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, check=True)
    row = next(r for r in json.loads(listed.stdout) if r["name"] == name)
    assert row["module"] == f"permalloc_sample_{kind}" and "error" not in row
    assert (row["kind"], row["arch"]) == (("arch", name) if kind == "arch" else ("consumer/observer", None))
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                            str(package)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    summary = tests.stdout.strip().splitlines()[-1]
    assert int(re.search(r"(\d+) passed", summary).group(1)) >= 2 and "failed" not in summary, summary


def test_an_existing_folder_and_bad_names_are_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "there").mkdir()
    cases = [
        (["there", "--kind", "arch", "-o", str(tmp_path / "there")], "there: already exists"),
        (["My_Arch", "--kind", "arch"], "plugin name 'My_Arch': use lower-case letters"),
        (["bad--name", "--kind", "policy"], "plugin name 'bad--name'"),
        (["generic", "--kind", "arch"], "plugin name 'generic' is taken by an installed plugin"),
    ]
    for args, message in cases:
        assert main(["new-plugin", *args]) == 1
        err = capsys.readouterr().err
        assert err.startswith("permalloc: error: ") and message in err and len(err.splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == [tmp_path / "there"] and list((tmp_path / "there").iterdir()) == []


def test_a_failed_write_leaves_no_folder(tmp_path, capsys, monkeypatch):
    written = []

    def write_text(self: Path, text: str) -> int:
        if written:
            raise OSError(28, "No space left on device", str(self))
        written.append(self)
        return len(text)

    monkeypatch.setattr(Path, "write_text", write_text)
    assert main(["new-plugin", "full", "--kind", "consumer", "-o", str(tmp_path / "full")]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert written and not (tmp_path / "full").exists()


def test_help_explains_the_kinds(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["new-plugin", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert exit_.value.code == 0 and "pip install ./demo && pytest demo" in out
    for kind, what in KINDS.items():
        assert f"{kind}: {what}" in out
