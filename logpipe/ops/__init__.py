"""Operating a running follower: its HTTP endpoint (health, metrics, status)."""
