"""``klasblik privacy``: the paperwork a school's data protection officer needs, written from
the school's actual settings and data, in Dutch and English:

- ``dpia``: an aid for the DPIA (the questions of a DPIA for school software, answered from
  the configuration; what the school must still decide is marked as an open point),
- ``register``: the entry for the register of processing activities (AVG art. 30),
- ``information``: the information text for parents and students,
- ``privacy-annex`` and ``security-annex``: the product annexes of the model processing
  agreement (privacybijsluiter, beveiligingsbijlage), with the sub-processors in use,

plus ``facts.json``, every fact the texts state, so that a reader (and the tests) can check
them against the configuration. ``breach_export`` packs the audit entries and sign-in
sessions of a time window for the 72-hour duty to report a data breach
(docs/operations.md). Both are audit-logged.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from klasblik.server.access import audit
from klasblik.server.access.audit_query import AuditFilter, csv_rows, iter_entries
from klasblik.server.retention.art15 import retention_facts
from klasblik.server.settings import Settings
from klasblik.server.storage.models import (
    CaptureBlock,
    Location,
    RemoteMode,
    School,
    SchoolClass,
    Staff,
    Student,
    WebSession,
)

__all__ = ["DOCUMENTS", "Facts", "breach_export", "gather", "render", "write_documents"]

DOCUMENTS = ("dpia", "register", "information", "privacy-annex", "security-annex")
OPEN = {"nl": "[OPEN PUNT]", "en": "[OPEN POINT]"}


@dataclass
class Facts:
    schools: list[dict[str, Any]] = field(default_factory=list)
    locations: list[dict[str, Any]] = field(default_factory=list)
    remote_periods: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    retention: dict[str, Any] = field(default_factory=dict)
    sub_processors: list[dict[str, str]] = field(default_factory=list)
    storage: dict[str, str] = field(default_factory=dict)
    private_pages: int = 0
    store_url_query: bool = False
    contact: str = ""
    audit_exception: str = ""
    open_points: list[str] = field(default_factory=list)


def _host(url: str) -> str:
    try:
        return urlsplit(url.split("+", 1)[-1] if "://" in url else url).hostname or ""
    except ValueError:
        return ""


def _local(host: str) -> bool:
    return host in ("", "localhost", "127.0.0.1", "::1")


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if value else None


async def gather(sm: async_sessionmaker[AsyncSession], settings: Settings) -> Facts:
    """Every fact the documents state, from the database and the settings."""
    f = Facts()
    async with sm() as session:
        for school in await session.scalars(select(School).order_by(School.brin)):
            f.schools.append({"name": school.name, "brin": school.brin})
        for loc in await session.scalars(select(Location).order_by(Location.code)):
            f.locations.append(
                {
                    "name": loc.name,
                    "code": loc.code,
                    "networks": loc.networks.split() if loc.networks else [],
                    "lesson_hours": loc.lesson_hours or "",
                    "timezone": loc.timezone,
                }
            )
        codes = {loc.id: loc.code for loc in await session.scalars(select(Location))}
        for mode in await session.scalars(select(RemoteMode).order_by(RemoteMode.started_at)):
            f.remote_periods.append(
                {
                    "location": codes.get(mode.location_id, str(mode.location_id)),
                    "started_at": _iso(mode.started_at),
                    "until": _iso(mode.until),
                    "ended_at": _iso(mode.ended_at),
                    "reason": mode.reason,
                }
            )
        for name, model in (
            ("students", Student),
            ("staff", Staff),
            ("classes", SchoolClass),
            ("do_not_view", CaptureBlock),
        ):
            f.counts[name] = int(await session.scalar(select(func.count()).select_from(model)) or 0)
    f.retention = retention_facts(settings)
    f.retention["server_logs"] = "operator"  # written to stdout; kept by the host's log system
    db_host = _host(settings.database_url)
    f.storage = {
        "database": "PostgreSQL" if settings.database_url.startswith("postgresql") else "SQLite",
        "database_host": db_host if settings.database_url.startswith("postgresql") else "",
        "blobs": "Azure Blob Storage"
        if settings.blob_store.startswith("azure:")
        else "local folder",
    }
    if settings.blob_store.startswith("azure:"):
        f.sub_processors.append(
            {
                "name": "Microsoft Ireland Operations Ltd. (Azure Blob Storage)",
                "what": "latest screenshot and tab list per student",
                "where": "the Azure region of the storage account (must be in the EU)",
            }
        )
        f.open_points.append("azure_region")
    if settings.m365_tenant_id:
        f.sub_processors.append(
            {
                "name": "Microsoft Ireland Operations Ltd. (Microsoft Entra ID, Microsoft Graph)",
                "what": "sign-in of teachers; class lists (names, usernames, classes)",
                "where": "the school's own Microsoft 365 tenant",
            }
        )
    if settings.database_url.startswith("postgresql") and not _local(db_host):
        f.sub_processors.append(
            {
                "name": f"the host of the database ({db_host})",
                "what": "student and teacher records, audit log",
                "where": "to be named by the school",
            }
        )
        f.open_points.append("database_host")
    if settings.redis_url and not _local(_host(settings.redis_url)):
        f.sub_processors.append(
            {
                "name": f"the host of Redis ({_host(settings.redis_url)})",
                "what": "live frames in transit between server instances (not stored)",
                "where": "to be named by the school",
            }
        )
        f.open_points.append("redis_host")
    f.private_pages = len(settings.private_pages)
    f.store_url_query = settings.store_url_query
    f.contact = settings.privacy_contact
    f.audit_exception = settings.audit_retention_exception
    if not settings.privacy_contact:
        f.open_points.append("contact")
    f.open_points += ["legal_basis", "dpo_advice", "participation"]
    if any(not loc["networks"] for loc in f.locations):
        f.open_points.append("location_networks")
    return f


# ---- the texts -------------------------------------------------------------------------

_OPEN_TEXT = {
    "azure_region": {
        "nl": "Leg vast in welke Azure-regio het opslagaccount staat (moet in de EU liggen).",
        "en": "Record the Azure region of the storage account (it must be in the EU).",
    },
    "database_host": {
        "nl": "Noem de partij die de database host en sluit met haar een verwerkersovereenkomst.",
        "en": "Name the party hosting the database and sign a processing agreement with it.",
    },
    "redis_host": {
        "nl": "Noem de partij die Redis host.",
        "en": "Name the party hosting Redis.",
    },
    "contact": {
        "nl": "Vul het contact van de functionaris gegevensbescherming in (privacy_contact).",
        "en": "Fill in the data protection officer's contact (privacy_contact).",
    },
    "legal_basis": {
        "nl": "De school bepaalt de grondslag (meestal: taak van algemeen belang, art. 6 lid "
        "1 sub e AVG) en legt die vast.",
        "en": "The school decides the legal basis (usually a task in the public interest, "
        "art. 6(1)(e) GDPR) and records it.",
    },
    "dpo_advice": {
        "nl": "Advies van de functionaris gegevensbescherming over deze DPIA.",
        "en": "The data protection officer's advice on this DPIA.",
    },
    "participation": {
        "nl": "Instemming of advies van de medezeggenschapsraad over het gebruik.",
        "en": "Consent or advice of the participation council on its use.",
    },
    "location_networks": {
        "nl": "Er zijn locaties zonder netwerken: daar is niemand 'op locatie', dus niets te zien.",
        "en": "Some locations have no networks: nobody counts as on-site there, so nothing "
        "can be seen.",
    },
}

_TITLES = {
    "dpia": {"nl": "Hulp bij de DPIA", "en": "DPIA aid"},
    "register": {
        "nl": "Register van verwerkingsactiviteiten (art. 30 AVG)",
        "en": "Register of processing activities (GDPR art. 30)",
    },
    "information": {
        "nl": "Informatie voor ouders en leerlingen",
        "en": "Information for parents and students",
    },
    "privacy-annex": {"nl": "Privacybijsluiter", "en": "Privacy annex (privacybijsluiter)"},
    "security-annex": {
        "nl": "Beveiligingsbijlage",
        "en": "Security annex (beveiligingsbijlage)",
    },
}


def _retention_lines(f: Facts, lang: str) -> list[str]:
    r = f.retention
    exception = (
        (
            f" (uitzondering, gemeld: {f.audit_exception})"
            if lang == "nl"
            else f" (exception, notified: {f.audit_exception})"
        )
        if f.audit_exception
        else ""
    )
    if lang == "nl":
        return [
            f"- Schermafbeelding en tabbladen: hooguit {r['screenshot_max_hours']} uur "
            f"(verwijderd vanaf {r['sweep_max_age_h']} uur).",
            f"- Leerling-, docent- en klasgegevens: tot het einde van het schooljaar "
            f"({r['school_year_end']}).",
            f"- Logboek (wie keek wanneer): {r['audit_months']} maanden{exception}.",
            f"- Aanmeldsessies van docenten: hooguit {r['session_hours']:g} uur.",
            "- Serverlogboeken (met gebruikers-id's en IP-adressen): zo lang als de beheerder "
            "van de server instelt, hooguit 6 maanden (zie docs/operations.md).",
        ]
    return [
        f"- Screenshot and tabs: at most {r['screenshot_max_hours']} hours (deleted from "
        f"{r['sweep_max_age_h']} hours on).",
        f"- Student, teacher and class records: until the end of the school year "
        f"({r['school_year_end']}).",
        f"- Audit log (who looked when): {r['audit_months']} months{exception}.",
        f"- Teachers' sign-in sessions: at most {r['session_hours']:g} hours.",
        "- Server logs (with user ids and IP addresses): as long as the server's operator "
        "sets, at most 6 months (see docs/operations.md).",
    ]


def _locations(f: Facts, lang: str) -> list[str]:
    if not f.locations:
        return ["- " + ("geen locaties ingesteld" if lang == "nl" else "no locations set up")]
    out = []
    for loc in f.locations:
        nets = ", ".join(loc["networks"]) or ("geen" if lang == "nl" else "none")
        hours = loc["lesson_hours"] or ("altijd" if lang == "nl" else "any time")
        label = ("netwerken", "lestijden") if lang == "nl" else ("networks", "lesson hours")
        out.append(
            f"- {loc['name']} ({loc['code']}): {label[0]} {nets}; {label[1]} {hours} "
            f"({loc['timezone']})"
        )
    return out


def _remote(f: Facts, lang: str) -> list[str]:
    if not f.remote_periods:
        return [
            "- "
            + ("afstandsonderwijs is nooit aangezet" if lang == "nl" else "remote lessons never on")
        ]
    word = "tot" if lang == "nl" else "until"
    return [
        f"- {m['location']}: {m['started_at']} {word} {m['ended_at'] or m['until']} ({m['reason']})"
        for m in f.remote_periods
    ]


def _subs(f: Facts, lang: str) -> list[str]:
    if not f.sub_processors:
        return [
            "- "
            + (
                "geen: alles draait op de eigen server van de school"
                if lang == "nl"
                else "none: everything runs on the school's own server"
            )
        ]
    return [f"- {s['name']}: {s['what']}; {s['where']}" for s in f.sub_processors]


def _open(f: Facts, lang: str) -> list[str]:
    return [f"- {OPEN[lang]} {_OPEN_TEXT[k][lang]}" for k in f.open_points]


def _data_list(lang: str) -> list[str]:
    if lang == "nl":
        return [
            "- leerling: voornaam en initiaal, Microsoft 365-gebruikersnaam en object-id, "
            "school, locatie, klassen, laatste IP-adres en tijdstip",
            "- de laatste kleine schermafbeelding (alleen het rooster-miniatuur, nooit de "
            "vergrote weergave) en de laatste lijst tabbladen (adres zonder zoekgegevens)",
            "- bij de desktopapp: de titel van het actieve venster",
            "- docent: naam, gebruikersnaam, school, locatie, laatste IP-adres, aanmeldsessie",
            "- logboek: wie wat wanneer en vanaf welk adres bekeek",
        ]
    return [
        "- student: first name and initial, Microsoft 365 username and object id, school, "
        "location, classes, last IP address and time",
        "- the latest small screenshot (only the grid thumbnail, never the close-up) and the "
        "latest tab list (addresses without query strings)",
        "- with the desktop agent: the title of the active window",
        "- teacher: name, username, school, location, last IP address, sign-in session",
        "- audit log: who looked at what, when, from which address",
    ]


def render(f: Facts, doc: str, lang: str) -> str:
    """One document in one language, as Markdown."""
    if doc not in DOCUMENTS or lang not in ("nl", "en"):
        raise ValueError(f"unknown document {doc!r} or language {lang!r}")
    nl = lang == "nl"
    schools = ", ".join(f"{s['name']} ({s['brin']})" for s in f.schools) or "-"
    lines = [
        f"# {_TITLES[doc][lang]}: Klasblik",
        "",
        f"School: {schools}",
        "",
    ]

    def section(title_nl: str, title_en: str, body: list[str]) -> None:
        lines.extend([f"## {title_nl if nl else title_en}", "", *body, ""])

    purpose = (
        "De docent ziet tijdens de les live wat er op de schermen van de eigen klas staat, om "
        "de les te begeleiden; vastgelegd wordt wie wanneer keek. Geen opnames, geen "
        "geschiedenis, geen gedragsanalyse."
        if nl
        else "The teacher sees, live during the lesson, what is on the screens of their own "
        "class, to guide the lesson; who looked when is recorded. No recordings, no history, "
        "no analysis of behaviour."
    )
    private = (
        f"Privégebruik wordt ontzien: {f.private_pages} pagina's (webmail, gezondheid, bank, "
        "hulpverlening) worden op het apparaat zelf niet vastgelegd; de tegel toont "
        "'privépagina'."
        if nl
        else f"Private use is spared: {f.private_pages} pages (webmail, health, banking, "
        "counselling) are not captured on the device itself; the tile shows 'private page'."
    )
    if doc == "dpia":
        section("Beschrijving en doel", "Description and purpose", [purpose])
        section("Welke gegevens", "Which data", _data_list(lang))
        section("Bewaartermijnen", "Retention", _retention_lines(f, lang))
        section("Locaties", "Locations", _locations(f, lang))
        section("Afstandsonderwijs (geschiedenis)", "Remote lessons (history)", _remote(f, lang))
        section(
            "Noodzaak en evenredigheid",
            "Necessity and proportionality",
            [
                (
                    "- alleen eigen klassen, alleen op dezelfde locatie, alleen binnen lestijd, "
                    "alleen zolang iemand kijkt"
                    if nl
                    else "- only own classes, only at the same location, only in lesson hours, "
                    "only while someone watches"
                ),
                f"- {private}",
                (
                    "- per leerling kan de school 'niet bekijken' instellen (bezwaar, beperking)"
                    if nl
                    else "- per student the school can set 'do not view' (objection, restriction)"
                ),
            ],
        )
        section("Ontvangers en subverwerkers", "Recipients and sub-processors", _subs(f, lang))
        section(
            "Doorgifte buiten de EU",
            "Transfers outside the EU",
            ["- geen door Klasblik; geen telemetrie" if nl else "- none by Klasblik; no telemetry"],
        )
        section("Open punten voor de school", "Open points for the school", _open(f, lang))
    elif doc == "register":
        section("Verwerking", "Processing", [purpose])
        section(
            "Verwerkingsverantwoordelijke",
            "Controller",
            [f"- {schools}", f"- Contact: {f.contact or OPEN[lang]}"],
        )
        section(
            "Betrokkenen",
            "Data subjects",
            [
                f"- {'leerlingen' if nl else 'students'}: {f.counts.get('students', 0)}",
                f"- {'medewerkers' if nl else 'staff'}: {f.counts.get('staff', 0)}",
            ],
        )
        section("Categorieën gegevens", "Categories of data", _data_list(lang))
        section("Ontvangers", "Recipients", _subs(f, lang))
        section("Bewaartermijnen", "Retention", _retention_lines(f, lang))
        section(
            "Beveiliging",
            "Security",
            [("- zie de beveiligingsbijlage" if nl else "- see the security annex")],
        )
    elif doc == "information":
        section(
            "Wat ziet de docent?",
            "What does the teacher see?",
            [
                purpose,
                "",
                (
                    "Alleen docenten van je eigen klassen, op dezelfde schoollocatie en "
                    "binnen lestijd. Je apparaat laat zien dat er gekeken wordt."
                    if nl
                    else "Only teachers of your own classes, at the same school location and "
                    "in lesson hours. Your device shows when someone is looking."
                ),
                "",
                private,
            ],
        )
        section("Locaties", "Locations", _locations(f, lang))
        section("Hoe lang?", "How long?", _retention_lines(f, lang))
        section(
            "Je rechten",
            "Your rights",
            [
                (
                    "- inzage: je krijgt alles wat over je bewaard is, ook wie wanneer keek"
                    if nl
                    else "- access: you get everything kept about you, including who looked when"
                ),
                "- rectificatie, verwijdering" if nl else "- rectification, erasure",
                (
                    "- bezwaar en beperking: de school kan instellen dat jij niet bekeken wordt"
                    if nl
                    else "- objection and restriction: the school can set that you are not viewed"
                ),
                (
                    "- klacht: bij de functionaris gegevensbescherming of de Autoriteit "
                    "Persoonsgegevens"
                    if nl
                    else "- complaint: to the data protection officer or the Dutch Data "
                    "Protection Authority"
                ),
                f"- Contact: {f.contact or OPEN[lang]}",
            ],
        )
    elif doc == "privacy-annex":
        section("Product", "Product", [purpose])
        section("Persoonsgegevens", "Personal data", _data_list(lang))
        section("Bewaartermijnen", "Retention", _retention_lines(f, lang))
        section("Subverwerkers", "Sub-processors", _subs(f, lang))
        section(
            "Opslag",
            "Storage",
            [
                f"- database: {f.storage['database']}"
                + (f" ({f.storage['database_host']})" if f.storage["database_host"] else ""),
                f"- {'schermafbeeldingen' if nl else 'screenshots'}: {f.storage['blobs']}",
            ],
        )
        section(
            "Rechten van betrokkenen",
            "Data subjects' rights",
            [
                (
                    "- inzage-export (met doelen, ontvangers, bewaartermijnen, bron en rechten), "
                    "verwijdering, 'niet bekijken'"
                    if nl
                    else "- access export (with purposes, recipients, retention, source and "
                    "rights), erasure, 'do not view'"
                )
            ],
        )
        section("Open punten", "Open points", _open(f, lang))
    else:  # security-annex
        section(
            "Maatregelen",
            "Measures",
            [
                (
                    "- TLS voor al het verkeer in productie; de opslagcontainer is privé"
                    if nl
                    else "- TLS for all traffic in production; the storage container is private"
                ),
                (
                    "- autorisatie op de server bij elk verzoek en elk abonnement"
                    if nl
                    else "- authorisation on the server for every request and subscription"
                ),
                (
                    "- logboek van elke weergave, export, verwijdering en logboekinzage; "
                    "IT ziet alleen de eigen school"
                    if nl
                    else "- audit log of every view, export, erasure and log read; IT sees "
                    "only its own school"
                ),
                (
                    "- opslag met 'soft delete' of versiebeheer wordt geweigerd"
                    if nl
                    else "- storage with soft delete or versioning is refused"
                ),
                (
                    "- gebruikers-id's worden nooit hergebruikt"
                    if nl
                    else "- user ids are never reused"
                ),
                (
                    "- adressen in de opgeslagen tablijst zonder zoekgegevens"
                    if not f.store_url_query and nl
                    else "- addresses in the stored tab list without query strings"
                    if not f.store_url_query
                    else "- adressen in de opgeslagen tablijst met zoekgegevens (door IT gekozen)"
                    if nl
                    else "- addresses in the stored tab list with query strings (chosen by IT)"
                ),
            ],
        )
        section("Bewaartermijnen", "Retention", _retention_lines(f, lang))
        section("Subverwerkers", "Sub-processors", _subs(f, lang))
        section(
            "Datalekken",
            "Data breaches",
            [
                (
                    "- `klasblik privacy breach --since … --until …` levert het logboek en de "
                    "sessies van het tijdvak; procedure in docs/operations.md"
                    if nl
                    else "- `klasblik privacy breach --since … --until …` gives the audit log "
                    "and sessions of the window; procedure in docs/operations.md"
                )
            ],
        )
    return "\n".join(lines).rstrip() + "\n"


async def write_documents(
    sm: async_sessionmaker[AsyncSession], settings: Settings, out: Path, actor: str
) -> list[Path]:
    """Write every document in both languages and ``facts.json`` into ``out``."""
    facts = await gather(sm, settings)
    await audit.record(
        sm, actor, audit.Actions.PRIVACY_DOCUMENTS, "", f"privacy documents written to {out}"
    )
    texts = {
        f"{doc}.{lang}.md": render(facts, doc, lang) for doc in DOCUMENTS for lang in ("nl", "en")
    }
    texts["facts.json"] = json.dumps(asdict(facts), ensure_ascii=False, indent=2)

    def write() -> list[Path]:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in texts.items():
            (out / name).write_text(text, encoding="utf-8")
        return [out / name for name in texts]

    return await asyncio.to_thread(write)


async def breach_export(
    sm: async_sessionmaker[AsyncSession],
    since: dt.datetime,
    until: dt.datetime,
    actor: str,
) -> bytes:
    """A zip of what happened in ``[since, until)``: every audit entry, every sign-in
    session that was in use, every remote-lesson period that overlaps. Audit-logged first."""
    if until <= since:
        raise ValueError("until must be after since")
    await audit.record(
        sm, actor, audit.Actions.BREACH_EXPORT, "audit", f"{_iso(since)} to {_iso(until)}"
    )
    entries = [e async for e in iter_entries(sm, AuditFilter(since=since, until=until))]
    async with sm() as session:
        sessions = (
            await session.execute(
                select(WebSession, Staff.username)
                .join(Staff, Staff.id == WebSession.staff_id)
                .where(WebSession.created_at < until, WebSession.last_used_at >= since)
                .order_by(WebSession.created_at)
            )
        ).all()
        modes = list(
            await session.scalars(
                select(RemoteMode).where(
                    RemoteMode.started_at < until,
                    or_(RemoteMode.ended_at.is_(None), RemoteMode.ended_at >= since),
                    RemoteMode.until >= since,
                )
            )
        )
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(("staff", "created_at", "last_used_at", "expires_at", "ip"))
    for ws, username in sessions:
        writer.writerow(
            (username, _iso(ws.created_at), _iso(ws.last_used_at), _iso(ws.expires_at), ws.ip)
        )
    actors = sorted({e.actor for e in entries})
    subjects = sorted({e.subject for e in entries if e.subject.startswith("student:")})
    summary = {
        "since": _iso(since),
        "until": _iso(until),
        "audit_entries": len(entries),
        "actors": actors,
        "students_concerned": len(subjects),
        "sessions": len(sessions),
        "remote_lesson_periods": [
            {"location_id": m.location_id, "started_at": _iso(m.started_at), "until": _iso(m.until)}
            for m in modes
        ],
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("audit.csv", csv_rows(entries, True))
        zf.writestr("sessions.csv", buf.getvalue())
        zf.writestr("summary.json", json.dumps(summary, ensure_ascii=False, indent=2))
    return out.getvalue()
