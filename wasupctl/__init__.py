"""wasupctl: the command-line client of wasupd's control socket."""
