"""The package's own error for problems a user can cause and fix."""


class SetupError(Exception):
    """A setting or environment the user gave is unusable; its message is one line for the
    user (the command line prints it and exits with status 2)."""


class Failure(Exception):
    """The environment failed during a run (a full disk); its message is one line for the user
    (the command line prints it and exits with status 1)."""
