"""The `troop` command line: talks to a General's HTTP API, nothing else.

Standard library only, imported late (see troop.cli.main for why).  One job per module:

    main            entry point: parse, dispatch, errors -> exit statuses
    args            the argparse grammar, the `--` split, usage checks
    context         URL, token and streams for a command
    api             HTTP client (http.client + json), NDJSON event stream
    follow          following a job's events to the end
    render          per-host blocks, summary line, exit status; ANSI colour
    render_files    per-host blocks of file jobs (push, read, ls)
    render_plugins  per-host blocks of plugin and scout jobs (update, versions, lifecycle)
    console         stdout/stderr writes and the progress bar
    tables          listings and timestamps
    commands_*      one module per command group
"""
