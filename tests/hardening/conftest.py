"""The location tests' school (two locations, one class), shared with these tests."""

from tests.locations.conftest import school

__all__ = ["school"]
from tests.browser.conftest import browser, klasblik_server

__all__ += ["browser", "klasblik_server"]
