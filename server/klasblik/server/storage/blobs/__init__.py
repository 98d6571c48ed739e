"""Where the latest thumbnail and tab list of each student live: local folder or Azure Blob Storage."""
