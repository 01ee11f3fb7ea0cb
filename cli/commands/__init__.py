"""The `gradbook` commands, one module per kind: train (train, resume, submit), jobs (jobs, show,
cancel, presets), inspect (history, gradients, graph, verify, export), catalog (optimizers,
datasets), serve, db. Each job command is written once over a backend (cli/backends.py): the local
database, or a server with --url."""
