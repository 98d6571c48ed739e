"""What an access request (AVG art. 15) must be told besides the data itself, in Dutch and
English, filled in from the actual settings: purposes, categories, recipients, retention
periods, where the data came from, and the student's rights. ``subject_rights.export_student``
puts it in every export as ``about``; ``klasblik privacy`` reuses the same facts."""

from __future__ import annotations

from typing import Any

from klasblik.server.settings import Settings

__all__ = ["LANGUAGES", "about", "retention_facts"]

LANGUAGES = ("nl", "en")


def _hours(settings: Settings) -> str:
    worst = (
        settings.sweep_max_age_h + (settings.sweep_interval_min + settings.sweep_budget_min) / 60
    )
    return f"{worst:.2f}".rstrip("0").rstrip(".")


def retention_facts(settings: Settings) -> dict[str, Any]:
    """The retention figures every generated text states (tests compare them to settings)."""
    return {
        "screenshot_max_hours": _hours(settings),
        "sweep_max_age_h": settings.sweep_max_age_h,
        "audit_months": settings.audit_retention_months,
        "school_year_end": settings.school_year_end,
        "session_hours": settings.session_lifetime_s / 3600,
    }


def about(settings: Settings, source: str) -> dict[str, dict[str, Any]]:
    """The art. 15 information in both languages. ``source`` is "microsoft365" or "csv"."""
    f = retention_facts(settings)
    contact = settings.privacy_contact or "-"
    src_nl = (
        "Microsoft 365 van de school (School Data Sync / Microsoft Graph), gevuld vanuit de "
        "leerlingadministratie"
        if source == "microsoft365"
        else "een klassenlijst (CSV) uit de leerlingadministratie van de school"
    )
    src_en = (
        "the school's Microsoft 365 (School Data Sync / Microsoft Graph), filled from the "
        "student administration"
        if source == "microsoft365"
        else "a class list (CSV) from the school's student administration"
    )
    return {
        "nl": {
            "doelen": [
                "De docent ziet tijdens de les live wat er op de schermen van de eigen klas "
                "staat, om de les te begeleiden.",
                "Vastleggen wie wanneer keek (logboek), zodat de school toegang kan "
                "verantwoorden en misbruik kan opsporen.",
            ],
            "categorieen": [
                "naam (voornaam en initiaal van de achternaam), Microsoft 365-gebruikersnaam "
                "en object-id",
                "school, schoollocatie en klassen",
                "laatste IP-adres en tijdstip waarop het apparaat het laatst gezien is",
                "de laatste kleine schermafbeelding en de laatste lijst met open tabbladen "
                "of vensters (titel en adres, zonder zoekgegevens in het adres)",
                "logboekregels over wie de leerling wanneer bekeek",
                "de openbare sleutels van de aangemelde apparaten van de leerling en, waar IT "
                "een koppeling laadde, het Google-adres van school (om te bewijzen welke "
                "leerling op welk apparaat is aangemeld)",
            ],
            "ontvangers": [
                "docenten van de eigen klassen van de leerling, op dezelfde schoollocatie "
                "(of thuis tijdens afstandsonderwijs dat IT heeft aangezet)",
                "IT-beheerders van de eigen school (logboek, inzage, verwijdering)",
                "de hostingpartij van de school als verwerker, indien gebruikt",
            ],
            "bewaartermijnen": {
                "schermafbeelding en tabbladen": f"hooguit {f['screenshot_max_hours']} uur",
                "leerling- en klasgegevens": (
                    f"tot het einde van het schooljaar ({f['school_year_end']})"
                ),
                "logboek": f"{f['audit_months']} maanden",
            },
            "bron": src_nl,
            "rechten": [
                "inzage (dit overzicht)",
                "rectificatie van onjuiste gegevens (via de leerlingadministratie)",
                "verwijdering",
                "beperking van de verwerking en bezwaar: de school kan de leerling op de "
                "lijst 'niet bekijken' zetten",
                "een klacht bij de functionaris gegevensbescherming van de school of bij de "
                "Autoriteit Persoonsgegevens",
            ],
            "contact": contact,
        },
        "en": {
            "purposes": [
                "The teacher sees, live during the lesson, what is on the screens of their "
                "own class, to guide the lesson.",
                "Recording who looked when (audit log), so that the school can account for "
                "access and detect misuse.",
            ],
            "categories": [
                "name (first name and initial of the surname), Microsoft 365 username and "
                "object id",
                "school, school location and classes",
                "last IP address and when the device was last seen",
                "the latest small screenshot and the latest list of open tabs or windows "
                "(title and address, without query strings)",
                "audit entries about who viewed the student when",
                "the public keys of the student's enrolled devices and, where IT loaded a "
                "mapping, the school Google address (to prove which student is signed in on "
                "which device)",
            ],
            "recipients": [
                "teachers of the student's own classes, at the same school location (or at "
                "home during remote lessons switched on by IT)",
                "IT administrators of the student's own school (audit log, access, erasure)",
                "the school's hosting provider as a processor, when one is used",
            ],
            "retention": {
                "screenshot and tabs": f"at most {f['screenshot_max_hours']} hours",
                "student and class records": (
                    f"until the end of the school year ({f['school_year_end']})"
                ),
                "audit log": f"{f['audit_months']} months",
            },
            "source": src_en,
            "rights": [
                "access (this overview)",
                "rectification of wrong data (through the student administration)",
                "erasure",
                "restriction and objection: the school can put the student on the "
                "'do not view' list",
                "a complaint to the school's data protection officer or to the Dutch Data "
                "Protection Authority (Autoriteit Persoonsgegevens)",
            ],
            "contact": contact,
        },
    }
