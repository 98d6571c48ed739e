"""The dashboard's static pages, scripts and styles, shipped as package data and served by the server."""
