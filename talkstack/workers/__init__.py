"""The worker protocol (task document + pre-signed URLs + markers), its runner, and backends."""
