"""School locations: which address is where, the same-location rule, remote-lesson mode, lesson hours and letters to parents."""
