"""What the dashboard shows, read from pgmill's tables: one module per page, each returning plain data
(dataclasses) for the web pages, the static export and any other shell. Every query is index-backed and
bounded, so a page costs the same with a year of history as with a day."""
