"""Pure statistics over stored records: medians, cell keys, verdicts, regressions, variants."""
