"""Kafka wiring shared by the services: connection and security, topics, atomic publishing, dead letters."""
