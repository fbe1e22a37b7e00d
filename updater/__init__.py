# medsentry device updater: TUF client, download, A/B install, rollback.
