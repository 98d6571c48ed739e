"""The purge and student commands, as an administrator runs them."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from sqlalchemy import select

from klasblik.server.cli import main
from klasblik.server.storage.blobs.base import tabs_name, thumbnail_name
from klasblik.server.storage.blobs.local import LocalBlobStore
from klasblik.server.storage.engine import create_engine, sessionmaker, upgrade_database
from klasblik.server.storage.models import Student
from tests.support.roster import add_student
from tests.support.timing import timeout

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "klasblik.toml"
    cfg.write_text(
        f'database_url = "sqlite+aiosqlite:///{tmp_path}/k.db"\n'
        f'blob_store = "file:{tmp_path}/blobs"\n'
        'enrollment_token = "t"\n'
    )
    return cfg


def _seed(tmp_path: Path, students: dict[str, dt.datetime | None]) -> dict[str, int]:
    async def go() -> dict[str, int]:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/k.db")
        await upgrade_database(engine)
        sm = sessionmaker(engine)
        store = LocalBlobStore(tmp_path / "blobs")
        ids = {}
        for name, created in students.items():
            sid = await add_student(sm, name, created_at=created, class_name="7B")
            await store.put(thumbnail_name(sid), b"\xff\xd8\xff" + name.encode())
            await store.put(tabs_name(sid), b"[]")
            ids[name] = sid
        await engine.dispose()
        return ids

    return asyncio.run(go())


def _students(tmp_path: Path) -> list[str]:
    async def go() -> list[str]:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/k.db")
        async with sessionmaker(engine)() as session:
            names = sorted(await session.scalars(select(Student.username)))
        await engine.dispose()
        return names

    return asyncio.run(go())


def test_purge_dry_run_lists_then_purge_removes_and_summarises(tmp_path, capsys):
    """--dry-run names the expired student and removes nothing; purge removes and sums up."""
    ids = _seed(
        tmp_path,
        {"old@school.example": dt.datetime(2020, 7, 1, tzinfo=dt.UTC), "new@school.example": None},
    )
    cfg = str(_config(tmp_path))
    assert main(["purge", "--dry-run", "--config", cfg]) == 0
    out = capsys.readouterr()
    assert "student record: old@school.example" in out.out
    assert "new@school.example" not in out.out
    assert "would remove:" in out.out and "1 student record(s)" in out.out
    assert "purge:" in out.err  # progress lines
    assert _students(tmp_path) == ["new@school.example", "old@school.example"]

    assert main(["purge", "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert "removed:" in out and "1 student record(s) with 2 blob(s)" in out
    assert _students(tmp_path) == ["new@school.example"]
    left = sorted(
        p.relative_to(tmp_path / "blobs").as_posix()
        for p in (tmp_path / "blobs").rglob("*")
        if p.is_file()
    )
    sid = ids["new@school.example"]
    assert left == [tabs_name(sid), thumbnail_name(sid)]


def test_student_export_then_erase(tmp_path, capsys):
    """export writes the archive (refusing to overwrite; screenshot and tabs only with
    --reason); erase needs --yes, then erases."""
    ids = _seed(tmp_path, {"anna@school.example": None})
    cfg = str(_config(tmp_path))
    plain = tmp_path / "plain.zip"
    export = ["student", "export", "anna@school.example", "--config", cfg]
    assert main([*export, "--out", str(plain)]) == 0
    with zipfile.ZipFile(io.BytesIO(plain.read_bytes())) as zf:
        assert zf.namelist() == ["data.json"]
    out_file = tmp_path / "anna.zip"
    assert main([*export, "--out", str(out_file), "--reason", "request of the parents"]) == 0
    with zipfile.ZipFile(io.BytesIO(out_file.read_bytes())) as zf:
        assert sorted(zf.namelist()) == ["data.json", "tabs.json", "thumbnail.jpg"]
        data = json.loads(zf.read("data.json"))
    assert "reason: request of the parents" in data["audit"][-1]["detail"]
    assert data["student"]["username"] == "anna@school.example"
    assert (
        main(["student", "export", "anna@school.example", "--out", str(out_file), "--config", cfg])
        == 2
    )
    assert "exists" in capsys.readouterr().err

    assert main(["student", "erase", "anna@school.example", "--config", cfg]) == 2
    assert "--yes" in capsys.readouterr().err
    assert _students(tmp_path) == ["anna@school.example"]
    assert main(["student", "erase", "anna@school.example", "--yes", "--config", cfg]) == 0
    assert f"erased student {ids['anna@school.example']}" in capsys.readouterr().out
    assert _students(tmp_path) == []
    assert not any(p.is_file() for p in (tmp_path / "blobs").rglob("*"))
    assert main(["student", "erase", "anna@school.example", "--yes", "--config", cfg]) == 1
    assert "no student with username" in capsys.readouterr().err


def test_purge_command_runs_as_a_real_process(tmp_path):
    """`klasblik purge --dry-run` as installed: exit 0 and a summary line."""
    _config(tmp_path)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "klasblik.server.cli",
            "purge",
            "--dry-run",
            "--config",
            str(tmp_path / "klasblik.toml"),
        ],
        capture_output=True,
        text=True,
        timeout=timeout(60),
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "would remove: 0 expired session(s)" in done.stdout
