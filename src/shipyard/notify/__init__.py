"""Telling people: routing events to channels, the durable outbox, and the delivery worker.

Channels only format and send one message; routing, retries, pacing and give-up live here, so a new
channel is a small module and every channel gets the same delivery guarantees.
"""
