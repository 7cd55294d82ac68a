"""Collectors: one package per protocol, each turning device answers into Readings."""
