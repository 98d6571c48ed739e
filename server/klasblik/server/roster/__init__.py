"""Rosters: the Microsoft Graph client and sync, the student administration's CSV import, scheduled runs, look-ups, display names."""
