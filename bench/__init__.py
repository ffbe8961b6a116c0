"""Measurement, sweeps, leaderboards, profiling and gates. Importing it starts no device and loads no model."""
