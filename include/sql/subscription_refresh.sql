-- New tables in the publication are only picked up by a refresh (copying their rows).
ALTER SUBSCRIPTION {subscription} REFRESH PUBLICATION WITH (copy_data = true)
