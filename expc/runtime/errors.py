class RunError(Exception):
    """A problem the user can fix (a missing data file, a bad override): no traceback."""
