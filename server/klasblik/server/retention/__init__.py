"""Retention: the 48-hour sweep, the nightly purge, their scheduling and lock, and data-subject rights."""
