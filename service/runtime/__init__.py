"""Where jobs run: the runner of one job, the executors (process and thread pools), the sweeper."""
