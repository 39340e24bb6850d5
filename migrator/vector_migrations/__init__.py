"""The migrator's default folder of vector revisions (``VECTOR_MIGRATIONS`` points elsewhere).

Its first revisions are the demo schema the adapters used to build by hand; an application's
own folder may start its chain on top of any of them (its first ``down_revision`` names one).
This file is not a revision: files starting with ``_`` are skipped.
"""
