"""Demo mode: a demo school and simulated agents."""
