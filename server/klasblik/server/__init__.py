"""The Klasblik server: aiohttp application, hub, storage, roster, retention, CLI."""
