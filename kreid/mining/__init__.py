"""Offline miners: triplet/tuplet samplers, offline hard mining, RPTM (GMS relational matrix)."""
