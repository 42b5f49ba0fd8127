"""The BC models of each game family (families/ builds them from a run's saved config)."""
