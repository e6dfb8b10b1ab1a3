"""Per-process machinery: the run context, the background writer, the journal, signals and
the reaper."""
