"""Who may see whom, revocation when the roster says so, and the audit log (writing and reading)."""
