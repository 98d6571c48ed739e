"""Microsoft 365 sign-in: the msal client, the routes, ID-token validation and pending sign-ins."""
