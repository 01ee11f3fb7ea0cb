"""A job on its pure path, with no database: spec -> data -> plan -> trainer (recorder), presets, replay.

spec.py parses and validates the document; data.py reads its data; plan.py checks the spec against
that data and derives the schedule; trainer.py runs the loop and recorder.py says what each step
records; errors.py holds the two errors they raise. Who imports whom (no circle): spec -> plan
(a spec with inline or built-in data is planned while it is validated) -> data -> errors;
trainer -> plan, recorder; replay -> spec, plan, trainer, presets. Nothing below spec.py imports it.
"""
