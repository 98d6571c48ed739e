"""Klasblik desktop agent."""
