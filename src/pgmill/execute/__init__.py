"""Where units of work run: threads of this process, a pool of local processes, or a Dask cluster."""
