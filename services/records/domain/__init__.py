"""The records domain: aggregates and events, free of any framework."""
