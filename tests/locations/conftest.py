"""A school with two locations (A: 127.0.0.0/30, B: 127.0.0.4/30), one class of two
students and its teacher, on a real server; see tests/support/sourced.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from tests.support.live import LiveServer, start_live_server
from tests.support.sourced import add_admin, setup_locations

ANNA = ("anna.bakker@school.example", "Anna", "Bakker")
BRAM = ("bram.de.jong@school.example", "Bram", "de Jong")
TEACHER = "teacher@school.example"


@dataclass
class School:
    server: LiveServer
    class_id: int
    anna: int
    bram: int
    loc: dict[str, int]
    admin: str


async def make_school(server: LiveServer, home: str | None = "A", lesson_hours: str = "") -> School:
    ids = await server.add_class("7B", [ANNA, BRAM], teacher=TEACHER)
    loc = await setup_locations(server, ids["school_id"], home=home, lesson_hours=lesson_hours)
    admin = await add_admin(server, ids["school_id"])
    return School(
        server, ids["class_id"], ids["students"][ANNA[0]], ids["students"][BRAM[0]], loc, admin
    )


@pytest.fixture
async def school(tmp_path) -> AsyncIterator[School]:
    server = await start_live_server(tmp_path)
    try:
        yield await make_school(server)
    finally:
        await server.stop()
