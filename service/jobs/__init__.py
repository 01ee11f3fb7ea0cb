"""A job on its pure path, with no database: spec -> data -> plan -> trainer (recorder), presets, replay."""
