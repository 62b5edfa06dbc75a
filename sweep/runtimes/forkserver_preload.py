"""Imported by the fork server of :mod:`sweep.runtimes.isolated` when it starts (its
preload module): the fork server dies with the process that started it, and its
children die with it (:mod:`sweep.runtimes.lifeline`)."""

from sweep.runtimes.lifeline import die_with_parent

die_with_parent()
