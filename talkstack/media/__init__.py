"""Media toolkit: validate and prepare inputs, encode outputs. No ML here."""
