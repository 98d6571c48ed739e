"""The live part: the hub, agent and dashboard WebSocket endpoints, outboxes, the silence sweep, and the cluster link over Redis."""
