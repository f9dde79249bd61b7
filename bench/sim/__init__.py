"""Simulated stores for the benchmark: qubits' real claim path on a simulated S3 or GCS, in virtual time.

Never used by users: nothing here is registered with ``jobspaces.open_jobspace`` (a SimJobspace's URL
``sim://…`` is a label that no backend opens). See ``bench/SIMULATED.md`` for the model and results.
"""
