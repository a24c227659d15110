"""Automated builds: linked git sources, build rules, triggers, the queue, workers and logs."""
