"""What operators see: slave heartbeats, presence snapshots, and the periodic loop that writes them."""
