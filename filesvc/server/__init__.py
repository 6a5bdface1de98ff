"""How `filesvc serve` runs uvicorn: connection deadlines and the graceful drain."""
