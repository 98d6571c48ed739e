"""HTTP: middleware, pages, the dashboard's JSON API and the IT admin APIs. Thin handlers: the rules live in the domain folders."""
