"""Import of the student administration's CSV export: all or nothing, line-numbered
errors, data minimisation (no student number, first name + surname initial)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select

from klasblik.server.roster.csv_import import CsvImportError, import_students_csv
from klasblik.server.roster.names import student_display_name
from klasblik.server.storage.engine import create_engine, sessionmaker, upgrade_database
from klasblik.server.storage.models import Location, School, SchoolClass, Student, class_students

HEADER = (
    "Leerlingnummer;Roepnaam;Tussenvoegsel;Achternaam;Groep;M365 gebruikersnaam;BRIN;Vestiging\n"
)
GOOD = HEADER + (
    "1001;Anna;;Bakker;7B;anna.bakker@school.example;12AB;00\n"
    "1002;Bram;de;Jong;7B;bram.dejong@school.example;12AB;00\n"
    "1003;Chris;van der;Berg;8C;chris.vdberg@school.example;12AB;01\n"
)


@pytest.fixture
async def sm(db_url) -> AsyncIterator:
    engine = create_engine(db_url)
    await upgrade_database(engine)
    try:
        yield sessionmaker(engine)
    finally:
        await engine.dispose()


async def _counts(sm):
    async with sm() as s:
        return tuple(
            [
                await s.scalar(select(func.count()).select_from(m))
                for m in (School, Location, SchoolClass, Student)
            ]
            + [await s.scalar(select(func.count()).select_from(class_students))]
        )


@pytest.mark.parametrize(
    "first,surname,expected",
    [
        ("Bram", "de Jong", "Bram J."),
        ("Chris", "van der Berg", "Chris B."),
        ("Anna", "Bakker", "Anna B."),
        ("Eva", "'t Hart", "Eva H."),
        ("Jan Piet", "van Dijk", "Jan Piet D."),
        ("Noor", "", "Noor"),
        ("Lotte", "de", "Lotte D."),
    ],
)
def test_display_name_is_first_name_and_main_surname_initial(first, surname, expected):
    """The tussenvoegsel is skipped: the initial is that of the main surname."""
    assert student_display_name(first, surname) == expected


async def test_import_creates_students_classes_and_locations(sm):
    """A good file creates the school, its locations, classes and students."""
    summary = await import_students_csv(sm, GOOD.encode())
    assert summary.created == {"school": 1, "location": 2, "class": 2, "student": 3}
    async with sm() as s:
        rows = (
            await s.execute(
                select(Student.display_name, Student.username).order_by(Student.username)
            )
        ).all()
        codes = sorted((await s.execute(select(Location.code))).scalars())
    assert [r[0] for r in rows] == ["Anna B.", "Bram J.", "Chris B."]
    assert codes == ["12AB00", "12AB01"]


async def test_student_number_is_not_stored(sm):
    """No column of any table holds the student number or the full surname."""
    await import_students_csv(sm, GOOD.encode())
    async with sm() as s:
        student = await s.scalar(
            select(Student).where(Student.username == "bram.dejong@school.example")
        )
    values = [str(getattr(student, c.key)) for c in Student.__table__.columns]
    assert not any("1002" in v or "Jong" in v for v in values), values


async def test_broken_line_changes_nothing_and_is_named(sm):
    """One bad line: nothing is imported, and the error names that line."""
    await import_students_csv(sm, GOOD.encode())
    before = await _counts(sm)
    broken = HEADER + (
        "1001;Anna;;Bakker;7C;anna.bakker@school.example;12AB;00\n"
        "1004;Dirk;;Smit;7C;dirk.smit@school.example;12AB;00\n"
        "1005;Eva;;;7C;not-an-address;12AB;00\n"
        "1006;Fem;;Vos;7C;fem.vos@school.example;12AB;00\n"
    )
    with pytest.raises(CsvImportError) as info:
        await import_students_csv(sm, broken.encode())
    assert len(info.value.errors) == 1
    assert info.value.errors[0].startswith("line 4: ")
    assert (
        "achternaam is empty" in info.value.errors[0] and "not-an-address" in info.value.errors[0]
    )
    assert await _counts(sm) == before


async def test_error_found_while_writing_rolls_back(sm):
    """A line refused during the writes (unknown location name) rolls back the lines before it."""
    bad = HEADER + (
        "1001;Anna;;Bakker;7B;anna.bakker@school.example;12AB;00\n"
        "1002;Bram;de;Jong;7B;bram.dejong@school.example;12AB;Hoofdgebouw Noord\n"
    )
    with pytest.raises(CsvImportError, match="line 3: location 'Hoofdgebouw Noord'"):
        await import_students_csv(sm, bad.encode())
    assert await _counts(sm) == (0, 0, 0, 0, 0)


@pytest.mark.parametrize(
    "text,message",
    [
        ("Roepnaam;Achternaam\nAnna;Bakker\n", "line 1: missing column(s): leerlingnummer, groep"),
        (HEADER + "1001;Anna;;Bakker;7B;anna@school.example;1XAB;00\n", "line 2: BRIN '1XAB'"),
        (HEADER + "1001;Anna;;Bakker;7B\n", "line 2: 5 fields, the header has 8"),
        (HEADER, "line 2: the file has a header but no students"),
    ],
)
async def test_bad_files_are_refused_with_line_numbers(sm, text, message):
    """Missing columns, a bad BRIN, a short line, no students: each named with its line."""
    with pytest.raises(CsvImportError) as info:
        await import_students_csv(sm, text.encode())
    assert info.value.errors[0].startswith(message), info.value.errors


async def test_not_utf8_names_the_line(sm):
    """A file that is not UTF-8 is refused naming the first bad line."""
    data = (
        HEADER + "1001;Anna;;Bakker;7B;anna@school.example;12AB;00\n"
    ).encode() + "1002;Zoë;;B;7B;z@school.example;12AB;00\n".encode("latin-1")
    with pytest.raises(CsvImportError, match="line 3: not UTF-8"):
        await import_students_csv(sm, data)


async def test_reimport_moves_a_student_to_another_group(sm):
    """A newer export makes the classes it names match it exactly: Anna moves to 8C and
    Chris, no longer in the export, leaves 8C (comma-separated, BOM, English headers)."""
    await import_students_csv(sm, GOOD.encode())
    newer = (
        "\ufeffStudent number,First name,Surname,Class,Username,BRIN,Location\n"
        "1001,Anna,Bakker,8C,anna.bakker@school.example,12AB,01\n"
        "1002,Bram,de Jong,7B,bram.dejong@school.example,12AB,00\n"
    )
    summary = await import_students_csv(sm, newer.encode())
    assert summary.updated == {"student": 1}
    assert summary.removed == {"student": 2}
    async with sm() as s:
        rows = (
            await s.execute(
                select(SchoolClass.name, Student.display_name)
                .join(class_students, class_students.c.class_id == SchoolClass.id)
                .join(Student, Student.id == class_students.c.student_id)
                .order_by(SchoolClass.name, Student.display_name)
            )
        ).all()
    assert [tuple(r) for r in rows] == [("7B", "Bram J."), ("8C", "Anna B.")]
