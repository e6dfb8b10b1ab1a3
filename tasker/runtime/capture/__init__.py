"""What a run records about where it ran: the process and the git checkout."""
