"""TUF roles of the medsentry repository: the python-tuf backed repository
(:mod:`.repository`) and the per-model delegations (:mod:`.models`)."""
