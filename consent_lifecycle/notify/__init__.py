"""Notifications to customers: an outbox in the database, delivered at most once per key by a channel."""
