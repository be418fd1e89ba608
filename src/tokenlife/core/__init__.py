"""Pure protocol and policy logic: no I/O, no clock, no environment.

Everything here takes `now` (seconds since the epoch) and random values as arguments.
"""
