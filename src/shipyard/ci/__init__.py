"""CI workflows generated from shipyard.yaml (`shipyard ci github`, `shipyard ci check`).

`github` is the pure generator (config in, file name -> text out), `drift` the pure comparison of what
the generator wants with what is on disk, `files` the only module here that reads or writes.
"""
