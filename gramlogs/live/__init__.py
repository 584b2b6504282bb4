"""The live layer: what is new in the journal, matched once and handed to every open tail."""
