"""Campaigns: one message to many contacts, spread across numbers and the day."""
