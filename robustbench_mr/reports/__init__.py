"""Reports: Tables 1 and 2 of Jin & Rinard 2020 from the results database, beside the
published numbers; consistency checks between verification and attacks; plots."""
