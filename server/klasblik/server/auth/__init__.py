"""Who is asking: dashboard sessions, request identity, and the Microsoft 365 sign-in."""
