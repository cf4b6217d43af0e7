"""Adapters: real storage, transport and mailbox implementations of the protocols."""
