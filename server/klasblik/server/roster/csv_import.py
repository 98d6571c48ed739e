"""Import of the school's student administration (a CSV export such as ParnasSys makes):
student number, first name, surname (tussenvoegsel in its own column or in the surname),
class/group, Microsoft 365 username, school BRIN and location.

All or nothing: every line is checked first and any error stops the import with the line
numbers; the writes happen in one transaction. The student number is only read to check
the line; it is not stored. A student is stored as DESIGN.md lists: display name (first
name + initial of the main surname), username, school, location, classes."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from klasblik.protocol.errors import KlasblikError
from klasblik.server.roster.names import student_display_name
from klasblik.server.storage.models import (
    CaptureBlock,
    Location,
    School,
    SchoolClass,
    Staff,
    Student,
    class_students,
)

__all__ = [
    "COLUMNS",
    "CsvImportError",
    "ImportSummary",
    "import_students_csv",
    "parse_students_csv",
]

#: Column -> accepted header names (compared lower-case, spaces/underscores/dashes ignored).
COLUMNS: dict[str, tuple[str, ...]] = {
    "number": ("leerlingnummer", "studentnumber", "stamnummer", "llnr"),
    "first_name": ("roepnaam", "voornaam", "firstname"),
    "prefix": ("tussenvoegsel", "tussenvoegsels", "prefix"),
    "surname": ("achternaam", "surname", "lastname"),
    "group": ("groep", "klas", "class", "group", "stamgroep"),
    "username": (
        "m365gebruikersnaam",
        "gebruikersnaam",
        "m365username",
        "username",
        "userprincipalname",
        "upn",
    ),
    "brin": ("brin", "schoolbrin", "brinnummer"),
    "location": ("vestiging", "location", "locatie", "vestigingscode"),
    # optional: the student objected or asked for restriction (ja/yes/1/x): never viewed
    "no_view": ("nietbekijken", "donotview", "noview"),
}
_YES = ("ja", "j", "yes", "y", "1", "x", "true", "waar")
_NO = ("", "nee", "n", "no", "0", "false", "onwaar")
_REQUIRED = ("number", "first_name", "surname", "group", "username", "brin", "location")
_BRIN = re.compile(r"^[0-9]{2}[A-Z]{2}$")
_USERNAME = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_ERRORS = 50


class CsvImportError(KlasblikError, ValueError):
    """The file was refused; nothing was changed. ``errors`` are "line N: ..." texts."""

    code = "invalid_csv"
    status = 400

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors[:5]) + (" ..." if len(errors) > 5 else ""))
        self.errors = errors


@dataclass(frozen=True)
class Row:
    line: int
    first_name: str
    surname: str
    group: str
    username: str
    brin: str
    location: str  # two-digit code or a location name
    #: on the do-not-view list from the roster (optional column ``niet bekijken``)
    no_view: bool = False

    @property
    def display_name(self) -> str:
        return student_display_name(self.first_name, self.surname)


@dataclass
class ImportSummary:
    created: Counter[str] = field(default_factory=Counter)
    updated: Counter[str] = field(default_factory=Counter)
    removed: Counter[str] = field(default_factory=Counter)
    lines: int = 0

    def text(self) -> str:
        def part(label: str, c: Counter[str]) -> str:
            detail = ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
            return f"{label} {sum(c.values())}" + (f" ({detail})" if detail else "")

        return f"{self.lines} lines; " + "; ".join(
            [
                part("created", self.created),
                part("updated", self.updated),
                part("removed from class", self.removed),
            ]
        )


def _key(header: str) -> str:
    return re.sub(r"[\s_\-./]", "", header.strip().lower())


def parse_students_csv(data: bytes) -> list[Row]:
    """Check every line; return the rows or raise CsvImportError naming the lines."""
    try:
        body = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CsvImportError([f"line {line}: not UTF-8 text; export the file as UTF-8"]) from None
    if not body.strip():
        raise CsvImportError(["line 1: the file is empty"])
    first = body.splitlines()[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(body, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise CsvImportError([f"line 1: {exc}"]) from None
    index: dict[str, int] = {}
    for i, name in enumerate(header):
        for col, names in COLUMNS.items():
            if _key(name) in names and col not in index:
                index[col] = i
    missing = [c for c in _REQUIRED if c not in index]
    if missing:
        wanted = ", ".join(COLUMNS[c][0] for c in missing)
        raise CsvImportError([f"line 1: missing column(s): {wanted}"])
    errors: list[str] = []
    rows: list[Row] = []
    seen: dict[str, Row] = {}
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(f"line {reader.line_num}: {exc}")
            break
        line = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            errors.append(f"line {line}: {len(cells)} fields, the header has {len(header)}")
            continue
        v = {col: cells[i].strip() for col, i in index.items()}
        problems = [f"{COLUMNS[c][0]} is empty" for c in _REQUIRED if not v.get(c)]
        brin = v.get("brin", "").upper().replace(" ", "")
        if v.get("brin") and not _BRIN.match(brin):
            problems.append(f"BRIN {v['brin']!r} is not two digits and two letters (12AB)")
        username = v.get("username", "").lower()
        if v.get("username") and not _USERNAME.match(username):
            problems.append(
                f"username {v['username']!r} is not a Microsoft 365 username (name@school.nl)"
            )
        surname = " ".join(p for p in (v.get("prefix", ""), v.get("surname", "")) if p)
        flag = v.get("no_view", "").lower()
        if flag not in _YES + _NO:
            problems.append(f"niet bekijken {v['no_view']!r} is not ja or nee")
        if problems:
            errors.append(f"line {line}: " + "; ".join(problems))
            continue
        row = Row(
            line,
            v["first_name"],
            surname,
            v["group"][:120],
            username,
            brin,
            v["location"],
            flag in _YES,
        )
        earlier = seen.get(username)
        if earlier is not None and (earlier.brin, earlier.display_name) != (
            row.brin,
            row.display_name,
        ):
            errors.append(
                f"line {line}: {username} is also on line {earlier.line} with another name or school"
            )
            continue
        seen.setdefault(username, row)
        rows.append(row)
        if len(errors) >= MAX_ERRORS:
            break
    if errors:
        raise CsvImportError(errors)
    if not rows:
        raise CsvImportError(["line 2: the file has a header but no students"])
    return rows


async def _location(
    s: AsyncSession, school: School, row: Row, summary: ImportSummary, errors: list[str]
) -> Location | None:
    text = row.location.upper().replace(" ", "")
    code = None
    if re.fullmatch(r"[0-9]{2}", text):
        code = row.brin + text
    elif re.fullmatch(r"[0-9]{2}[A-Z]{2}[0-9]{2}", text):
        if not text.startswith(row.brin):
            errors.append(f"line {row.line}: location {row.location!r} belongs to another BRIN")
            return None
        code = text
    if code is None:
        loc = await s.scalar(
            select(Location).where(
                Location.school_id == school.id, func.lower(Location.name) == row.location.lower()
            )
        )
        if loc is None:
            errors.append(
                f"line {row.line}: location {row.location!r} is not a known location of "
                f"{row.brin}; use its two-digit code (00)"
            )
        return loc
    loc = await s.scalar(select(Location).where(Location.code == code))
    if loc is None:
        loc = Location(school_id=school.id, name=f"{school.name} {code[4:]}", code=code)
        s.add(loc)
        await s.flush()
        summary.created["location"] += 1
    elif loc.school_id != school.id:
        errors.append(f"line {row.line}: location {code} belongs to another school")
        return None
    return loc


def _columns_of(data: bytes) -> set[str]:
    first = data.decode("utf-8-sig").splitlines()[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    header = next(csv.reader(io.StringIO(first), delimiter=delimiter))
    return {col for name in header for col, names in COLUMNS.items() if _key(name) in names}


async def _roster_no_view(
    s: AsyncSession, rows: list[Row], schools: dict[str, School], summary: ImportSummary
) -> None:
    """The file's do-not-view column: a "ja" puts the student on the list (source
    "roster"); a "nee" takes off only an entry the roster itself made (never IT's, never
    one left by an erasure)."""
    existing = {
        b.username: b
        for b in await s.scalars(
            select(CaptureBlock).where(CaptureBlock.username.in_([r.username for r in rows]))
        )
    }
    for row in rows:
        have = existing.get(row.username)
        if row.no_view and have is None:
            s.add(
                CaptureBlock(
                    username=row.username,
                    school_id=schools[row.brin].id,
                    source="roster",
                    reason="from the student administration",
                    set_by="roster import",
                )
            )
            existing[row.username] = CaptureBlock(username=row.username, source="roster")
            summary.created["do-not-view"] += 1
        elif not row.no_view and have is not None and have.source == "roster":
            await s.execute(delete(CaptureBlock).where(CaptureBlock.username == row.username))
            summary.updated["do-not-view cleared"] += 1


async def import_students_csv(sm: async_sessionmaker[AsyncSession], data: bytes) -> ImportSummary:
    """Import the file in one transaction; CsvImportError (nothing changed) on any error.

    Classes named in the file that did not come from Microsoft 365 get exactly the file's
    students; classes from Microsoft 365 only gain students (the sync owns them)."""
    rows = parse_students_csv(data)
    summary = ImportSummary(lines=len(rows))
    errors: list[str] = []
    async with sm() as s, s.begin():
        schools: dict[str, School] = {}
        classes: dict[tuple[int, str], SchoolClass] = {}
        members: dict[int, set[int]] = {}
        locations: dict[tuple[str, str], Location | None] = {}
        staff_names = {u.lower() for u in (await s.execute(select(Staff.username))).scalars()}
        students = {st.username.lower(): st for st in await s.scalars(select(Student))}
        for row in rows:
            school = schools.get(row.brin)
            if school is None:
                school = await s.scalar(select(School).where(School.brin == row.brin))
                if school is None:
                    school = School(name=f"School {row.brin}", brin=row.brin)
                    s.add(school)
                    await s.flush()
                    summary.created["school"] += 1
                schools[row.brin] = school
            lkey = (row.brin, row.location.strip().lower())
            if lkey not in locations:
                locations[lkey] = await _location(s, school, row, summary, errors)
            loc = locations[lkey]
            if loc is None:
                if not any(e.startswith(f"line {row.line}:") for e in errors):
                    errors.append(
                        f"line {row.line}: location {row.location!r} is not usable (see above)"
                    )
                continue
            if row.username in staff_names:
                errors.append(f"line {row.line}: {row.username} is a staff account in the roster")
                continue
            student = students.get(row.username)
            if student is None:
                student = Student(
                    username=row.username,
                    display_name=row.display_name,
                    school_id=school.id,
                    location_id=loc.id,
                    active=True,
                )
                s.add(student)
                await s.flush()
                students[row.username] = student
                summary.created["student"] += 1
            elif (student.display_name, student.school_id, student.location_id) != (
                row.display_name,
                school.id,
                loc.id,
            ):
                student.display_name = row.display_name
                student.school_id, student.location_id = school.id, loc.id
                summary.updated["student"] += 1
            ckey = (school.id, row.group.lower())
            cls = classes.get(ckey)
            if cls is None:
                cls = await s.scalar(
                    select(SchoolClass).where(
                        SchoolClass.school_id == school.id,
                        func.lower(SchoolClass.name) == row.group.lower(),
                    )
                )
                if cls is None:
                    cls = SchoolClass(school_id=school.id, name=row.group)
                    s.add(cls)
                    await s.flush()
                    summary.created["class"] += 1
                classes[ckey] = cls
            members.setdefault(cls.id, set()).add(student.id)
        if errors:
            raise CsvImportError(errors)  # rolls the transaction back
        if "no_view" in _columns_of(data):
            await _roster_no_view(s, rows, schools, summary)
        for cls in classes.values():
            want = members.get(cls.id, set())
            have = set(
                (
                    await s.execute(
                        select(class_students.c.student_id).where(
                            class_students.c.class_id == cls.id
                        )
                    )
                ).scalars()
            )
            added, gone = want - have, (have - want if cls.m365_id is None else set())
            if gone:
                await s.execute(
                    delete(class_students).where(
                        class_students.c.class_id == cls.id, class_students.c.student_id.in_(gone)
                    )
                )
                summary.removed["student"] += len(gone)
            if added:
                await s.execute(
                    insert(class_students), [{"class_id": cls.id, "student_id": i} for i in added]
                )
    return summary
