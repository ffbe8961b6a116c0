"""The measurement core: timers and scenarios, paired statistics, accuracy, the machine fingerprint, thread
pinning and waiting for idle thread pools. Nothing here starts processes; :mod:`bench.run` does."""
