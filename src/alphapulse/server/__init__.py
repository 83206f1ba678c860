"""The AlphaPulse service: collectors, rings, WebSocket/HTTP API, metrics, Redis Streams."""
