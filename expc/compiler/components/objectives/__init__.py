"""Objectives (`objective KIND`): the loss, step, evaluation, metrics and report of each kind
of experiment."""
