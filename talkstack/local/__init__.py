"""Local mode: the emulated AWS (moto server), the same state machine and handlers, a local worker pool."""
