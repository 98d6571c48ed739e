"""The pure parts of the location rules: lesson hours, the address resolver, networks."""

from __future__ import annotations

import datetime as dt
import ipaddress
from zoneinfo import ZoneInfo

import pytest

from klasblik.server.locations.lessonhours import LessonHoursError, parse_lesson_hours
from klasblik.server.locations.resolver import LocationResolver, parse_location_networks
from klasblik.server.locations.rule import LocationInfo

AMS = ZoneInfo("Europe/Amsterdam")


def _local(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=AMS)


def test_lesson_hours_open_and_closed():
    """mon-fri 08:15-15:30: open from the start minute, closed from the end minute, closed
    at weekends; a split day and Dutch day names work."""
    hours = parse_lesson_hours("mon-fri 08:15-15:30")
    assert hours is not None
    assert not hours.is_open(_local(2026, 11, 25, 8, 14))
    assert hours.is_open(_local(2026, 11, 25, 8, 15))
    assert hours.is_open(_local(2026, 11, 25, 15, 29))
    assert not hours.is_open(_local(2026, 11, 25, 15, 30))
    assert not hours.is_open(_local(2026, 11, 28, 10, 0))  # Saturday
    split = parse_lesson_hours("ma,di,do,vr 08:30-12:00,12:30-15:00; wo 08:30-12:15")
    assert split is not None
    assert not split.is_open(_local(2026, 11, 23, 12, 10))  # Monday lunch
    assert split.is_open(_local(2026, 11, 23, 12, 45))
    assert not split.is_open(_local(2026, 11, 25, 12, 30))  # Wednesday afternoon


def test_lesson_hours_follow_the_local_clock_across_daylight_saving():
    """The same UTC hour is inside in winter and outside in summer: times are local."""
    hours = parse_lesson_hours("mon-fri 08:15-15:30", "Europe/Amsterdam")
    assert hours is not None
    winter = dt.datetime(2026, 1, 14, 14, 45, tzinfo=dt.UTC)  # 15:45 CET
    summer = dt.datetime(2026, 6, 17, 13, 15, tzinfo=dt.UTC)  # 15:15 CEST
    assert not hours.is_open(winter)
    assert hours.is_open(summer)
    assert not hours.is_open(dt.datetime(2026, 6, 17, 6, 0, tzinfo=dt.UTC))  # 08:00 CEST


def test_empty_lesson_hours_mean_no_limit():
    """No lesson hours: None (monitoring not limited by time)."""
    assert parse_lesson_hours("  ") is None


@pytest.mark.parametrize(
    "text,words",
    [
        ("mon-fri", "not a rule"),
        ("fri-mon 08:00-12:00", "backwards"),
        ("mon 8-12", "not a time"),
        ("mon 08:00-25:00", "not a time"),
        ("mon 12:00-08:00", "ends before"),
        ("someday 08:00-12:00", "not a day"),
        ("mon 08:00", "time span"),
    ],
)
def test_bad_lesson_hours_say_what_is_wrong(text, words):
    """Each mistake gets a message that points at it."""
    with pytest.raises(LessonHoursError, match=words):
        parse_lesson_hours(text)


def test_unknown_time_zone_is_refused():
    """A time zone must be an IANA name."""
    with pytest.raises(LessonHoursError, match="Europe/Amsterdam"):
        parse_lesson_hours("mon 08:00-12:00", "CET+1")


def _loc(loc_id: int, *nets: str) -> LocationInfo:
    return LocationInfo(
        loc_id,
        1,
        "School",
        f"L{loc_id}",
        f"12AB0{loc_id}",
        tuple(ipaddress.ip_network(n) for n in nets),
        None,
        "Europe/Amsterdam",
    )


def test_resolver_maps_ipv4_ipv6_and_mapped_addresses():
    """IPv4 and IPv6 networks resolve, an IPv4-mapped IPv6 address counts as IPv4, the
    most specific network wins, and an unknown or malformed address is off-site."""
    r = LocationResolver(
        [_loc(1, "198.51.100.0/24", "2001:db8:10::/48"), _loc(2, "198.51.100.128/25")]
    )
    assert r.resolve("198.51.100.7") == 1
    assert r.resolve("198.51.100.200") == 2
    assert r.resolve("2001:db8:10:5::1") == 1
    assert r.resolve("::ffff:198.51.100.7") == 1
    assert r.resolve("203.0.113.1") is None
    assert r.resolve("2001:db8:11::1") is None
    assert r.resolve("not an address") is None
    assert r.resolve("198.51.100.7") == 1  # from the cache, same answer


def test_resolver_cache_stays_bounded():
    """Many distinct addresses do not grow the cache past its size."""
    r = LocationResolver([_loc(1, "10.0.0.0/8")], cache_size=100)
    for i in range(1000):
        assert r.resolve(f"10.0.{i // 256}.{i % 256}") == 1
    assert len(r._cache) <= 100


def test_location_networks_are_checked():
    """Networks parse from spaces, commas and new lines; host bits and /0 are refused."""
    nets = parse_location_networks("192.0.2.0/24, 2001:db8::/32\n198.51.100.17/32")
    assert [str(n) for n in nets] == ["192.0.2.0/24", "2001:db8::/32", "198.51.100.17/32"]
    with pytest.raises(ValueError, match="did you mean 192.0.2.0/24"):
        parse_location_networks("192.0.2.5/24")
    with pytest.raises(ValueError, match="every address"):
        parse_location_networks("::/0")


def test_a_kept_verdict_ends_at_the_next_remote_lesson_boundary_or_minute():
    """The gate keeps a verdict per pair of places (it is asked for every viewer of every
    frame) only until a verdict could change: a remote-lesson period that ends at 10:00:30
    lets a teacher elsewhere see the device at 10:00:29 and no longer at 10:00:30 (not at
    the next minute); lesson hours are read again on the minute; a reload forgets all."""
    from types import SimpleNamespace

    from klasblik.server.locations.lessonhours import parse_lesson_hours
    from klasblik.server.locations.policy import LocationPolicy
    from klasblik.server.locations.rule import RemoteInfo
    from tests.support.sourced import FakeClock

    clock = FakeClock(dt.datetime(2026, 11, 25, 9, 59, 50, tzinfo=dt.UTC))  # a Wednesday
    policy = LocationPolicy(sm=None, hub=None, clock=clock)  # type: ignore[arg-type]
    hours = parse_lesson_hours("mon-fri 08:00-10:01", "UTC")
    policy.locations = {
        1: LocationInfo(1, 1, "S", "A", "A", (), hours, "UTC"),
        2: LocationInfo(2, 1, "S", "B", "B", (), None, "UTC"),
    }
    start = clock.now - dt.timedelta(hours=1)
    end = dt.datetime(2026, 11, 25, 10, 0, 30, tzinfo=dt.UTC)
    policy.remote = {1: RemoteInfo(7, 1, start, end, "storm", "it@school.example")}
    teacher_away = SimpleNamespace(location_id=2, home_location_id=1)
    student_at_a = SimpleNamespace(location_id=1, home_location_id=1)
    teacher_at_a = SimpleNamespace(location_id=1, home_location_id=1)

    assert policy.gate(teacher_away, student_at_a) is None
    clock.now = end - dt.timedelta(seconds=1)
    assert policy.gate(teacher_away, student_at_a) is None
    clock.now = end
    assert policy.gate(teacher_away, student_at_a) == "elsewhere"
    assert policy.gate(teacher_at_a, student_at_a) is None
    clock.now = dt.datetime(2026, 11, 25, 10, 1, 0, tzinfo=dt.UTC)  # lessons end at 10:01
    assert policy.gate(teacher_at_a, student_at_a) == "outside_lesson_hours"
    policy.locations[1] = LocationInfo(1, 1, "S", "A", "A", (), None, "UTC")
    assert policy.gate(teacher_at_a, student_at_a) == "outside_lesson_hours"  # kept
    policy._verdicts_span = None  # what reload() does
    policy._open_cache.clear()
    assert policy.gate(teacher_at_a, student_at_a) is None
