"""Data sources (`data KIND`): one module per kind; each says what it yields."""
